"""API output models (the database models live in gpuproof.adapters.tables)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, Field

from gpuproof.protocol.capacity import CapacityAnswer, CapacityParams, CapacityRound, SignedCapacityCommitment
from gpuproof.protocol.delivery import TranscriptRef, TranscriptUpload
from gpuproof.protocol.limits import MAX_BODY_BYTES
from gpuproof.protocol.proof import GpuPairs, ProofParams, SignedCommitment, ThroughputProof
from gpuproof.protocol.report import SignedReport
from gpuproof.protocol.telemetry import Heartbeat


class ReasonOut(BaseModel):
    code: str
    message: str
    field: str | None = None
    # What the owner (or operator) does next, where a machine waits or is stuck for this reason.
    next_step: str | None = None


class ErrorOut(BaseModel):
    """Every rejection: a stable machine-readable code and every reason found."""

    code: str
    message: str
    reasons: list[ReasonOut]


class AttemptsOut(BaseModel):
    """Challenges taken and failed (refused, or abandoned after the commitment), and the cooldown."""

    taken: int
    failed: int
    consecutive_failed: int
    last_failed_at: float | None = None
    cooldown_until: float | None = Field(
        default=None, description="service clock; no challenge is issued before it"
    )


class PresenceLast(BaseModel):
    check_id: str | None
    result: str  # passed | missed | missed_shadow | failed_shadow | unsized
    at: float
    elapsed_s: float | None = None
    detail: str | None = None


class PresenceOut(BaseModel):
    checks: int
    passed: int
    missed: int
    failed: int = Field(description="failures recorded in shadow mode (enforced, one failure revokes)")
    consecutive_misses: int
    misses_in_window: int = Field(
        description="misses among the last window_checks checks (PresenceMaxMisses of them among the last "
        "PresenceMissWindow revoke, when enforced; misses recorded in shadow mode never count)"
    )
    window_checks: int = Field(description="the checks the window holds (at most PresenceMissWindow)")
    last: PresenceLast | None


class ScoredOut(BaseModel):
    verdict_id: str
    round: int
    calc_point: int


class MachineOut(BaseModel):
    machine_id: str
    owner: str
    region: str
    state: str
    registered_at: float
    updated_at: float
    last_challenge_id: str | None = None
    state_reasons: list[ReasonOut] = Field(default_factory=list)
    attempts: AttemptsOut
    last_heartbeat_at: float | None = Field(default=None, description="service clock")
    offline_since: float | None = Field(
        default=None, description="when the sweeper found it silent (state offline); null otherwise"
    )
    scored: ScoredOut | None = Field(
        default=None, description="the Confirmed verdict whose score is on chain; null when none stands"
    )
    gpu_uuids: list[str] = Field(default_factory=list, description="the GPU UUIDs this machine holds")
    presence: PresenceOut | None = Field(
        default=None, description="its presence checks so far (docs/protocol.md §19); null before the first"
    )


class ExitOut(BaseModel):
    machine: MachineOut
    revoked_verdict_id: str | None = Field(
        description="the Revoked verdict withdrawing its score on chain; null when it had none"
    )


class ChallengeParamsOut(BaseModel):
    """The claim the challenge fixes and what the proof must compute for it (docs/protocol.md §14)."""

    claimed_gpu_model: str | None = Field(
        description="the claimed model's reference-table name (normalised); null for a CPU-only claim"
    )
    gpu_count: int = Field(description="GPUs claimed; the report's inventory must list exactly these")
    proof: list[ProofParams] = Field(
        description="one set of proof-of-throughput parameters per claimed GPU (docs/protocol.md §2)"
    )
    claimed_ram_bytes: int | None = Field(default=None, description="the host RAM claimed, if any")
    capacity: CapacityParams | None = Field(
        default=None,
        description="the capacity phase every claimed GPU and the claimed RAM answer (docs/protocol.md §17)",
    )


class ChallengeOut(BaseModel):
    challenge_id: str
    machine_id: str
    nonce: str = Field(description="32 random bytes, hex; the report and the proof must carry it")
    issued_at: float
    expires_at: float
    params: ChallengeParamsOut


class ReportSubmission(BaseModel):
    """Body of POST /machines/{machine_id}/reports."""

    challenge_id: str = Field(min_length=1, max_length=64)
    signed_report: SignedReport


class CommitmentSubmission(BaseModel):
    """Body of POST /machines/{machine_id}/commitments: the signed proof-of-throughput commitment."""

    challenge_id: str = Field(min_length=1, max_length=64)
    signed_commitment: SignedCommitment


class CommitmentOut(BaseModel):
    challenge_id: str
    received_at: float = Field(description="service clock")
    elapsed_s: float = Field(description="service clock, from challenge issue to commitment receipt")
    deadline_s: float = Field(description="the slowest GPU's deadline; the verify worker decides")
    pairs: list[GpuPairs] = Field(description="the (step, row) pairs to open, drawn after receipt")
    transcript_upload: TranscriptUpload | None = Field(
        default=None,
        description="the presigned POST for this challenge's transcript (its key only, at most "
        "max_bytes, with a SHA-256 checksum field, until expires_at); the report then carries "
        "proof = {version, transcript_sha256, transcript_bytes}",
    )


class CapacityOpen(BaseModel):
    """Body of POST /machines/{machine_id}/capacity: open the challenge's capacity phase."""

    challenge_id: str = Field(min_length=1, max_length=64)


