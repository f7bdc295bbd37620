"""A committee round's time windows as DBC sets them, in plain seconds with a `scale` factor.

From the booking (draw) time: 36 h split into 9 slots of 4 h; member i (0, 1, 2) works in slots
i, i+3, i+6; commits (hashes) are accepted until 36 h; reveals until 48 h. The reveal phase opens
early once every booked member has committed (and then no more commits are taken). `scale`
multiplies every duration (scale = 1/3600 turns 36 h into 36 s for tests and the demo).

Slots say when a member is expected to inspect the machine; commits are accepted any time before
the commit deadline. A round may be tallied once the reveal deadline has passed, or earlier once
every booked member has revealed (or at the commit deadline when nobody committed).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

BLOCK_SECONDS = 6
HOUR_SECONDS = 3600
SLOT_HOURS = 4
SLOT_COUNT = 9
COMMIT_HOURS = 36
REVEAL_HOURS = 48
MEMBERS = 3


def blocks_to_seconds(blocks: int) -> int:
    """DBC blocks (6 s each) to seconds: 600 blocks = 1 h."""
    return blocks * BLOCK_SECONDS


def seconds_to_blocks(seconds: float) -> int:
    """Seconds to whole DBC blocks, rounding down."""
    return int(seconds // BLOCK_SECONDS)


class Phase(StrEnum):
    commit = "commit"
    reveal = "reveal"
    closed = "closed"


@dataclass(frozen=True)
class RoundWindows:
    """The windows of one round booked at `booked_at` (epoch seconds)."""

    booked_at: float
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError("scale must be positive")

    def _hours(self, hours: float) -> float:
        return hours * HOUR_SECONDS * self.scale

    @property
    def slot_seconds(self) -> float:
        return self._hours(SLOT_HOURS)

    @property
    def commit_deadline(self) -> float:
        return self.booked_at + self._hours(COMMIT_HOURS)

    @property
    def reveal_deadline(self) -> float:
        return self.booked_at + self._hours(REVEAL_HOURS)

    @staticmethod
    def member_slots(member_index: int) -> tuple[int, int, int]:
        """Slots (0..8) in which member `member_index` (0..2) works: i, i+3, i+6."""
        if not 0 <= member_index < MEMBERS:
            raise ValueError(f"member index must be 0..{MEMBERS - 1}")
        return (member_index, member_index + MEMBERS, member_index + 2 * MEMBERS)

    def slot_window(self, slot: int) -> tuple[float, float]:
        """[start, end) of slot `slot` in epoch seconds."""
        if not 0 <= slot < SLOT_COUNT:
            raise ValueError(f"slot must be 0..{SLOT_COUNT - 1}")
        start = self.booked_at + slot * self.slot_seconds
        return (start, start + self.slot_seconds)

    def member_windows(self, member_index: int) -> tuple[tuple[float, float], ...]:
        return tuple(self.slot_window(s) for s in self.member_slots(member_index))

    def slot_at(self, now: float) -> int | None:
        """The slot `now` falls in; None before booking or after the commit deadline."""
        if not self.booked_at <= now < self.commit_deadline:
            return None
        return min(int((now - self.booked_at) // self.slot_seconds), SLOT_COUNT - 1)

    def in_member_slot(self, member_index: int, now: float) -> bool:
        return self.slot_at(now) in self.member_slots(member_index)

    def phase(self, now: float, *, all_committed: bool, all_revealed: bool = False) -> Phase:
        if now >= self.reveal_deadline or all_revealed:
            return Phase.closed
        if all_committed or now >= self.commit_deadline:
            return Phase.reveal
        return Phase.commit

    def may_commit(self, now: float, *, all_committed: bool) -> bool:
        return now >= self.booked_at and self.phase(now, all_committed=all_committed) is Phase.commit

    def may_reveal(self, now: float, *, all_committed: bool) -> bool:
        return self.phase(now, all_committed=all_committed) is Phase.reveal

    def may_tally(self, now: float, *, all_revealed: bool, any_committed: bool = True) -> bool:
        """Reveal deadline passed, or everyone revealed, or the commit deadline passed with no
        commit at all (nobody can reveal: the tally is NoConsensus with every member absent)."""
        if not any_committed and now >= self.commit_deadline:
            return True
        return now >= self.reveal_deadline or all_revealed
