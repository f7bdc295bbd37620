"""DBC's committee windows, in seconds, scaled."""

from __future__ import annotations

import pytest

from gpuproof.committee.windows import (
    Phase,
    RoundWindows,
    blocks_to_seconds,
    seconds_to_blocks,
)

H = 3600.0


def test_block_conversions() -> None:
    assert blocks_to_seconds(600) == 3600
    assert blocks_to_seconds(14_400) == 86_400
    assert seconds_to_blocks(36 * H) == 21_600
    assert seconds_to_blocks(5.9) == 0


def test_deadlines_unscaled() -> None:
    w = RoundWindows(booked_at=1000.0)
    assert w.slot_seconds == 4 * H
    assert w.commit_deadline == 1000 + 36 * H
    assert w.reveal_deadline == 1000 + 48 * H


def test_member_slots() -> None:
    assert RoundWindows.member_slots(0) == (0, 3, 6)
    assert RoundWindows.member_slots(1) == (1, 4, 7)
    assert RoundWindows.member_slots(2) == (2, 5, 8)
    with pytest.raises(ValueError):
        RoundWindows.member_slots(3)
    w = RoundWindows(booked_at=0.0)
    assert w.member_windows(1) == ((4 * H, 8 * H), (16 * H, 20 * H), (28 * H, 32 * H))
    slots = sorted(s for i in range(3) for s in RoundWindows.member_slots(i))
    assert slots == list(range(9))


def test_slot_at_and_in_member_slot() -> None:
    w = RoundWindows(booked_at=0.0)
    assert w.slot_at(-1) is None
    assert w.slot_at(0) == 0
    assert w.slot_at(4 * H - 0.001) == 0
    assert w.slot_at(4 * H) == 1
    assert w.slot_at(35.9 * H) == 8
    assert w.slot_at(36 * H) is None
    assert w.in_member_slot(2, 9 * H)
    assert not w.in_member_slot(0, 9 * H)


def test_phases() -> None:
    w = RoundWindows(booked_at=0.0)
    assert w.phase(10 * H, all_committed=False) is Phase.commit
    assert w.may_commit(10 * H, all_committed=False)
    assert not w.may_reveal(10 * H, all_committed=False)
    assert w.phase(36 * H, all_committed=False) is Phase.reveal
    assert not w.may_commit(36 * H, all_committed=False)
    assert w.may_reveal(47.9 * H, all_committed=False)
    assert w.phase(48 * H, all_committed=True) is Phase.closed
    assert not w.may_reveal(48 * H, all_committed=True)
    assert not w.may_commit(-1, all_committed=False)


def test_early_reveal_once_all_committed() -> None:
    w = RoundWindows(booked_at=0.0)
    assert w.phase(1 * H, all_committed=True) is Phase.reveal
    assert w.may_reveal(1 * H, all_committed=True)
    assert not w.may_commit(1 * H, all_committed=True)


def test_tally_when_all_revealed_or_deadline() -> None:
    w = RoundWindows(booked_at=0.0)
    assert not w.may_tally(40 * H, all_revealed=False)
    assert w.may_tally(40 * H, all_revealed=True)
    assert w.may_tally(48 * H, all_revealed=False)
    assert w.phase(2 * H, all_committed=True, all_revealed=True) is Phase.closed
    assert not w.may_tally(35 * H, all_revealed=False, any_committed=False)
    assert w.may_tally(36 * H, all_revealed=False, any_committed=False)


def test_scale_makes_rounds_short() -> None:
    w = RoundWindows(booked_at=100.0, scale=1 / 3600)
    assert w.slot_seconds == pytest.approx(4.0)
    assert w.commit_deadline == pytest.approx(136.0)
    assert w.reveal_deadline == pytest.approx(148.0)
    assert w.member_windows(2)[0] == pytest.approx((108.0, 112.0))
    assert w.phase(137.0, all_committed=False) is Phase.reveal
    with pytest.raises(ValueError):
        RoundWindows(booked_at=0.0, scale=0)
