"""A committee member's live check of a machine (`committee inspect --live`, `commit --live`,
`agent --live`; docs/committee.md "Live check").

The member, not the service, issues the challenge: its own nonce and challenge_id, the proof
parameters the service derives for the round's claim, its own clock. It measures the smallest
round trip of a few signed pings, times the commitment (request sent → signed commitment
received), holds it to its own deadline (`protocol.live.live_deadline`: the derived deadline plus
the measured RTT, capped), then sends its own pair secret and verifies the openings with the same
verifier the service runs (`protocol.proof.verify_throughput`). Every answer must be signed by the
machine key for exactly that request. Any failure is a reason; the member's `is_support` is false
when its live check did not verify (`apply_live_check`).
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import requests
from pydantic import ValidationError

from gpuproof.claim import ClaimError
from gpuproof.cli.member import Check, Inspection
from gpuproof.committee.live import round_params
from gpuproof.protocol import live as L
from gpuproof.protocol.delivery import DEFAULT_MAX_BYTES_PER_GPU
from gpuproof.protocol.httpsig import sign_request
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import (
    ProofParams,
    SignedCommitment,
    ThroughputProof,
    TranscriptError,
    decode_transcript,
    draw_all_pairs,
    verify_commitment,
    verify_throughput,
)
from gpuproof.protocol.reasons import Reason

BUSY_RETRIES = 20  # a 503 live_busy (another member's check running) is retried this often
BUSY_BACKOFF_S = (0.05, 0.4)
ANSWER_MARGIN_S = 2.0  # the challenge request waits this long past the deadline, then it is a miss
PING_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class LiveOptions:
    """`allow_private`: talk to a loopback or private endpoint (local stacks and tests only).
    `shadow`: run and record the check, but leave `is_support` to the evidence alone (a new check
    starts in shadow mode until its deadlines are calibrated on real paths)."""

    allow_private: bool = False
    shadow: bool = False


class LiveFailure(Exception):
    def __init__(self, reasons: list[Reason]) -> None:
        super().__init__("; ".join(f"{r.code}: {r.message}" for r in reasons))
        self.reasons = reasons


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str]
    elapsed: float = 0.0  # request sent → answer read, on the member's clock


class LiveSession:
    """Signed requests to one machine's agent, each answer's signature checked."""

    def __init__(
        self,
        key: SigningKey,
        endpoint: str,
        machine_id: str,
        http: requests.Session | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.key = key
        self.endpoint = endpoint
        self.machine_id = machine_id
        self.http = http or requests.Session()
        self.clock = clock

    def post(
        self, what: str, doc: dict[str, Any], timeout_s: float, max_bytes: int = L.MAX_REQUEST_BYTES
    ) -> _Reply:
        path = f"/live/{self.machine_id}/{what}"
        body = json.dumps(doc).encode()
        headers = sign_request(self.key, "POST", path, body)
        nonce = headers["signature-input"].split('nonce="', 1)[1].split('"', 1)[0]
        # The clock runs from the request being sent to its answer read, nothing of this member's
        # own work (signing before, checking the answer's signature after) inside.
        started = self.clock()
        try:
            # Read to the end (no `with`): the kept-alive connection goes back to the pool, so the
            # timed challenge rides the connection the pings opened (no handshake in the window).
            r = self.http.post(
                self.endpoint + path,
                data=body,
                headers={**headers, "content-type": "application/json"},
                timeout=timeout_s,
                stream=True,
            )
            data = bytearray()
            for chunk in r.iter_content(64 * 1024):
                data += chunk
                if len(data) > max_bytes:
                    r.close()
                    raise LiveFailure([Reason(L.RESPONSE_MALFORMED, f"the answer is over {max_bytes} bytes")])
            reply = _Reply(r.status_code, bytes(data), dict(r.headers.items()), self.clock() - started)
        except requests.Timeout as exc:
            raise _Timeout(self.clock() - started) from exc
        except requests.RequestException as exc:
            raise LiveFailure(
                [Reason(L.UNREACHABLE, f"the agent at {self.endpoint} is unreachable: {exc}")]
            ) from exc
        wrong = L.response_reasons(
            "POST",
            path,
            reply.headers,
            reply.body,
            machine_id=self.machine_id,
            request_nonce=nonce,
            now=time.time(),
        )
        if wrong:
            raise LiveFailure(wrong)
        return reply


class _Timeout(Exception):
    def __init__(self, elapsed: float) -> None:
        super().__init__(f"no answer after {elapsed:.3f} s")
        self.elapsed = elapsed


def _refusal(reply: _Reply) -> LiveFailure:
    try:
        doc = json.loads(reply.body)
        code, message = str(doc.get("code")), str(doc.get("message"))
    except (ValueError, AttributeError):
        code, message = "?", reply.body[:200].decode(errors="replace")
    return LiveFailure([Reason(L.REFUSED, f"the agent answered HTTP {reply.status} {code}: {message}")])


def live_check(
    key: SigningKey,
    transcript: dict[str, Any],
    options: LiveOptions = LiveOptions(),
    *,
    http: requests.Session | None = None,
    clock: Callable[[], float] = time.perf_counter,
    rng: np.random.Generator | None = None,
) -> L.LiveCheck:
    """Challenge the round's machine at the endpoint its signed heartbeat published; never raises
    for the machine's behaviour (every failure is a reason in the result)."""
    rnd = transcript["round"]
    machine_id, round_no = str(rnd["machine_id"]), int(rnd["round"])
    endpoint = (transcript.get("machine") or {}).get("live_endpoint")
    figures: dict[str, Any] = {"endpoint": endpoint, "checked_at": int(time.time())}
    try:
        reasons = _run(key, transcript, machine_id, round_no, endpoint, options, http, clock, rng, figures)
    except LiveFailure as exc:
        reasons = exc.reasons
    return L.LiveCheck(
        verified=not reasons,
        shadow=options.shadow,
        reasons=[L.LiveReason(code=r.code, message=r.message[:500]) for r in reasons[: L.MAX_REASONS]],
        **{k: v for k, v in figures.items() if k != "endpoint" or _valid_endpoint(v)},
    )


