"""The machine path's first half: register, issue a challenge, accept a signed report, read status."""

from __future__ import annotations

import hashlib
import secrets
import zlib
from dataclasses import dataclass, field
from typing import Any

from gpuproof.claim import ClaimError, challenge_params, make_claim, stored_proof_params
from gpuproof.config import LivenessPolicy, PresencePolicy
from gpuproof.errors import Rejection, raise_if
from gpuproof.logic.attempts import CooldownPolicy, cooldown_reasons, count_previous, taken
from gpuproof.logic.ports import Clock, MachineStore, TranscriptStore, VerifyQueue
from gpuproof.logic.presence import announcement
from gpuproof.logic.records import Challenge, ChallengeStatus, Machine, StoredReport, Verdict
from gpuproof.logic.revocation import revoked_verdict, withdrawn
from gpuproof.logic.states import EXITABLE, MachineState, states_before
from gpuproof.logic.waves import WaveSource
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.delivery import (
    DEFAULT_MAX_BYTES_PER_GPU,
    TranscriptUpload,
    is_reference,
    parse_reference,
    size_reasons,
    transcript_limit,
)
from gpuproof.protocol.httpsig import SignedRequest
from gpuproof.protocol.keys import verify
from gpuproof.protocol.limits import DEFAULT_MAX_GPUS_PER_MACHINE
from gpuproof.protocol.machine import ChallengeRequest, MachineRegistration, bond_message
from gpuproof.protocol.proof import (
    GpuPairs,
    ProofParams,
    SignedCommitment,
    draw_all_pairs,
    verify_commitment,
)
from gpuproof.protocol.reasons import Reason
from gpuproof.protocol.report import SignedReport
from gpuproof.protocol.ss58 import account_key_or_none
from gpuproof.protocol.telemetry import Heartbeat

# DynamoDB items stop at 400 KB; a compressed report above this is refused, not truncated.
MAX_STORED_REPORT_BYTES = 350 * 1024


@dataclass(frozen=True)
class Services:
    store: MachineStore
    queue: VerifyQueue
    clock: Clock
    challenge_ttl_s: int
    allow_cpu_backend: bool = False
    cooldown: CooldownPolicy = field(default_factory=CooldownPolicy)
    max_gpus_per_machine: int = DEFAULT_MAX_GPUS_PER_MACHINE
    # Where the probe uploads its transcript; None: proofs travel inline in the report (v1 only).
    transcripts: TranscriptStore | None = None
    transcript_max_bytes_per_gpu: int = DEFAULT_MAX_BYTES_PER_GPU
    cpu_proof_deadline_s: float = 0.0  # the CPU backend's deadline floor (gpuproof.claim)
    liveness: LivenessPolicy = field(default_factory=lambda: LivenessPolicy(1800, 86400))
    presence: PresencePolicy = field(default_factory=lambda: PresencePolicy(0, 3, 180, 5.0, 120.0))
    # The presence waves' schedule (read only; None: no presence checks are announced).
    waves: WaveSource | None = None

    def transcript_limit(self, challenge: Challenge) -> int:
        return transcript_limit(self.transcript_max_bytes_per_gpu, len(proof_params(challenge)))


def too_many_gpus(count: int, limit: int, what: str, field: str) -> list[Reason]:
    """The configured GPUs-per-machine limit (MaxGpusPerMachine), checked wherever GPUs are counted."""
    if count <= limit:
        return []
    return [Reason("too_many_gpus", f"{what} {count} GPUs; this service accepts at most {limit}", field)]


def _signer_reasons(svc: Services, request: SignedRequest, machine_id: str) -> list[Reason]:
    reasons = []
    if request.keyid != machine_id:
        reasons.append(
            Reason("key_mismatch", "the request is signed by another key than this machine's", "keyid")
        )
    if svc.store.nonce_used(request):
        reasons.append(Reason("replayed_nonce", "this request nonce was already used", "nonce"))
    return reasons


