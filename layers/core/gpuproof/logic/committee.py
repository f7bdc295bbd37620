"""The verifier committee's use cases: members, the draw, commit–reveal and the tally to a verdict.

The pure rules live in `gpuproof.committee` (beacon, draw, windows, tally, findings); this module
reads and writes through the `CommitteeStore` port, and every state change is one conditional
write there (a beacon value is used once, a round closes once, a verdict is written once).

Deliberate difference from DBC: a round needs at least `MIN_REVEALS` (2) reveals to decide
(DBC lets a single revealer decide; reference/dbc.md lists that as a weak point).
"""

from __future__ import annotations

import base64
import hmac
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from gpuproof.claim import ClaimError, stored_capacity_params, verified_claim
from gpuproof.committee.beacon import HashChainBeacon
from gpuproof.committee.draw import COMMITTEE_SIZE, Member, eligible_accounts, pool_digest, select_indices
from gpuproof.committee.findings import findings_from_report
from gpuproof.committee.tally import Tally, tally
from gpuproof.committee.windows import Phase, RoundWindows
from gpuproof.errors import Rejection, raise_if
from gpuproof.evidence import facts_from_verification
from gpuproof.logic.capacity import load_session, openings_reference, session_doc
from gpuproof.logic.ports import Clock, TranscriptStore
from gpuproof.logic.records import Challenge, Machine, StoredReport, Verdict, VerdictResult, Vote
from gpuproof.logic.states import MachineState
from gpuproof.protocol.capacity.models import OPENINGS_MEDIA_TYPE, OPENINGS_SUFFIX
from gpuproof.protocol.capacity.openings import INLINE_ENCODING
from gpuproof.protocol.dbc_commit import CommitteeUploadInfo
from gpuproof.protocol.delivery import is_reference, ref_parts, transcript_key
from gpuproof.protocol.httpsig import SignedRequest
from gpuproof.protocol.live import LiveCheck
from gpuproof.protocol.reasons import Reason
from gpuproof.protocol.report import SignedReport
from gpuproof.protocol.ss58 import account_key_or_none

MIN_REVEALS = 2
ACTIVE = "active"
RETIRED = "retired"
OPEN = "open"
CLOSED = "closed"
# A confirmed majority whose findings differ from the service's: no verdict until the operator
# settles it (`resolve_dispute`, then the sweeper's `settle_resolved_disputes`).
DISPUTED = "disputed"
ACCEPT_COMMITTEE = "committee"
ACCEPT_SERVICE = "service"
# The sorted eligible pool is stored on the round (so anyone can recompute the draw) up to this
# many accounts; above it only its digest and size are stored (DynamoDB items stop at 400 KB).
POOL_PUBLISH_LIMIT = 2000
DRAWABLE = (MachineState.auto_verified, MachineState.no_consensus)
MAX_LINKED_ACCOUNTS = 32


# ------------------------------------------------------------------------------------ records
@dataclass
class CommitteeMember:
    account: str
    linked_accounts: list[str]
    registered_at: float
    status: str = ACTIVE
    in_flight: int = 0
    # Admission (docs/decisions.md): only members the operator key admitted are ever drawn.
    admitted: bool = False
    admitted_at: float | None = None


@dataclass
class BeaconState:
    tip: str
    length: int
    next_index: int


@dataclass
class CommitteeRound:
    """One round: the draw's published data, the votes, and (once closed) the result."""

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
    expected_info: dict[str, Any] | None
    expected_problems: list[dict[str, str]]
    performance_index: float | None
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)
    reveals: dict[str, dict[str, Any]] = field(default_factory=dict)
    commit_hashes: list[str] = field(default_factory=list)
    result: str | None = None
    tally: dict[str, Any] | None = None
    closed_at: float | None = None
    resolution: dict[str, Any] | None = None
    # When the sweeper looks at this open round next (ByDue index); None once closed.
    due_at: float | None = None
    """A disputed round's settlement: {accept: committee | service, note, by, at}."""

    @property
    def windows(self) -> RoundWindows:
        return RoundWindows(self.booked_at, self.scale)

    @property
    def all_committed(self) -> bool:
        return set(self.members) <= set(self.commits)

    @property
    def all_revealed(self) -> bool:
        return set(self.members) <= set(self.reveals)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def commits_open(self, now: float) -> bool:
        return (
            self.status == OPEN and self.windows.phase(now, all_committed=self.all_committed) is Phase.commit
        )

    def published(self, now: float) -> dict[str, Any]:
        """The round as anyone may read it. While commits are open the service's own findings
        (`expected_info`, `expected_problems`) are withheld: a member who could read them would
        copy them instead of checking the evidence (`expected_hidden` says so)."""
        doc = self.as_dict()
        hidden = self.commits_open(now)
        if hidden:
            doc["expected_info"] = None
            doc["expected_problems"] = []
        doc["expected_hidden"] = hidden
        # Which members ran their own live check of the machine, and what they measured.
        doc["live_checks"] = {a: r["live_check"] for a, r in self.reveals.items() if r.get("live_check")}
        return doc


