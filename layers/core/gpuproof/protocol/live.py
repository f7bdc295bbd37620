"""The live check (docs/protocol.md "Live check"): a committee member drawn for a machine's open
round challenges the machine's agent directly, with its own nonce and pair secret, times the
commitment with its own clock and verifies the proof itself.

Plain HTTP, every message signed both ways (docs/decisions.md "Live check: signed HTTP"):
requests with the member's key in the RFC 9421 profile of `protocol/httpsig.py`; responses with
the machine key in the same profile, over the request's "@method" and "@path" and the response's
"content-digest", with the request's own (single-use, random) signature nonce as their nonce, so a
response answers exactly one request. Pure: the probe's agent and the committee CLI share it.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import AfterValidator, Field

from gpuproof.protocol.httpsig import RequestSignatureError, sign_request, verify_request
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.limits import MAX_ROUND_NO, PROTOCOL_MAX_GPUS, FiniteFloat, UnixTime
from gpuproof.protocol.proof import ProofParams
from gpuproof.protocol.reasons import Reason
from gpuproof.protocol.report import Hex64, WireModel

LIVE_VERSION = 1
PING_PATH = "/live/{machine_id}/ping"
CHALLENGE_PATH = "/live/{machine_id}/challenges"
OPENINGS_PATH = "/live/{machine_id}/openings"
MAX_REQUEST_BYTES = 64 * 1024  # a live request is a few hundred bytes of JSON per GPU
PINGS = 3  # signed pings before the challenge; the smallest round trip is the RTT allowance
# The member's own deadline adds its measured round trip to the service's derived deadline (whose
# 1 s network allowance already covers an ordinary path), up to this much: a machine can slow its
# pings down, but gains at most this on the commitment; it cannot make a ping faster than the path.
# 0.25 s keeps >= 0.28 s of the slow-card margin (docs/protocol.md §8: 0.53-1.25 s) for every model.
MAX_RTT_ALLOWANCE_S = 0.25
MAX_CHALLENGES_PER_MEMBER = 3  # per round, at the agent: a member retries at most this often
MAX_ENDPOINT_CHARS = 64
MAX_REASONS = 16

# Reason codes (registered in gpuproof/reason_codes.py, stage "live").
NOT_DRAWN = "live_not_drawn"
ROUND_NOT_OPEN = "live_round_not_open"
ROUND_UNAVAILABLE = "live_round_unavailable"
PARAMS_MISMATCH = "live_params_mismatch"
MACHINE_MISMATCH = "live_machine_mismatch"
REQUEST_INVALID = "live_request_invalid"
BUSY = "live_busy"
LIMIT = "live_limit"
UNKNOWN_CHALLENGE = "live_unknown_challenge"
ENDPOINT_MISSING = "live_endpoint_missing"
ENDPOINT_PRIVATE = "live_endpoint_private"
UNREACHABLE = "live_unreachable"
REFUSED = "live_refused"
RESPONSE_SIGNATURE_INVALID = "live_response_signature_invalid"
RESPONSE_MALFORMED = "live_response_malformed"
DEADLINE_MISSED = "live_deadline_missed"
ALL_CODES = (
    NOT_DRAWN,
    ROUND_NOT_OPEN,
    ROUND_UNAVAILABLE,
    PARAMS_MISMATCH,
    MACHINE_MISMATCH,
    REQUEST_INVALID,
    BUSY,
    LIMIT,
    UNKNOWN_CHALLENGE,
    ENDPOINT_MISSING,
    ENDPOINT_PRIVATE,
    UNREACHABLE,
    REFUSED,
    RESPONSE_SIGNATURE_INVALID,
    RESPONSE_MALFORMED,
    DEADLINE_MISSED,
)

_ENDPOINT_RE = re.compile(r"^http://(?P<host>[0-9.]{7,15}|\[[0-9a-fA-F:.]{2,45}\]):(?P<port>[0-9]{1,5})$")


def parse_endpoint(url: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """`http://<IPv4>:<port>` or `http://[<IPv6>]:<port>`: an IP literal (DBC machines have a
    public IP; no name to resolve, so no DNS to trust) and a port. ValueError otherwise."""
    m = _ENDPOINT_RE.match(url) if len(url) <= MAX_ENDPOINT_CHARS else None
    if m is None:
        raise ValueError(
            "a live endpoint is http://<IP address>:<port> (an IP literal, at most 64 characters)"
        )
    ip = ipaddress.ip_address(m["host"].strip("[]"))
    port = int(m["port"])
    if not 1 <= port <= 65535:
        raise ValueError("the live endpoint's port must be 1..65535")
    return ip, port


def _checked_endpoint(url: str) -> str:
    parse_endpoint(url)
    return url


LiveEndpoint = Annotated[
    str,
    Field(max_length=MAX_ENDPOINT_CHARS, description="the agent's live-check address, http://<IP>:<port>"),
    AfterValidator(_checked_endpoint),
]


def endpoint_is_public(url: str) -> bool:
    """A globally routable address: a member refuses to send requests to loopback, private,
    link-local or reserved addresses unless told to (local stacks and tests)."""
    ip, _ = parse_endpoint(url)
    return ip.is_global


RoundNo = Annotated[int, Field(strict=True, ge=1, le=MAX_ROUND_NO)]
LiveChallengeId = Annotated[str, Field(pattern=r"^live-[0-9a-f]{32}$")]


class LivePing(WireModel):
    """Body of POST /live/{machine_id}/ping, signed by the member: a round trip to time."""

    machine_id: Hex64
    round: RoundNo


class LiveChallenge(WireModel):
    """Body of POST /live/{machine_id}/challenges, signed by the member. The agent answers with
    the machine-signed commitment (a `SignedCommitment`) to this nonce and challenge_id."""

    version: int = Field(default=LIVE_VERSION, ge=LIVE_VERSION, le=LIVE_VERSION)
    machine_id: Hex64
    round: RoundNo
    challenge_id: LiveChallengeId
    nonce: Hex64 = Field(description="32 random bytes of the member's own, hex")
    params: list[ProofParams] = Field(min_length=1, max_length=PROTOCOL_MAX_GPUS)


class LiveOpenings(WireModel):
    """Body of POST /live/{machine_id}/openings, signed by the member who sent the challenge, once
    the commitment arrived: the secret the pairs are drawn with (`draw_all_pairs`). The agent
    answers with the binary transcript (docs/protocol.md §7) of the openings of those pairs."""

    machine_id: Hex64
    round: RoundNo
    challenge_id: LiveChallengeId
    pairs_secret: Hex64


class LiveReason(WireModel):
    code: str = Field(min_length=1, max_length=64)
    message: str = Field(max_length=500)


Seconds = Annotated[FiniteFloat, Field(ge=0, le=86_400)]


class LiveCheck(WireModel):
    """A member's live-check result, revealed with its findings and published in the round.

    The figures are the member's own measurements (its clock), not the service's: the round
    records who measured what. `verified` is true only when the commitment arrived within
    `deadline_s` and the proof verified."""

    challenge_id: LiveChallengeId | None = None
    nonce: Hex64 | None = None
    verified: bool
    commitment_s: Seconds | None = Field(default=None, description="request sent → commitment received")
    rtt_s: Seconds | None = Field(default=None, description="smallest signed-ping round trip")
    deadline_s: Seconds | None = Field(
        default=None, description="the service's derived deadline + RTT allowance"
    )
    endpoint: LiveEndpoint | None = None
    checked_at: UnixTime | None = None
    shadow: bool = Field(
        default=False, description="run in shadow mode: recorded, but the member's is_support ignores it"
    )
    reasons: list[LiveReason] = Field(default_factory=list, max_length=MAX_REASONS)


def live_deadline(params: Sequence[ProofParams], rtt_s: float | None) -> float:
    """The member's deadline: the slowest GPU's `deadline_s` as the service derives it (the
    challenge's claim, `claim.proof_params_for`) plus the measured round trip, capped."""
    allowance = (
        0.0 if rtt_s is None or not math.isfinite(rtt_s) else min(max(rtt_s, 0.0), MAX_RTT_ALLOWANCE_S)
    )
    return max(p.deadline_s for p in params) + allowance


def sign_response(key: SigningKey, method: str, path: str, body: bytes, request_nonce: str) -> dict[str, str]:
    """The agent's signature on its answer to one request (see the module docstring)."""
    return sign_request(key, method, path, body, nonce=request_nonce)


def response_reasons(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    machine_id: str,
    request_nonce: str,
    now: float,
) -> list[Reason]:
    """Why this is not the machine's signed answer to our request (empty if it is)."""
    try:
        signed = verify_request(method, path, headers, body, now=now)
    except RequestSignatureError as exc:
        return [Reason(RESPONSE_SIGNATURE_INVALID, "; ".join(r.message for r in exc.reasons), "signature")]
    if signed.keyid != machine_id:
        return [
            Reason(RESPONSE_SIGNATURE_INVALID, "the response is signed by another key than the machine's")
        ]
    if signed.nonce != request_nonce:
        return [Reason(RESPONSE_SIGNATURE_INVALID, "the response answers another request (nonce differs)")]
    return []