def register_machine(svc: Services, request: SignedRequest, body: MachineRegistration) -> Machine:
    reasons = _signer_reasons(svc, request, body.machine_id)
    if not verify(
        body.machine_id, bond_message(body.machine_id, body.owner), bytes.fromhex(body.bond_signature)
    ):
        reasons.append(
            Reason(
                "bond_signature_invalid",
                "bond_signature is not the machine key's signature of machine_id + owner",
                "bond_signature",
            )
        )
    existing = svc.store.get_machine(body.machine_id)
    if existing is not None and account_key_or_none(existing.owner) != account_key_or_none(body.owner):
        reasons.append(
            Reason(
                "machine_owner_mismatch",
                f"machine {body.machine_id} is registered to owner {existing.owner}; this registration "
                f"names {body.owner}, and a machine's owner is not changed by registering again",
                "owner",
            )
        )
    elif existing is not None:
        reasons.append(Reason("machine_exists", "this machine is already registered", "machine_id"))
    if account_key_or_none(body.owner) is None:
        reasons.append(Reason("owner_invalid", "owner is not an SS58 address with a valid checksum", "owner"))
    raise_if(reasons)
    now = svc.clock.now()
    machine = Machine(
        machine_id=body.machine_id,
        owner=body.owner,
        region=body.region.value,
        state=MachineState.registered,
        registered_at=now,
        updated_at=now,
    )
    svc.store.register(machine, request)
    return machine


def proof_params(challenge: Challenge) -> list[ProofParams]:
    return stored_proof_params(challenge.params)


CHALLENGEABLE = states_before(MachineState.challenged)


def issue_challenge(
    svc: Services, request: SignedRequest, machine_id: str, body: ChallengeRequest
) -> Challenge:
    """A fresh challenge for the claim in `body`. The machine's previous challenge is counted
    first: abandoned after its commitment, it is a failed attempt; while a failure's cooldown
    runs no challenge is issued (challenge_cooldown, 429)."""
    reasons = _signer_reasons(svc, request, machine_id)
    machine = svc.store.get_machine(machine_id)
    claim_problems = too_many_gpus(
        body.gpu_count, svc.max_gpus_per_machine, "the challenge claims", "gpu_count"
    )
    params: dict[str, Any] = {}
    if not claim_problems:
        try:
            claim = make_claim(
                body.claimed_gpu_model, body.gpu_count, allow_cpu_backend=svc.allow_cpu_backend
            )
            params = challenge_params(claim, body.claimed_ram_bytes, cpu_deadline_s=svc.cpu_proof_deadline_s)
        except ClaimError as refused:
            claim_problems = refused.reasons
    now = svc.clock.now()
    attempts = None
    if machine is None:
        reasons.insert(
            0, Reason("unknown_machine", "no machine is registered with this machine_id", "machine_id")
        )
    elif machine.state not in CHALLENGEABLE:
        reasons.append(
            Reason(
                "machine_state_conflict",
                f"a machine in state {machine.state} cannot take a challenge",
                "state",
            )
        )
    else:
        previous = svc.store.get_challenge(machine.last_challenge_id) if machine.last_challenge_id else None
        attempts = count_previous(machine.attempts, previous, svc.cooldown)
        waiting = cooldown_reasons(attempts, now)
        if waiting and not reasons and previous is not None and attempts != machine.attempts:
            # Asking again abandons the committed challenge: it is superseded and its failure
            # stored now, so the refusal below still leaves the machine's record true.
            svc.store.record_abandoned(machine, previous.challenge_id, attempts)
        # Before the claim's problems: a machine waiting out a failure learns that first.
        reasons += waiting
    raise_if(reasons + claim_problems)
    assert machine is not None and attempts is not None
    challenge = Challenge(
        challenge_id=secrets.token_hex(16),
        machine_id=machine_id,
        nonce=secrets.token_bytes(32).hex(),
        issued_at=now,
        expires_at=now + svc.challenge_ttl_s,
        params=params,
    )
    svc.store.issue_challenge(challenge, machine, taken(attempts), request)
    machine.attempts = taken(attempts)
    return challenge


def _open_challenge_reasons(
    machine: Machine | None, challenge: Challenge | None, machine_id: str, challenge_id: str, now: float
) -> list[Reason]:
    """Why `challenge_id` cannot be answered by `machine_id` now (empty when it can)."""
    if challenge is None:
        return [Reason("unknown_challenge", "no challenge has this challenge_id", "challenge_id")]
    reasons = []
    if challenge.machine_id != machine_id:
        reasons.append(
            Reason(
                "challenge_machine_mismatch", "this challenge was issued to another machine", "challenge_id"
            )
        )
    if (
        machine is not None
        and challenge.machine_id == machine_id
        and machine.last_challenge_id != challenge_id
    ):
        reasons.append(Reason("challenge_used", "a newer challenge superseded this one", "challenge_id"))
    elif challenge.status != ChallengeStatus.issued:
        reasons.append(
            Reason("challenge_used", f"this challenge is {challenge.status}, not open", "challenge_id")
        )
    if now > challenge.expires_at:
        reasons.append(
            Reason(
                "challenge_expired",
                f"the challenge expired {int(now - challenge.expires_at)} s ago",
                "challenge_id",
            )
        )
    return reasons