# ------------------------------------------------------------------------------------ ports
class CommitteeStore(Protocol):
    def nonce_used(self, request: SignedRequest) -> bool: ...

    def get_member(self, account: str) -> CommitteeMember | None: ...

    def list_members(self) -> list[CommitteeMember]: ...

    def register_member(self, member: CommitteeMember, request: SignedRequest) -> None: ...

    def retire_member(self, account: str, request: SignedRequest) -> None: ...

    def set_admission(self, account: str, admitted: bool, now: float, request: SignedRequest) -> None:
        """Admit (or revoke) a registered member; consumes the operator's request nonce."""

    def get_round(self, machine_id: str, round_no: int) -> CommitteeRound | None: ...

    def latest_round(self, machine_id: str) -> CommitteeRound | None: ...

    def open_rounds(self) -> list[CommitteeRound]: ...

    def due_rounds(self, now: float) -> list[CommitteeRound]:
        """Open rounds whose due_at <= now (the ByDue index), each re-read consistently."""

    def reschedule(self, round_: CommitteeRound, due_at: float) -> bool:
        """Set an open round's next due_at, on condition that it still holds the one read (a
        reveal meanwhile made it due now). False when it changed."""

    def rounds_of_member(self, account: str) -> list[CommitteeRound]: ...

    def rounds_of_machine(self, machine_id: str, limit: int = 50) -> list[CommitteeRound]: ...

    def beacon_state(self) -> BeaconState | None: ...

    def init_beacon(self, tip: str, length: int, now: float) -> BeaconState:
        """Publish the tip once (conditional put); returns what is stored."""

    def record_draw(self, round_: CommitteeRound, previous_state: MachineState) -> None:
        """Atomically: consume beacon index round_.beacon_index, put the round, move the machine
        to committee, add one in-flight round to each member (under the cap). Raises Rejection."""

    def record_commit(
        self, round_: CommitteeRound, account: str, commit_hash: str, now: float, request: SignedRequest
    ) -> None: ...

    def record_reveal(
        self,
        round_: CommitteeRound,
        account: str,
        info: dict[str, Any],
        now: float,
        request: SignedRequest,
        live_check: dict[str, Any] | None = None,
    ) -> None:
        """The reveal, with the member's live-check result when it ran one (its own figures)."""
        ...

    def close_round(
        self,
        round_: CommitteeRound,
        verdict: Verdict | None,
        machine_state: MachineState,
        reasons: list[dict[str, str]],
    ) -> bool:
        """Atomically: round open → round_.status (closed, or disputed with no verdict), verdict
        put (must not exist), machine committee → machine_state, members' in-flight −1. False
        when another sweep already closed it."""

    def disputed_rounds(self) -> list[CommitteeRound]: ...

    def record_resolution(
        self, round_: CommitteeRound, resolution: dict[str, Any], request: SignedRequest
    ) -> None:
        """The operator's settlement on a disputed round not yet resolved; consumes its nonce."""

    def settle_dispute(
        self,
        round_: CommitteeRound,
        verdict: Verdict,
        machine_state: MachineState,
        reasons: list[dict[str, str]],
    ) -> bool:
        """Atomically: round disputed (resolved) → closed, verdict put (must not exist), machine
        disputed → machine_state. False when another sweep already settled it."""

    def machines_awaiting_draw(self) -> list[Machine]: ...

    def set_state_reasons(self, machine_id: str, state: str, reasons: list[dict[str, str]]) -> bool:
        """Store why a machine in `state` waits, provided it is still in `state` and its reasons
        differ; True when they changed (so the caller logs a reason once, not every tick)."""

    def get_machine(self, machine_id: str) -> Machine | None: ...

    def get_report(self, machine_id: str, challenge_id: str) -> StoredReport | None: ...

    def get_challenge(self, challenge_id: str) -> Challenge | None: ...


@dataclass(frozen=True)
class CommitteeServices:
    store: CommitteeStore
    clock: Clock
    window_scale: float = 1.0
    max_in_flight: int = 10
    min_reveals: int = MIN_REVEALS
    allow_cpu_backend: bool = False
    beacon: HashChainBeacon | None = None
    pool_publish_limit: int = POOL_PUBLISH_LIMIT
    transcripts: TranscriptStore | None = None
    operator_key: str | None = None
    """Ed25519 public key hex of the operator (COMMITTEE_OPERATOR_KEY): admits members, settles
    disputes. None: nobody can be admitted, so no committee is ever drawn."""


# A member's presigned GET of a transcript lasts this long: it downloads at once.
TRANSCRIPT_URL_TTL_S = 3600


# ------------------------------------------------------------------------------------ members
def _nonce_reasons(svc: CommitteeServices, request: SignedRequest) -> list[Reason]:
    if svc.store.nonce_used(request):
        return [Reason("replayed_nonce", "this request nonce was already used", "nonce")]
    return []


def linked_account_keys(linked_accounts: Sequence[str]) -> tuple[list[str], list[Reason]]:
    """Each linked account as its public key hex (SS58 of any prefix or hex accepted), sorted and
    de-duplicated, with a reason for every one that names no key and for too many."""
    reasons = []
    if len(linked_accounts) > MAX_LINKED_ACCOUNTS:
        reasons.append(
            Reason(
                "too_many_linked_accounts",
                f"{len(linked_accounts)} linked accounts; at most {MAX_LINKED_ACCOUNTS}",
                "linked_accounts",
            )
        )
    keys = set()
    for i, account in enumerate(linked_accounts):
        key = account_key_or_none(account)
        if key is None:
            reasons.append(
                Reason(
                    "linked_account_invalid",
                    f"{account[:64]!r} is neither an SS58 address with a valid checksum nor a 32-byte "
                    "public key in hex",
                    f"linked_accounts.{i}",
                )
            )
        else:
            keys.add(key)
    return sorted(keys), reasons