def _valid_endpoint(url: Any) -> bool:
    try:
        return isinstance(url, str) and bool(L.parse_endpoint(url))
    except ValueError:
        return False


def _run(
    key: SigningKey,
    transcript: dict[str, Any],
    machine_id: str,
    round_no: int,
    endpoint: Any,
    options: LiveOptions,
    http: requests.Session | None,
    clock: Callable[[], float],
    rng: np.random.Generator | None,
    figures: dict[str, Any],
) -> list[Reason]:
    if not endpoint:
        return [Reason(L.ENDPOINT_MISSING, "the machine's heartbeat publishes no live endpoint")]
    if not _valid_endpoint(endpoint):
        return [Reason(L.ENDPOINT_MISSING, "the published live endpoint is not http://<IP>:<port>")]
    if not L.endpoint_is_public(str(endpoint)) and not options.allow_private:
        return [Reason(L.ENDPOINT_PRIVATE, f"{endpoint} is not a public address (--allow-private-endpoint)")]
    try:
        params = round_params(transcript)
    except ClaimError as exc:
        return exc.reasons
    session = LiveSession(key, str(endpoint), machine_id, http, clock)
    figures["rtt_s"] = rtt = _rtt(session, round_no)
    figures["deadline_s"] = deadline = L.live_deadline(params, rtt)
    nonce = secrets.token_bytes(32)
    challenge_id = "live-" + secrets.token_hex(16)
    figures["nonce"], figures["challenge_id"] = nonce.hex(), challenge_id
    doc = L.LiveChallenge(
        machine_id=machine_id, round=round_no, challenge_id=challenge_id, nonce=nonce.hex(), params=params
    ).model_dump(mode="json")
    reply, elapsed = _timed_challenge(session, doc, deadline)
    if reply is None:
        figures["commitment_s"] = round(elapsed, 6)
        return [
            Reason(L.DEADLINE_MISSED, f"no commitment within {elapsed:.3f} s (deadline {deadline:.3f} s)")
        ]
    figures["commitment_s"] = round(elapsed, 6)
    if reply.status != 200:
        return _refusal(reply).reasons
    try:
        signed = SignedCommitment.model_validate_json(reply.body)
    except ValidationError as exc:
        return [Reason(L.RESPONSE_MALFORMED, f"the commitment does not parse: {exc.error_count()} errors")]
    reasons = verify_commitment(
        signed.commitment,
        signed.signature,
        machine_id=machine_id,
        challenge_id=challenge_id,
        nonce=nonce,
        params=params,
    )
    if elapsed > deadline:
        reasons.append(
            Reason(
                L.DEADLINE_MISSED,
                f"the commitment arrived {elapsed:.3f} s after the challenge was sent (member's clock); "
                f"deadline {deadline:.3f} s = the derived {max(p.deadline_s for p in params):.3f} s "
                f"+ RTT allowance {deadline - max(p.deadline_s for p in params):.3f} s",
                "commitment",
            )
        )
    if reasons:
        return reasons  # a late or unbound commitment is refused whatever its openings say
    return _opened(session, round_no, challenge_id, nonce, signed, params, rng)


