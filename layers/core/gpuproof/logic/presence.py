"""Presence checks: scored machines are re-challenged at network-wide waves and must prove their
claimed throughput again within a short window, timed by the service (docs/protocol.md §19).

Schedule: the waves (logic/waves.py) are drawn by the sweeper and kept secret; at each wave every
watched machine (with a wave fraction p < 1, each with probability p) has a check, opening at the
wave's instant plus a small offset, all of it derived from the wave's secret and the machine id.
`lead_s` before its check opens, every heartbeat answer announces `{check_id, opens_at, fetch_by}`
(pull model: the agent needs no inbound connection). At `opens_at` the agent fetches the nonce
(`fetch_presence`, refused before `opens_at` and after `opens_at + fetch_allowance_s`; it writes
nothing), runs the proof of throughput and sends its commitment (`presence_commitment`: the open
check is written on the machine then), timed at the API edge from `opens_at`:

    commitment received − opens_at ≤ fetch_allowance_s + max(deadline_s of the claim's params)

then the openings of the pairs the service drew (`presence_proof`, by `answer_by`), verified with
the proof v2 verifier. One failure (late commitment, a proof that does not verify) revokes the
machine at once (reason `presence_failed`). Results are counted in wave order (`fold`): a check
not answered by its `answer_by` is a miss (`presence_missed`: the machine is offline), and
`max_misses` misses among the machine's last `miss_window` checks revoke it; the sweeper folds at
each look, the machine API when a check passes or fails.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gpuproof.claim import ClaimError, challenge_params, claim_of
from gpuproof.config import PresencePolicy
from gpuproof.errors import Rejection, raise_if
from gpuproof.logic.ports import Clock, MachineStore, TranscriptStore
from gpuproof.logic.records import Machine
from gpuproof.logic.revocation import revoked_verdict
from gpuproof.logic.states import WATCHED, MachineState
from gpuproof.logic.waves import Wave, WaveSource, check_id_of, nonce_of, opening, selected
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

# A check's results as the window holds them; "_shadow": recorded with PresenceEnforce=false,
# which never counts toward a revocation (switching enforcement on revokes nobody for the past).
PASSED, MISSED, FAILED_SHADOW, MISSED_SHADOW = "passed", "missed", "failed_shadow", "missed_shadow"


def _deadline(opens_at: float, params: Sequence[dict[str, Any]], policy: PresencePolicy) -> float:
    return opens_at + policy.fetch_allowance_s + max(float(p["deadline_s"]) for p in params)


def commit_deadline(open_check: dict[str, Any], policy: PresencePolicy) -> float:
    """The latest service-clock time the commitment may arrive at (the timing rule above)."""
    return _deadline(float(open_check["opens_at"]), open_check["params"], policy)


def answer_by(open_check: dict[str, Any], policy: PresencePolicy) -> float:
    return commit_deadline(open_check, policy) + policy.proof_allowance_s


def _params(open_check: dict[str, Any]) -> list[ProofParams]:
    return [ProofParams.model_validate(p) for p in open_check["params"]]


def check_params(m: Machine) -> list[dict[str, Any]] | None:
    """The proof parameters of the claim the machine's last passing verification held it to (None:
    verified before claims were kept on the machine; nothing to size a check from)."""
    try:
        params: list[dict[str, Any]] = challenge_params(claim_of(m.claim or {}))["proof"]
    except ClaimError:
        return None
    return params


@dataclass(frozen=True)
class Slot:
    """A machine's check in one wave."""

    wave: Wave
    check_id: str
    opens_at: float


def slot_of(m: Machine, wave: Wave, policy: PresencePolicy) -> Slot | None:
    """The machine's check in `wave`; None when the wave does not check it: not selected (wave
    fraction p < 1), or not yet watched `lead_s` before its check would open."""
    since = (m.presence or {}).get("since")
    if since is None or not selected(wave, m.machine_id, policy):
        return None
    opens_at = opening(wave, m.machine_id, policy)
    if float(since) > opens_at - policy.lead_s:
        return None
    return Slot(wave, check_id_of(wave, m.machine_id), opens_at)


def _fresh(presence: dict[str, Any] | None) -> dict[str, Any]:
    p = dict(presence or {})
    for name in ("checks", "passed", "missed", "failed", "misses"):
        p.setdefault(name, 0)
    p.setdefault("recent", [])
    p.setdefault("open", None)
    p.setdefault("last", None)
    return p