def register_member(
    svc: CommitteeServices, request: SignedRequest, account: str, linked_accounts: Sequence[str]
) -> CommitteeMember:
    """A member proves its key by signing the request; its linked accounts are in the signed body.
    It joins unadmitted: it is drawn only once the operator admitted it (`admit_member`)."""
    reasons = []
    if request.keyid != account:
        reasons.append(
            Reason("key_mismatch", "the request is signed by another key than this account's", "keyid")
        )
    reasons += _nonce_reasons(svc, request)
    if svc.store.get_member(account) is not None:
        reasons.append(Reason("member_exists", "this account is already a committee member", "account"))
    linked, linked_reasons = linked_account_keys(linked_accounts)
    reasons += linked_reasons
    raise_if(reasons)
    member = CommitteeMember(account, linked, svc.clock.now())
    svc.store.register_member(member, request)
    return member


def _operator_reasons(svc: CommitteeServices, request: SignedRequest, what: str) -> list[Reason]:
    if not svc.operator_key:
        return [
            Reason(
                "operator_not_configured",
                f"no operator key is configured (template parameter CommitteeOperatorKey): nobody can {what}",
                "keyid",
            )
        ]
    if not hmac.compare_digest(request.keyid.encode(), svc.operator_key.encode()):
        return [Reason("not_operator", f"only the operator key may {what}", "keyid")]
    return []


def admit_member(
    svc: CommitteeServices, request: SignedRequest, account: str, admitted: bool = True
) -> CommitteeMember:
    """The operator admits a registered member into the draw (or revokes it: never drawn again;
    rounds it is booked in still expect its votes). The request is signed by the operator key."""
    reasons = _operator_reasons(svc, request, "admit committee members")
    if reasons:
        raise Rejection(reasons)
    reasons += _nonce_reasons(svc, request)
    member = svc.store.get_member(account)
    if member is None:
        reasons.insert(0, Reason("unknown_member", "no committee member has this account", "account"))
    raise_if(reasons)
    assert member is not None
    now = svc.clock.now()
    svc.store.set_admission(account, admitted, now, request)
    member.admitted, member.admitted_at = admitted, now if admitted else None
    return member


def retire_member(svc: CommitteeServices, request: SignedRequest, account: str) -> CommitteeMember:
    """The member leaves the pool (no new draws); rounds it is booked in still expect its votes."""
    member = svc.store.get_member(account)
    reasons = []
    if member is None:
        reasons.append(Reason("unknown_member", "no committee member has this account", "account"))
    if request.keyid != account:
        reasons.append(Reason("key_mismatch", "only the member itself can retire", "keyid"))
    reasons += _nonce_reasons(svc, request)
    raise_if(reasons)
    assert member is not None
    svc.store.retire_member(account, request)
    member.status = RETIRED
    return member


def _member_index(round_: CommitteeRound, account: str) -> int:
    return round_.members.index(account)


def assignment_view(round_: CommitteeRound, account: str, now: float) -> dict[str, Any]:
    w = round_.windows
    index = _member_index(round_, account)
    return {
        "machine_id": round_.machine_id,
        "round": round_.round,
        "status": round_.status,
        "phase": CLOSED
        if round_.status != OPEN
        else str(w.phase(now, all_committed=round_.all_committed, all_revealed=round_.all_revealed)),
        "member_index": index,
        "slots": [list(s) for s in w.member_windows(index)],
        "booked_at": round_.booked_at,
        "commit_deadline": round_.commit_deadline,
        "reveal_deadline": round_.reveal_deadline,
        "committed": account in round_.commits,
        "revealed": account in round_.reveals,
        "result": round_.result,
    }


def member_record(svc: CommitteeServices, account: str) -> CommitteeMember:
    """A member's own record (status, admission, in-flight rounds), shown with its assignments."""
    member = svc.store.get_member(account)
    if member is None:
        raise Rejection([Reason("unknown_member", "no committee member has this account", "account")])
    return member


def assignments(svc: CommitteeServices, account: str) -> list[dict[str, Any]]:
    member_record(svc, account)
    now = svc.clock.now()
    rounds = sorted(svc.store.rounds_of_member(account), key=lambda r: r.booked_at)
    return [assignment_view(r, account, now) for r in rounds]


# ------------------------------------------------------------------------------------ reads
def get_round(svc: CommitteeServices, machine_id: str, round_no: int) -> CommitteeRound:
    round_ = svc.store.get_round(machine_id, round_no)
    if round_ is None:
        raise Rejection(
            [Reason("unknown_round", "no committee round with this machine_id and round", "round")]
        )
    return round_


def published_round(svc: CommitteeServices, machine_id: str, round_no: int) -> dict[str, Any]:
    """GET /rounds/{machine_id}/{round}: the round with the service's findings hidden while
    commits are open (`CommitteeRound.published`)."""
    return get_round(svc, machine_id, round_no).published(svc.clock.now())


def beacon_info(svc: CommitteeServices) -> BeaconState:
    state = svc.store.beacon_state()
    if state is None:
        raise Rejection(
            [Reason("beacon_not_started", "the beacon tip is published at the sweeper's first run")]
        )
    return state


