"""The tally of a committee round, as DBC counts it.

Reveals are compared on every field except `rand_str` (each member salts its own commit); all
refusals (is_support = false) count as one answer whatever their other fields say. Then:

- 0 reveals → NoConsensus; every booked member is absent.
- One answer held by more than half of the reveals wins: Confirmed when it supports, Refused when
  it refuses; its holders agree, every other revealer dissents (an invalid vote). This covers
  DBC's "all reveals identical" (3/3, 2/2 and 1/1) and "2 of 3 identical".
- Otherwise (all different, or 1–1 with two reveals) → NoConsensus and every revealer dissents.

One reveal therefore decides alone, as on DBC ("all reveals identical"). dbc.md lists that as a
weak point; pass `min_reveals=2` to require at least two reveals (fewer → NoConsensus, nobody
dissents). Absent = booked but never revealed. Per DBC, dissenters are slashed only when the
result is Confirmed or Refused; absent members always.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gpuproof.protocol.dbc_commit import CommitteeUploadInfo

DBC_MIN_REVEALS = 1


class TallyResult(StrEnum):
    confirmed = "confirmed"
    refused = "refused"
    no_consensus = "no_consensus"


@dataclass(frozen=True)
class Tally:
    result: TallyResult
    agreeing: tuple[str, ...]
    dissenting: tuple[str, ...]
    absent: tuple[str, ...]
    decided_info: CommitteeUploadInfo | None
    """Confirmed: the reveal of the first agreeing member (sorted); otherwise None."""
    reason: str


_REFUSAL: tuple[Any, ...] = ("refused",)


def answer_key(info: CommitteeUploadInfo) -> tuple[Any, ...]:
    """What two reveals must share to be the same answer (refusals normalised, rand_str ignored)."""
    if not info.is_support:
        return _REFUSAL
    return tuple(v for k, v in info.model_dump().items() if k != "rand_str")


def tally(
    booked: Sequence[str],
    reveals: Mapping[str, CommitteeUploadInfo],
    *,
    min_reveals: int = DBC_MIN_REVEALS,
) -> Tally:
    """Tally a round. `booked`: the drawn members; `reveals`: member → its verified reveal
    (reveals from members not booked are ignored)."""
    booked_sorted = tuple(sorted(set(booked)))
    revealed = {m: info for m, info in reveals.items() if m in booked_sorted}
    absent = tuple(m for m in booked_sorted if m not in revealed)
    if not revealed:
        return Tally(TallyResult.no_consensus, (), (), absent, None, "no reveals")
    if len(revealed) < min_reveals:
        return Tally(
            TallyResult.no_consensus,
            (),
            (),
            absent,
            None,
            f"{len(revealed)} reveals, fewer than {min_reveals}",
        )

    groups: dict[tuple[Any, ...], list[str]] = {}
    for member in sorted(revealed):
        groups.setdefault(answer_key(revealed[member]), []).append(member)
    key, holders = max(groups.items(), key=lambda item: len(item[1]))
    if 2 * len(holders) <= len(revealed):
        return Tally(
            TallyResult.no_consensus, (), tuple(sorted(revealed)), absent, None, "no answer has a majority"
        )

    agreeing = tuple(holders)
    dissenting = tuple(m for m in sorted(revealed) if m not in holders)
    if key == _REFUSAL:
        return Tally(TallyResult.refused, agreeing, dissenting, absent, None, "majority refuses")
    return Tally(
        TallyResult.confirmed, agreeing, dissenting, absent, revealed[agreeing[0]], "majority supports"
    )
