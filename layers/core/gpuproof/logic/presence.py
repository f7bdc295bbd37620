"""Presence checks: scored machines are re-challenged at random times and must prove their claimed
throughput again within a short window, timed by the service (docs/protocol.md §19).

Schedule (the sweeper, `presence_step`): a watched machine's next check opens at
`now + lead_s + Exp(λ)` (λ = checks_per_day / 86400; drawn with the OS's CSPRNG, never stored
where the machine can read it before it is announced). `lead_s` before it opens the sweeper
creates the open check (nonce, the proof parameters of the machine's verified claim), and every
heartbeat answer from then on announces `{check_id, opens_at}` (pull model: the agent needs no
inbound connection). At `opens_at` the agent fetches the nonce (`fetch_presence`, refused before
`opens_at` and after `opens_at + fetch_allowance_s`), runs the proof of throughput and sends its
commitment (`presence_commitment`), timed at the API edge from `opens_at`:

    commitment received − opens_at ≤ fetch_allowance_s + max(deadline_s of the claim's params)

then the openings of the pairs the service drew (`presence_proof`, by `answer_by`), verified with
the proof v2 verifier. A pass resets the consecutive misses; one failure (late commitment, a
proof that does not verify) revokes the machine at once (reason `presence_failed`); a check not
answered by `answer_by` is a miss (`presence_missed`: the machine is offline) and `max_misses`
consecutive misses revoke it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from gpuproof.claim import ClaimError, challenge_params, claim_of
from gpuproof.config import PresencePolicy
from gpuproof.errors import Rejection, raise_if
from gpuproof.logic.ports import Clock, MachineStore, TranscriptStore
from gpuproof.logic.records import Machine
from gpuproof.logic.revocation import revoked_verdict
from gpuproof.logic.states import WATCHED, MachineState
from gpuproof.protocol.delivery import (
    TRANSCRIPT_MISSING,
    TRANSCRIPT_SIZE_MISMATCH,
    TRANSCRIPT_TOO_LARGE,
    TranscriptRef,
    decode,
    transcript_key,
    transcript_limit,
)
from gpuproof.protocol.httpsig import SignedRequest
from gpuproof.protocol.proof import (
    ProofParams,
    SignedCommitment,
    ThroughputProof,
    draw_all_pairs,
    verify_commitment,
    verify_throughput,
)
from gpuproof.protocol.reasons import Reason

_RNG = secrets.SystemRandom()


def next_opening(now: float, policy: PresencePolicy) -> float:
    return now + policy.lead_s + _RNG.expovariate(policy.checks_per_day / 86400.0)


def _params(open_check: dict[str, Any]) -> list[ProofParams]:
    return [ProofParams.model_validate(p) for p in open_check["params"]]


def commit_deadline(open_check: dict[str, Any], policy: PresencePolicy) -> float:
    """The latest service-clock time the commitment may arrive at (the timing rule above)."""
    return (
        float(open_check["opens_at"])
        + policy.fetch_allowance_s
        + max(p.deadline_s for p in _params(open_check))
    )


def answer_by(open_check: dict[str, Any], policy: PresencePolicy) -> float:
    return commit_deadline(open_check, policy) + policy.proof_allowance_s


def _fresh(presence: dict[str, Any] | None) -> dict[str, Any]:
    p = dict(presence or {})
    for name in ("checks", "passed", "missed", "misses"):
        p.setdefault(name, 0)
    p.setdefault("open", None)
    p.setdefault("last", None)
    return p


@dataclass
class PresenceStep:
    """What the sweeper writes for one due machine: the new presence document (None: unchanged),
    when the machine is due next for presence (None: no presence work), and a miss's outcome."""

    presence: dict[str, Any] | None
    due_at: float | None
    outcome: str = ""  # scheduled | opened | missed | revoke | unsized | ""
    reason: Reason | None = None


