"""A committee member's own re-check of the capacity phase (docs/committee.md "The capacity phase,
re-checked"; docs/protocol.md §17.10): the service's recorded session replayed through the verifier
the service runs (`verify_capacity`, with the member's own Freivalds vectors), then compared target
by target with what the service recorded (`verification["capacity"]`) and scored (the per-input
breakdown, `verification["evidence"]`). Pure.

What the member cannot check itself: every time in the session (`opened_at`,
`commitment_received_at`, each round's `sent_at` and `received_at`) is the service's clock as the
service recorded it, and each round's answer roots are those the service says it received; the
deadlines are replayed on those figures. The commitment's signature by the machine key, the root
chain, the spots and the walks are the member's own checks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from gpuproof.claim import Claim, capacity_params_reasons, stored_capacity_params
from gpuproof.evidence import CapacityRecord, parse_capacity
from gpuproof.protocol.capacity import (
    HOST_TARGET,
    CapacityParams,
    CapacityResult,
    CapacitySession,
    RoundRecord,
    SignedCapacityCommitment,
    codes,
    verify_capacity,
)
from gpuproof.protocol.capacity.wire import OpenedTarget
from gpuproof.protocol.reasons import Reason

MISMATCH = "member_capacity_mismatch"
# Reasons that rest on the service's clock alone (its recorded times): the member replays them.
TIMING_CODES = frozenset(
    {
        codes.FILL_DEADLINE_MISSED,
        codes.CLOCK_INVALID,
        codes.ROUND_MISSING,
        codes.ROUND_DEADLINE_MISSED,
        codes.HOST_ROUND_DEADLINE_MISSED,
    }
)
# The member recomputes the service's float figures from the same recorded floats: equal up to
# the last bits of a JSON round trip.
RELATIVE_TOLERANCE = 1e-9
CLOCK_NOTE = (
    "times are the service's clock as it recorded them (phase opened, commitment received, each "
    "round sent and answered) and the answer roots are those it says it received: this member "
    "cannot time the phase and replays the deadlines on those figures; the commitment's signature, "
    "root chain, spots and walks (its own random vectors) are this member's checks"
)
Basis = Literal["rechecked", "service_proved_nothing", "not_rechecked"]


@dataclass(frozen=True)
class PhaseSession:
    """One challenge's capacity session as the service recorded it (GET /rounds/{m}/{r}/capacity)."""

    nonce: bytes
    session: CapacitySession

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> PhaseSession:
        """ValueError (pydantic's ValidationError is one) when the document is not a session."""
        params = CapacityParams.model_validate(doc["params"])
        signed = doc.get("signed_commitment")
        secret = doc.get("draw_secret")
        received = doc.get("commitment_received_at")
        session = CapacitySession(
            params,
            opened_at=float(doc["opened_at"]),
            signed=None if signed is None else SignedCapacityCommitment.model_validate(signed),
            commitment_received_at=None if received is None else float(received),
            rounds=[RoundRecord.model_validate(r) for r in doc.get("rounds") or []],
            draw_secret=None if secret is None else bytes.fromhex(str(secret)),
        )
        return cls(bytes.fromhex(str(doc["nonce"])), session)


def recheck(
    phase: PhaseSession,
    openings: Sequence[OpenedTarget] | None,
    *,
    machine_id: str,
    challenge_id: str,
    challenge_params: Mapping[str, Any],
    claim: Claim | None,
    rng: np.random.Generator | None = None,
) -> tuple[CapacityResult | None, list[Reason]]:
    """The member's own run of the phase's verifier; None with why when there is nothing to run it
    on (the same cases in which the verify worker records nothing, `logic/verification._capacity`)."""
    missing = codes.MISSING
    if claim is None:
        return None, [Reason(missing, "no claim to size the capacity phase from")]
    try:
        params = stored_capacity_params(challenge_params)
    except ValueError:
        params = None
    if params is None:
        return None, [Reason(missing, "the challenge carries no capacity phase")]
    wrong = capacity_params_reasons(challenge_params, claim)
    if wrong:
        return None, wrong
    session = phase.session
    if session.params != params:
        return None, [Reason(codes.PARAMS_MISMATCH, "the session's params are not the challenge's", "params")]
    if session.signed is None or session.commitment_received_at is None:
        return None, [Reason(missing, "no capacity commitment was received")]
    if session.draw_secret is None:
        return None, [Reason(codes.ROUND_MISSING, "the read rounds were not all answered")]
    if openings is None:
        return None, [Reason(missing, "no capacity openings were received")]
    result = verify_capacity(
        params,
        machine_id=machine_id,
        challenge_id=challenge_id,
        nonce=phase.nonce,
        signed=session.signed,
        phase_opened_at=session.opened_at,
        commitment_received_at=session.commitment_received_at,
        rounds=session.rounds,
        draw_secret=session.draw_secret,
        openings=openings,
        rng=rng,
    )
    return result, []