def _rtt(session: LiveSession, round_no: int) -> float:
    best = float("inf")
    for _ in range(L.PINGS):
        try:
            reply = session.post(
                "ping", {"machine_id": session.machine_id, "round": round_no}, PING_TIMEOUT_S
            )
        except _Timeout as exc:
            raise LiveFailure(
                [Reason(L.UNREACHABLE, f"a ping got no answer within {PING_TIMEOUT_S} s")]
            ) from exc
        if reply.status != 200:
            raise _refusal(reply)
        best = min(best, reply.elapsed)
    return round(best, 6)


def _timed_challenge(
    session: LiveSession, doc: dict[str, Any], deadline: float
) -> tuple[_Reply | None, float]:
    for _ in range(BUSY_RETRIES):
        try:
            reply = session.post("challenges", doc, deadline + ANSWER_MARGIN_S)
        except _Timeout as exc:
            return None, exc.elapsed
        if reply.status == 503 and b'"live_busy"' in reply.body:
            time.sleep(random.uniform(*BUSY_BACKOFF_S))
            continue
        return reply, reply.elapsed
    raise LiveFailure([Reason(L.REFUSED, f"the agent stayed busy for {BUSY_RETRIES} tries")])


def _opened(
    session: LiveSession,
    round_no: int,
    challenge_id: str,
    nonce: bytes,
    signed: SignedCommitment,
    params: list[ProofParams],
    rng: np.random.Generator | None,
) -> list[Reason]:
    secret = secrets.token_bytes(32)
    doc = L.LiveOpenings(
        machine_id=session.machine_id, round=round_no, challenge_id=challenge_id, pairs_secret=secret.hex()
    )
    try:
        reply = session.post(
            "openings", doc.model_dump(mode="json"), 120.0, max_bytes=DEFAULT_MAX_BYTES_PER_GPU * len(params)
        )
    except _Timeout as exc:
        raise LiveFailure([Reason(L.UNREACHABLE, "the openings did not arrive within 120 s")]) from exc
    if reply.status != 200:
        return _refusal(reply).reasons
    try:
        openings = decode_transcript(reply.body, params)
    except TranscriptError as exc:
        return [Reason(L.RESPONSE_MALFORMED, f"the openings do not decode: {exc}")]
    pairs = draw_all_pairs(signed, secret, params)
    proof = ThroughputProof(
        commitment=signed.commitment, signature=signed.signature, pairs=pairs, openings=openings
    )
    return verify_throughput(
        proof,
        machine_id=session.machine_id,
        challenge_id=challenge_id,
        nonce=nonce,
        params=params,
        pairs_secret=secret,
        rng=rng if rng is not None else np.random.default_rng(secrets.randbits(128)),
    )


def apply_live_check(inspection: Inspection, result: L.LiveCheck) -> Inspection:
    """The inspection with the live check as one more check: a failed one makes `supports` false,
    so the member commits (and reveals) a refusal; the result travels with the vote."""
    if result.verified:
        detail = (
            f"commitment in {result.commitment_s:.3f} s ≤ {result.deadline_s:.3f} s (own clock, RTT "
            f"{result.rtt_s:.3f} s); proof verified with this member's nonce and pairs"
        )
    else:
        detail = "; ".join(f"{r.code}: {r.message}" for r in result.reasons)
    if result.shadow:
        state = "verified" if result.verified else detail
        inspection.notes.append(f"LIVE CHECK in shadow mode (not counted): {state}")
    else:
        inspection.checks.append(Check("live_check", result.verified, detail))
    inspection.live_check = result.model_dump(mode="json", exclude_none=True)
    return inspection


def live_checker(
    key: SigningKey, options: LiveOptions = LiveOptions()
) -> Callable[[dict[str, Any], Inspection], Inspection]:
    """What `agent_tick(live=...)` runs: this member's live check folded into its inspection."""

    def run(transcript: dict[str, Any], inspection: Inspection) -> Inspection:
        return apply_live_check(inspection, live_check(key, transcript, options))

    return run