@dataclass(frozen=True)
class CommitmentReceipt:
    challenge: Challenge
    pairs: list[GpuPairs]
    received_at: float
    elapsed_s: float
    deadline_s: float
    upload: TranscriptUpload | None = None


def received_time(issued_at: float, handled_at: float, arrived_at: float | None) -> float:
    """When the commitment counts as received: its arrival at the API's edge, so time spent
    queued, throttled or cold-starting inside the service never counts against the machine;
    clamped to [issued_at, handled_at] (the edge and the function clocks may differ a little)."""
    if arrived_at is None:
        return handled_at
    return max(issued_at, min(arrived_at, handled_at))


def record_commitment(
    svc: Services,
    request: SignedRequest,
    machine_id: str,
    challenge_id: str,
    signed: SignedCommitment,
    *,
    arrived_at: float | None = None,
) -> CommitmentReceipt:
    """Time the commitment (its arrival at the API's edge, `received_time`), then draw the pairs
    to open (never before), and hand out the one upload this challenge's transcript may use."""
    handled_at = svc.clock.now()
    now = handled_at
    reasons = _signer_reasons(svc, request, machine_id)
    machine = svc.store.get_machine(machine_id)
    if machine is None:
        reasons.insert(
            0, Reason("unknown_machine", "no machine is registered with this machine_id", "machine_id")
        )
    challenge = svc.store.get_challenge(challenge_id)
    reasons += _open_challenge_reasons(machine, challenge, machine_id, challenge_id, now)
    if challenge is not None:
        if challenge.commitment_sha256 is not None:
            reasons.append(
                Reason(
                    "commitment_exists",
                    "a commitment for this challenge was already received",
                    "challenge_id",
                )
            )
        if challenge.machine_id == machine_id:
            reasons += verify_commitment(
                signed.commitment,
                signed.signature,
                machine_id=machine_id,
                challenge_id=challenge_id,
                nonce=bytes.fromhex(challenge.nonce),
                params=proof_params(challenge),
            )
    raise_if(reasons)
    assert challenge is not None
    now = received_time(challenge.issued_at, handled_at, arrived_at)
    secret = secrets.token_bytes(32)
    params = proof_params(challenge)
    pairs = draw_all_pairs(signed, secret, params)
    digest = hashlib.sha256(signed.commitment.signing_bytes()).hexdigest()
    svc.store.record_commitment(
        challenge, digest, now, [p.model_dump(mode="json") for p in pairs], secret.hex(), request
    )
    deadline = max(p.deadline_s for p in params) if params else 0.0
    upload = None
    if svc.transcripts is not None:
        upload = svc.transcripts.upload_target(
            machine_id, challenge_id, svc.transcript_limit(challenge), challenge.expires_at, handled_at
        )
    return CommitmentReceipt(challenge, pairs, now, now - challenge.issued_at, deadline, upload)


def _transcript_reasons(
    svc: Services, machine_id: str, challenge: Challenge | None, signed: SignedReport
) -> list[Reason]:
    """A report whose proof is a reference: the reference parses, and its transcript is uploaded,
    within the challenge's bound and at the declared size (the worker checks the SHA-256). Refused
    here the report is not stored, so a probe whose upload failed can upload again and resend."""
    proof = signed.report.proof
    if not is_reference(proof) or challenge is None or challenge.machine_id != machine_id:
        return []
    assert proof is not None
    ref, reasons = parse_reference(proof)
    if ref is None:
        return reasons
    limit = svc.transcript_limit(challenge)
    if ref.transcript_bytes > limit:
        return [
            Reason(
                "transcript_too_large",
                f"the report declares a {ref.transcript_bytes}-byte transcript (limit {limit})",
                "signed_report.report.proof.transcript_bytes",
            )
        ]
    if svc.transcripts is None:
        return [Reason("transcript_missing", "this service takes no uploaded transcripts", "proof")]
    return size_reasons(svc.transcripts.size(machine_id, challenge.challenge_id), ref, limit)


