"""The committee draw: a pure function of (beacon value, machine_id, round, sorted eligible pool).

Specification (enough to recompute a draw in any language):

1. Eligible = pool members that are not the owner, do not list the owner among their linked
   accounts, and have in-flight load < cap. Accounts are compared as 32-byte public keys: an
   SS58 address (any network prefix, checksum verified) and the key's hex (with or without 0x,
   any case) name the same account (`gpuproof.protocol.ss58.account_key`); a name that is
   neither is compared as it is written. Duplicate accounts count once. Sort the eligible
   accounts by their UTF-8 bytes (for hex keys: ASCII order). n = their number; if n < size,
   nobody is drawn and the machine waits.
2. For counter = 0, 1, 2, ...: h = SHA-256(beacon (32 bytes) ‖ machine_id (64 ASCII hex
   characters) ‖ round (u64 big-endian) ‖ counter (u32 big-endian)); x = first 8 bytes of h as a
   big-endian u64. Reject x ≥ 2^64 − (2^64 mod n) (no modulo bias); else index = x mod n. Skip
   an index already drawn. Stop when `size` distinct members are drawn, in draw order.

Cost: O(pool) to filter plus O(n log n) to sort; the selection loop is O(size) expected.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gpuproof.committee.beacon import VALUE_BYTES
from gpuproof.protocol.ss58 import account_key_or_none

COMMITTEE_SIZE = 3
_U64 = 2**64
_MAX_COUNTER = 2**32 - 1
_MACHINE_ID = re.compile(r"^[0-9a-f]{64}$")


@functools.lru_cache(maxsize=65536)
def _key(account: str) -> str:
    """The public key hex an account names (SS58 or hex), else the name as written."""
    if _MACHINE_ID.match(account):  # the common case, a lowercase hex key: nothing to decode
        return account
    return account_key_or_none(account) or account


@dataclass(frozen=True)
class Member:
    """A committee member: its account and the accounts it is tied to (same person or entity)."""

    account: str
    linked_accounts: frozenset[str] = field(default_factory=frozenset)

    def tied_to(self, owner: str) -> bool:
        """The owner's key is this member's key or one of its linked accounts' (keys compared)."""
        key = _key(owner)
        return _key(self.account) == key or any(_key(a) == key for a in self.linked_accounts)


def eligible_accounts(
    pool: Sequence[Member], *, owner: str, in_flight: Mapping[str, int], cap: int
) -> list[str]:
    """Step 1 of the draw: the sorted, de-duplicated eligible accounts.

    Python orders str by code point, which is the same order as their UTF-8 bytes.
    """
    get = in_flight.get
    owner_key = _key(owner)
    # Inlined `Member.tied_to`: this loop is the draw's whole cost for large pools.
    accounts = {
        m.account
        for m in pool
        if _key(m.account) != owner_key
        and not any(_key(a) == owner_key for a in m.linked_accounts)
        and get(m.account, 0) < cap
    }
    return sorted(accounts)


def pool_digest(pool: Sequence[str]) -> str:
    """SHA-256 hex of the sorted eligible accounts joined by "\\n" (UTF-8): what a round publishes
    when its pool is too large to list."""
    return hashlib.sha256("\n".join(pool).encode("utf-8")).hexdigest()


def draw_seed(beacon_value: bytes, machine_id: str, round: int, counter: int) -> bytes:
    """SHA-256(beacon ‖ machine_id ‖ round u64 BE ‖ counter u32 BE)."""
    return hashlib.sha256(
        beacon_value + machine_id.encode("ascii") + round.to_bytes(8, "big") + counter.to_bytes(4, "big")
    ).digest()


def select_indices(beacon_value: bytes, machine_id: str, round: int, n: int, size: int) -> list[int]:
    """Step 2 of the draw: `size` distinct indices into a sorted eligible list of length n."""
    if size > n:
        raise ValueError(f"cannot draw {size} distinct of {n}")
    limit = _U64 - (_U64 % n)
    chosen: list[int] = []
    counter = 0
    while len(chosen) < size:
        if counter > _MAX_COUNTER:
            raise RuntimeError("draw counter exhausted")  # probability ~0: needs 2^32 unlucky hashes
        x = int.from_bytes(draw_seed(beacon_value, machine_id, round, counter)[:8], "big")
        counter += 1
        if x >= limit:
            continue
        index = x % n
        if index not in chosen:
            chosen.append(index)
    return chosen


def draw_committee(
    beacon_value: bytes,
    machine_id: str,
    round: int,
    pool: Sequence[Member],
    *,
    owner: str,
    in_flight: Mapping[str, int],
    cap: int,
    size: int = COMMITTEE_SIZE,
) -> list[str] | None:
    """The accounts drawn for a machine's round, in draw order; None when fewer than `size`
    members are eligible (the machine waits). Specification: module docstring."""
    if len(beacon_value) != VALUE_BYTES:
        raise ValueError(f"beacon value must be {VALUE_BYTES} bytes")
    if not _MACHINE_ID.match(machine_id):
        raise ValueError("machine_id must be 64 lowercase hex characters")
    if not 0 <= round < _U64:
        raise ValueError("round must fit a u64")
    if size < 1:
        raise ValueError("size must be at least 1")
    eligible = eligible_accounts(pool, owner=owner, in_flight=in_flight, cap=cap)
    if len(eligible) < size:
        return None
    return [eligible[i] for i in select_indices(beacon_value, machine_id, round, len(eligible), size)]
