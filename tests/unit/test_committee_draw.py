"""The committee draw and its beacon: deterministic, recomputable from published data alone."""

from __future__ import annotations

import hashlib
import random

import pytest

from gpuproof.committee.beacon import HashChainBeacon, verify_beacon_value, verify_next_value
from gpuproof.committee.draw import Member, draw_committee, eligible_accounts

MACHINE = "c2ad03b01cb72857978f7e18527afddb671c8354c72c46523405334be23c3701"
OWNER = "5OwnerAccount"
SEED = bytes(range(32))


def pool_of(n: int) -> list[Member]:
    return [Member(f"5Member{i:06d}") for i in range(n)]


def draw(beacon: bytes, pool: list[Member], **kw: object) -> list[str] | None:
    args: dict[str, object] = {"owner": OWNER, "in_flight": {}, "cap": 5, "round": 0}
    args.update(kw)
    rnd = args.pop("round")
    return draw_committee(beacon, MACHINE, rnd, pool, **args)  # type: ignore[arg-type]


# --- beacon -------------------------------------------------------------------------------


def test_hash_chain_values_verify_against_tip() -> None:
    beacon = HashChainBeacon(SEED, 50)
    tip = beacon.tip
    previous = tip
    for index in range(1, 51):
        value = beacon.value(index)
        assert verify_beacon_value(value, index, tip)
        assert verify_next_value(value, previous)
        assert beacon.verify(value, index)
        previous = value
    assert not verify_beacon_value(beacon.value(2), 1, tip)
    assert not verify_beacon_value(b"\x00" * 32, 1, tip)
    assert not verify_beacon_value(beacon.value(1), 0, tip)
    with pytest.raises(IndexError):
        beacon.value(51)


def test_hash_chain_definition() -> None:
    beacon = HashChainBeacon(SEED, 3)
    x0 = hashlib.sha256(SEED).digest()
    x1 = hashlib.sha256(x0).digest()
    x2 = hashlib.sha256(x1).digest()
    x3 = hashlib.sha256(x2).digest()
    assert beacon.tip == x3
    assert [beacon.value(i) for i in (1, 2, 3)] == [x2, x1, x0]


# --- draw ---------------------------------------------------------------------------------


def test_draw_is_deterministic_and_distinct() -> None:
    beacon = HashChainBeacon(SEED, 4).value(1)
    pool = pool_of(20)
    first = draw(beacon, pool)
    assert first is not None and len(first) == 3 and len(set(first)) == 3
    assert draw(beacon, pool) == first
    assert all(m.startswith("5Member") for m in first)


def test_draw_depends_on_beacon_machine_and_round() -> None:
    chain = HashChainBeacon(SEED, 4)
    pool = pool_of(1000)
    base = draw(chain.value(1), pool)
    assert draw(chain.value(2), pool) != base
    assert draw(chain.value(1), pool, round=1) != base
    other = draw_committee(chain.value(1), "0" * 64, 0, pool, owner=OWNER, in_flight={}, cap=5)
    assert other != base


def test_pool_order_is_irrelevant() -> None:
    beacon = HashChainBeacon(SEED, 1).value(1)
    pool = pool_of(200)
    shuffled = pool[:]
    random.Random(7).shuffle(shuffled)
    assert draw(beacon, pool) == draw(beacon, shuffled) == draw(beacon, pool + pool[:10])


def test_owner_and_linked_accounts_are_excluded() -> None:
    beacon = HashChainBeacon(SEED, 1).value(1)
    pool = [
        Member(OWNER),
        Member("5Alt", frozenset({OWNER})),
        Member("5A"),
        Member("5B"),
        Member("5C"),
    ]
    for rnd in range(30):
        drawn = draw(beacon, pool, round=rnd)
        assert drawn is not None and sorted(drawn) == ["5A", "5B", "5C"]
    assert eligible_accounts(pool, owner=OWNER, in_flight={}, cap=1) == ["5A", "5B", "5C"]


def test_cap_is_respected() -> None:
    beacon = HashChainBeacon(SEED, 1).value(1)
    pool = pool_of(6)
    busy = {m.account: 2 for m in pool[:3]}
    for rnd in range(30):
        drawn = draw(beacon, pool, in_flight=busy, cap=2, round=rnd)
        assert drawn is not None and set(drawn) == {m.account for m in pool[3:]}
    assert draw(beacon, pool, in_flight={m.account: 1 for m in pool[:4]}, cap=1) is None


