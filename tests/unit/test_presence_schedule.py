"""Presence waves and the miss window (logic/waves.py, logic/presence.py; pure, no sockets): the
waves' gaps and how far ahead they are drawn, every machine checked at the wave, nothing of a wave
visible before its announcement, misses counted over a window in wave order (an identity that
shares its GPU and alternates is revoked under the window rule, never under the consecutive one),
shadow mode recording only."""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from typing import Any

import pytest

from gpuproof.config import PresencePolicy
from gpuproof.logic.presence import (
    MISSED_SHADOW,
    PASSED,
    Slot,
    announcement,
    answer_by,
    check_params,
    commit_deadline,
    enforced_misses_in_window,
    misses_in_window,
    new_open,
    presence_step,
    presence_summary,
    slot_of,
)
from gpuproof.logic.records import Machine
from gpuproof.logic.states import MachineState
from gpuproof.logic.waves import KEEP_PAST, Wave, WaveSchedule, check_id_of, extended, gap

POLICY = PresencePolicy(
    checks_per_day=6,
    max_misses=3,
    lead_s=180,
    fetch_allowance_s=5.0,
    proof_allowance_s=120.0,
    enforce=True,
    miss_window=10,
)
CPU_CLAIM = {"claimed_gpu_model": None, "gpu_count": 0}


def machine(mid: str = "ab" * 32, **changes: object) -> Machine:
    m = Machine(mid, "owner", "europe", MachineState.published, 0.0, 0.0, claim=CPU_CLAIM)
    return dataclasses.replace(m, **changes)  # type: ignore[arg-type]


def schedule(now: float, policy: PresencePolicy = POLICY) -> WaveSchedule:
    drawn = extended(None, now, policy)
    assert drawn is not None
    return drawn


def test_waves_are_a_minimum_gap_plus_an_exponential_at_the_configured_rate() -> None:
    gaps = [gap(POLICY) for _ in range(20000)]
    assert min(gaps) >= POLICY.min_gap_s == 180 + 5 + 5 + 60 + 120
    mean = statistics.fmean(gaps)
    assert abs(mean - 86400 / 6) < 0.05 * 86400 / 6  # 20000 draws: the mean within 5% (≈7 sigma)


def test_waves_are_drawn_ahead_of_any_announcement_and_the_past_kept_bounded() -> None:
    now = 1_000_000.0
    first = schedule(now)
    # The first wave opens no earlier than every cache can have read it before its announcement.
    assert first.waves[0].at >= now + POLICY.lead_s + POLICY.cache_s + POLICY.min_gap_s
    assert first.waves[-1].at >= now + POLICY.horizon_s
    assert extended(first, now + 1, POLICY) is None  # nothing to draw: the stored item stays
    # Ticks later the schedule grows beyond the horizon only; the drawn waves never move.
    later = now
    s = first
    for _ in range(2000):
        later += 60 * 60
        s = extended(s, later, POLICY) or s
        assert s.waves[-1].at >= later + POLICY.horizon_s
    assert s.waves[: len(first.waves)] != first.waves  # the oldest were dropped...
    assert sum(1 for w in s.waves if w.at <= later) == KEEP_PAST  # ...down to KEEP_PAST behind
    at = [w.at for w in s.waves]
    assert all(b - a >= POLICY.min_gap_s for a, b in itertools.pairwise(at))
    # Another rate redraws only what no machine can have been told of yet.
    faster = dataclasses.replace(POLICY, checks_per_day=12)
    redrawn = extended(s, later, faster)
    assert redrawn is not None and redrawn.drawn_for != s.drawn_for
    visible = later + POLICY.lead_s + POLICY.cache_s
    assert [w for w in redrawn.waves if w.at <= visible] == [w for w in s.waves if w.at <= visible]


def watched(m: Machine, since: float) -> Machine:
    step = presence_step(m, since, POLICY, ())
    assert step.outcome == "watched" and step.presence is not None
    return dataclasses.replace(m, presence=step.presence)