def transcript(svc: CommitteeServices, machine_id: str, round_no: int) -> dict[str, Any]:
    """Everything a member needs to re-verify the evidence itself: the round, the machine's
    owner and region, the challenge (nonce, parameters, service-clock times, the pair draw's
    secret), the stored signed report byte for byte, with the automated stage's result, and,
    where the report references an uploaded transcript, a presigned GET of its object (the
    member checks its size and SHA-256 against the signed reference itself)."""
    round_ = get_round(svc, machine_id, round_no)
    machine = svc.store.get_machine(machine_id)
    report = svc.store.get_report(machine_id, round_.challenge_id)
    challenge = svc.store.get_challenge(round_.challenge_id)
    if machine is None or report is None:
        raise Rejection([Reason("unknown_report", "the round's report is no longer stored", "round")])
    proof = (report.signed_report.get("report") or {}).get("proof")
    delivered = None
    if is_reference(proof) and svc.transcripts is not None:
        delivered = {
            "url": svc.transcripts.download_url(machine_id, round_.challenge_id, TRANSCRIPT_URL_TTL_S),
            "expires_at": svc.clock.now() + TRANSCRIPT_URL_TTL_S,
            "key": transcript_key(machine_id, round_.challenge_id),
        }
    return {
        "transcript": delivered,
        "round": round_.published(svc.clock.now()),
        "machine": {
            "machine_id": machine.machine_id,
            "owner": machine.owner,
            "region": machine.region,
            "state": machine.state.value,
            # Where a member's live check reaches the machine's agent (its signed heartbeat's claim).
            "live_endpoint": machine.live_endpoint,
        },
        "challenge": None
        if challenge is None
        else {
            "challenge_id": challenge.challenge_id,
            "nonce": challenge.nonce,
            "issued_at": challenge.issued_at,
            "expires_at": challenge.expires_at,
            "params": challenge.params,
            "commitment_received_at": challenge.commitment_received_at,
            "pairs": challenge.pairs,
            "pairs_secret": challenge.pairs_secret,
        },
        "report": {
            "challenge_id": report.challenge_id,
            "received_at": report.received_at,
            "report_sha256": report.report_sha256,
            "verification": report.verification,
            "signed_report": report.signed_report,
        },
    }


NO_CAPACITY_SESSION = "capacity_session_missing"


def _no_session(message: str) -> Rejection:
    return Rejection([Reason(NO_CAPACITY_SESSION, message, "round")])


def capacity_session(
    svc: CommitteeServices, request: SignedRequest, machine_id: str, round_no: int
) -> dict[str, Any]:
    """GET /rounds/{machine_id}/{round}/capacity, for a drawn member of the open round only (signed):
    the capacity session the service recorded for the round's challenge (the phase nonce, params,
    the signed commitment, every round's nonce, service-clock times and answer roots, the draw
    secret) and the host's openings: inline as stored (zlib, base64), or a presigned GET of each
    uploaded object (one, or two parts: `urls` in order) with the reference the size and SHA-256
    of their concatenation are checked against. The member
    re-verifies the phase with the same verifier (`gpuproof.committee.capacity`)."""
    round_ = get_round(svc, machine_id, round_no)
    if request.keyid not in round_.members:
        raise Rejection(
            [Reason("not_assigned", "the signer is not a member of this round's committee", "keyid")]
        )
    if round_.status != OPEN:
        raise Rejection([Reason("round_closed", f"the round is closed ({round_.result})", "round")])
    challenge = svc.store.get_challenge(round_.challenge_id)
    if challenge is None:
        raise _no_session("the round's challenge is no longer stored")
    try:
        params = stored_capacity_params(challenge.params)
    except ValueError:
        params = None
    if params is None or challenge.capacity is None:
        raise _no_session("the round's challenge has no capacity session (no phase, or never opened)")
    try:
        nonce, session = load_session(params, challenge.capacity)
    except (KeyError, TypeError, ValueError) as exc:
        raise _no_session(f"the stored capacity session does not parse: {exc}") from exc
    ref = openings_reference(challenge)
    openings: dict[str, Any] | None = None
    if challenge.capacity_openings is not None:
        openings = {
            "delivery": "inline",
            "media_type": OPENINGS_MEDIA_TYPE,
            "encoding": INLINE_ENCODING,
            "data": base64.b64encode(challenge.capacity_openings).decode("ascii"),
        }
    elif ref is not None and svc.transcripts is not None:
        parts = [suffix for suffix, _size in ref_parts(ref, OPENINGS_SUFFIX)]  # one object, or two
        openings = {
            "delivery": "upload",
            "media_type": OPENINGS_MEDIA_TYPE,
            "urls": [
                svc.transcripts.download_url(machine_id, challenge.challenge_id, TRANSCRIPT_URL_TTL_S, suffix)
                for suffix in parts
            ],
            "expires_at": svc.clock.now() + TRANSCRIPT_URL_TTL_S,
            "keys": [transcript_key(machine_id, challenge.challenge_id) + suffix for suffix in parts],
            "reference": ref.model_dump(mode="json", exclude_none=True),
        }
    doc = session_doc(nonce, session)
    return {
        "machine_id": machine_id,
        "round": round_no,
        "challenge_id": challenge.challenge_id,
        "params": params.model_dump(mode="json"),
        "clock": "service",
        **{k: doc[k] for k in SESSION_FIELDS},
        "openings": openings,
    }


SESSION_FIELDS = (
    "nonce",
    "opened_at",
    "signed_commitment",
    "commitment_received_at",
    "rounds",
    "draw_secret",
)


# ------------------------------------------------------------------------------------ votes
def _voting_round(
    svc: CommitteeServices, request: SignedRequest, machine_id: str, round_no: int
) -> tuple[CommitteeRound, list[Reason]]:
    round_ = get_round(svc, machine_id, round_no)
    if request.keyid not in round_.members:
        raise Rejection(
            [Reason("not_assigned", "the signer is not a member of this round's committee", "keyid")]
        )
    reasons = _nonce_reasons(svc, request)
    if round_.status != OPEN:
        reasons.append(Reason("round_closed", f"the round is closed ({round_.result})", "round"))
    return round_, reasons