class CapacityOpened(BaseModel):
    challenge_id: str
    nonce: str = Field(description="32 fresh bytes, hex: the seed of every fill (docs/protocol.md §17.2)")
    opened_at: float = Field(description="service clock; the fill deadline runs from here")
    params: CapacityParams


class CapacityCommitmentSubmission(BaseModel):
    """Body of POST /machines/{machine_id}/capacity/commitments."""

    challenge_id: str = Field(min_length=1, max_length=64)
    signed_commitment: SignedCapacityCommitment


class CapacityAnswerSubmission(BaseModel):
    """Body of POST /machines/{machine_id}/capacity/answers: the answer to the open round."""

    challenge_id: str = Field(min_length=1, max_length=64)
    answer: CapacityAnswer


class CapacityStepOut(BaseModel):
    challenge_id: str
    received_at: float = Field(description="service clock (the API edge's arrival)")
    round: CapacityRound | None = Field(
        description="the next read round, its nonce drawn now; null after the last"
    )
    draw_secret: str | None = Field(
        description="after the last round: the secret the spots and walks are drawn with (§17.6)"
    )
    openings_upload: TranscriptUpload | None = Field(
        default=None,
        description="after the last round: the presigned POST for openings too large to send inline "
        "(all of them, or the first part: the magic, the count and every GPU target's section)",
    )
    openings_host_upload: TranscriptUpload | None = Field(
        default=None,
        description="after the last round, when host RAM is a target: the presigned POST for the "
        "second part, host RAM's section, so the GPU targets' openings can be uploaded while host "
        "RAM's are still being recomputed; the reference then lists both parts' sizes (`parts`)",
    )


class CapacityOpeningsSubmission(BaseModel):
    """Body of POST /machines/{machine_id}/capacity/openings: the binary openings
    (application/vnd.gpuproof.capacity-openings.v3, docs/protocol.md §17.6) inline as base64
    (at most 256 KiB of binary), or a reference {version: 2, transcript_sha256, transcript_bytes}
    to the same bytes uploaded to `openings_upload` (with `parts`: [first, second] when uploaded in
    two parts, the second to `openings_host_upload`; the SHA-256 is the concatenation's)."""

    challenge_id: str = Field(min_length=1, max_length=64)
    openings: str | None = Field(
        default=None,
        max_length=MAX_BODY_BYTES,
        description="base64 (RFC 4648, padded) of the binary openings; at most 256 KiB decoded",
    )
    reference: TranscriptRef | None = None