@dataclass(frozen=True)
class TargetView:
    """One target as one side saw it: passed, proven bytes (and, for the member, its reasons)."""

    passed: bool
    proven_bytes: int
    reasons: list[str] | None = None


@dataclass
class TargetComparison:
    target: str  # "GPU 0" or "host RAM"
    service: TargetView | None  # the service's record (None: not in it)
    breakdown: TargetView | None  # as the service's breakdown scored it (None: it scores no such input)
    member: TargetView | None  # this member's own result (None: not re-checked)
    agreed: bool
    differences: list[str] = field(default_factory=list)


@dataclass
class CapacityComparison:
    """The member's capacity re-check against the service; `record` is what the member scores with."""

    basis: Basis
    targets: list[TargetComparison]
    service_reasons: list[str]
    member_reasons: list[str]
    differences: list[str]
    record: Any  # the capacity record the member scores with (its own, or the service's that proves nothing)
    commitment_signed: bool | None
    note: str = CLOCK_NOTE

    @property
    def agreed(self) -> bool:
        return not self.differences and all(t.agreed for t in self.targets)

    @property
    def reason(self) -> str | None:
        return None if self.agreed else MISMATCH

    @property
    def timing_reasons(self) -> list[str]:
        """The member's reasons that rest on the service's recorded times."""
        return sorted({c for c in self.member_reasons if c in TIMING_CODES})

    @property
    def data_reasons(self) -> list[str]:
        """The member's reasons from its own checks of the data."""
        return sorted({c for c in self.member_reasons if c not in TIMING_CODES})

    def detail(self) -> str:
        if not self.agreed:
            found = [*self.differences, *(f"{t.target}: {d}" for t in self.targets for d in t.differences)]
            return f"{MISMATCH}: " + "; ".join(found)
        if self.basis == "service_proved_nothing":
            why = ", ".join(self.service_reasons) or "no capacity record"
            return f"the service proved nothing ({why}); neither does this member: not proven"
        proven = [t.target for t in self.targets if t.member is not None and t.member.passed]
        return (
            f"re-verified by this member: {', '.join(proven) or 'no target'} proven, as the service "
            "recorded (timings: the service's clock)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "agreed": self.agreed,
            "reason": self.reason,
            "timing_reasons": self.timing_reasons,
            "data_reasons": self.data_reasons,
        }


def _label(target: int) -> str:
    return "host RAM" if target == HOST_TARGET else f"GPU {target}"


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-12)


def _service_views(record: CapacityRecord | None) -> dict[int, TargetView]:
    if record is None:
        return {}
    views = {g.index: TargetView(g.passed, g.proven_bytes) for g in record.gpus}
    if record.host_ram is not None:
        views[HOST_TARGET] = TargetView(record.host_ram.passed, record.host_ram.proven_bytes)
    return views


def _breakdown_views(breakdown: Any) -> dict[int, TargetView]:
    """What the service's per-input breakdown scored per target: host RAM from `RAM_GB`, each GPU
    from its `gpus` entry (a CPU claim scores none)."""
    if not isinstance(breakdown, Mapping):
        return {}
    views: dict[int, TargetView] = {}
    for item in breakdown.get("inputs") or []:
        if isinstance(item, Mapping) and item.get("input") == "RAM_GB":
            evidence = item.get("evidence") or {}
            proven = item.get("status") == "proven"
            views[HOST_TARGET] = TargetView(proven, int(evidence.get("proven_bytes") or 0) if proven else 0)
    for gpu in breakdown.get("gpus") or []:
        if isinstance(gpu, Mapping) and isinstance(gpu.get("gpu"), int):
            passed = gpu.get("capacity_passed") is True
            views[int(gpu["gpu"])] = TargetView(
                passed, int(gpu.get("proven_vram_bytes") or 0) if passed else 0
            )
    return views


def _member_views(result: CapacityResult) -> dict[int, TargetView]:
    by_target: dict[int, set[str]] = {}
    shared = set()
    for r in result.reasons:
        where = r.field or ""
        if where.startswith("targets["):
            by_target.setdefault(int(where[len("targets[") :].split("]")[0]), set()).add(r.code)
        else:
            shared.add(r.code)
    targets = [*result.gpus, *([result.host_ram] if result.host_ram is not None else [])]
    return {
        t.target: TargetView(t.passed, t.proven_bytes, sorted(by_target.get(t.target, set()) | shared))
        for t in targets
    }