def commit(
    svc: CommitteeServices, request: SignedRequest, machine_id: str, round_no: int, commit_hash: str
) -> CommitteeRound:
    round_, reasons = _voting_round(svc, request, machine_id, round_no)
    account = request.keyid
    now = svc.clock.now()
    commit_hash = commit_hash.lower().removeprefix("0x")
    if account in round_.commits:
        reasons.append(
            Reason("already_committed", "this member already committed in this round", "commit_hash")
        )
    elif not round_.windows.may_commit(now, all_committed=round_.all_committed):
        reasons.append(
            Reason(
                "commit_window_closed",
                f"commits closed at {round_.commit_deadline:.3f} (now {now:.3f})",
                "commit_hash",
            )
        )
    if commit_hash in round_.commit_hashes:
        reasons.append(
            Reason("duplicate_commit", "another member already committed this exact hash", "commit_hash")
        )
    raise_if(reasons)
    svc.store.record_commit(round_, account, commit_hash, now, request)
    round_.commits[account] = {"commit_hash": commit_hash, "at": now}
    return round_


def reveal(
    svc: CommitteeServices,
    request: SignedRequest,
    machine_id: str,
    round_no: int,
    info: CommitteeUploadInfo,
    live_check: LiveCheck | None = None,
) -> CommitteeRound:
    """Record the member's revealed findings; `live_check` is its own live check of the machine
    (docs/committee.md "Live check"), kept with the reveal and published in the round. A reveal
    whose live check did not verify must not support the machine (`live_check_inconsistent`)."""
    round_, reasons = _voting_round(svc, request, machine_id, round_no)
    account = request.keyid
    now = svc.clock.now()
    w = round_.windows
    if account not in round_.commits:
        reasons.append(Reason("not_committed", "this member has no commit in this round", "commit"))
    elif account in round_.reveals:
        reasons.append(Reason("already_revealed", "this member already revealed in this round", "info"))
    elif now >= w.reveal_deadline:
        reasons.append(Reason("reveal_window_closed", f"reveals closed at {w.reveal_deadline:.3f}", "info"))
    elif not w.may_reveal(now, all_committed=round_.all_committed):
        reasons.append(
            Reason(
                "reveal_not_open",
                f"the reveal phase opens when every member has committed or at {w.commit_deadline:.3f}",
                "info",
            )
        )
    if info.machine_id != machine_id:
        reasons.append(
            Reason("reveal_machine_mismatch", "the revealed info names another machine", "info.machine_id")
        )
    commit_entry = round_.commits.get(account)
    if commit_entry is not None and not info.matches_commit(str(commit_entry["commit_hash"])):
        reasons.append(
            Reason("reveal_mismatch", "blake2_128 of the revealed info is not this member's commit", "info")
        )
    if live_check is not None and not live_check.verified and not live_check.shadow and info.is_support:
        reasons.append(
            Reason(
                "live_check_inconsistent",
                "the revealed info supports the machine but the member's own live check did not verify",
                "live_check",
            )
        )
    raise_if(reasons)
    doc = info.model_dump(mode="json")
    live = None if live_check is None else live_check.model_dump(mode="json", exclude_none=True)
    svc.store.record_reveal(round_, account, doc, now, request, live)
    round_.reveals[account] = {"info": doc, "at": now, **({"live_check": live} if live else {})}
    return round_


# ------------------------------------------------------------------------------------ draw
DRAW_FAILED = "draw_failed"  # the outcome's code when drawing one machine raised


@dataclass
class DrawOutcome:
    machine_id: str
    outcome: str  # drawn | waiting | skipped | conflict | failed
    round: int | None = None
    members: list[str] = field(default_factory=list)
    detail: str = ""
    # Why the machine waits (its state_reasons), and whether this tick is the first to say so.
    reason: dict[str, str] | None = None
    announced: bool = False


# Why a machine waits for its draw: a stable code, the message, and the owner's next step.
POOL_TOO_SMALL = "committee_pool_too_small"


def waiting_reason(eligible: int, needed: int, excluded: int) -> dict[str, str]:
    fresh = f" ({excluded} members of the previous round are excluded)" if excluded else ""
    return {
        "code": POOL_TOO_SMALL,
        "message": f"{eligible} eligible committee members, {needed} needed for a draw{fresh}",
        "next_step": (
            "nothing to do on the machine: the draw happens at the first sweeper tick after enough "
            "members are admitted and not at their cap; the committee operator admits members "
            "(`gpuproof-ops admit`)"
        ),
    }


def failed_reason(detail: str) -> dict[str, str]:
    return {
        "code": DRAW_FAILED,
        "message": f"the committee draw of this machine failed: {detail}"[:500],
        "next_step": "nothing to do on the machine: the operator is alerted; the draw is retried each tick",
    }


def ensure_beacon(svc: CommitteeServices) -> BeaconState:
    if svc.beacon is None:
        raise RuntimeError("the draw needs the beacon (BEACON_SEED)")
    tip = svc.beacon.tip.hex()
    state = svc.store.beacon_state() or svc.store.init_beacon(tip, svc.beacon.length, svc.clock.now())
    if state.tip != tip or state.length != svc.beacon.length:
        raise RuntimeError(
            "the stored beacon tip is not this seed's: the seed changed after its tip was published"
        )
    return state


