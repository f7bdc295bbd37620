"""Issue 10 (4), on the local stack: a committee bought with fresh keys confirms nothing; an
owner's own key (hex vs SS58) or a linked account in another encoding never reviews its machines;
a majority revealing findings the service disagrees with leaves the round disputed until the
operator settles it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from gpuproof.cli.member import (
    ApiError,
    CommitteeClient,
    MemberState,
    commit_findings,
    inspect_round,
    reveal_findings,
)
from gpuproof.cli.operator import OperatorClient
from gpuproof.cli.ops import app as ops_app
from gpuproof.protocol.keys import Scheme, SigningKey
from gpuproof.protocol.ss58 import account_key
from tests.e2e.api_client import OWNER, Bot, committee_bots, new_members, submit_host, wait_for
from tests.e2e.test_committee_flow import final_state, verdict

pytestmark = pytest.mark.e2e


@pytest.fixture
def fresh_bots(local_stack: Any, tmp_path: Path) -> Iterator[list[Bot]]:
    """Three members with fresh keys, registered and running honest bots, but not admitted."""
    with committee_bots(local_stack.api_url, None, tmp_path) as bots:
        yield bots


def cli_json(output: str) -> Any:
    """The command's one indented JSON document: the stack's functions run in background threads
    of this process and their one-line log and metric documents can share the captured stdout."""
    start = output.index("{\n")
    return json.JSONDecoder().raw_decode(output[start:])[0]


def test_fresh_keys_are_never_drawn_until_the_operator_admits_them(
    local_stack: Any,
    operator: OperatorClient,
    operator_key: SigningKey,
    fresh_bots: list[Bot],
    tmp_path: Path,
) -> None:
    api = local_stack.api_url
    machine_id, _ = submit_host(api)
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

    key_file = tmp_path / "operator.key"
    operator_key.save(key_file)
    first, *others = fresh_bots
    ops = ["--api", api, "--key", str(key_file), "--json"]
    result = CliRunner().invoke(ops_app, ["admit", first.client.account, *ops])  # as the operator does
    assert result.exit_code == 0, result.output
    assert cli_json(result.stdout)["admitted"] is True
    for bot in others:
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
        machine_id, _ = submit_host(api)
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


def liar(client: CommitteeClient, state: MemberState, stop: threading.Event, factor: int = 1000) -> None:
    """A bought member: inspects like an honest one, then commits and reveals (calc_point + 100) ×
    factor (+ 100: a CPU-backend machine's calc_point is 0 while its RAM is not proven)."""
    while not stop.wait(0.3):
        try:
            for a in client.assignments():
                mid, rno = str(a["machine_id"]), int(a["round"])
                if a["status"] != "open":
                    continue
                if a["phase"] == "commit" and not a["committed"]:
                    _, found = inspect_round(client, mid, rno, allow_cpu_backend=True)
                    assert found.fields is not None
                    bought = (found.fields["calc_point"] + 100) * factor
                    found.fields = {**found.fields, "calc_point": bought}
                    commit_findings(client, state, found)
                elif a["phase"] == "reveal" and a["committed"] and not a["revealed"]:
                    reveal_findings(client, state, mid, rno)
        except (ApiError, requests.RequestException, LookupError, ValueError):
            continue


@pytest.fixture
def liars(local_stack: Any, operator: OperatorClient, tmp_path: Path) -> Iterator[list[CommitteeClient]]:
    """Three ADMITTED members that reveal (calc_point + 100) × 1000: an admitted majority gone bad."""
    stop = threading.Event()
    clients = new_members(local_stack.api_url, 3, operator)
    threads = [
        threading.Thread(target=liar, args=(c, MemberState(tmp_path / f"liar{i}.json"), stop), daemon=True)
        for i, c in enumerate(clients)
    ]
    for t in threads:
        t.start()
    yield clients
    stop.set()
    for t in threads:
        t.join(timeout=10)
    for c in clients:
        c.retire()


def test_a_majority_disagreeing_with_the_service_is_disputed_until_the_operator_settles_it(
    local_stack: Any, operator_key: SigningKey, liars: list[CommitteeClient], tmp_path: Path
) -> None:
    api = local_stack.api_url
    machine_id, _ = submit_host(api)
    doc = final_state(api, machine_id, {"confirmed", "refused", "no_consensus", "disputed"})
    assert doc["machine"]["state"] == "disputed", doc  # today: confirmed with calc_point × 1000
    (reason,) = doc["machine"]["state_reasons"]
    assert reason["code"] == "committee_disputed" and "calc_point" in reason["message"]

    rnd = requests.get(f"{api}/rounds/{machine_id}/1", timeout=10).json()
    assert rnd["status"] == "disputed" and rnd["result"] == "disputed"
    committee_view, service_view = rnd["tally"]["committee_view"], rnd["tally"]["service_view"]
    assert committee_view["calc_point"] == (service_view["calc_point"] + 100) * 1000
    assert verdict(local_stack, machine_id, 1) is None  # nothing for the chain publisher
    time.sleep(1.5)
    assert verdict(local_stack, machine_id, 1) is None

    # Only the operator settles it; a member cannot.
    with pytest.raises(ApiError) as refused:
        liars[0].request("POST", f"/rounds/{machine_id}/1/resolution", {"accept": "committee"})
    assert (refused.value.status, refused.value.code) == (403, "not_operator")

    key_file = tmp_path / "operator.key"
    operator_key.save(key_file)
    ops = ["--api", api, "--key", str(key_file), "--json"]
    result = CliRunner().invoke(
        ops_app, ["resolve", machine_id, "--accept", "service", "--note", "x1000", *ops]
    )
    assert result.exit_code == 0, result.output
    assert cli_json(result.stdout)["resolution"]["accept"] == "service"

    settled = final_state(api, machine_id, {"confirmed", "refused"})
    assert settled["machine"]["state"] == "confirmed"
    assert settled["machine"]["state_reasons"][0]["code"] == "dispute_resolved"
    v = wait_for(lambda: verdict(local_stack, machine_id, 1))
    assert v["result"] == "confirmed"
    assert int(v["upload_info"]["calc_point"]) == service_view["calc_point"]
    assert {m["vote"] for m in v["committee"]} == {"dissenting"}
    closed = requests.get(f"{api}/rounds/{machine_id}/1", timeout=10).json()
    assert closed["status"] == "closed" and closed["resolution"]["note"] == "x1000"

    again = CliRunner().invoke(
        ops_app, ["resolve", machine_id, "--round", "1", "--accept", "committee", *ops]
    )
    assert again.exit_code == 1 and cli_json(again.stdout)["code"] == "round_not_disputed"