def presence_step(m: Machine, now: float, policy: PresencePolicy) -> PresenceStep:
    """The sweeper's presence work for a watched machine (pure: the caller writes the result)."""
    if not policy.enabled or m.state not in WATCHED:
        return PresenceStep(None, None)
    p = _fresh(m.presence)
    open_check = p["open"]
    if open_check is not None:
        deadline = answer_by(open_check, policy)
        if now <= deadline:
            return PresenceStep(None, deadline)
        p["misses"] += 1
        p["missed"] += 1
        p["checks"] += 1
        p["open"] = None
        p["last"] = {"check_id": open_check["check_id"], "result": "missed", "at": now}
        p["next_at"] = next_opening(now, policy)
        reason = Reason(
            "presence_missed",
            f"presence check {open_check['check_id']} (opened {open_check['opens_at']:.0f}) was not "
            f"answered by {deadline:.0f}; {p['misses']} consecutive (at {policy.max_misses} the "
            "score is revoked)",
            "presence",
        )
        if not policy.enforce:  # shadow mode: recorded, nothing taken
            return PresenceStep(p, p["next_at"] - policy.lead_s, "shadow_missed", reason)
        outcome = "revoke" if p["misses"] >= policy.max_misses else "missed"
        return PresenceStep(p, p["next_at"] - policy.lead_s, outcome, reason)
    if "next_at" not in p:
        p["next_at"] = next_opening(now, policy)
        return PresenceStep(p, p["next_at"] - policy.lead_s, "scheduled")
    announce_at = float(p["next_at"]) - policy.lead_s
    if now < announce_at:
        return PresenceStep(None, announce_at)
    try:
        params = challenge_params(claim_of(m.claim or {}))["proof"]
    except ClaimError:
        # Verified before claims were kept on the machine: nothing to size a check from until it
        # proves itself again (re-verification); said in GET /machines/{id} presence.last.
        p["last"] = {"check_id": None, "result": "unsized", "at": now}
        p["next_at"] = next_opening(now, policy)
        return PresenceStep(p, p["next_at"] - policy.lead_s, "unsized")
    opens_at = max(float(p["next_at"]), now)
    p["open"] = {
        "check_id": secrets.token_hex(16),
        "opens_at": opens_at,
        "nonce": secrets.token_bytes(32).hex(),
        "params": params,
        "fetched_at": None,
        "commitment_sha256": None,
        "commitment_received_at": None,
        # The secret the pairs were drawn with (never their list: 140 per GPU would make the
        # machine item tens of KB); the openings are checked against the same draw, recomputed.
        "pairs_secret": None,
    }
    return PresenceStep(p, answer_by(p["open"], policy), "opened")


def presence_due(m: Machine, policy: PresencePolicy) -> float | None:
    """When the sweeper must look at this machine for presence next (None: nothing to do)."""
    if not policy.enabled or m.state not in WATCHED:
        return None
    p = m.presence or {}
    if p.get("open"):
        return answer_by(p["open"], policy)
    if "next_at" in p:
        return float(p["next_at"]) - policy.lead_s
    return None


def announcement(m: Machine, policy: PresencePolicy) -> dict[str, Any] | None:
    """What a heartbeat answer tells the agent: the open check not yet fetched, and its window."""
    open_check = (m.presence or {}).get("open") if policy.enabled else None
    if not open_check or open_check.get("fetched_at") is not None:
        return None
    opens_at = float(open_check["opens_at"])
    return {
        "check_id": open_check["check_id"],
        "opens_at": opens_at,
        "fetch_by": opens_at + policy.fetch_allowance_s,
    }


# ------------------------------------------------------------------ the machine API's use cases


class PresenceServices(Protocol):
    """What the machine API's presence use cases need (logic/machines.py Services has them)."""

    @property
    def store(self) -> MachineStore: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def presence(self) -> PresencePolicy: ...

    @property
    def transcripts(self) -> TranscriptStore | None: ...

    @property
    def transcript_max_bytes_per_gpu(self) -> int: ...


def transcript_id(check_id: str) -> str:
    """The transcript object's id under the machine's prefix (`transcripts/{machine}/presence-{check}`):
    never a challenge's id, and inside the prefix the machine API may already write and read."""
    return f"presence-{check_id}"