def publish_beacon_tip(svc: CommitteeServices) -> BeaconState | None:
    """Every sweeper tick, before any draw: the tip is stored (once, conditionally) the first time,
    so `GET /beacon` answers from the first tick on, whether or not anything can be drawn yet.
    None where this service holds no seed."""
    if svc.beacon is None:
        return None
    return ensure_beacon(svc)


def draw_machine(svc: CommitteeServices, machine: Machine, members: list[CommitteeMember]) -> DrawOutcome:
    mid = machine.machine_id
    previous = svc.store.latest_round(mid)
    if previous is not None and previous.status == OPEN:
        return DrawOutcome(mid, "skipped", previous.round, detail="a round is already open")
    if machine.last_challenge_id is None:
        return DrawOutcome(mid, "skipped", detail="no challenge")
    stored = svc.store.get_report(mid, machine.last_challenge_id)
    if stored is None or not (stored.verification or {}).get("passed"):
        return DrawOutcome(mid, "skipped", detail="no report that passed the automated stage")
    try:
        claim = verified_claim(stored.verification or {})
    except ClaimError as exc:
        return DrawOutcome(mid, "skipped", detail="; ".join(r.message for r in exc.reasons))
    # NoConsensus: redraw with fresh members (none of the previous round's).
    excluded = (
        sorted(previous.members)
        if previous is not None and machine.state == MachineState.no_consensus
        else []
    )
    pool = [
        Member(m.account, frozenset(m.linked_accounts))
        for m in members
        if m.status == ACTIVE and m.admitted and m.account not in excluded
    ]
    in_flight = {m.account: m.in_flight for m in members}
    eligible = eligible_accounts(pool, owner=machine.owner, in_flight=in_flight, cap=svc.max_in_flight)
    if len(eligible) < COMMITTEE_SIZE:
        return DrawOutcome(
            mid,
            "waiting",
            detail=f"{len(eligible)} eligible members, {COMMITTEE_SIZE} needed",
            reason=waiting_reason(len(eligible), COMMITTEE_SIZE, len(excluded)),
        )
    beacon = ensure_beacon(svc)
    assert svc.beacon is not None
    if beacon.next_index > beacon.length:
        raise RuntimeError("the beacon chain is exhausted: publish a new tip (new BEACON_SEED)")
    value = svc.beacon.value(beacon.next_index)
    round_no = 1 if previous is None else previous.round + 1
    drawn = [eligible[i] for i in select_indices(value, mid, round_no, len(eligible), COMMITTEE_SIZE)]
    signed = SignedReport.model_validate(stored.signed_report)
    findings = findings_from_report(
        mid,
        machine.region,
        signed.report,
        claim,
        allow_cpu_backend=svc.allow_cpu_backend,
        facts=facts_from_verification(stored.verification),
    )
    expected = None if findings.fields is None else {**findings.fields, "is_support": findings.supports}
    now = svc.clock.now()
    w = RoundWindows(now, svc.window_scale)
    round_ = CommitteeRound(
        machine_id=mid,
        round=round_no,
        status=OPEN,
        owner=machine.owner,
        region=machine.region,
        challenge_id=stored.challenge_id,
        evidence_digest=stored.report_sha256,
        members=drawn,
        excluded=excluded,
        booked_at=now,
        scale=svc.window_scale,
        commit_deadline=w.commit_deadline,
        reveal_deadline=w.reveal_deadline,
        beacon_index=beacon.next_index,
        beacon_value=value.hex(),
        beacon_tip=beacon.tip,
        pool_digest=pool_digest(eligible),
        pool_size=len(eligible),
        pool=eligible if len(eligible) <= svc.pool_publish_limit else None,
        cap=svc.max_in_flight,
        expected_info=expected,
        expected_problems=[r.as_dict() for r in findings.problems],
        performance_index=findings.performance_index,
    )
    try:
        svc.store.record_draw(round_, machine.state)
    except Rejection as exc:
        return DrawOutcome(mid, "conflict", detail="; ".join(r.message for r in exc.reasons))
    return DrawOutcome(mid, "drawn", round_no, drawn)


def draw_due_machines(svc: CommitteeServices) -> list[DrawOutcome]:
    """Draw a committee for every machine that passed the automated stage or lost its consensus.
    Oldest first; each draw consumes the next beacon value; a conflict is retried next tick."""
    machines = sorted(svc.store.machines_awaiting_draw(), key=lambda m: m.updated_at)
    if not machines:
        return []
    outcomes = []
    members = svc.store.list_members()
    for machine in machines:
        try:
            outcome = draw_machine(svc, machine, members)
        except Exception as exc:  # one machine's data must never stop another machine's draw
            logging.getLogger(__name__).exception(
                "draw failed", extra={"machine_id": machine.machine_id, "code": DRAW_FAILED}
            )
            outcome = DrawOutcome(
                machine.machine_id, "failed", detail=f"{DRAW_FAILED}: {type(exc).__name__}: {exc}"[:500]
            )
            outcome.reason = failed_reason(f"{type(exc).__name__}")
        if outcome.reason is not None:
            outcome.announced = svc.store.set_state_reasons(
                machine.machine_id, machine.state.value, [outcome.reason]
            )
        outcomes.append(outcome)
        if outcome.outcome == "drawn":
            drawn = set(outcome.members)
            for m in members:
                if m.account in drawn:
                    m.in_flight += 1
    return outcomes


