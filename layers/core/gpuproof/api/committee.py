"""Routes of the committee API: the beacon, members, assignments, rounds, transcripts, commit, reveal.

Reads are public (who was drawn and on what evidence is meant to be checked by anyone), except
the capacity session (a signed GET for the round's drawn members: it hands out presigned GETs of
openings up to 160 MiB); every POST is signed by the member's key, and a member votes only in
rounds it was drawn for.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.depends import Depends
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel, Field

from gpuproof.api.models import responses
from gpuproof.api.signing import signed_request
from gpuproof.api.wiring import committee_services
from gpuproof.logic import committee as logic
from gpuproof.protocol.capacity import CapacityParams, RoundRecord, SignedCapacityCommitment
from gpuproof.protocol.dbc_commit import CommitteeUploadInfo
from gpuproof.protocol.httpsig import SignedRequest
from gpuproof.protocol.limits import MAX_ROUND_NO
from gpuproof.protocol.live import LiveCheck

router = Router()  # type: ignore[no-untyped-call]

Account = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="member's Ed25519 public key, hex")]
MachineId = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="machine's Ed25519 public key, hex")]
RoundNo = Annotated[int, Path(ge=1, le=MAX_ROUND_NO, description="round number, from 1")]
Signer = Annotated[SignedRequest, Depends(signed_request)]
Svc = Annotated[logic.CommitteeServices, Depends(committee_services)]
TAGS = ["committee"]


class MemberRegistration(BaseModel):
    """Body of POST /members, signed (RFC 9421) by the member's own key (keyid = account)."""

    account: str = Field(pattern=r"^[0-9a-f]{64}$")
    linked_accounts: list[Annotated[str, Field(min_length=1, max_length=66)]] = Field(
        default_factory=list,
        max_length=logic.MAX_LINKED_ACCOUNTS,
        description="owner accounts this member is tied to (SS58 of any network prefix, or the "
        "32-byte public key in hex); stored as public key hex; never drawn for their machines",
    )


class AdmissionIn(BaseModel):
    """Body of POST /members/{account}/admission, signed by the operator key (`gpuproof-ops admit`)."""

    admitted: bool = Field(default=True, description="false revokes: the member is never drawn again")


class MemberOut(BaseModel):
    account: str
    linked_accounts: list[str]
    registered_at: float
    status: str
    in_flight: int
    admitted: bool = Field(description="only admitted members are drawn (`gpuproof-ops admit`)")
    admitted_at: float | None


class BeaconOut(BaseModel):
    tip: str = Field(description="x_N of the SHA-256 hash chain, published before any value is used")
    length: int
    next_index: int = Field(description="the index the next draw uses; value i hashes i times to the tip")


class AssignmentOut(BaseModel):
    machine_id: str
    round: int
    status: str
    phase: str
    member_index: int
    slots: list[list[float]]
    booked_at: float
    commit_deadline: float
    reveal_deadline: float
    committed: bool
    revealed: bool
    result: str | None = None


class AssignmentsOut(BaseModel):
    account: str
    member: MemberOut | None = Field(
        default=None, description="the member's own record: status (active, retired), admission, load"
    )
    assignments: list[AssignmentOut]


class RoundOut(BaseModel):
    """A round's published data: enough to recompute the draw (docs/committee.md)."""

    machine_id: str
    round: int
    status: str
    owner: str
    region: str
    challenge_id: str
    evidence_digest: str
    members: list[str]
    excluded: list[str]
    booked_at: float
    scale: float
    commit_deadline: float
    reveal_deadline: float
    beacon_index: int
    beacon_value: str
    beacon_tip: str
    pool_digest: str
    pool_size: int
    pool: list[str] | None
    cap: int
    expected_info: dict[str, Any] | None = Field(
        description="the service's own findings; null while commits are open (expected_hidden)"
    )
    expected_problems: list[dict[str, str]]
    expected_hidden: bool = Field(
        default=False, description="true while commits are open: the service's findings are withheld"
    )
    performance_index: float | None
    commits: dict[str, dict[str, Any]]
    reveals: dict[str, dict[str, Any]]
    commit_hashes: list[str]
    result: str | None
    tally: dict[str, Any] | None = Field(
        description="closed: the tally; disputed: also committee_view, service_view and differences"
    )
    closed_at: float | None
    resolution: dict[str, Any] | None = Field(
        default=None, description="a disputed round's settlement: {accept, note, by, at}"
    )
    live_checks: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="the members that revealed a live check of the machine, with its figures "
        "(commitment_s, rtt_s, deadline_s, verified, reasons): the member's own measurements",
    )