def _transcript_limit(svc: PresenceServices, open_check: dict[str, Any]) -> int:
    """The same bound as the full verification's: TranscriptMaxBytesPerGpu x the claim's GPUs."""
    return transcript_limit(svc.transcript_max_bytes_per_gpu, len(open_check["params"]))


# Delivery refusals the agent can put right before `answer_by` (upload again, resend): the check
# is not consumed, as report intake keeps the challenge. Never answered in time, it is a miss.
_RESENDABLE = frozenset({TRANSCRIPT_MISSING, TRANSCRIPT_SIZE_MISMATCH, TRANSCRIPT_TOO_LARGE})


def _open_for(
    m: Machine | None, machine_id: str, check_id: str, request: SignedRequest, nonce_used: bool
) -> dict[str, Any]:
    reasons = []
    if m is None:
        raise Rejection(
            [Reason("unknown_machine", "no machine is registered with this machine_id", "machine_id")]
        )
    if request.keyid != machine_id:
        reasons.append(
            Reason("key_mismatch", "the request is signed by another key than this machine's", "keyid")
        )
    if nonce_used:
        reasons.append(Reason("replayed_nonce", "this request nonce was already used", "nonce"))
    open_check = (m.presence or {}).get("open")
    if m.state not in WATCHED or not open_check or open_check["check_id"] != check_id:
        reasons.append(
            Reason("presence_unknown", "no open presence check of this machine has this check_id", "check_id")
        )
    raise_if(reasons)
    assert open_check is not None
    return dict(open_check)


def _fail(
    svc: PresenceServices,
    m: Machine,
    reason: Reason,
    evidence: dict[str, Any],
    now: float,
    request: SignedRequest,
) -> None:
    """One failed presence check: the score is revoked at once (Revoked verdict, GPUs released);
    in shadow mode the failure is only recorded on the machine and the next check scheduled."""
    if not svc.presence.enforce:
        p = _fresh(m.presence)
        p["checks"] += 1
        p["failed"] = int(p.get("failed", 0)) + 1
        p["open"] = None
        p["last"] = {
            "check_id": evidence.get("check_id"),
            "result": "failed_shadow",
            "at": now,
            "detail": reason.message,
        }
        p["next_at"] = next_opening(now, svc.presence)
        svc.store.update_presence(m, p, request)
        return
    verdict = revoked_verdict(m, reason, evidence, now)
    svc.store.revoke(m, MachineState.revoked, reason, verdict, now, request)


def fetch_presence(
    svc: PresenceServices, request: SignedRequest, machine_id: str, check_id: str, arrived_at: float | None
) -> dict[str, Any]:
    """The agent fetches the nonce of an open check at `opens_at` (no earlier; within the fetch
    allowance): the proof parameters, the nonce and the commitment deadline."""
    policy = svc.presence
    m = svc.store.get_machine(machine_id)
    open_check = _open_for(m, machine_id, check_id, request, svc.store.nonce_used(request))
    assert m is not None
    now = svc.clock.now() if arrived_at is None else min(arrived_at, svc.clock.now())
    opens_at = float(open_check["opens_at"])
    if now < opens_at:
        raise Rejection(
            [
                Reason(
                    "presence_too_early",
                    f"the check opens at {opens_at:.3f} ({opens_at - now:.3f} s from now)",
                )
            ]
        )
    if now > opens_at + policy.fetch_allowance_s:
        raise Rejection(
            [
                Reason(
                    "presence_closed",
                    f"the check's nonce had to be fetched by {opens_at + policy.fetch_allowance_s:.3f} "
                    f"(it is {now - opens_at:.3f} s after opening): it counts as missed",
                )
            ]
        )
    if open_check["fetched_at"] is None:
        open_check["fetched_at"] = now
        presence = {**(m.presence or {}), "open": open_check}
        svc.store.update_presence(m, presence, request)
    return {
        "check_id": check_id,
        "nonce": open_check["nonce"],
        "opens_at": opens_at,
        "commit_by": commit_deadline(open_check, policy),
        "answer_by": answer_by(open_check, policy),
        "params": open_check["params"],
    }