def _figures(record: CapacityRecord, result: CapacityResult) -> list[str]:
    """The figures besides passed and proven bytes: claimed bytes and the service-clock read times."""
    out = []
    for mine in result.gpus:
        theirs = record.gpu(mine.target)
        if theirs is None:
            continue
        pairs = (
            ("claimed_bytes", theirs.claimed_bytes, mine.claimed_bytes),
            ("bandwidth_bytes_per_s", theirs.bandwidth_bytes_per_s, mine.bandwidth_bytes_per_s),
            ("read_round_p50_s", theirs.read_round_p50_s, mine.read_round_p50_s),
            ("read_round_max_s", theirs.read_round_max_s, mine.read_round_max_s),
        )
        out += [
            f"GPU {mine.target} {name}: service {a}, mine {b}" for name, a, b in pairs if not _close(a, b)
        ]
    host, mine_host = record.host_ram, result.host_ram
    if host is not None and mine_host is not None and host.claimed_bytes != mine_host.claimed_bytes:
        out.append(f"host RAM claimed_bytes: service {host.claimed_bytes}, mine {mine_host.claimed_bytes}")
    return out


def _figure(view: TargetView) -> str:
    return f"passed={view.passed} proven_bytes={view.proven_bytes}"


def _compare_target(
    target: int,
    service: TargetView | None,
    breakdown: TargetView | None,
    member: TargetView | None,
    *,
    rechecked: bool,
    unavailable: str,
) -> TargetComparison:
    differences = []
    # What the member holds as true for this target: its own result, else "not proven".
    held = member if member is not None else TargetView(False, 0)
    if rechecked:
        if service is None:
            differences.append("missing from the service's record")
        elif _figure(service) != _figure(held):
            differences.append(f"service {_figure(service)}, mine {_figure(held)}")
    elif service is not None and (service.passed or service.proven_bytes):
        differences.append(
            f"the service says proven ({service.proven_bytes} bytes); this member could not re-check "
            f"it: {unavailable}"
        )
    if breakdown is not None and _figure(breakdown) != _figure(held):
        differences.append(f"the service's breakdown scores {_figure(breakdown)}, mine {_figure(held)}")
    return TargetComparison(_label(target), service, breakdown, member, not differences, differences)


def compare(
    service_doc: Any,
    breakdown: Any,
    mine: CapacityResult | None,
    mine_reasons: Sequence[Reason] = (),
    *,
    targets: Sequence[int] = (),
    unavailable: str = "",
    commitment_signed: bool | None = None,
) -> CapacityComparison:
    """The member's result (`mine`; None: not re-checked, with `mine_reasons` or `unavailable` for
    why) against the service's record and breakdown. Fail closed: what the service says is proven
    and the member did not prove itself is a mismatch; where the service proved nothing the member
    agrees with "not proven" (it scores with no more than the service's record)."""
    record, malformed = parse_capacity(service_doc)
    service = _service_views(record)
    scored = _breakdown_views(breakdown)
    claims_proof = any(v.passed or v.proven_bytes for v in service.values())
    service_reasons = sorted(set(record.reasons)) if record is not None else [r.code for r in malformed]
    differences: list[str] = []
    member: dict[int, TargetView] = {}
    scored_with: Any
    if mine is not None and record is not None:
        basis: Basis = "rechecked"
        member = _member_views(mine)
        scored_with = mine.as_record()
        member_reasons = sorted({r.code for r in mine.reasons})
        if record.digest != mine.digest:
            differences.append(f"commitment digest: service {record.digest[:16]}…, mine {mine.digest[:16]}…")
        if service_reasons != member_reasons:
            differences.append(f"reasons: service {service_reasons}, mine {member_reasons}")
        differences += _figures(record, mine)
    elif not claims_proof:
        basis = "service_proved_nothing"
        # The service's record as given when it proves nothing: absent, malformed or failed, it
        # scores no more than nothing, and the member scores the same (the same breakdown).
        scored_with = service_doc
        member_reasons = sorted({r.code for r in mine_reasons})
    else:
        basis = "not_rechecked"
        scored_with = None
        member_reasons = sorted({r.code for r in mine_reasons})
    why = unavailable or "; ".join(f"{r.code}: {r.message}" for r in mine_reasons) or "no data"
    every = sorted({*targets, *service, *member, *scored})
    compared = [
        _compare_target(
            t, service.get(t), scored.get(t), member.get(t), rechecked=basis == "rechecked", unavailable=why
        )
        for t in every
    ]
    return CapacityComparison(
        basis, compared, service_reasons, member_reasons, differences, scored_with, commitment_signed
    )