def test_every_watched_machine_is_checked_at_the_wave_and_told_only_lead_s_before() -> None:
    now = 1_000_000.0
    waves = schedule(now).waves
    wave = waves[0]
    policy = dataclasses.replace(POLICY, spread_s=0.0)  # one instant for all
    fleet = [watched(machine(f"{i:064x}"), now) for i in range(2000)]
    before = [announcement(m, policy, waves, wave.at - policy.lead_s - 0.001) for m in fleet[:100]]
    assert before == [None] * 100  # secret until lead_s before the opening
    told = [announcement(m, policy, waves, wave.at - policy.lead_s) for m in fleet]
    assert all(t is not None for t in told)
    assert {t["opens_at"] for t in told if t} == {wave.at}  # every machine, the same instant
    assert len({t["check_id"] for t in told if t}) == len(fleet)  # each its own check
    assert all(
        t == {"check_id": t["check_id"], "opens_at": wave.at, "fetch_by": wave.at + 5.0} for t in told if t
    )
    # With the default spread, each opens within spread_s of the wave's instant.
    spread = [announcement(m, POLICY, waves, wave.at) for m in fleet]
    opens = [t["opens_at"] for t in spread if t]
    assert len(opens) == 2000 and wave.at <= min(opens) and max(opens) < wave.at + POLICY.spread_s
    assert max(opens) - min(opens) > 0.9 * POLICY.spread_s
    # A machine watched only after the announcement began sits this wave out (nothing to miss).
    late = watched(machine("cd" * 32), wave.at - policy.lead_s + 1)
    assert slot_of(late, wave, policy) is None and announcement(late, policy, waves, wave.at) is None
    # The sweeper never looks at a machine for a wave: a wave is one stored item, whatever the fleet.
    assert presence_step(fleet[0], wave.at - policy.lead_s, policy, waves).presence is None


def test_nothing_of_a_wave_is_shown_before_its_announcement() -> None:
    now = 1_000_000.0
    waves = schedule(now).waves
    m = watched(machine(), now)
    summary = presence_summary(m)
    assert summary is not None
    assert all(w.secret not in str(summary) and str(w.at) not in str(summary) for w in waves)
    assert not {"since", "accounted", "open", "recent"} & set(summary)
    assert announcement(m, POLICY, waves, now) is None


def wave_slot(m: Machine, wave: Wave, policy: PresencePolicy) -> Slot:
    slot = slot_of(m, wave, policy)
    assert slot is not None
    return slot


def answered(m: Machine, wave: Wave, policy: PresencePolicy) -> Machine:
    """The machine passed its check in `wave` (fetched at its opening, openings verified)."""
    slot = wave_slot(m, wave, policy)
    check = new_open(slot, m.machine_id, _params(m))
    check.update(commitment_received_at=slot.opens_at + 1, result=PASSED, elapsed_s=1.0)
    return dataclasses.replace(m, presence={**(m.presence or {}), "open": check})


def _params(m: Machine) -> list[dict[str, Any]]:
    params = check_params(m)
    assert params is not None
    return params


def look(m: Machine, now: float, policy: PresencePolicy, waves: tuple[Wave, ...]) -> tuple[Machine, str]:
    step = presence_step(m, now, policy, waves)
    return (dataclasses.replace(m, presence=step.presence) if step.presence else m), step.outcome


def shared_gpu(policy: PresencePolicy, identities: int, waves_count: int) -> list[tuple[int, int]]:
    """Identities on ONE GPU (a check needs its full throughput, and all open at once): at each wave
    the sharer answers one identity, in turn, and the others miss. (identity, wave) of each revocation."""
    now = 1_000_000.0
    drawn = extended(None, now, dataclasses.replace(policy, lead_s=180))
    assert drawn is not None
    waves: list[Wave] = list(drawn.waves)
    while len(waves) < waves_count:
        waves.append(Wave(f"w{len(waves)}", waves[-1].at + policy.min_gap_s + 3600, f"{len(waves):064x}"))
    fleet = {i: watched(machine(f"{i + 1:064x}"), now) for i in range(identities)}
    revoked = []
    for k, wave in enumerate(waves[:waves_count]):
        served = sorted(fleet)[k % len(fleet)]  # in turn, among those not revoked yet
        fleet[served] = answered(fleet[served], wave, policy)
        after = wave.at + 3000  # a sweeper look after the wave's window
        for i in list(fleet):
            fleet[i], outcome = look(fleet[i], after, policy, tuple(waves))
            if outcome == "revoke":
                revoked.append((i, k))
                del fleet[i]
    return revoked