def presence_commitment(
    svc: PresenceServices,
    request: SignedRequest,
    machine_id: str,
    check_id: str,
    signed: SignedCommitment,
    arrived_at: float | None,
) -> dict[str, Any]:
    """Time the commitment from `opens_at` (its arrival at the API edge); late: the check fails
    and the machine is revoked; in time: the pairs to open are drawn (never before)."""
    policy = svc.presence
    handled = svc.clock.now()
    m = svc.store.get_machine(machine_id)
    open_check = _open_for(m, machine_id, check_id, request, svc.store.nonce_used(request))
    assert m is not None
    opens_at = float(open_check["opens_at"])
    received = handled if arrived_at is None else max(opens_at, min(arrived_at, handled))
    reasons = []
    if open_check.get("fetched_at") is None:
        reasons.append(Reason("presence_unknown", "the check's nonce was never fetched", "check_id"))
    if open_check.get("commitment_sha256") is not None:
        reasons.append(
            Reason("commitment_exists", "this check's commitment was already received", "check_id")
        )
    params = _params(open_check)
    if not reasons:
        reasons += verify_commitment(
            signed.commitment,
            signed.signature,
            machine_id=machine_id,
            challenge_id=check_id,
            nonce=bytes.fromhex(open_check["nonce"]),
            params=params,
        )
    raise_if(reasons)
    deadline = commit_deadline(open_check, policy)
    elapsed = received - opens_at
    if received > deadline:
        reason = Reason(
            "presence_failed",
            f"presence check {check_id}: the commitment arrived {elapsed:.3f} s after opening; the "
            f"limit is {deadline - opens_at:.3f} s (fetch allowance + the claim's proof deadline)",
        )
        evidence = {
            "check_id": check_id,
            "opens_at": opens_at,
            "received_at": received,
            "limit_s": deadline - opens_at,
        }
        _fail(svc, m, reason, evidence, received, request)
        raise Rejection([reason, Reason("proof_deadline_missed", reason.message)])
    secret = secrets.token_bytes(32)
    pairs = draw_all_pairs(signed, secret, params)
    open_check["commitment_sha256"] = hashlib.sha256(signed.commitment.signing_bytes()).hexdigest()
    open_check["commitment_received_at"] = received
    open_check["pairs_secret"] = secret.hex()
    svc.store.update_presence(m, {**(m.presence or {}), "open": open_check}, request)
    # The openings travel out of band as the full verification's do (docs/protocol.md §19): one
    # presigned POST for this check's key, bounded per GPU, valid until the answer window closes.
    upload = None
    if svc.transcripts is not None:
        upload = svc.transcripts.upload_target(
            machine_id,
            transcript_id(check_id),
            _transcript_limit(svc, open_check),
            answer_by(open_check, policy),
            handled,
        )
    return {
        "check_id": check_id,
        "received_at": received,
        "elapsed_s": elapsed,
        "limit_s": deadline - opens_at,
        "pairs": [p.model_dump(mode="json") for p in pairs],
        "answer_by": answer_by(open_check, policy),
        "transcript_upload": None if upload is None else upload.model_dump(mode="json"),
    }


def _delivered(
    svc: PresenceServices,
    machine_id: str,
    check_id: str,
    open_check: dict[str, Any],
    ref: TranscriptRef,
    evidence: dict[str, Any],
) -> tuple[ThroughputProof | None, list[Reason]]:
    """The proof a reference names, read back from the transcripts bucket (HEAD, then a streamed
    GET of exactly that object, its size and SHA-256 the signed request's) and decoded with the
    check's own params. Resendable delivery faults raise; a digest or decoding fault is the
    proof's failure (returned)."""
    limit = _transcript_limit(svc, open_check)
    details: dict[str, Any] = {
        "key": transcript_key(machine_id, transcript_id(check_id)),
        "version": ref.version,
        "bytes": ref.transcript_bytes,
        "sha256": ref.transcript_sha256,
        "limit_bytes": limit,
        "delivered": False,
    }
    evidence["transcript"] = details
    if ref.transcript_bytes > limit:
        raise Rejection(
            [
                Reason(
                    TRANSCRIPT_TOO_LARGE,
                    f"the request declares a {ref.transcript_bytes}-byte transcript (limit {limit})",
                    "proof.transcript_bytes",
                )
            ]
        )
    if svc.transcripts is None:
        raise Rejection([Reason(TRANSCRIPT_MISSING, "this service takes no uploaded transcripts", "proof")])
    data, reasons = svc.transcripts.read(machine_id, transcript_id(check_id), ref, limit)
    if reasons and all(r.code in _RESENDABLE for r in reasons):
        raise Rejection(reasons)
    if data is None or reasons:
        return None, reasons
    details["delivered"] = True
    return decode(ref, data, _params(open_check))