class TranscriptOut(BaseModel):
    round: RoundOut
    machine: dict[str, Any]
    challenge: dict[str, Any] | None
    report: dict[str, Any]
    transcript: dict[str, Any] | None = Field(
        default=None,
        description="where the report's proof is a reference: a presigned GET of the uploaded "
        "transcript (url, expires_at, key); check its size and SHA-256 against the signed reference",
    )


class CapacityOpeningsOut(BaseModel):
    """Where the host's capacity openings are: inline as the service stored them, or uploaded."""

    delivery: Literal["inline", "upload"]
    media_type: str = Field(description="the openings' encoding (decode with protocol/capacity/openings.py)")
    encoding: Literal["base64"] | None = Field(
        default=None, description="inline: `data` is base64 of the stored binary openings"
    )
    data: str | None = Field(default=None, description="inline: the stored bytes, base64")
    urls: list[str] | None = Field(
        default=None,
        max_length=2,
        description="upload: a presigned GET of each object (1 h), in order: one, or the two parts "
        "(the GPU targets', then host RAM's, docs/protocol.md §17.10)",
    )
    expires_at: float | None = None
    keys: list[str] | None = Field(default=None, max_length=2)
    reference: dict[str, Any] | None = Field(
        default=None,
        description="upload: {version, transcript_sha256, transcript_bytes, parts?} the host sent; "
        "check the objects' sizes and their concatenation's SHA-256 against it",
    )


class CapacitySessionOut(BaseModel):
    """The capacity phase as the service recorded it for the round's challenge (docs/protocol.md
    §17.10): enough to re-run `verify_capacity`. Every time is the service's clock (`clock`)."""

    machine_id: str
    round: int
    challenge_id: str
    params: CapacityParams
    clock: Literal["service"] = Field(
        description="opened_at, commitment_received_at, sent_at and received_at are the service's "
        "clock as recorded; a member cannot time them itself"
    )
    nonce: str = Field(description="the phase nonce the fills are seeded with")
    opened_at: float
    signed_commitment: SignedCapacityCommitment | None
    commitment_received_at: float | None
    rounds: list[RoundRecord] = Field(description="each round's nonce, targets, times and answer roots")
    draw_secret: str | None = Field(description="the secret the spots and walks were drawn with")
    openings: CapacityOpeningsOut | None = Field(description="null: no openings were received")


class CommitIn(BaseModel):
    commit_hash: str = Field(
        pattern=r"^(0x)?[0-9a-fA-F]{32}$", description="blake2_128 of DBC's CommitteeUploadInfo bytes, hex"
    )


class RevealIn(BaseModel):
    info: CommitteeUploadInfo
    live_check: LiveCheck | None = Field(
        default=None,
        description="the member's own live check of the machine (its figures, its clock); a failed "
        "one must come with is_support false",
    )


class ResolutionIn(BaseModel):
    """Body of POST /rounds/{machine_id}/{round}/resolution, signed by the operator key."""

    accept: Literal["committee", "service"] = Field(
        description="whose findings the verdict carries: the committee majority's or the service's"
    )
    note: str = Field(default="", max_length=500, description="why (kept on the round)")


class VoteOut(BaseModel):
    machine_id: str
    round: int
    account: str
    phase: str


def _member_out(m: logic.CommitteeMember) -> MemberOut:
    return MemberOut(
        account=m.account,
        linked_accounts=m.linked_accounts,
        registered_at=m.registered_at,
        status=m.status,
        in_flight=m.in_flight,
        admitted=m.admitted,
        admitted_at=m.admitted_at,
    )


def _vote_out(svc: logic.CommitteeServices, r: logic.CommitteeRound, account: str) -> VoteOut:
    view = logic.assignment_view(r, account, svc.clock.now())
    return VoteOut(machine_id=r.machine_id, round=r.round, account=account, phase=str(view["phase"]))


@router.get(
    "/beacon",
    tags=TAGS,
    summary="The randomness beacon's published tip and next index",
    responses=responses(200, BeaconOut, 404),
)
def get_beacon(svc: Svc) -> BeaconOut:
    state = logic.beacon_info(svc)
    return BeaconOut(tip=state.tip, length=state.length, next_index=state.next_index)