def accept_report(
    svc: Services, request: SignedRequest, machine_id: str, challenge_id: str, signed: SignedReport
) -> StoredReport:
    reasons = _signer_reasons(svc, request, machine_id)
    machine = svc.store.get_machine(machine_id)
    if machine is None:
        reasons.insert(
            0, Reason("unknown_machine", "no machine is registered with this machine_id", "machine_id")
        )
    challenge = svc.store.get_challenge(challenge_id)
    now = svc.clock.now()
    reasons += _open_challenge_reasons(machine, challenge, machine_id, challenge_id, now)
    report = signed.report
    if report.machine_id != machine_id:
        reasons.append(
            Reason(
                "report_machine_mismatch",
                "the report names another machine",
                "signed_report.report.machine_id",
            )
        )
    if report.challenge_id != challenge_id:
        reasons.append(
            Reason(
                "report_challenge_mismatch",
                "the report answers another challenge",
                "signed_report.report.challenge_id",
            )
        )
    if challenge is not None and report.challenge_nonce != challenge.nonce:
        reasons.append(
            Reason(
                "report_challenge_mismatch",
                "the report's challenge_nonce is not the challenge's",
                "signed_report.report.challenge_nonce",
            )
        )
    reasons += too_many_gpus(
        len(report.inventory.gpus),
        svc.max_gpus_per_machine,
        "the inventory lists",
        "signed_report.report.inventory.gpus",
    )
    if not signed.verifies():
        reasons.append(
            Reason(
                "report_signature_invalid",
                "the report's signature does not verify for its machine",
                "signed_report.signature",
            )
        )
    reasons += _transcript_reasons(svc, machine_id, challenge, signed)
    body = signed.model_dump(mode="json")
    raw = canonical_bytes(body)
    compressed = zlib.compress(raw, 6)
    if len(compressed) > MAX_STORED_REPORT_BYTES:
        reasons.append(
            Reason(
                "report_too_large",
                f"the report compresses to {len(compressed)} bytes (limit {MAX_STORED_REPORT_BYTES})",
            )
        )
    raise_if(reasons)
    stored = StoredReport(
        machine_id=machine_id,
        challenge_id=challenge_id,
        received_at=now,
        report_sha256=hashlib.sha256(raw).hexdigest(),
        signed_report=body,
    )
    svc.store.accept_report(stored, compressed, request)
    svc.queue.enqueue(machine_id, challenge_id)
    return stored


# A published machine proves itself again after this long (its agent is told in the heartbeat ack).
REVERIFY_AFTER_S = 7 * 24 * 3600


@dataclass(frozen=True)
class HeartbeatAck:
    machine: Machine
    received_at: float
    reverify: bool
    # Its presence check in the coming wave, not yet fetched: {check_id, opens_at, fetch_by}
    # (logic/presence.py announcement), from lead_s before it opens.
    presence: dict[str, Any] | None = None


def record_heartbeat(svc: Services, request: SignedRequest, machine_id: str, beat: Heartbeat) -> HeartbeatAck:
    """Keep the latest telemetry on the machine; tell the agent when a re-verification is due."""
    reasons = _signer_reasons(svc, request, machine_id)
    machine = svc.store.get_machine(machine_id)
    if machine is None:
        reasons.insert(
            0, Reason("unknown_machine", "no machine is registered with this machine_id", "machine_id")
        )
    if beat.machine_id != machine_id:
        reasons.append(
            Reason("heartbeat_machine_mismatch", "the heartbeat names another machine", "machine_id")
        )
    raise_if(reasons)
    assert machine is not None
    now = svc.clock.now()
    back = machine.state == MachineState.offline
    svc.store.record_heartbeat(
        machine_id,
        now,
        beat.model_dump(mode="json"),
        request,
        back_online=back,
        liveness_due_at=now + svc.liveness.offline_after_s if back else None,
    )
    if back:  # an offline machine that beats again is online (published) again
        machine.state = MachineState.published
        machine.updated_at = now
    due = machine.state == MachineState.published and now - machine.updated_at > REVERIFY_AFTER_S
    waves = svc.waves.waves(now) if svc.waves is not None and svc.presence.enabled else ()
    return HeartbeatAck(machine, now, due, announcement(machine, svc.presence, waves, now))


def exit_machine(svc: Services, request: SignedRequest, machine_id: str) -> tuple[Machine, Verdict | None]:
    """The owner takes the machine out: signed by the owner's key (sr25519, keyid = the owner's
    public key hex; the machine key cannot exit for it). Its score on chain is revoked (a Revoked
    verdict, reason machine_exited) and its GPU UUIDs are released, in one transaction."""
    machine = svc.store.get_machine(machine_id)
    if machine is None:
        raise Rejection(
            [Reason("unknown_machine", "no machine is registered with this machine_id", "machine_id")]
        )
    reasons = []
    if request.keyid != account_key_or_none(machine.owner):
        reasons.append(
            Reason(
                "exit_not_owner",
                f"an exit is signed by the owner {machine.owner}'s key (keyid = its public key hex)",
                "keyid",
            )
        )
    if svc.store.nonce_used(request):
        reasons.append(Reason("replayed_nonce", "this request nonce was already used", "nonce"))
    if machine.state not in EXITABLE:
        reasons.append(
            Reason(
                "machine_state_conflict",
                f"a machine in state {machine.state} cannot exit now (allowed from "
                f"{', '.join(sorted(s.value for s in EXITABLE))})",
                "state",
            )
        )
    raise_if(reasons)
    now = svc.clock.now()
    reason = Reason("machine_exited", f"the owner {machine.owner} signed an exit")
    evidence = {"keyid": request.keyid, "created": request.created, "nonce": request.nonce}
    verdict = revoked_verdict(machine, reason, evidence, now)
    svc.store.revoke(machine, MachineState.exited, reason, verdict, now, request)
    # The answer shows what was written: no score, no GPUs (they are another machine's to claim).
    return withdrawn(machine, MachineState.exited, reason, now), verdict