def test_alternating_misses_revoke_under_the_window_rule_and_never_under_the_consecutive_one() -> None:
    # The consecutive rule is the window rule with a window of PresenceMaxMisses checks.
    consecutive = dataclasses.replace(POLICY, miss_window=POLICY.max_misses)
    assert shared_gpu(consecutive, identities=2, waves_count=60) == []
    # Window: 3 misses among the last 10. Identity 1 misses waves 0, 2, 4: revoked at the 5th wave.
    revoked = shared_gpu(POLICY, identities=2, waves_count=60)
    assert revoked[0] == (1, 4)
    assert len(revoked) == 1  # the survivor is served at every wave from then on
    # Four identities: each misses three waves of four; the first revoked at the 3rd wave.
    revoked4 = shared_gpu(POLICY, identities=4, waves_count=60)
    assert revoked4[0][1] == 2 and len(revoked4) == 3


def test_a_miss_is_counted_when_its_window_is_over_and_makes_the_machine_offline() -> None:
    now = 1_000_000.0
    waves = schedule(now).waves
    m = watched(machine(), now)
    wave = waves[0]
    slot = wave_slot(m, wave, POLICY)
    # No answer: not a miss before the check's answer_by (fetch allowance + deadline + openings).
    closes = commit_deadline({"opens_at": slot.opens_at, "params": _params(m)}, POLICY) + 120.0
    assert closes == answer_by({"opens_at": slot.opens_at, "params": _params(m)}, POLICY)
    assert look(m, closes, POLICY, waves)[1] == ""
    m, outcome = look(m, closes + 0.001, POLICY, waves)
    assert outcome == "missed"
    p = m.presence or {}
    assert p["missed"] == 1 and p["misses"] == 1 and misses_in_window(p) == 1 and p["recent"] == ["missed"]
    assert look(m, closes + 60, POLICY, waves)[1] == ""  # counted once
    summary = presence_summary(m)
    assert summary is not None and summary["misses_in_window"] == 1 and summary["window_checks"] == 1


def test_shadow_mode_records_misses_that_never_count_toward_a_revocation() -> None:
    now = 1_000_000.0
    shadow = dataclasses.replace(POLICY, enforce=False)
    s = extended(None, now, shadow)
    assert s is not None
    waves = list(s.waves)
    while len(waves) < 6:
        waves.append(Wave(f"w{len(waves)}", waves[-1].at + 4000, f"{len(waves) + 100:064x}"))
    m = watched(machine(), now)
    for wave in waves:
        m, outcome = look(m, wave.at + 3000, shadow, tuple(waves))
        assert outcome == "shadow_missed"
    p = m.presence or {}
    assert p["recent"] == [MISSED_SHADOW] * 6 and misses_in_window(p) == 6
    assert enforced_misses_in_window(p) == 0
    # Enforcement switched on: the shadow record revokes nobody.
    assert look(m, waves[-1].at + 3600, POLICY, tuple(waves))[1] != "revoke"


def test_a_wave_fraction_checks_each_machine_with_that_probability() -> None:
    half = dataclasses.replace(POLICY, wave_fraction=0.5)
    now = 1_000_000.0
    wave = schedule(now).waves[0]
    fleet = [watched(machine(f"{i:064x}"), now) for i in range(10000)]
    chosen = sum(1 for m in fleet if slot_of(m, wave, half) is not None)
    assert abs(chosen - 5000) < 300  # 6 sigma
    assert all(slot_of(m, wave, POLICY) is not None for m in fleet[:100])
    assert len({check_id_of(wave, m.machine_id) for m in fleet}) == len(fleet)


def test_no_claim_no_check_and_no_presence_off_the_watch() -> None:
    now = 1_000_000.0
    waves = schedule(now).waves
    m = watched(machine(claim=None), now)
    assert announcement(m, POLICY, waves, waves[0].at) is None
    assert look(m, waves[0].at + 3000, POLICY, waves)[1] == "unsized"
    assert presence_step(machine(state=MachineState.refused), now, POLICY, waves).presence is None
    off = dataclasses.replace(POLICY, checks_per_day=0)
    assert presence_step(machine(), now, off, waves).presence is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"miss_window": 2}, "miss_window"),
        ({"wave_fraction": 0.0}, "wave_fraction"),
        ({"wave_fraction": 1.5}, "wave_fraction"),
        ({"checks_per_day": 200}, "too little of the gap random"),
        ({"spread_s": -1.0}, "spread_s"),
    ],
)
def test_settings_out_of_bounds_are_refused(changes: dict[str, object], problem: str) -> None:
    assert POLICY.problems() == []
    bad = dataclasses.replace(POLICY, **changes)  # type: ignore[arg-type]
    assert any(problem in p for p in bad.problems())
