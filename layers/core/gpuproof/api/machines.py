"""Routes of the machine API: registration, challenges, reports, status."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import ValidationError

from gpuproof.api.models import (
    AttemptsOut,
    CapacityAnswerSubmission,
    CapacityCommitmentSubmission,
    CapacityOpen,
    CapacityOpened,
    CapacityOpeningsAccepted,
    CapacityOpeningsSubmission,
    CapacityStepOut,
    ChallengeOut,
    ChallengeParamsOut,
    CommitmentOut,
    CommitmentSubmission,
    ExitOut,
    HeartbeatAck,
    HeartbeatOut,
    HeartbeatsOut,
    MachineOut,
    MachineStatusOut,
    PresenceAnnouncement,
    PresenceChallengeOut,
    PresenceCommitmentIn,
    PresenceCommitmentOut,
    PresenceOut,
    PresenceProofIn,
    PresenceResultOut,
    ReasonOut,
    ReportAccepted,
    ReportOut,
    ReportSubmission,
    ReportSummary,
    ScoredOut,
    responses,
)
from gpuproof.api.signing import request_arrived, signed_request
from gpuproof.api.wiring import machine_services
from gpuproof.logic import capacity, presence
from gpuproof.logic import machines as logic
from gpuproof.logic.records import Machine, StoredReport
from gpuproof.protocol.httpsig import SignedRequest
from gpuproof.protocol.limits import MAX_CHALLENGE_ID_CHARS, MAX_UNIX_TIME_S
from gpuproof.protocol.machine import ChallengeRequest, MachineRegistration
from gpuproof.protocol.telemetry import Heartbeat

router = Router()  # type: ignore[no-untyped-call]

MachineId = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="Ed25519 public key, hex")]
ChallengeIdPath = Annotated[str, Path(min_length=1, max_length=MAX_CHALLENGE_ID_CHARS)]
Signer = Annotated[SignedRequest, Depends(signed_request)]
Arrived = Annotated[float | None, Depends(request_arrived)]
Svc = Annotated[logic.Services, Depends(machine_services)]


def _machine_out(m: Machine) -> MachineOut:
    return MachineOut(
        machine_id=m.machine_id,
        owner=m.owner,
        region=m.region,
        state=m.state.value,
        registered_at=m.registered_at,
        updated_at=m.updated_at,
        last_challenge_id=m.last_challenge_id,
        state_reasons=[ReasonOut(**r) for r in m.state_reasons],
        attempts=AttemptsOut(
            taken=m.attempts.taken,
            failed=m.attempts.failed,
            consecutive_failed=m.attempts.consecutive_failed,
            last_failed_at=m.attempts.last_failed_at,
            cooldown_until=m.attempts.cooldown_until,
        ),
        last_heartbeat_at=m.last_heartbeat_at,
        offline_since=m.offline_since,
        scored=None
        if not m.scored
        else ScoredOut(
            verdict_id=str(m.scored["verdict_id"]),
            round=int(m.scored["round"]),
            calc_point=int(m.scored["upload_info"]["calc_point"]),
        ),
        gpu_uuids=m.gpu_uuids,
        presence=None if (p := presence.presence_summary(m)) is None else PresenceOut.model_validate(p),
    )


def _summary(r: StoredReport) -> ReportSummary:
    return ReportSummary(
        challenge_id=r.challenge_id,
        received_at=r.received_at,
        report_sha256=r.report_sha256,
        verification=r.verification,
    )


@router.post(
    "/machines",
    status_code=201,
    tags=["machines"],
    summary="Register a machine key",
    responses=responses(201, MachineOut, 401, 403, 409, 413, 422),
)
def register_machine(body: MachineRegistration, signer: Signer, svc: Svc) -> MachineOut:
    return _machine_out(logic.register_machine(svc, signer, body))


@router.get(
    "/machines/<machine_id>",
    tags=["machines"],
    summary="A machine's state and its latest reports",
    responses=responses(200, MachineStatusOut, 404, 422),
)
def get_machine(machine_id: MachineId, svc: Svc) -> MachineStatusOut:
    status = logic.machine_status(svc, machine_id)
    return MachineStatusOut(
        machine=_machine_out(status.machine),
        reports=[_summary(r) for r in status.reports],
        latest_heartbeat=None if status.latest_heartbeat is None else _heartbeat_out(status.latest_heartbeat),
    )


def _heartbeat_out(beat: dict[str, Any]) -> HeartbeatOut | None:
    """A stored heartbeat as today's model; one that no longer fits it (stored under an older
    model, kept until its TTL) is left out rather than failing the read."""
    try:
        return HeartbeatOut.model_validate({**beat["telemetry"], "received_at": beat["received_at"]})
    except (ValidationError, KeyError, TypeError):
        return None


@router.get(
    "/machines/<machine_id>/heartbeats",
    tags=["machines"],
    summary="A machine's stored heartbeats (its signed telemetry, a claim), newest first",
    responses=responses(200, HeartbeatsOut, 404, 422),
)
def get_heartbeats(
    machine_id: MachineId,
    svc: Svc,
    since: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_UNIX_TIME_S,
            description="service clock, epoch s: only heartbeats received then or later",
        ),
    ] = 0,
    limit: Annotated[
        int, Query(ge=1, le=logic.MAX_HEARTBEATS_PAGE, description="at most this many, the newest")
    ] = logic.DEFAULT_HEARTBEATS_PAGE,
) -> HeartbeatsOut:
    beats = logic.machine_heartbeats(svc, machine_id, since, limit)
    outs = [_heartbeat_out(b) for b in beats]
    return HeartbeatsOut(machine_id=machine_id, heartbeats=[o for o in outs if o is not None])


@router.post(
    "/machines/<machine_id>/challenges",
    status_code=201,
    tags=["machines"],
    summary="Issue a single-use challenge",
    responses=responses(201, ChallengeOut, 401, 403, 404, 409, 413, 422, 429),
)
def create_challenge(machine_id: MachineId, body: ChallengeRequest, signer: Signer, svc: Svc) -> ChallengeOut:
    c = logic.issue_challenge(svc, signer, machine_id, body)
    return ChallengeOut(
        challenge_id=c.challenge_id,
        machine_id=c.machine_id,
        nonce=c.nonce,
        issued_at=c.issued_at,
        expires_at=c.expires_at,
        params=ChallengeParamsOut.model_validate(c.params),
    )


@router.post(
    "/machines/<machine_id>/commitments",
    status_code=201,
    tags=["machines"],
    summary="Deliver the proof-of-throughput commitment; receive the pairs to open",
    responses=responses(201, CommitmentOut, 401, 403, 404, 409, 410, 413, 422),
)
def submit_commitment(
    machine_id: MachineId, body: CommitmentSubmission, signer: Signer, svc: Svc, arrived: Arrived
) -> CommitmentOut:
    r = logic.record_commitment(
        svc, signer, machine_id, body.challenge_id, body.signed_commitment, arrived_at=arrived
    )
    return CommitmentOut(
        challenge_id=r.challenge.challenge_id,
        received_at=r.received_at,
        elapsed_s=r.elapsed_s,
        deadline_s=r.deadline_s,
        pairs=r.pairs,
        transcript_upload=r.upload,
    )


@router.post(
    "/machines/<machine_id>/capacity",
    status_code=201,
    tags=["capacity"],
    summary="Open the challenge's capacity phase (after the throughput commitment): its fill nonce",
    responses=responses(201, CapacityOpened, 401, 403, 404, 409, 410, 413, 422),
)
def open_capacity(machine_id: MachineId, body: CapacityOpen, signer: Signer, svc: Svc) -> CapacityOpened:
    r = capacity.open_phase(svc, signer, machine_id, body.challenge_id)
    return CapacityOpened(challenge_id=r.challenge_id, nonce=r.nonce, opened_at=r.opened_at, params=r.params)


def _step_out(challenge_id: str, step: capacity.CapacityStep) -> CapacityStepOut:
    return CapacityStepOut(
        challenge_id=challenge_id,
        received_at=step.received_at,
        round=step.next_round,
        draw_secret=step.draw_secret,
        openings_upload=step.openings_upload,
        openings_host_upload=step.openings_host_upload,
    )


@router.post(
    "/machines/<machine_id>/capacity/commitments",
    status_code=201,
    tags=["capacity"],
    summary="Deliver the signed capacity commitment (timed); receive read round 1",
    responses=responses(201, CapacityStepOut, 401, 403, 404, 409, 410, 413, 422),
)
def submit_capacity_commitment(
    machine_id: MachineId, body: CapacityCommitmentSubmission, signer: Signer, svc: Svc, arrived: Arrived
) -> CapacityStepOut:
    step = capacity.record_capacity_commitment(
        svc, signer, machine_id, body.challenge_id, body.signed_commitment, arrived_at=arrived
    )
    return _step_out(body.challenge_id, step)


@router.post(
    "/machines/<machine_id>/capacity/answers",
    status_code=201,
    tags=["capacity"],
    summary="Answer the open read round (timed); receive the next round, or the draw secret",
    responses=responses(201, CapacityStepOut, 401, 403, 404, 409, 410, 413, 422),
)
def submit_capacity_answer(
    machine_id: MachineId, body: CapacityAnswerSubmission, signer: Signer, svc: Svc, arrived: Arrived
) -> CapacityStepOut:
    step = capacity.record_capacity_answer(
        svc, signer, machine_id, body.challenge_id, body.answer, arrived_at=arrived
    )
    return _step_out(body.challenge_id, step)


@router.post(
    "/machines/<machine_id>/capacity/openings",
    status_code=202,
    tags=["capacity"],
    summary="Deliver the capacity openings (spots and walks) the draw secret names",
    responses=responses(202, CapacityOpeningsAccepted, 401, 403, 404, 409, 410, 413, 422),
)
def submit_capacity_openings(
    machine_id: MachineId, body: CapacityOpeningsSubmission, signer: Signer, svc: Svc
) -> CapacityOpeningsAccepted:
    stored = capacity.record_capacity_openings(
        svc, signer, machine_id, body.challenge_id, body.openings, body.reference
    )
    return CapacityOpeningsAccepted(challenge_id=body.challenge_id, stored_bytes=stored)


@router.post(
    "/machines/<machine_id>/reports",
    status_code=202,
    tags=["machines"],
    summary="Submit a signed benchmark report answering a challenge",
    responses=responses(202, ReportAccepted, 401, 403, 404, 409, 410, 413, 422),
)
def submit_report(machine_id: MachineId, body: ReportSubmission, signer: Signer, svc: Svc) -> ReportAccepted:
    stored = logic.accept_report(svc, signer, machine_id, body.challenge_id, body.signed_report)
    return ReportAccepted(
        machine_id=machine_id,
        state="submitted",
        challenge_id=stored.challenge_id,
        received_at=stored.received_at,
        report_sha256=stored.report_sha256,
    )


@router.post(
    "/machines/<machine_id>/heartbeats",
    tags=["machines"],
    summary="The agent's signed heartbeat of live telemetry; the answer says if re-verification is due",
    responses=responses(200, HeartbeatAck, 401, 403, 404, 409, 413, 422),
)
def heartbeat(machine_id: MachineId, body: Heartbeat, signer: Signer, svc: Svc) -> HeartbeatAck:
    ack = logic.record_heartbeat(svc, signer, machine_id, body)
    return HeartbeatAck(
        received_at=ack.received_at,
        state=ack.machine.state.value,
        reverify=ack.reverify,
        presence=None if ack.presence is None else PresenceAnnouncement(**ack.presence),
    )


@router.post(
    "/machines/<machine_id>/presence/<check_id>",
    tags=["presence"],
    summary="Fetch an open presence check's nonce and proof parameters, at its opening time",
    responses=responses(200, PresenceChallengeOut, 401, 403, 404, 409, 410, 413, 422, 425),
)
def fetch_presence(
    machine_id: MachineId, check_id: ChallengeIdPath, signer: Signer, svc: Svc, arrived: Arrived
) -> PresenceChallengeOut:
    return PresenceChallengeOut.model_validate(
        presence.fetch_presence(svc, signer, machine_id, check_id, arrived)
    )


@router.post(
    "/machines/<machine_id>/presence/<check_id>/commitment",
    tags=["presence"],
    summary="Deliver the presence check's commitment (timed at the API edge); receive the pairs to open",
    responses=responses(200, PresenceCommitmentOut, 401, 403, 404, 409, 413, 422),
)
def presence_commitment(
    machine_id: MachineId,
    check_id: ChallengeIdPath,
    body: PresenceCommitmentIn,
    signer: Signer,
    svc: Svc,
    arrived: Arrived,
) -> PresenceCommitmentOut:
    return PresenceCommitmentOut.model_validate(
        presence.presence_commitment(svc, signer, machine_id, check_id, body.signed_commitment, arrived)
    )


@router.post(
    "/machines/<machine_id>/presence/<check_id>/proof",
    tags=["presence"],
    summary="Deliver the presence check's openings; verified at once (a failure revokes the score)",
    responses=responses(200, PresenceResultOut, 401, 403, 404, 409, 410, 413, 422),
)
def presence_proof(
    machine_id: MachineId, check_id: ChallengeIdPath, body: PresenceProofIn, signer: Signer, svc: Svc
) -> PresenceResultOut:
    return PresenceResultOut.model_validate(
        presence.presence_proof(svc, signer, machine_id, check_id, body.proof)
    )


@router.post(
    "/machines/<machine_id>/exit",
    tags=["machines"],
    summary="The owner takes the machine out: its score is revoked on chain and its GPUs released",
    responses=responses(200, ExitOut, 401, 403, 404, 409, 413, 422),
)
def exit_machine(machine_id: MachineId, signer: Signer, svc: Svc) -> ExitOut:
    machine, verdict = logic.exit_machine(svc, signer, machine_id)
    return ExitOut(
        machine=_machine_out(machine), revoked_verdict_id=None if verdict is None else verdict.verdict_id
    )


@router.get(
    "/machines/<machine_id>/reports/<challenge_id>",
    tags=["machines"],
    summary="A stored report, byte for byte what the machine signed",
    responses=responses(200, ReportOut, 404, 422),
)
def get_report(machine_id: MachineId, challenge_id: ChallengeIdPath, svc: Svc) -> ReportOut:
    r = logic.get_report(svc, machine_id, challenge_id)
    return ReportOut(
        machine_id=r.machine_id,
        challenge_id=r.challenge_id,
        received_at=r.received_at,
        report_sha256=r.report_sha256,
        verification=r.verification,
        signed_report=r.signed_report,
    )