def _record(
    p: dict[str, Any], result: str, check: dict[str, Any], now: float, policy: PresencePolicy
) -> None:
    """Count one check's result (in wave order) and keep it in the window."""
    p["checks"] += 1
    if result == PASSED:
        p["passed"] += 1
        p["misses"] = 0
    elif result in (MISSED, MISSED_SHADOW):
        p["missed"] += 1
        p["misses"] += 1
    else:
        p["failed"] += 1
    p["recent"] = [*p["recent"], result][-policy.miss_window :]
    last: dict[str, Any] = {"check_id": check.get("check_id"), "result": result, "at": now}
    for name in ("elapsed_s", "detail"):
        if check.get(name) is not None:
            last[name] = check[name]
    p["last"] = last


def _missed(policy: PresencePolicy) -> str:
    return MISSED if policy.enforce else MISSED_SHADOW


def fold(m: Machine, p: dict[str, Any], waves: Sequence[Wave], now: float, policy: PresencePolicy) -> None:
    """Count, in wave order, every check of the machine whose result is known: passed or failed
    (the machine API put it on the open check), or missed (its answer window is over with no
    answer; a check never committed closes at the same `answer_by` as a committed one). Stops at the
    first check still open. `p` is changed in place; `p["accounted"]` is the last wave counted."""
    params = check_params(m)
    accounted = float(p.get("accounted", float("-inf")))
    known = {check_id_of(w, m.machine_id) for w in waves}
    for wave in sorted(waves, key=lambda w: w.at):
        if wave.at <= accounted:
            continue
        slot = slot_of(m, wave, policy) if params is not None else None
        if slot is None:
            if wave.at > now:
                break
            accounted = wave.at  # a wave that does not check this machine
            continue
        open_check = p["open"] if p["open"] and p["open"]["check_id"] == slot.check_id else None
        if open_check is not None and open_check.get("result"):
            result = str(open_check["result"])
        elif now > (
            answer_by(open_check, policy)
            if open_check is not None
            else _deadline(slot.opens_at, params or [], policy) + policy.proof_allowance_s
        ):
            result = _missed(policy)
        else:
            break
        _record(p, result, open_check or {"check_id": slot.check_id}, now, policy)
        accounted = wave.at
        if open_check is not None:
            p["open"] = None
    if accounted > float("-inf"):
        p["accounted"] = accounted
    stale = p["open"]
    if stale and stale["check_id"] not in known and (stale.get("result") or now > answer_by(stale, policy)):
        # The open check's wave is no longer in the schedule (dropped, or redrawn for a new rate).
        _record(p, str(stale.get("result") or _missed(policy)), stale, now, policy)
        p["open"] = None


def misses_in_window(p: dict[str, Any]) -> int:
    return sum(1 for r in p.get("recent", []) if r in (MISSED, MISSED_SHADOW))


def enforced_misses_in_window(p: dict[str, Any]) -> int:
    return sum(1 for r in p.get("recent", []) if r == MISSED)


@dataclass
class PresenceStep:
    """What the sweeper writes for one watched machine: the new presence document (None:
    unchanged) and the outcome of the checks it counted."""

    presence: dict[str, Any] | None
    outcome: str = ""  # watched | missed | shadow_missed | revoke | unsized | counted | ""
    reason: Reason | None = None


def presence_step(m: Machine, now: float, policy: PresencePolicy, waves: Sequence[Wave]) -> PresenceStep:
    """The sweeper's presence work for a watched machine (pure: the caller writes the result). A
    wave needs no look of its own: the machine's liveness looks count its checks."""
    if not policy.enabled or m.state not in WATCHED:
        return PresenceStep(None)
    p = _fresh(m.presence)
    if p.get("since") is None:
        p["since"] = now  # watched from now: the waves whose checks open lead_s from now on
        return PresenceStep(p, "watched")
    before = dict(p)
    fold(m, p, waves, now, policy)
    if check_params(m) is None and (p["last"] or {}).get("result") != "unsized":
        # Verified before claims were kept on the machine: nothing to size a check from until it
        # proves itself again (re-verification); said in GET /machines/{id} presence.last.
        p["last"] = {"check_id": None, "result": "unsized", "at": now}
        return PresenceStep(p, "unsized")
    if p == before:
        return PresenceStep(None)
    new_misses = p["missed"] - before["missed"]
    enforced = enforced_misses_in_window(p)
    if policy.enforce and enforced >= policy.max_misses:
        reason = Reason(
            "presence_missed",
            f"{enforced} of the last {len(p['recent'])} presence checks were missed (at "
            f"{policy.max_misses} misses among the last {policy.miss_window} checks the score is "
            "revoked)",
            "presence",
        )
        return PresenceStep(p, "revoke", reason)
    if new_misses == 0:
        return PresenceStep(p, "counted")
    reason = Reason(
        "presence_missed",
        f"presence check {(p['last'] or {}).get('check_id')} was not answered in its window; "
        f"{misses_in_window(p)} missed of the last {len(p['recent'])} checks (at "
        f"{policy.max_misses} misses among the last {policy.miss_window} the score is revoked)",
        "presence",
    )
    if not policy.enforce:  # shadow mode: recorded, nothing taken
        return PresenceStep(p, "shadow_missed", reason)
    latest_missed = (p["last"] or {}).get("result") == MISSED
    return PresenceStep(p, "missed" if latest_missed else "counted", reason)


