"""Every reason code gpuproof gives, in one registry: HTTP status (API rejections) and meaning.

A new code is one line here. `docs/reason-codes.md` is generated from this table
(`python -m gpuproof.reasons_doc > docs/reason-codes.md`, or `make reason-codes`); tests fail
when a `Reason("code", ...)` anywhere is missing here or the committed document is stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Stage = Literal["request", "verification", "proof", "committee", "draw", "publication", "live", "liveness"]
STAGES: dict[Stage, str] = {
    "request": "an API request is refused (the HTTP status is the answer's)",
    "verification": "the verify worker refuses a stored report (recorded on the report and machine)",
    "proof": "the proof of throughput fails (verify worker and `committee inspect`)",
    "committee": "a committee round's outcome, or the service's own findings for it",
    "draw": "a committee draw of one machine (the sweeper's outcome, logged)",
    "publication": "a verdict's way to the chain (publisher and reconciler; logged, PublisherDLQ, metrics)",
    "live": "a committee member's live check of a machine: the agent's refusals (HTTP status theirs; "
    "503 where none is given) and the member's own result (revealed in `live_check`)",
    "liveness": "a scored machine goes offline or its score is revoked (sweeper, verify worker, exit)",
}


@dataclass(frozen=True)
class ReasonCode:
    stage: Stage
    description: str
    # The HTTP status when a request is refused with this code first; None when never answered.
    status: int | None = None


def request(status: int, description: str) -> ReasonCode:
    return ReasonCode("request", description, status)


def verification(description: str, status: int | None = None) -> ReasonCode:
    return ReasonCode("verification", description, status)


def proof(description: str, status: int = 422) -> ReasonCode:
    return ReasonCode("proof", description, status)


def committee(description: str) -> ReasonCode:
    return ReasonCode("committee", description)


def publication(description: str) -> ReasonCode:
    return ReasonCode("publication", description)


def live(description: str, status: int | None = None) -> ReasonCode:
    return ReasonCode("live", description, status)


def liveness(description: str, status: int | None = None) -> ReasonCode:
    return ReasonCode("liveness", description, status)


# fmt: off
REASON_CODES: dict[str, ReasonCode] = {
    # -- the envelope (api/signing.py, api/body.py): before anything is parsed
    "body_too_large": request(413, "the body is over 1 MiB"),
    "body_not_utf8": request(400, "the body is not UTF-8 (or escapes a lone surrogate)"),
    "json_too_deep": request(400, "the body nests arrays/objects deeper than 32 levels"),
    "json_non_finite": request(400, "the body holds NaN, Infinity or a number that overflows a float"),
    "malformed_json": request(400, "the body is not valid JSON (or not valid base64)"),
    "signature_missing": request(401, "the request is not signed (RFC 9421 headers missing)"),
    "signature_malformed": request(401, "the signature headers do not parse"),
    "signature_invalid": request(401, "the request signature does not verify for its keyid"),
    "content_digest_mismatch": request(401, "the body is not the one the content-digest covers"),
    "timestamp_stale": request(401, "the signature's created time is outside the allowed skew"),
    "schema_invalid": request(422, "a field breaks the wire model (type, bound, length), one reason each"),
    "route_not_found": request(404, "no route matches the method and path (api/errors.py, the local front)"),
    "request_malformed": request(400, "the HTTP request does not parse (request line, headers): local front"),
    # -- machines (logic/machines.py, adapters/dynamo.py)
    "key_mismatch": request(403, "the request is signed by another key than the one it acts for"),
    "bond_signature_invalid": request(403, "bond_signature is not the machine key's signature of the bond"),
    "report_signature_invalid": request(403, "the report's signature does not verify for its machine"),
    "challenge_machine_mismatch": request(403, "the challenge was issued to another machine"),
    "unknown_machine": request(404, "no machine is registered with this machine_id"),
    "unknown_challenge": request(404, "no challenge has this challenge_id"),
    "unknown_report": request(404, "no report for this machine and challenge"),
    "replayed_nonce": request(409, "the request nonce was already used"),
    "machine_exists": request(409, "the machine is already registered"),
    "machine_owner_mismatch": request(409, "the machine is registered to another owner (keys compared)"),
    "owner_invalid": request(422, "the owner is not a valid SS58 address (checksum, length, prefix)"),
    "machine_state_conflict": request(409, "the machine's state does not allow this (or changed meanwhile)"),
    "challenge_used": request(409, "the challenge is answered, superseded or no longer open"),
    "challenge_exists": request(409, "challenge id collision; ask again"),
    "commitment_exists": request(409, "a commitment for this challenge was already received"),
    "challenge_expired": request(410, "the challenge expired"),
    "report_too_large": request(413, "the report compresses to more than a DynamoDB item holds"),
    "unknown_gpu_model": request(422, "the claimed GPU model has no reference rate"),
    "too_many_gpus": request(422, "more GPUs than MaxGpusPerMachine, in a challenge or an inventory"),
    "cpu_claim_refused": request(422, "gpu_count 0 (a CPU-only host) where the CPU backend is not allowed"),
    "claim_inconsistent": request(422, "a GPU model is named with gpu_count 0"),
    "challenge_cooldown": request(429, "a failed attempt's escalating cooldown is running (protocol.md §14)"),
    "report_machine_mismatch": request(422, "the report names another machine"),
    "report_challenge_mismatch": request(422, "the report answers another challenge or nonce"),
    "heartbeat_machine_mismatch": request(422, "the heartbeat names another machine"),
    # -- committee API (logic/committee.py, adapters/committee_store.py)
    "not_assigned": request(403, "the member is not drawn for this round"),
    "unknown_member": request(404, "no committee member has this account"),
    "unknown_round": request(404, "no such round for this machine"),
    "beacon_not_started": request(404, "the beacon has published no value yet"),
    "capacity_session_missing": request(
        404, "the round's challenge has no capacity session to re-verify (no phase, never opened, or expired)"
    ),
    "member_exists": request(409, "the account is already a committee member"),
    "not_operator": request(403, "the request is not signed by the committee operator key"),
    "operator_not_configured": request(403, "no CommitteeOperatorKey is deployed: nobody can be admitted"),
    "linked_account_invalid": request(422, "a linked account is neither SS58 nor a 32-byte hex key"),
    "too_many_linked_accounts": request(422, "more linked accounts than a member may list"),
    "round_not_disputed": request(409, "the round is not waiting for an operator's resolution"),
    "already_resolved": request(409, "the disputed round was already resolved"),
    "round_closed": request(409, "the round is closed"),
    "already_committed": request(409, "the member already committed in this round"),
    "commit_window_closed": request(409, "the commit window is over"),
    "duplicate_commit": request(409, "another member committed the same hash"),
    "commit_refused": request(409, "the round changed meanwhile; the commit was not stored"),
    "not_committed": request(409, "the member did not commit, so cannot reveal"),
    "already_revealed": request(409, "the member already revealed in this round"),
    "reveal_not_open": request(409, "the reveal window has not opened"),
    "reveal_window_closed": request(409, "the reveal window is over"),
    "reveal_refused": request(409, "the round changed meanwhile; the reveal was not stored"),
    "reveal_mismatch": request(422, "blake2_128 of the revealed info is not the member's commit"),
    "reveal_machine_mismatch": request(422, "the revealed info names another machine"),
    "member_capacity_mismatch": committee(
        "a member's own re-check of the capacity phase differs from the service's record or breakdown "
        "(or could not be run where the service says proven): the member refuses"
    ),
    # -- conditional writes of the workers (a conflict another delivery or tick won)
    "already_verified": verification("the report already has a verification (a redelivery)", 409),
    "round_exists": ReasonCode("draw", "the round was already drawn", 409),
    "member_unavailable": ReasonCode("draw", "a drawn member retired or reached its cap meanwhile", 409),
    "beacon_value_used": ReasonCode("draw", "the beacon value was used by another draw meanwhile", 409),
    "verdict_exists": ReasonCode("draw", "the round's verdict is already written", 409),
    "draw_failed": ReasonCode("draw", "drawing this machine raised; logged, the other machines are drawn"),
    "verification_requeued": verification(
        "the report waited unverified past REQUEUE_AFTER_S; its verification was queued again (the "
        "machine stays submitted with this reason and its next step; logged once)"
    ),
    "committee_pool_too_small": ReasonCode(
        "draw",
        "fewer eligible committee members than a committee needs: the machine waits in auto_verified "
        "(or no_consensus) with this reason and its next step in state_reasons; logged once",
    ),
    # -- the verify worker (logic/verification.py)
    "report_schema_invalid": verification("the stored report breaks today's wire model"),
    "integrity_ld_preload": verification("LD_PRELOAD or /etc/ld.so.preload is set"),
    "nvml_cuda_disagreement": verification("NVML and CUDA describe a GPU differently"),
    "inventory_error": verification("the probe could not read a GPU fully"),
    "gpu_count_mismatch": verification("the inventory has another number of GPUs than the challenge claimed"),
    "gpu_model_mismatch": verification("a GPU does not identify as the model the challenge claimed"),
    "benchmark_missing": verification("a GPU has no verified BF16 figure (missing evidence is a failure)"),
    "claim_missing": verification("the challenge (or verification) carries no usable claim"),
    "challenge_params_mismatch": verification("the challenge's proof parameters are not those of its claim"),
    "benchmark_unverified": verification("a micro-benchmark is not backed by verified work"),
    "benchmark_exceeds_proven": verification("a self-reported rate is far above the proven rate"),
    "gpu_uuid_malformed": verification("a GPU UUID is not GPU- plus 8-4-4-4-12 hex, after normalisation"),
    "gpu_uuid_duplicate": verification("a GPU UUID appears twice in the inventory, after normalisation"),
    "gpu_uuid_taken": verification("a GPU UUID belongs to another machine", 409),
    "gpu_name_unknown": verification("the GPU's name matches no reference model"),
    "gpu_model_ambiguous": verification("the evidence fits more than one reference model"),
    "gpu_memory_outside_envelope": verification("the GPU's memory is outside its model's envelope"),
    "gpu_rate_above_envelope": verification("the measured rate is above its model's envelope"),
    "gpu_rate_below_envelope": verification("the measured rate is below its model's envelope"),
    "gpu_rate_reference_missing": verification("the model has no reference rate to compare with"),
    "gpu_not_identified": verification("the GPU could not be identified as a reference model"),
    "proof_missing": verification("the report carries no proof of throughput"),
    "proof_malformed": verification("the proof does not parse as the wire model"),
    "proof_commitment_missing": verification("no commitment was received for this challenge"),
    "proof_commitment_changed": verification("the report's commitment is not the one the service timed"),
    # -- the model from what the service measured (evidence.py; check measured_model, deciding)
    "model_rate_below_claim": verification("the service-timed proof is slower than the claimed model allows"),
    "model_rate_not_proven": verification("no passing proof of throughput: the model is not measured"),
    "model_capacity_above_claim": verification("a GPU proved more VRAM than the claimed model holds"),
    "model_capacity_failed": verification("a GPU failed the capacity phase: its VRAM is not proven"),
    "model_capacity_missing": verification(
        "no capacity record proves a GPU (skipped, incomplete, unverifiable): scored as failed"
    ),
    "gpu_mig_refused": verification("a GPU is a MIG instance (MIG mode on): refused, not counted as a GPU"),
    "gpu_vgpu_refused": verification("a GPU is a vGPU (NVML virtualization mode or name): refused"),
    # -- cross-checks of the measured model (check model_cross_checks, shadow by default)
    "model_rate_above_claim": verification("ran > 1.2x faster than the claimed model (scored as one)"),
    "model_bandwidth_outside_claim": verification("the measured bandwidth is outside the claimed model's"),
    "nvml_name_cross_check": verification("NVML's name (host-sent) is not the claimed, measured model"),
    # -- inputs not proven (check evidence, shadow by default) and DBC's minimums (check dbc_minimums)
    "capacity_record_malformed": verification("the capacity record does not parse: nothing in it is proven"),
    "gpu_count_not_proven": verification("no capacity record: no GPU is counted (work counts no devices)"),
    "vram_not_proven": verification("no capacity record: no GPU's VRAM is proven; scored 0 GB"),
    "least_reading_lower": verification(
        "the evidence binds the machine's totals: other hardware meeting them scores less (recorded)"
    ),
    "ram_not_proven": verification("host RAM is not proven (absent or failed): the RAM term scores 0"),
    "dbc_ram_per_gpu_below_minimum": verification("proven RAM is under DBC's 48 GB per card"),
    "dbc_ram_per_machine_below_minimum": verification("proven RAM is under DBC's 64 GB per machine"),
    "calc_point_missing": verification("calc_point could not be scored from the evidence"),
    # -- device identity from the kernel (identity.py; check kernel_identity, shadow by default)
    "kernel_view_missing": verification("the report has no kernel view (/proc/driver/nvidia, PCI)"),
    "kernel_gpu_count_mismatch": verification("claim, NVML, /proc/driver/nvidia and PCI count differ"),
    "kernel_bus_id_mismatch": verification("a GPU's bus id is missing from the kernel's or NVML's view"),
    "kernel_model_mismatch": verification("the kernel's model name for a GPU is not NVML's"),
    "kernel_uuid_mismatch": verification("the kernel's GPU UUID is not NVML's"),
    # -- the proof of throughput (protocol/proof/codes.py); 422 where the commitment route refuses
    "proof_version_unsupported": proof("a proof, commitment or params of another version (v1 is forgeable)"),
    "proof_transcript_malformed": proof("the binary transcript is not the layout its params imply"),
    "proof_params_mismatch": proof("the commitment covers other GPUs or step counts than the challenge"),
    "proof_commitment_signature_invalid": proof("the commitment is not signed by the machine key", 403),
    "proof_nonce_mismatch": proof("the commitment is for another nonce"),
    "proof_machine_mismatch": proof("the commitment names another machine"),
    "proof_challenge_mismatch": proof("the commitment names another challenge"),
    "proof_root_chain_invalid": proof("the roots do not chain to the committed value"),
    "proof_pairs_mismatch": proof("a GPU's pairs differ from those the service drew"),
    "proof_pairs_missing": proof("no pair group for a committed GPU"),
    "proof_pairs_extra": proof("a pair group for a GPU that was not committed"),
    "proof_pairs_duplicate": proof("more than one pair group for a GPU"),
    "proof_openings_mismatch": proof("the opened rows differ from those asked"),
    "proof_openings_missing": proof("no opening group for a committed GPU"),
    "proof_openings_extra": proof("an opening group for a GPU that was not committed"),
    "proof_openings_duplicate": proof("more than one opening group for a GPU"),
    "proof_opening_malformed": proof("an opening has a wrong row/path length, step or row"),
    "proof_value_out_of_range": proof("an opened entry lies outside the parameters' range"),
    "proof_merkle_path_invalid": proof("an opened row does not open its committed root"),
    "proof_row_check_failed": proof("an opened C_t row is not A_(t-1) row . B_t + A_0 row"),
    "proof_deadline_missed": proof("the commitment arrived after the deadline (service clock)"),
    "proof_clock_invalid": proof("the commitment was received before the challenge was issued"),
    # -- the transcript delivered out of band (protocol/delivery.py): refused at report intake
    # (a HEAD of the object; nothing is stored) and again by the verify worker and `committee inspect`
    # -- the capacity phase (protocol/capacity/codes.py; docs/protocol.md "Capacity phase")
    "capacity_missing": proof("no capacity phase was run or recorded for the challenge (not proven)"),
    "capacity_params_mismatch": proof("the capacity commitment or transcript covers other targets"),
    "capacity_commitment_signature_invalid": proof("the capacity commitment is not the machine key's", 403),
    "capacity_machine_mismatch": proof("the capacity commitment names another machine"),
    "capacity_challenge_mismatch": proof("the capacity commitment names another challenge"),
    "capacity_nonce_mismatch": proof("the capacity commitment is for another nonce"),
    "capacity_root_chain_invalid": proof("a target's layer roots do not chain to its commitment"),
    "capacity_fill_deadline_missed": proof("the capacity commitment came after the fill deadline"),
    "capacity_clock_invalid": proof("a capacity time precedes the event it follows (service clock)"),
    "capacity_round_missing": proof("a read round was not answered, or its answer lacks a target"),
    "capacity_round_deadline_missed": proof("a GPU read round was answered after its deadline"),
    "capacity_host_round_deadline_missed": proof("a host RAM read round answered after its deadline"),
    "capacity_openings_mismatch": proof("the opened spots or walks differ from those the service drew"),
    "capacity_opening_malformed": proof("the capacity openings do not decode, or have a wrong shape"),
    "capacity_value_out_of_range": proof("an opened fill entry lies outside [-125, 125]"),
    "capacity_merkle_path_invalid": proof("opened fill rows do not open their committed layer root"),
    "capacity_answer_mismatch": proof("an opened item is not the leaf the round's timed answer committed"),
    "capacity_walk_check_failed": proof("a fill row is not g_l(own . B[pi_l] + k_l . mate . B[sigma_l])"),
    "capacity_bandwidth_deadline_missed": proof("the bandwidth round's sweeps came after their deadline"),
    "capacity_sweep_mismatch": proof("an opened item is not the leaf its timed sweep committed"),
    "capacity_state_conflict": request(409, "a capacity message out of order"),
    "capacity_answer_invalid": request(
        422, "a capacity answer does not cover exactly the round's targets, or has the wrong sweep roots"
    ),
    "capacity_openings_invalid": request(422, "send binary capacity openings, inline or by a v2 reference"),
    "capacity_openings_too_large": request(413, "the capacity openings are over the bound (256 KiB inline)"),
    "proof_reference_malformed": request(422, "the report's proof reference does not parse"),
    "transcript_missing": request(422, "no transcript was uploaded for this challenge"),
    "transcript_too_large": request(413, "the transcript is over TranscriptMaxBytesPerGpu x the GPU count"),
    "transcript_size_mismatch": request(422, "the uploaded transcript is not the size the report signs"),
    "transcript_digest_mismatch": verification("the transcript's SHA-256 is not the one the report signs"),
    "transcript_malformed": verification("the delivered transcript does not decode"),
    "transcript_version_unsupported": verification("the service has no decoder for this transcript version"),
    # -- the service's findings for a round (committee/findings.py, logic/committee.py)
    "gpu_models_mixed": committee("the GPUs are of more than one model"),
    "region_unknown": committee("the machine's region has no DBC coefficient"),
    "upload_info_invalid": committee("the findings do not form a valid CommitteeUploadInfo"),
    "committee_refused": committee("the committee's verdict refused the machine"),
    "committee_no_consensus": committee("the committee reached no consensus"),
    "committee_disputed": committee("a confirming majority disagrees with the service's findings"),
    "dispute_resolved": committee("an operator settled a disputed round (gpuproof-ops resolve)"),
    # -- publication (workers/publisher.py, workers/sweeper.py, logic/reconcile.py)
    "malformed_verdict": publication(
        "a verdict item does not read or encode as a verdict: set aside alone, one PublisherDLQ message"
    ),
    "refused_by_chain": publication("the chain included the verdict's extrinsic but the call failed"),
    "publication_deferred": publication(
        "the chain stayed unreachable for the retry budget: the reconciler hands the verdict back later"
    ),
    "reconciliation_failed": publication("the reconciler's pass raised (logged; the tick goes on)"),
    "liveness_failed": liveness("the liveness pass raised (logged; the tick goes on)"),
    "presence_missed": liveness("a presence check unanswered in time: offline; PresenceMaxMisses revoke"),
    "presence_failed": liveness("a presence check's commitment came late or its proof failed: revoked", 422),
    "presence_not_committed": request(409, "the presence check has no commitment yet: send it first"),
    "presence_unknown": request(404, "no open presence check of this machine has this check_id"),
    "presence_too_early": request(425, "the presence check does not open yet: fetch it at opens_at"),
    "presence_closed": request(410, "the presence check's fetch or answer window is over: a miss"),
    # -- liveness and revocation (workers/sweeper.py, logic/liveness.py, logic/revocation.py)
    "heartbeat_missed": liveness("no heartbeat for OfflineAfterSeconds: the machine is offline"),
    "offline_too_long": liveness("offline for RevokeOfflineAfterSeconds: its score is revoked on chain"),
    "reverification_failed": liveness("a scored machine's re-verification was refused: its score is revoked"),
    "machine_exited": liveness("the owner signed an exit: the score is revoked, the GPUs released"),
    "exit_not_owner": request(403, "an exit is signed by the owner's key (sr25519; keyid: its public key)"),
    # -- the live check (protocol/live.py; the agent: benchmark_probe/live.py; the member: cli/live.py)
    "live_not_drawn": live("the signer is not drawn for the machine's round the service publishes", 403),
    "live_round_not_open": live("the round named is unknown to the service or no longer open", 403),
    "live_round_unavailable": live("the agent could not read the round from the service (answered 503)"),
    "live_params_mismatch": live("the parameters are not those derived for the round's claim", 422),
    "live_machine_mismatch": live("the live request names another machine", 422),
    "live_request_invalid": live("the live request's body does not parse, or reuses a challenge_id", 422),
    "live_busy": live("another member's live challenge is being answered (503; retried at once)"),
    "live_limit": live("this member sent the most live challenges one round allows", 429),
    "live_unknown_challenge": live("openings asked for a live challenge this member did not send", 404),
    "live_endpoint_missing": live("the machine's heartbeat publishes no (valid) live endpoint"),
    "live_endpoint_private": live("the live endpoint is not a public address (the member refuses it)"),
    "live_unreachable": live("the agent did not answer (connection refused, reset or timed out)"),
    "live_refused": live("the agent refused the member's live request (its code in the message)"),
    "live_response_signature_invalid": live("an answer is not signed by the machine key for that request"),
    "live_response_malformed": live("the commitment or the openings do not parse, or are too large"),
    "live_deadline_missed": live("the commitment arrived after the member's own deadline (member's clock)"),
    "live_check_inconsistent": request(422, "a reveal supports the machine though its own live check failed"),
}
# fmt: on

# One status per reason code that a request can be refused with. A rejection answers with the
# status of its first reason, so callers list the most fundamental reason first.
STATUS_BY_CODE: dict[str, int] = {c: r.status for c, r in REASON_CODES.items() if r.status is not None}