class CapacityOpeningsAccepted(BaseModel):
    challenge_id: str
    stored_bytes: int = Field(description="bytes of the binary openings kept inline or uploaded")


class PresenceAnnouncement(BaseModel):
    check_id: str
    opens_at: float = Field(description="service clock: fetch the nonce at this time, not before")
    fetch_by: float = Field(description="service clock: a fetch after this is refused and the check missed")


class HeartbeatAck(BaseModel):
    received_at: float = Field(description="service clock")
    state: str
    reverify: bool = Field(description="true when the machine should answer a fresh challenge now")
    presence: PresenceAnnouncement | None = Field(
        default=None, description="an open presence check to answer (docs/protocol.md §19)"
    )


class PresenceChallengeOut(BaseModel):
    check_id: str
    nonce: str
    opens_at: float
    commit_by: float = Field(description="service clock: the commitment must reach the API edge by then")
    answer_by: float = Field(description="service clock: the openings must arrive by then")
    params: list[ProofParams]


class PresenceCommitmentIn(BaseModel):
    signed_commitment: SignedCommitment


class PresenceCommitmentOut(BaseModel):
    check_id: str
    received_at: float
    elapsed_s: float
    limit_s: float
    pairs: list[GpuPairs]
    answer_by: float
    transcript_upload: TranscriptUpload | None = Field(
        default=None,
        description="the presigned POST for this check's transcript (its key only, at most "
        "TranscriptMaxBytesPerGpu x the claim's GPUs, a SHA-256 checksum field, until answer_by); "
        "the proof request then carries proof = a TranscriptRef (docs/protocol.md §19)",
    )


class PresenceProofIn(BaseModel):
    proof: ThroughputProof | TranscriptRef = Field(
        description="the openings inline (within the 1 MiB body bound: a CPU claim), or the "
        "reference to the transcript uploaded with transcript_upload (any claim; the agent's way)"
    )


class PresenceResultOut(BaseModel):
    check_id: str
    result: str
    elapsed_s: float


class ReportSummary(BaseModel):
    challenge_id: str
    received_at: float
    report_sha256: str
    verification: dict[str, Any] | None = None


class ReportAccepted(ReportSummary):
    machine_id: str
    state: str


class HeartbeatOut(Heartbeat):
    """A stored heartbeat: the telemetry the machine signed (a claim) and when the service got it."""

    received_at: float = Field(description="service clock")


class HeartbeatsOut(BaseModel):
    machine_id: str
    heartbeats: list[HeartbeatOut] = Field(description="newest first")


class MachineStatusOut(BaseModel):
    machine: MachineOut
    reports: list[ReportSummary]
    latest_heartbeat: HeartbeatOut | None = Field(
        default=None, description="the most recent stored heartbeat; null when none is kept"
    )


class ReportOut(ReportSummary):
    machine_id: str
    signed_report: dict[str, Any]


# Every route validates its input into our error shape (422 schema_invalid), and a signed route (one
# that answers 401) is behind the envelope: malformed JSON or base64 (400), an oversize body (413).
ALWAYS_REFUSED = (422,)
ENVELOPE_REFUSALS = (400, 413)


def responses(ok: int, model: type[BaseModel], *refusals: int) -> dict[int, OpenAPIResponse]:
    """A route's success response and every refusal status (each an ErrorOut), for OpenAPI."""
    statuses = {*refusals, *ALWAYS_REFUSED, *(ENVELOPE_REFUSALS if 401 in refusals else ())}
    out: dict[int, OpenAPIResponse] = {
        ok: {"description": "ok", "content": {"application/json": {"model": model}}}
    }
    for status in sorted(statuses):
        out[status] = {"description": "refused", "content": {"application/json": {"model": ErrorOut}}}
    return out