def announcement(
    m: Machine, policy: PresencePolicy, waves: Sequence[Wave], now: float
) -> dict[str, Any] | None:
    """What a heartbeat answer tells the agent: its check in the coming wave, from `lead_s` before
    it opens until its fetch allowance is over, unless already committed. Nothing earlier: a wave's
    time is the service's secret until then."""
    if not policy.enabled or m.state not in WATCHED or check_params(m) is None:
        return None
    p = m.presence or {}
    accounted = float(p.get("accounted", float("-inf")))
    committed = (p.get("open") or {}).get("check_id")
    for wave in waves:
        if wave.at <= accounted or not (
            wave.at - policy.lead_s <= now <= wave.at + policy.spread_s + policy.fetch_allowance_s
        ):
            continue
        slot = slot_of(m, wave, policy)
        if slot is None or slot.check_id == committed:
            continue
        if slot.opens_at - policy.lead_s <= now <= slot.opens_at + policy.fetch_allowance_s:
            return {
                "check_id": slot.check_id,
                "opens_at": slot.opens_at,
                "fetch_by": slot.opens_at + policy.fetch_allowance_s,
            }
    return None


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

    @property
    def waves(self) -> WaveSource | None: ...


def _waves(svc: PresenceServices, now: float) -> Sequence[Wave]:
    return () if svc.waves is None or not svc.presence.enabled else svc.waves.waves(now)


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


def _signer_reasons(
    m: Machine | None, machine_id: str, request: SignedRequest, nonce_used: bool
) -> list[Reason]:
    if m is None:
        raise Rejection(
            [Reason("unknown_machine", "no machine is registered with this machine_id", "machine_id")]
        )
    reasons = []
    if request.keyid != machine_id:
        reasons.append(
            Reason("key_mismatch", "the request is signed by another key than this machine's", "keyid")
        )
    if nonce_used:
        reasons.append(Reason("replayed_nonce", "this request nonce was already used", "nonce"))
    return reasons


_UNKNOWN = Reason("presence_unknown", "no open presence check of this machine has this check_id", "check_id")


def _open_for(
    m: Machine | None, machine_id: str, check_id: str, request: SignedRequest, nonce_used: bool
) -> dict[str, Any]:
    reasons = _signer_reasons(m, machine_id, request, nonce_used)
    assert m is not None
    open_check = (m.presence or {}).get("open")
    if m.state not in WATCHED or not open_check or open_check["check_id"] != check_id:
        reasons.append(_UNKNOWN)
    raise_if(reasons)
    assert open_check is not None
    return dict(open_check)


def _fail(
    svc: PresenceServices,
    m: Machine,
    open_check: dict[str, Any],
    reason: Reason,
    evidence: dict[str, Any],
    now: float,
    request: SignedRequest,
) -> None:
    """One failed presence check: the score is revoked at once (Revoked verdict, GPUs released);
    in shadow mode the failure is only recorded on the machine (counted in wave order)."""
    if not svc.presence.enforce:
        p = _fresh(m.presence)
        p["open"] = {**open_check, "result": FAILED_SHADOW, "detail": reason.message}
        fold(m, p, _waves(svc, now), now, svc.presence)
        svc.store.update_presence(m, p, request)
        return
    verdict = revoked_verdict(m, reason, evidence, now)
    svc.store.revoke(m, MachineState.revoked, reason, verdict, now, request)


