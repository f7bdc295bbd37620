"""Issue 10 (4), on the local stack: a committee bought with fresh keys confirms nothing; an
owner's own key (hex vs SS58) or a linked account in another encoding never reviews its machines;
a majority revealing findings the service disagrees with leaves the round disputed until the
operator settles it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gpuproof.cli.member import ApiError, CommitteeClient, MemberState
from gpuproof.cli.operator import OperatorClient
from gpuproof.protocol.keys import Scheme, SigningKey
from gpuproof.protocol.ss58 import account_key
from tests.e2e.test_committee_flow import OWNER, Bot, final_state, submit_machine, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def fresh_bots(local_stack: Any, tmp_path: Path) -> Iterator[list[Bot]]:
    """Three members with fresh keys, registered and running honest bots, but not admitted."""
    bots = []
    for i in range(3):
        client = CommitteeClient(local_stack.api_url, SigningKey.generate())
        client.register([])
        bots.append(Bot(client, MemberState(tmp_path / f"fresh{i}.json"), threading.Event()))
    for bot in bots:
        bot.start()
    yield bots
    for bot in bots:
        bot.halt()
        bot.client.retire()


def test_fresh_keys_are_never_drawn_until_the_operator_admits_them(
    local_stack: Any, operator: OperatorClient, fresh_bots: list[Bot]
) -> None:
    api = local_stack.api_url
    machine_id, _ = submit_machine(api)
    final_state(api, machine_id, {"auto_verified", "refused", "committee"})
    time.sleep(3)  # three sweeper ticks: nobody admitted, nobody drawn
    assert (
        requests.get(f"{api}/machines/{machine_id}", timeout=10).json()["machine"]["state"] == "auto_verified"
    )
    r = requests.get(f"{api}/rounds/{machine_id}/1", timeout=10)
    assert r.status_code == 404 and r.json()["code"] == "unknown_round"

    # A member cannot admit itself (nor another member): only the operator key.
    member = fresh_bots[0].client
    with pytest.raises(ApiError) as refused:
        member.request("POST", f"/members/{member.account}/admission", {"admitted": True})
    assert (refused.value.status, refused.value.code) == (403, "not_operator")

    for bot in fresh_bots:
        assert operator.admit(bot.client.account)["admitted"] is True
    rnd = wait_for(lambda: (x := requests.get(f"{api}/rounds/{machine_id}/1", timeout=10)).ok and x.json())
    assert sorted(rnd["members"]) == sorted(b.client.account for b in fresh_bots)
    final_state(api, machine_id, {"confirmed", "refused", "no_consensus", "disputed"})


ALICE_SEED = bytes.fromhex("e5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a")  # //Alice
ALICE_POLKADOT = "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"  # OWNER's key, network prefix 0


def test_owner_key_or_link_in_another_encoding_never_reviews_its_machine(
    local_stack: Any, operator: OperatorClient, fresh_bots: list[Bot]
) -> None:
    """The machines are owned by OWNER (//Alice, SS58 prefix 42). //Alice's own key registered as
    a member (account = hex), a member linked to //Alice by its prefix-0 address and one linked by
    0x hex are all admitted, and none of them is in the pool of Alice's machine."""
    api = local_stack.api_url
    alice = CommitteeClient(api, SigningKey.from_seed(ALICE_SEED, Scheme.sr25519))
    assert account_key(OWNER) == alice.account
    linked_ss58 = CommitteeClient(api, SigningKey.generate())
    linked_hex = CommitteeClient(api, SigningKey.generate())
    alice.register([])
    assert linked_ss58.register([ALICE_POLKADOT])["linked_accounts"] == [alice.account]  # stored as key
    linked_hex.register(["0x" + alice.account.upper()])
    tied = [alice, linked_ss58, linked_hex]
    try:
        for c in [*tied, *(b.client for b in fresh_bots)]:
            operator.admit(c.account)
        machine_id, _ = submit_machine(api)
        rnd = wait_for(
            lambda: (x := requests.get(f"{api}/rounds/{machine_id}/1", timeout=10)).ok and x.json()
        )
        assert rnd["owner"] == OWNER
        assert sorted(rnd["pool"]) == sorted(b.client.account for b in fresh_bots)
        assert not {c.account for c in tied} & set(rnd["members"])
        final_state(api, machine_id, {"confirmed", "refused", "no_consensus", "disputed"})
    finally:
        for c in tied:
            c.retire()


def test_linked_accounts_are_validated(local_stack: Any) -> None:
    member = CommitteeClient(local_stack.api_url, SigningKey.generate())
    broken = OWNER[:-1] + ("R" if OWNER[-1] != "R" else "S")
    with pytest.raises(ApiError) as refused:
        member.register(["not-an-account", broken, "ab" * 31])
    assert (refused.value.status, refused.value.code) == (422, "linked_account_invalid")
    assert [r["field"] for r in refused.value.reasons] == [f"linked_accounts.{i}" for i in range(3)]
    with pytest.raises(ApiError) as too_many:
        member.register([OWNER] * 33)
    assert too_many.value.status == 422
    with pytest.raises(ApiError) as unknown:  # nothing was stored: the member is not registered
        member.assignments()
    assert unknown.value.code == "unknown_member"