def presence_proof(
    svc: PresenceServices,
    request: SignedRequest,
    machine_id: str,
    check_id: str,
    sent: ThroughputProof | TranscriptRef,
) -> dict[str, Any]:
    """Verify the openings (proof v2, the pairs the service drew), sent inline or uploaded to the
    check's transcript key and named by a TranscriptRef: a pass clears the misses and schedules
    the next check; a failure revokes the machine."""
    policy = svc.presence
    now = svc.clock.now()
    m = svc.store.get_machine(machine_id)
    open_check = _open_for(m, machine_id, check_id, request, svc.store.nonce_used(request))
    assert m is not None
    reasons = []
    if open_check.get("commitment_sha256") is None or open_check.get("pairs_secret") is None:
        reasons.append(Reason("presence_not_committed", "no commitment was received for this check yet"))
    if now > answer_by(open_check, policy):
        reasons.append(Reason("presence_closed", "the check's answer window is over: it counts as missed"))
    raise_if(reasons)
    evidence: dict[str, Any] = {"check_id": check_id}
    failed: list[Reason] = []
    proof: ThroughputProof | None = sent if isinstance(sent, ThroughputProof) else None
    if isinstance(sent, TranscriptRef):
        proof, failed = _delivered(svc, machine_id, check_id, open_check, sent, evidence)
    if proof is None:
        pass  # the delivered bytes are not a proof: `failed` says why
    elif hashlib.sha256(proof.commitment.signing_bytes()).hexdigest() != open_check["commitment_sha256"]:
        failed.append(
            Reason("proof_commitment_changed", "the proof's commitment is not the one the service timed")
        )
    else:
        params = _params(open_check)
        signed = SignedCommitment(commitment=proof.commitment, signature=proof.signature)
        failed = verify_throughput(
            proof,
            machine_id=machine_id,
            challenge_id=check_id,
            nonce=bytes.fromhex(open_check["nonce"]),
            params=params,
            pairs=draw_all_pairs(signed, bytes.fromhex(open_check["pairs_secret"]), params),
        )
    if failed:
        codes = sorted({r.code for r in failed})
        reason = Reason(
            "presence_failed", f"presence check {check_id}: the proof was refused: {', '.join(codes)}"
        )
        _fail(svc, m, reason, {**evidence, "reasons": codes}, now, request)
        raise Rejection([reason, *failed])
    p = _fresh(m.presence)
    p["checks"] += 1
    p["passed"] += 1
    p["misses"] = 0
    p["open"] = None
    elapsed = float(open_check["commitment_received_at"]) - float(open_check["opens_at"])
    p["last"] = {"check_id": check_id, "result": "passed", "at": now, "elapsed_s": elapsed}
    p["next_at"] = next_opening(now, policy)
    svc.store.update_presence(m, p, request)
    return {"check_id": check_id, "result": "passed", "elapsed_s": elapsed}


def presence_summary(m: Machine) -> dict[str, Any] | None:
    """What GET /machines/{id} shows (never the time of the next check)."""
    if m.presence is None:
        return None
    p = _fresh(m.presence)
    return {
        "checks": p["checks"],
        "passed": p["passed"],
        "missed": p["missed"],
        "failed": int(p.get("failed", 0)),
        "consecutive_misses": p["misses"],
        "last": p["last"],
    }