def new_open(slot: Slot, machine_id: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    """The open check written on the machine when its commitment arrives: the check's nonce (derived
    from the wave's secret, as the fetch gave it out) and the claim's params."""
    return {
        "check_id": slot.check_id,
        "wave_id": slot.wave.wave_id,
        "opens_at": slot.opens_at,
        "nonce": nonce_of(slot.wave, machine_id),
        "params": params,
        "commitment_sha256": None,
        "commitment_received_at": None,
        # The secret the pairs were drawn with (never their list: 140 per GPU would make the
        # machine item tens of KB); the openings are checked against the same draw, recomputed.
        "pairs_secret": None,
    }


def _slot(svc: PresenceServices, m: Machine, check_id: str, now: float) -> Slot | None:
    """The machine's check in a wave of the schedule with this id, not yet counted."""
    accounted = float((m.presence or {}).get("accounted", float("-inf")))
    for wave in _waves(svc, now):
        if wave.at > accounted and check_id_of(wave, m.machine_id) == check_id:
            return slot_of(m, wave, svc.presence)
    return None


def _check(
    svc: PresenceServices, m: Machine | None, machine_id: str, check_id: str, request: SignedRequest
) -> tuple[Machine, dict[str, Any], bool]:
    """The machine's check `check_id`: its open check (committed), or, not committed yet, the check
    the schedule derives for it (True: not yet written on the machine)."""
    reasons = _signer_reasons(m, machine_id, request, svc.store.nonce_used(request))
    assert m is not None
    open_check = (m.presence or {}).get("open")
    if open_check is not None and open_check["check_id"] == check_id and m.state in WATCHED:
        raise_if(reasons)
        return m, dict(open_check), False
    slot = _slot(svc, m, check_id, svc.clock.now())
    params = check_params(m)
    if m.state not in WATCHED or slot is None or params is None:
        reasons.append(_UNKNOWN)
    raise_if(reasons)
    assert slot is not None and params is not None
    return m, new_open(slot, machine_id, params), True


def fetch_presence(
    svc: PresenceServices, request: SignedRequest, machine_id: str, check_id: str, arrived_at: float | None
) -> dict[str, Any]:
    """The agent fetches the nonce of its check at `opens_at` (no earlier; within the fetch
    allowance): the proof parameters, the nonce and the commitment deadline. Writes nothing: the
    nonce derives from the wave's secret, so a wave's fetches cost reads only."""
    policy = svc.presence
    _, check, _ = _check(svc, svc.store.get_machine(machine_id), machine_id, check_id, request)
    now = svc.clock.now() if arrived_at is None else min(arrived_at, svc.clock.now())
    opens_at = float(check["opens_at"])
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
    return {
        "check_id": check_id,
        "nonce": check["nonce"],
        "opens_at": opens_at,
        "commit_by": commit_deadline(check, policy),
        "answer_by": answer_by(check, policy),
        "params": check["params"],
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
    and the machine is revoked; in time: the pairs to open are drawn (never before) and the open
    check is written on the machine (the earlier checks counted first, in wave order)."""
    policy = svc.presence
    handled = svc.clock.now()
    m, open_check, new = _check(svc, svc.store.get_machine(machine_id), machine_id, check_id, request)
    opens_at = float(open_check["opens_at"])
    received = handled if arrived_at is None else max(opens_at, min(arrived_at, handled))
    reasons = []
    if handled < opens_at:
        reasons.append(Reason("presence_too_early", f"the check opens at {opens_at:.3f}", "check_id"))
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
        _fail(svc, m, open_check, reason, evidence, received, request)
        raise Rejection([reason, Reason("proof_deadline_missed", reason.message)])
    secret = secrets.token_bytes(32)
    pairs = draw_all_pairs(signed, secret, params)
    open_check["commitment_sha256"] = hashlib.sha256(signed.commitment.signing_bytes()).hexdigest()
    open_check["commitment_received_at"] = received
    open_check["pairs_secret"] = secret.hex()
    p = _fresh(m.presence)
    if new:
        fold(m, p, _waves(svc, handled), handled, policy)  # the earlier checks first, in wave order
        if p["open"] is not None:  # an earlier check still open (a claim past deadline_bound_s)
            p["open"] = {**p["open"], "result": _missed(policy)}
            fold(m, p, _waves(svc, handled), handled, policy)
    p["open"] = open_check
    svc.store.update_presence(m, p, request)
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
        _fail(svc, m, open_check, reason, {**evidence, "reasons": codes}, now, request)
        raise Rejection([reason, *failed])
    p = _fresh(m.presence)
    elapsed = float(open_check["commitment_received_at"]) - float(open_check["opens_at"])
    p["open"] = {**open_check, "result": PASSED, "elapsed_s": elapsed}
    fold(m, p, _waves(svc, now), now, policy)
    svc.store.update_presence(m, p, request)
    return {"check_id": check_id, "result": "passed", "elapsed_s": elapsed}


def presence_summary(m: Machine) -> dict[str, Any] | None:
    """What GET /machines/{id} shows (never the time of a check before it is announced)."""
    if m.presence is None:
        return None
    p = _fresh(m.presence)
    return {
        "checks": p["checks"],
        "passed": p["passed"],
        "missed": p["missed"],
        "failed": p["failed"],
        "consecutive_misses": p["misses"],
        "misses_in_window": misses_in_window(p),
        "window_checks": len(p["recent"]),
        "last": p["last"],
    }
