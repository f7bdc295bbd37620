"""The capacity phase's service side (docs/protocol.md §17): open the phase with a fresh nonce,
time the signed commitment, open each read round with a fresh nonce only after the previous
answer arrived, draw the openings' secret after the last answer, keep the openings (the binary
transcript of protocol/capacity/wire.py, inline or uploaded; the verify worker decodes it).

The state machine is `CapacitySession` (pure); this module loads it from the challenge, applies one
message, and writes it back as the next step, conditionally (two concurrent messages cannot both
advance it). Every time is the service's: arrivals at the API edge (`received_time`), sends on the
function's clock just before the write that records them.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from typing import Any

from gpuproof.claim import stored_capacity_params
from gpuproof.errors import raise_if
from gpuproof.logic.machines import Services, _open_challenge_reasons, _signer_reasons, received_time
from gpuproof.logic.records import Challenge
from gpuproof.protocol.capacity import (
    CapacityAnswer,
    CapacityParams,
    CapacityRound,
    CapacitySession,
    RoundRecord,
    SessionError,
    SignedCapacityCommitment,
)
from gpuproof.protocol.capacity.models import OPENINGS_SUFFIX
from gpuproof.protocol.capacity.openings import openings_limit
from gpuproof.protocol.capacity.verifier import check_signed
from gpuproof.protocol.capacity.wire import has_host_part
from gpuproof.protocol.delivery import (
    PART_SUFFIXES,
    TranscriptRef,
    TranscriptUpload,
    parts_size_reasons,
    ref_parts,
)
from gpuproof.protocol.httpsig import SignedRequest
from gpuproof.protocol.limits import MAX_CAPACITY_OPENINGS_STORED_BYTES
from gpuproof.protocol.reasons import Reason

STATE_CONFLICT = "capacity_state_conflict"
OPENINGS_TOO_LARGE = "capacity_openings_too_large"
OPENINGS_INVALID = "capacity_openings_invalid"


@dataclass(frozen=True)
class Loaded:
    challenge: Challenge
    params: CapacityParams
    nonce: bytes
    session: CapacitySession
    handled_at: float


def session_doc(nonce: bytes, session: CapacitySession) -> dict[str, Any]:
    """What the challenge item stores: the session's own records, JSON (floats exact)."""
    return {
        "nonce": nonce.hex(),
        "opened_at": session.opened_at,
        "signed_commitment": None if session.signed is None else session.signed.model_dump(mode="json"),
        "commitment_received_at": session.commitment_received_at,
        "rounds": [r.model_dump(mode="json") for r in session.rounds],
        "draw_secret": None if session.draw_secret is None else session.draw_secret.hex(),
    }


def load_session(params: CapacityParams, doc: dict[str, Any]) -> tuple[bytes, CapacitySession]:
    signed = doc.get("signed_commitment")
    secret = doc.get("draw_secret")
    session = CapacitySession(
        params,
        opened_at=float(doc["opened_at"]),
        signed=None if signed is None else SignedCapacityCommitment.model_validate(signed),
        commitment_received_at=doc.get("commitment_received_at"),
        rounds=[RoundRecord.model_validate(r) for r in doc.get("rounds") or []],
        draw_secret=None if secret is None else bytes.fromhex(secret),
    )
    return bytes.fromhex(doc["nonce"]), session


def _conflict(message: str) -> Reason:
    return Reason(STATE_CONFLICT, message, "challenge_id")


def _load(
    svc: Services, request: SignedRequest, machine_id: str, challenge_id: str, *, opening: bool = False
) -> Loaded:
    """The open challenge and its session; raises Rejection (every reason) when there is none."""
    handled_at = svc.clock.now()
    reasons = _signer_reasons(svc, request, machine_id)
    machine = svc.store.get_machine(machine_id)
    if machine is None:
        reasons.insert(
            0, Reason("unknown_machine", "no machine is registered with this machine_id", "machine_id")
        )
    challenge = svc.store.get_challenge(challenge_id)
    reasons += _open_challenge_reasons(machine, challenge, machine_id, challenge_id, handled_at)
    params = None
    if challenge is not None and challenge.machine_id == machine_id:
        try:
            params = stored_capacity_params(challenge.params)
        except ValueError:
            params = None
        if params is None:
            reasons.append(_conflict("this challenge carries no capacity phase"))
        elif opening and challenge.capacity is not None:
            reasons.append(_conflict("the capacity phase of this challenge is already open"))
        elif opening and challenge.commitment_sha256 is None:
            reasons.append(_conflict("open the capacity phase after the proof-of-throughput commitment"))
        elif not opening and challenge.capacity is None:
            reasons.append(_conflict("the capacity phase of this challenge is not open"))
    raise_if(reasons)
    assert challenge is not None and params is not None
    if opening:
        return Loaded(challenge, params, b"", CapacitySession(params, opened_at=handled_at), handled_at)
    assert challenge.capacity is not None
    nonce, session = load_session(params, challenge.capacity)
    return Loaded(challenge, params, nonce, session, handled_at)