# ------------------------------------------------------------------------------------ tally
def due_for_tally(round_: CommitteeRound, now: float) -> bool:
    """DBC's rule (reveal deadline, or everyone revealed, or nobody committed by the commit
    deadline) plus one shortcut: once commits are closed and every member that committed has
    revealed, no further reveal can come."""
    w = round_.windows
    if w.may_tally(now, all_revealed=round_.all_revealed, any_committed=bool(round_.commits)):
        return True
    commits_closed = round_.all_committed or now >= w.commit_deadline
    return commits_closed and bool(round_.commits) and set(round_.commits) <= set(round_.reveals)


def next_due_at(round_: CommitteeRound, now: float) -> float:
    """When time alone could next make a round due: its commit deadline (nobody committed, or
    every committer revealed), else its reveal deadline (always due then). A reveal makes a round
    due at once (`record_reveal` sets due_at to its time), so no other moment needs a look."""
    w = round_.windows
    return w.commit_deadline if now < w.commit_deadline else w.reveal_deadline


def _votes(t: Tally, booked: Sequence[str]) -> list[dict[str, str]]:
    vote = {
        **{a: Vote.agreeing for a in t.agreeing},
        **{a: Vote.dissenting for a in t.dissenting},
        **{a: Vote.absent for a in t.absent},
    }
    # With fewer than MIN_REVEALS reveals the tally names no agreeing or dissenting member; a member
    # that revealed then is recorded as agreeing: it did its duty, and NoConsensus pays nobody.
    return [{"account": a, "vote": str(vote.get(a, Vote.agreeing))} for a in booked]


def _verdict_upload_info(t: Tally, round_: CommitteeRound, result: VerdictResult) -> dict[str, Any]:
    """The CommitteeUploadInfo a verdict carries to the chain (rand_str left out).

    Confirmed: the majority's revealed info. Refused and NoConsensus: the majority's info when
    there is one, else the service's own findings, with is_support false — DBC's payload always
    names the machine's facts, whatever the outcome.
    """
    if t.decided_info is not None:
        info = t.decided_info.model_dump(mode="json", exclude={"rand_str"})
    elif round_.expected_info is not None:
        info = {k: v for k, v in round_.expected_info.items() if k != "rand_str"}
    else:
        return {}
    if result is not VerdictResult.confirmed:
        info["is_support"] = False
    return info


def close_round(svc: CommitteeServices, round_: CommitteeRound) -> Verdict | None:
    reveals = {a: CommitteeUploadInfo.model_validate(r["info"]) for a, r in round_.reveals.items()}
    t = tally(round_.members, reveals, min_reveals=svc.min_reveals)
    now = svc.clock.now()
    result = VerdictResult(t.result.value)
    upload_info = _verdict_upload_info(t, round_, result)
    verdict = Verdict(
        verdict_id=Verdict.id_for(round_.machine_id, round_.round),
        machine_id=round_.machine_id,
        round=round_.round,
        result=result,
        upload_info=upload_info,
        committee=_votes(t, round_.members),
        performance_index=round_.performance_index if result is VerdictResult.confirmed else None,
        evidence_digest=round_.evidence_digest,
        decided_at=now,
    )
    state = {
        VerdictResult.confirmed: MachineState.confirmed,
        VerdictResult.refused: MachineState.refused,
        VerdictResult.no_consensus: MachineState.no_consensus,
    }[result]
    reasons: list[dict[str, str]] = []
    if result is VerdictResult.refused:
        reasons = [
            Reason(
                "committee_refused", f"{len(t.agreeing)} of {len(round_.members)} committee members refused"
            ).as_dict()
        ]
    elif result is VerdictResult.no_consensus:
        reasons = [Reason("committee_no_consensus", f"{t.reason}; redrawn with fresh members").as_dict()]
    matches = _matches_expected(upload_info, round_.expected_info)
    round_.result = result.value
    round_.tally = {
        "result": result.value,
        "reason": t.reason,
        "agreeing": list(t.agreeing),
        "dissenting": list(t.dissenting),
        "absent": list(t.absent),
        "min_reveals": svc.min_reveals,
        "matches_expected": matches,
    }
    round_.closed_at = now
    round_.status = CLOSED
    if result is VerdictResult.confirmed and matches is not True:
        _dispute(svc, round_, upload_info)
        return None
    if not svc.store.close_round(round_, verdict, state, reasons):
        return None
    return verdict


def _differences(committee: dict[str, Any], service: dict[str, Any] | None) -> list[str]:
    if service is None:
        return ["the service found no supportable findings in this evidence"]
    return [
        f"{k}: committee {committee.get(k)!r}, service {v!r}"
        for k, v in sorted(service.items())
        if committee.get(k) != v
    ]


def _dispute(svc: CommitteeServices, round_: CommitteeRound, committee_view: dict[str, Any]) -> None:
    """A majority confirmed findings the service's own differ from: the round ends `disputed`,
    the machine `disputed`, and NO verdict is written (the chain publisher reads the Verdicts
    stream, so nothing reaches the chain) until an operator settles it (`resolve_dispute`)."""
    assert round_.tally is not None
    differences = _differences(committee_view, round_.expected_info)
    round_.status = DISPUTED
    round_.result = DISPUTED
    round_.tally = {
        **round_.tally,
        "result": DISPUTED,
        "committee_result": VerdictResult.confirmed.value,
        "committee_view": committee_view,
        "service_view": round_.expected_info,
        "differences": differences,
    }
    reason = Reason(
        "committee_disputed",
        f"round {round_.round}: the committee's majority confirmed findings that differ from the "
        f"service's ({'; '.join(differences)}); nothing is published until an operator settles it "
        "(gpuproof-ops resolve MACHINE --accept committee|service)",
    )
    svc.store.close_round(round_, None, MachineState.disputed, [reason.as_dict()])


