"""The presence schedule (logic/presence.py presence_step, pure): Poisson gaps, announcement
before opening, misses counted and revoking only when enforced (no sockets)."""

from __future__ import annotations

import dataclasses
import statistics

from gpuproof.config import PresencePolicy
from gpuproof.logic.presence import announcement, answer_by, commit_deadline, next_opening, presence_step
from gpuproof.logic.records import Machine
from gpuproof.logic.states import MachineState

POLICY = PresencePolicy(
    checks_per_day=6, max_misses=3, lead_s=180, fetch_allowance_s=5.0, proof_allowance_s=120.0, enforce=True
)


def machine(**changes: object) -> Machine:
    m = Machine(
        "ab" * 32,
        "owner",
        "europe",
        MachineState.published,
        0.0,
        0.0,
        claim={"claimed_gpu_model": None, "gpu_count": 0},
    )
    return dataclasses.replace(m, **changes)  # type: ignore[arg-type]


def test_gaps_are_the_lead_plus_exponential_with_the_configured_rate() -> None:
    gaps = [next_opening(0.0, POLICY) - POLICY.lead_s for _ in range(20000)]
    assert min(gaps) >= 0
    mean = statistics.fmean(gaps)
    assert abs(mean - 86400 / 6) < 0.05 * 86400 / 6  # 20000 draws: the mean within 5% (≈7 sigma)


def test_a_check_is_scheduled_announced_opened_and_timed_from_its_opening() -> None:
    m = machine()
    step = presence_step(m, 1000.0, POLICY)
    assert step.outcome == "scheduled" and step.presence is not None
    next_at = step.presence["next_at"]
    assert step.due_at == next_at - POLICY.lead_s
    m = dataclasses.replace(m, presence=step.presence)
    assert presence_step(m, next_at - POLICY.lead_s - 1, POLICY).presence is None  # not yet
    opened = presence_step(m, next_at - POLICY.lead_s, POLICY)
    assert opened.outcome == "opened" and opened.presence is not None
    check = opened.presence["open"]
    assert check["opens_at"] == next_at and len(bytes.fromhex(check["nonce"])) == 32
    assert commit_deadline(check, POLICY) == next_at + 5.0 + check["params"][0]["deadline_s"]
    assert opened.due_at == answer_by(check, POLICY)
    m = dataclasses.replace(m, presence=opened.presence)
    told = announcement(m, POLICY)
    assert told == {"check_id": check["check_id"], "opens_at": next_at, "fetch_by": next_at + 5.0}
    assert "nonce" not in (told or {})  # the nonce is fetched at the opening, not announced


def miss(m: Machine, policy: PresencePolicy) -> tuple[Machine, str]:
    p = m.presence or {}
    if not p.get("open"):
        p = presence_step(m, 0.0, policy).presence or p
        m = dataclasses.replace(m, presence=p)
        opened = presence_step(m, p["next_at"], policy)
        m = dataclasses.replace(m, presence=opened.presence)
    check = (m.presence or {})["open"]
    step = presence_step(m, answer_by(check, policy) + 1, policy)
    return dataclasses.replace(m, presence=step.presence), step.outcome


def test_consecutive_misses_revoke_only_when_enforced() -> None:
    m = machine()
    outcomes = []
    for _ in range(3):
        m, outcome = miss(m, POLICY)
        outcomes.append(outcome)
    assert outcomes == ["missed", "missed", "revoke"]
    shadow = dataclasses.replace(POLICY, enforce=False)
    m = machine()
    for _ in range(4):
        m, outcome = miss(m, shadow)
        assert outcome == "shadow_missed"
    assert (m.presence or {})["missed"] == 4


def test_no_claim_no_check_and_no_presence_off_the_watch() -> None:
    m = machine(claim=None)
    p = presence_step(m, 0.0, POLICY).presence
    m = dataclasses.replace(m, presence=p)
    assert presence_step(m, (p or {})["next_at"], POLICY).outcome == "unsized"
    assert presence_step(machine(state=MachineState.refused), 0.0, POLICY).due_at is None
    assert presence_step(machine(), 0.0, dataclasses.replace(POLICY, checks_per_day=0)).due_at is None
