"""Recompute a round's committee draw from its public data alone (`committee verify-draw`).

Inputs: `GET /beacon` (the hash chain's tip, published before any value is used) and
`GET /rounds/{machine_id}/{round}` (beacon index and value, the sorted eligible pool, its digest,
the members drawn). Nothing the service concluded is trusted: every check is recomputed here with
the draw's own specification (gpuproof.committee.draw, gpuproof.committee.beacon).

What stays trusted (docs/committee.md): that `pool` is the true eligible set; a member checks that
it is in the pool of a round it should have been eligible for (`account`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpuproof.committee.beacon import MAX_CHAIN_LENGTH, VALUE_BYTES, verify_beacon_value
from gpuproof.committee.draw import COMMITTEE_SIZE, Member, draw_committee, pool_digest
from gpuproof.protocol.ss58 import account_key_or_none


@dataclass(frozen=True)
class DrawCheck:
    name: str
    ok: bool
    detail: str


def _hex32(value: Any) -> bytes | None:
    try:
        raw = bytes.fromhex(str(value))
    except ValueError:
        return None
    return raw if len(raw) == VALUE_BYTES else None


def recompute_draw(
    round_doc: Mapping[str, Any], beacon_doc: Mapping[str, Any], account: str | None = None
) -> list[DrawCheck]:
    """Every check of the round's draw, each with what it found; all ok = the draw is as published."""
    checks: list[DrawCheck] = []
    tip, value = _hex32(beacon_doc.get("tip")), _hex32(round_doc.get("beacon_value"))
    index = int(round_doc.get("beacon_index") or 0)
    length = int(beacon_doc.get("length") or MAX_CHAIN_LENGTH)
    same_tip = tip is not None and round_doc.get("beacon_tip") == beacon_doc.get("tip")
    checks.append(
        DrawCheck(
            "beacon_tip",
            same_tip,
            f"the round names tip {round_doc.get('beacon_tip')}; published {beacon_doc.get('tip')}",
        )
    )
    genuine = (
        tip is not None and value is not None and verify_beacon_value(value, index, tip, max_index=length)
    )
    checks.append(
        DrawCheck(
            "beacon_value",
            genuine,
            f"value {index} hashed {index} times {'gives' if genuine else 'does not give'} the tip",
        )
    )
    pool = round_doc.get("pool")
    if pool is None:
        checks.append(
            DrawCheck(
                "pool",
                False,
                f"the pool ({round_doc.get('pool_size')} accounts) is published by digest only: "
                "the draw cannot be recomputed",
            )
        )
        return checks
    pool = [str(a) for a in pool]
    ordered = pool == sorted(set(pool)) and len(pool) == int(round_doc.get("pool_size") or 0)
    checks.append(
        DrawCheck("pool_sorted", ordered, f"{len(pool)} accounts, sorted and distinct, as pool_size says")
    )
    digest = pool_digest(pool)
    checks.append(DrawCheck("pool_digest", digest == round_doc.get("pool_digest"), f"sha256 {digest}"))
    members = list(round_doc.get("members") or [])
    drawn: list[str] | None = None
    if value is not None:
        try:
            drawn = draw_committee(
                value,
                str(round_doc.get("machine_id")),
                int(round_doc.get("round") or 0),
                [Member(a) for a in pool],
                owner=str(round_doc.get("owner")),
                in_flight={},
                cap=1,
                size=len(members) or COMMITTEE_SIZE,
            )
        except ValueError as exc:
            checks.append(DrawCheck("draw", False, str(exc)))
            return checks
    ok = drawn is not None and drawn == members
    detail = (
        f"recomputed {drawn}; published {members}"
        if not ok
        else f"recomputed the same {len(members)} members, in draw order"
    )
    checks.append(DrawCheck("draw", ok, detail))
    if account:
        key = account_key_or_none(account) or account
        keys = {account_key_or_none(a) or a for a in pool}
        checks.append(
            DrawCheck(
                "your_account",
                key in keys,
                f"{key} {'is' if key in keys else 'is NOT'} in this round's eligible pool",
            )
        )
    return checks