# A report still unverified this long after intake lost its queue message (a crash between the
# transaction and the send); the verify worker treats a second message as a no-op otherwise.
REQUEUE_AFTER_S = 300


VERIFICATION_REQUEUED = "verification_requeued"
STUCK_IN_SUBMITTED = {
    "code": VERIFICATION_REQUEUED,
    "message": (
        f"the report waited more than {REQUEUE_AFTER_S // 60} minutes unverified (its queue message "
        "was lost or its verification keeps failing); its verification was queued again"
    ),
    "next_step": (
        "nothing to do on the machine: the service retries; if the machine stays submitted, the "
        "operator looks at VerifyDLQ and the verify worker's errors (docs/operations.md)"
    ),
}


def requeue_unverified_reports(
    svc: Services, older_than_s: float = REQUEUE_AFTER_S, announced: list[str] | None = None
) -> list[str]:
    """Send a verification message again for every machine stuck in `submitted`, and say so on
    the machine (`verification_requeued` in state_reasons); `announced` receives the machines
    whose reason this call wrote, so the caller logs each once, not every tick."""
    cutoff = svc.clock.now() - older_than_s
    requeued = []
    for machine in svc.store.machines_in_state(MachineState.submitted):
        if machine.updated_at < cutoff and machine.last_challenge_id:
            svc.queue.enqueue(machine.machine_id, machine.last_challenge_id)
            requeued.append(machine.machine_id)
            wrote = svc.store.set_state_reasons(
                machine.machine_id, MachineState.submitted.value, [dict(STUCK_IN_SUBMITTED)]
            )
            if wrote and announced is not None:
                announced.append(machine.machine_id)
    return requeued


# GET /machines/{id}/heartbeats answers this many heartbeats unless asked for fewer or more (at
# most MAX_HEARTBEATS_PAGE); older ones are read with `since` (the history is kept for the template's
# HeartbeatRetentionDays).
DEFAULT_HEARTBEATS_PAGE = 100
MAX_HEARTBEATS_PAGE = 500


@dataclass(frozen=True)
class MachineStatus:
    machine: Machine
    reports: list[StoredReport]
    # The most recent stored heartbeat ({"received_at", "telemetry"}); None when none is kept.
    latest_heartbeat: dict[str, Any] | None


def _known_machine(svc: Services, machine_id: str) -> Machine:
    machine = svc.store.get_machine(machine_id)
    if machine is None:
        raise Rejection(
            [Reason("unknown_machine", "no machine is registered with this machine_id", "machine_id")]
        )
    return machine


def machine_status(svc: Services, machine_id: str) -> MachineStatus:
    machine = _known_machine(svc, machine_id)
    latest = svc.store.heartbeats(machine_id, 0, 1)
    return MachineStatus(machine, svc.store.list_reports(machine_id), latest[0] if latest else None)


def machine_heartbeats(svc: Services, machine_id: str, since: float, limit: int) -> list[dict[str, Any]]:
    """A known machine's stored heartbeats received at or after `since`, the newest `limit` of
    them (1..MAX_HEARTBEATS_PAGE), newest first."""
    if not 1 <= limit <= MAX_HEARTBEATS_PAGE:
        raise Rejection([Reason("schema_invalid", f"limit must be 1..{MAX_HEARTBEATS_PAGE}", "query.limit")])
    _known_machine(svc, machine_id)
    return svc.store.heartbeats(machine_id, since, limit)[::-1]


def get_report(svc: Services, machine_id: str, challenge_id: str) -> StoredReport:
    report = svc.store.get_report(machine_id, challenge_id)
    if report is None:
        raise Rejection(
            [Reason("unknown_report", "no report for this machine and challenge", "challenge_id")]
        )
    return report