# ------------------------------------------------------------------------------------ disputes
def resolve_dispute(
    svc: CommitteeServices, request: SignedRequest, machine_id: str, round_no: int, accept: str, note: str
) -> CommitteeRound:
    """The operator settles a disputed round: accept the committee's majority or the service's
    findings. Recorded on the round; the sweeper writes the verdict on its next tick."""
    reasons = _operator_reasons(svc, request, "settle disputed rounds")
    if reasons:
        raise Rejection(reasons)
    round_ = get_round(svc, machine_id, round_no)
    reasons = _nonce_reasons(svc, request)
    if accept not in (ACCEPT_COMMITTEE, ACCEPT_SERVICE):
        reasons.append(Reason("schema_invalid", "accept must be committee or service", "accept"))
    if round_.status != DISPUTED:
        reasons.insert(
            0, Reason("round_not_disputed", f"the round is {round_.status}, not disputed", "round")
        )
    elif round_.resolution is not None:
        reasons.insert(
            0, Reason("already_resolved", f"already settled: {round_.resolution['accept']}", "round")
        )
    raise_if(reasons)
    resolution = {"accept": accept, "note": note, "by": request.keyid, "at": svc.clock.now()}
    svc.store.record_resolution(round_, resolution, request)
    round_.resolution = resolution
    return round_


def settlement(round_: CommitteeRound, now: float) -> tuple[Verdict, MachineState, list[dict[str, str]]]:
    """The verdict a resolved dispute gets. `committee`: the majority's confirmed findings.
    `service`: the service's findings — confirmed when it supports them, else refused. A revealer
    agrees when its reveal is the accepted answer, otherwise dissents; absent stays absent."""
    assert round_.resolution is not None and round_.tally is not None
    accept = str(round_.resolution["accept"])
    if accept == ACCEPT_COMMITTEE:
        info = dict(round_.tally["committee_view"])
        result = VerdictResult.confirmed
    else:
        expected = round_.expected_info
        info = {} if expected is None else {k: v for k, v in expected.items() if k != "rand_str"}
        supports = bool(info.get("is_support")) and not round_.expected_problems
        result = VerdictResult.confirmed if supports else VerdictResult.refused
        if info and not supports:
            info["is_support"] = False

    def agrees(revealed: dict[str, Any]) -> bool:
        if result is VerdictResult.refused:
            return not revealed.get("is_support")
        return all(revealed.get(k) == v for k, v in info.items())

    committee = []
    for account in round_.members:
        revealed = round_.reveals.get(account)
        vote = (
            Vote.absent
            if revealed is None
            else Vote.agreeing
            if agrees(revealed["info"])
            else Vote.dissenting
        )
        committee.append({"account": account, "vote": str(vote)})
    verdict = Verdict(
        verdict_id=Verdict.id_for(round_.machine_id, round_.round),
        machine_id=round_.machine_id,
        round=round_.round,
        result=result,
        upload_info=info,
        committee=committee,
        performance_index=round_.performance_index if result is VerdictResult.confirmed else None,
        evidence_digest=round_.evidence_digest,
        decided_at=now,
    )
    state = MachineState.confirmed if result is VerdictResult.confirmed else MachineState.refused
    note = str(round_.resolution.get("note") or "")
    reason = Reason(
        "dispute_resolved",
        f"round {round_.round} was disputed; the operator accepted the {accept}'s findings: {result.value}"
        + (f" ({note})" if note else ""),
    )
    return verdict, state, [reason.as_dict()]


def settle_resolved_disputes(svc: CommitteeServices) -> list[Verdict]:
    """Write the verdict of every disputed round the operator resolved (one transaction each)."""
    verdicts = []
    for round_ in svc.store.disputed_rounds():
        if round_.resolution is None:
            continue
        now = svc.clock.now()
        verdict, state, reasons = settlement(round_, now)
        round_.status, round_.result, round_.closed_at = CLOSED, verdict.result.value, now
        round_.tally = {
            **(round_.tally or {}),
            "result": verdict.result.value,
            "resolution": round_.resolution,
        }
        if svc.store.settle_dispute(round_, verdict, state, reasons):
            verdicts.append(verdict)
    return verdicts


def _matches_expected(decided: dict[str, Any], expected: dict[str, Any] | None) -> bool | None:
    """Did the confirmed majority reveal what the service computed from the same evidence?"""
    if not decided or expected is None:
        return None
    return all(decided.get(k) == v for k, v in expected.items())


def close_due_rounds(svc: CommitteeServices) -> list[Verdict]:
    """Tally every round that is due. One round whose data makes the tally raise is logged and
    skipped (retried next tick); it never stops the other rounds' verdicts."""
    now = svc.clock.now()
    verdicts = []
    for round_ in svc.store.due_rounds(now):
        try:
            if not due_for_tally(round_, now):
                svc.store.reschedule(round_, next_due_at(round_, now))
                continue
            verdict = close_round(svc, round_)
        except Exception:  # one round's data must never stop another round's verdict
            logging.getLogger(__name__).exception(
                "tally failed", extra={"machine_id": round_.machine_id, "round": round_.round}
            )
            continue
        if verdict is not None:
            verdicts.append(verdict)
    return verdicts