def test_fewer_than_three_eligible_waits() -> None:
    beacon = HashChainBeacon(SEED, 1).value(1)
    assert draw(beacon, []) is None
    assert draw(beacon, pool_of(2)) is None
    assert draw(beacon, [*pool_of(2), Member(OWNER)]) is None
    assert draw(beacon, pool_of(3)) is not None


def test_every_member_can_be_drawn() -> None:
    beacon = HashChainBeacon(SEED, 1).value(1)
    pool = pool_of(10)
    seen: set[str] = set()
    for rnd in range(200):
        drawn = draw(beacon, pool, round=rnd)
        assert drawn is not None
        seen.update(drawn)
    assert seen == {m.account for m in pool}


@pytest.mark.parametrize("bad", [{"beacon": b"short"}, {"machine": "XYZ"}, {"round": -1}])
def test_bad_inputs(bad: dict[str, object]) -> None:
    beacon = bad.get("beacon", HashChainBeacon(SEED, 1).value(1))
    machine = bad.get("machine", MACHINE)
    rnd = bad.get("round", 0)
    with pytest.raises(ValueError):
        draw_committee(beacon, machine, rnd, pool_of(5), owner=OWNER, in_flight={}, cap=5)  # type: ignore[arg-type]


def _recompute_outside(
    tip: bytes, index: int, value: bytes, machine_id: str, rnd: int, accounts: list[str]
) -> list[str]:
    """An outsider's draw from the published spec alone: hashlib, no gpuproof imports."""
    current = value
    for _ in range(index):
        current = hashlib.sha256(current).digest()
    assert current == tip, "beacon value does not match the published tip"
    eligible = sorted(set(accounts), key=lambda a: a.encode())
    n = len(eligible)
    limit = 2**64 - (2**64 % n)
    chosen: list[int] = []
    counter = 0
    while len(chosen) < 3:
        h = hashlib.sha256(
            value + machine_id.encode() + rnd.to_bytes(8, "big") + counter.to_bytes(4, "big")
        ).digest()
        counter += 1
        x = int.from_bytes(h[:8], "big")
        if x < limit and x % n not in chosen:
            chosen.append(x % n)
    return [eligible[i] for i in chosen]


def test_draw_recomputed_outside_the_service_from_published_data() -> None:
    # The service publishes: the tip (in advance), then the beacon value and its index, the
    # machine_id, the round, and the eligible pool it used.
    service_beacon = HashChainBeacon(b"service secret seed, 32+ bytes long!", 100)
    published_tip = service_beacon.tip
    index = 17
    value = service_beacon.value(index)
    pool = [Member(f"5Acct{i:04d}", frozenset({f"5Alt{i:04d}"})) for i in range(500)] + [Member(OWNER)]
    in_flight = {"5Acct0003": 9}
    service_drawn = draw_committee(value, MACHINE, 2, pool, owner=OWNER, in_flight=in_flight, cap=3)
    published_pool = eligible_accounts(pool, owner=OWNER, in_flight=in_flight, cap=3)
    assert service_drawn == _recompute_outside(published_tip, index, value, MACHINE, 2, published_pool)


def test_large_pool_draws_three_distinct_members() -> None:
    """Behaviour only; the cost for 100 and 100,000 members is in docs/benchmarks.md (make bench)."""
    beacon = HashChainBeacon(SEED, 1).value(1)
    pool = pool_of(100_000)
    drawn = draw(beacon, pool)
    assert drawn is not None and len(set(drawn)) == 3
    assert set(drawn) <= {m.account for m in pool}


ALICE_SS58 = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
ALICE_KEY = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
ALICE_POLKADOT = "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"


def test_owner_and_linked_accounts_are_compared_as_public_keys() -> None:
    """Issue 10 (4): the owner's own key as a member (hex vs SS58), or a link to it in another
    encoding (another network prefix, 0x hex), is never eligible for the owner's machines."""
    others = [Member(f"{i:064x}") for i in range(1, 4)]
    tied = [
        Member(ALICE_KEY),  # the owner's own key, registered as a member
        Member("e" * 64, frozenset({ALICE_POLKADOT})),
        Member("f" * 64, frozenset({"0x" + ALICE_KEY.upper()})),
    ]
    assert all(m.tied_to(ALICE_SS58) for m in tied)
    assert eligible_accounts([*others, *tied], owner=ALICE_SS58, in_flight={}, cap=1) == sorted(
        m.account for m in others
    )
    # the same owner named by its hex key excludes the same members
    assert eligible_accounts([*others, *tied], owner=ALICE_KEY, in_flight={}, cap=1) == sorted(
        m.account for m in others
    )