@router.post(
    "/members",
    status_code=201,
    tags=TAGS,
    summary="Join the committee pool",
    responses=responses(201, MemberOut, 401, 403, 409, 422),
)
def register_member(body: MemberRegistration, signer: Signer, svc: Svc) -> MemberOut:
    return _member_out(logic.register_member(svc, signer, body.account, body.linked_accounts))


@router.post(
    "/members/<account>/admission",
    tags=TAGS,
    summary="Admit a registered member into the draw, or revoke it (operator key only)",
    responses=responses(200, MemberOut, 401, 403, 404, 409, 422),
)
def admit_member(account: Account, body: AdmissionIn, signer: Signer, svc: Svc) -> MemberOut:
    return _member_out(logic.admit_member(svc, signer, account, body.admitted))


@router.post(
    "/members/<account>/retire",
    tags=TAGS,
    summary="Leave the pool (no new draws)",
    responses=responses(200, MemberOut, 401, 403, 404, 409),
)
def retire_member(account: Account, signer: Signer, svc: Svc) -> MemberOut:
    return _member_out(logic.retire_member(svc, signer, account))


@router.get(
    "/members/<account>/assignments",
    tags=TAGS,
    summary="Rounds this member was drawn for",
    responses=responses(200, AssignmentsOut, 404, 422),
)
def get_assignments(account: Account, svc: Svc) -> AssignmentsOut:
    items = logic.assignments(svc, account)
    member = _member_out(logic.member_record(svc, account))
    return AssignmentsOut(account=account, member=member, assignments=[AssignmentOut(**a) for a in items])


@router.get(
    "/rounds/<machine_id>/<round_no>",
    tags=TAGS,
    summary="A round's draw data, votes and result",
    responses=responses(200, RoundOut, 404, 422),
)
def get_round(machine_id: MachineId, round_no: RoundNo, svc: Svc) -> RoundOut:
    return RoundOut(**logic.published_round(svc, machine_id, round_no))


@router.get(
    "/rounds/<machine_id>/<round_no>/transcript",
    tags=TAGS,
    summary="The evidence to re-verify: round, machine, challenge, signed report",
    responses=responses(200, TranscriptOut, 404, 422),
)
def get_transcript(machine_id: MachineId, round_no: RoundNo, svc: Svc) -> TranscriptOut:
    return TranscriptOut(**logic.transcript(svc, machine_id, round_no))


@router.get(
    "/rounds/<machine_id>/<round_no>/capacity",
    tags=TAGS,
    summary="The capacity session to re-verify (a drawn member of the open round; signed GET)",
    responses=responses(200, CapacitySessionOut, 401, 403, 404, 409, 422),
)
def get_capacity_session(
    machine_id: MachineId, round_no: RoundNo, signer: Signer, svc: Svc
) -> CapacitySessionOut:
    return CapacitySessionOut(**logic.capacity_session(svc, signer, machine_id, round_no))


@router.post(
    "/rounds/<machine_id>/<round_no>/commit",
    tags=TAGS,
    summary="Commit blake2_128 of the findings",
    responses=responses(200, VoteOut, 401, 403, 404, 409, 422),
)
def commit_vote(
    machine_id: MachineId, round_no: RoundNo, body: CommitIn, signer: Signer, svc: Svc
) -> VoteOut:
    r = logic.commit(svc, signer, machine_id, round_no, body.commit_hash)
    return _vote_out(svc, r, signer.keyid)


@router.post(
    "/rounds/<machine_id>/<round_no>/reveal",
    tags=TAGS,
    summary="Reveal the committed findings",
    responses=responses(200, VoteOut, 401, 403, 404, 409, 422),
)
def reveal_vote(
    machine_id: MachineId, round_no: RoundNo, body: RevealIn, signer: Signer, svc: Svc
) -> VoteOut:
    r = logic.reveal(svc, signer, machine_id, round_no, body.info, body.live_check)
    return _vote_out(svc, r, signer.keyid)


@router.post(
    "/rounds/<machine_id>/<round_no>/resolution",
    tags=TAGS,
    summary="Settle a disputed round: the committee's or the service's findings (operator key only)",
    responses=responses(200, RoundOut, 401, 403, 404, 409, 422),
)
def resolve_round(
    machine_id: MachineId, round_no: RoundNo, body: ResolutionIn, signer: Signer, svc: Svc
) -> RoundOut:
    r = logic.resolve_dispute(svc, signer, machine_id, round_no, body.accept, body.note)
    return RoundOut(**r.published(svc.clock.now()))