def _apply(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except SessionError as exc:
        raise_if([Reason(exc.code, str(exc), "round" if exc.code != STATE_CONFLICT else "challenge_id")])


@dataclass(frozen=True)
class PhaseOpened:
    challenge_id: str
    nonce: str
    opened_at: float
    params: CapacityParams


def open_phase(svc: Services, request: SignedRequest, machine_id: str, challenge_id: str) -> PhaseOpened:
    """Open the phase: a fresh 32-byte nonce seeds every fill (so no fill can start earlier), and
    the fill deadline runs from now (the service's clock)."""
    loaded = _load(svc, request, machine_id, challenge_id, opening=True)
    nonce = secrets.token_bytes(32)
    opened_at = svc.clock.now()
    session = CapacitySession(loaded.params, opened_at=opened_at)
    svc.store.record_capacity(loaded.challenge, session_doc(nonce, session), opened_at, request)
    return PhaseOpened(challenge_id, nonce.hex(), opened_at, loaded.params)


@dataclass(frozen=True)
class CapacityStep:
    """The service's answer to a commitment or a round's answer: the next round, or (after the
    last) the secret the openings are drawn with (`protocol.capacity.draws`)."""

    received_at: float
    next_round: CapacityRound | None
    draw_secret: str | None
    openings_upload: TranscriptUpload | None = None
    # host RAM's section as a second object, uploaded after the GPU targets' (§17.10: the probe
    # sends those while host RAM's are still recomputed)
    openings_host_upload: TranscriptUpload | None = None


def _advance(svc: Services, loaded: Loaded, request: SignedRequest, received_at: float) -> CapacityStep:
    session = loaded.session
    next_round = None
    if session.done:
        session.draw()
    else:
        next_round = _apply(session.open_round, svc.clock.now())
    svc.store.record_capacity(
        loaded.challenge, session_doc(loaded.nonce, session), loaded.handled_at, request
    )
    secret = None if session.draw_secret is None else session.draw_secret.hex()
    uploads: list[TranscriptUpload | None] = [None, None]
    if secret is not None and svc.transcripts is not None:
        ch = loaded.challenge
        parts = PART_SUFFIXES if has_host_part(loaded.params) else PART_SUFFIXES[:1]
        for k, part in enumerate(parts):
            uploads[k] = svc.transcripts.upload_target(
                ch.machine_id,
                ch.challenge_id,
                openings_limit(loaded.params),
                ch.expires_at,
                loaded.handled_at,
                suffix=OPENINGS_SUFFIX + part,
            )
    return CapacityStep(received_at, next_round, secret, uploads[0], uploads[1])


def record_capacity_commitment(
    svc: Services,
    request: SignedRequest,
    machine_id: str,
    challenge_id: str,
    signed: SignedCapacityCommitment,
    *,
    arrived_at: float | None = None,
) -> CapacityStep:
    """Time the signed commitment (its arrival at the API's edge), then open round 1."""
    loaded = _load(svc, request, machine_id, challenge_id)
    raise_if(
        check_signed(
            signed,
            machine_id=machine_id,
            challenge_id=challenge_id,
            nonce=loaded.nonce,
            params=loaded.params,
        )
    )
    received_at = received_time(loaded.session.opened_at, loaded.handled_at, arrived_at)
    _apply(loaded.session.receive_commitment, signed, received_at)
    return _advance(svc, loaded, request, received_at)


def record_capacity_answer(
    svc: Services,
    request: SignedRequest,
    machine_id: str,
    challenge_id: str,
    answer: CapacityAnswer,
    *,
    arrived_at: float | None = None,
) -> CapacityStep:
    """Time a round's answer (its arrival at the API's edge), then open the next round, or draw."""
    loaded = _load(svc, request, machine_id, challenge_id)
    rounds = loaded.session.rounds
    sent_at = rounds[-1].sent_at if rounds else loaded.session.opened_at
    received_at = received_time(sent_at, loaded.handled_at, arrived_at)
    _apply(loaded.session.receive_answer, answer, received_at)
    return _advance(svc, loaded, request, received_at)


def _inline(openings: str) -> tuple[bytes | None, list[Reason]]:
    """The inline openings' bytes (strict base64), within the bound the challenge item keeps."""
    if len(openings) > 4 * -(-MAX_CAPACITY_OPENINGS_STORED_BYTES // 3):
        data = None
    else:
        try:
            data = base64.b64decode(openings, validate=True)
        except (binascii.Error, ValueError):
            return None, [Reason(OPENINGS_INVALID, "the inline openings are not base64", "openings")]
    if data is None or len(data) > MAX_CAPACITY_OPENINGS_STORED_BYTES:
        return None, [
            Reason(
                OPENINGS_TOO_LARGE,
                f"inline openings hold at most {MAX_CAPACITY_OPENINGS_STORED_BYTES} bytes: upload them "
                "where the last round's answer says and send a reference",
                "openings",
            )
        ]
    return data, []


def record_capacity_openings(
    svc: Services,
    request: SignedRequest,
    machine_id: str,
    challenge_id: str,
    openings: str | None,
    reference: TranscriptRef | None = None,
) -> int:
    """Keep the openings (once, after the draw) for the verify worker to decode and judge: inline
    (base64 of the binary transcript, kept raw in the challenge item, bounded: it is a DynamoDB
    item) or a reference to the transcript uploaded where the last round's answer said (its size
    checked here, its SHA-256 by the worker). Returns the bytes stored or uploaded."""
    loaded = _load(svc, request, machine_id, challenge_id)
    reasons = []
    doc = session_doc(loaded.nonce, loaded.session)
    received = loaded.challenge.capacity_openings is not None or bool(
        (loaded.challenge.capacity or {}).get("openings_ref")
    )
    if loaded.session.draw_secret is None:
        reasons.append(_conflict("the openings follow the last round's answer"))
    elif received:
        reasons.append(_conflict("the openings of this capacity phase were already received"))
    if (openings is None) == (reference is None):
        reasons.append(
            Reason(OPENINGS_INVALID, "send either the openings or a reference to them, not both", "body")
        )
    data: bytes | None = None
    stored = 0
    if openings is not None:
        data, invalid = _inline(openings)
        reasons += invalid
        stored = 0 if data is None else len(data)
    elif reference is not None:
        stored = reference.transcript_bytes
        limit = openings_limit(loaded.params)
        if reference.version != 2 or reference.commitment is not None or reference.pairs is not None:
            reasons.append(
                Reason(
                    OPENINGS_INVALID,
                    "a capacity openings reference is version 2 (the binary transcript), sha256 and bytes",
                    "reference",
                )
            )
        elif svc.transcripts is None:
            reasons.append(
                Reason("transcript_missing", "this service takes no uploaded openings", "reference")
            )
        elif stored > limit:
            reasons.append(
                Reason(
                    OPENINGS_TOO_LARGE, f"the reference declares {stored} bytes (limit {limit})", "reference"
                )
            )
        elif reference.parts is not None and not has_host_part(loaded.params):
            reasons.append(
                Reason(OPENINGS_INVALID, "openings in two parts need host RAM among the targets", "reference")
            )
        else:
            sizes = [
                svc.transcripts.size(machine_id, challenge_id, suffix)
                for suffix, _size in ref_parts(reference, OPENINGS_SUFFIX)
            ]
            reasons += parts_size_reasons(sizes, reference, limit)
        doc["openings_ref"] = reference.model_dump(mode="json", exclude_none=True)
    raise_if(reasons)
    svc.store.record_capacity(loaded.challenge, doc, loaded.handled_at, request, openings=data)
    return stored


def openings_reference(challenge: Challenge) -> TranscriptRef | None:
    """The reference to uploaded openings the session keeps (None: inline, or none)."""
    doc = (challenge.capacity or {}).get("openings_ref")
    return None if doc is None else TranscriptRef.model_validate(doc)
