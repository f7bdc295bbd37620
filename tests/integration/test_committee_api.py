"""The committee API's refusals and its once-only writes, against the local stack (moto server):
member registration, not_assigned, duplicate and repeated commits, early and mismatched reveals,
late commits, a verdict written exactly once, the owner-linked member never drawn, NoConsensus."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
import requests

from gpuproof.api.wiring import committee_services
from gpuproof.cli.member import ApiError, CommitteeClient, inspect_round, upload_info
from gpuproof.cli.operator import OperatorClient
from gpuproof.logic import committee as logic
from gpuproof.protocol.capacity import SignedCapacityCommitment
from gpuproof.protocol.httpsig import sign_request
from gpuproof.protocol.keys import SigningKey
from tests.e2e.api_client import new_members, submit_host, wait_for

pytestmark = pytest.mark.integration

OWNER = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
TIMEOUT_S = 30


def refused(call: Callable[[], Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        call()
    return info.value


@pytest.fixture(scope="module")
def members(local_stack: Any, operator: OperatorClient) -> Iterator[dict[str, CommitteeClient]]:
    clients = dict(zip("ABC", new_members(local_stack.api_url, 3, operator), strict=True))
    # tied to the owner of every machine below: never drawn for them
    (clients["linked"],) = new_members(local_stack.api_url, 1, operator, linked_accounts=[OWNER])
    yield clients
    for c in clients.values():
        c.retire()


def submit_machine(api_url: str) -> str:
    """A machine of OWNER's (this host, as `benchmark-probe submit --quick` sends it)."""
    return submit_host(api_url, owner=OWNER)[0]


def drawn_round(api_url: str, machine_id: str, round_no: int = 1) -> dict[str, Any]:
    def get() -> dict[str, Any] | None:
        r = requests.get(f"{api_url}/rounds/{machine_id}/{round_no}", timeout=10)
        return r.json() if r.ok else None

    doc: dict[str, Any] = wait_for(get, TIMEOUT_S)
    return doc


def machine_state(api_url: str, machine_id: str) -> str:
    state: str = requests.get(f"{api_url}/machines/{machine_id}", timeout=10).json()["machine"]["state"]
    return state


def test_member_registration_is_signed_and_once(
    local_stack: Any, members: dict[str, CommitteeClient]
) -> None:
    again = refused(lambda: members["A"].register([]))
    assert again.status == 409 and again.code == "member_exists"
    # A body naming another account than the signing key:
    other = SigningKey.generate().public_hex
    err = refused(lambda: members["A"].request("POST", "/members", {"account": other, "linked_accounts": []}))
    assert err.status == 403 and err.code == "key_mismatch"
    beacon = requests.get(f"{local_stack.api_url}/beacon", timeout=10)
    assert beacon.status_code in (200, 404)


def test_commit_reveal_rules_and_a_verdict_written_once(
    local_stack: Any, members: dict[str, CommitteeClient]
) -> None:
    api = local_stack.api_url
    machine_id = submit_machine(api)
    rnd = drawn_round(api, machine_id)
    assert sorted(rnd["members"]) == sorted(members[n].account for n in "ABC")
    assert members["linked"].account not in (rnd["pool"] or [])
    by_account = {members[n].account: members[n] for n in "ABC"}
    first, second, third = (by_account[a] for a in rnd["members"])
    # The windows are short here (36 h and 48 h scaled to seconds) on a stack the whole session shares:
    # only what needs this round open is done here; the read-only refusals are in the next test.
    transcript = first.transcript(machine_id, 1)
    # Issue 10 (4): the service's own findings stay hidden while commits are open.
    assert rnd["expected_hidden"] is True and rnd["expected_info"] is None and rnd["expected_problems"] == []
    assert transcript["round"]["expected_hidden"] is True and transcript["round"]["expected_info"] is None
    _, inspection = inspect_round(first, machine_id, 1, allow_cpu_backend=True)
    assert inspection.supports, inspection.problems
    assert inspection.capacity["agreed"] and inspection.capacity["basis"] == "rechecked"
    infos = {c.account: upload_info(inspection, f"salt-{i}") for i, c in enumerate((first, second, third))}

    first.commit(machine_id, 1, infos[first.account].commit_hash_hex())
    twice = refused(lambda: first.commit(machine_id, 1, infos[second.account].commit_hash_hex()))
    assert twice.code == "already_committed"
    dup = refused(lambda: second.commit(machine_id, 1, infos[first.account].commit_hash_hex()))
    assert dup.status == 409 and dup.code == "duplicate_commit"
    outsider = refused(
        lambda: members["linked"].commit(machine_id, 1, infos[first.account].commit_hash_hex())
    )
    assert outsider.status == 403 and outsider.code == "not_assigned"
    early = refused(lambda: first.reveal(machine_id, 1, infos[first.account]))
    assert early.status == 409 and early.code == "reveal_not_open"
    second.commit(machine_id, 1, infos[second.account].commit_hash_hex())
    third.commit(machine_id, 1, infos[third.account].commit_hash_hex())
    # The capacity session inspect_round read: a signed GET for the round's drawn members only (the
    # refusals are in the next test, whose round waits out its commit window anyway).
    session = first.capacity_session(machine_id, 1)
    assert session["challenge_id"] == rnd["challenge_id"] and session["clock"] == "service"
    assert len(session["rounds"]) == 9 and all(r["received_at"] is not None for r in session["rounds"])
    assert len(session["draw_secret"]) == 64 and session["openings"]["delivery"] == "inline"
    assert SignedCapacityCommitment.model_validate(session["signed_commitment"]).verifies()

    mismatch = refused(lambda: first.reveal(machine_id, 1, infos[second.account]))
    assert mismatch.status == 422 and "reveal_mismatch" in {r["code"] for r in mismatch.reasons}
    for c in (first, second, third):
        c.reveal(machine_id, 1, infos[c.account])
    again = refused(lambda: first.reveal(machine_id, 1, infos[first.account]))
    assert again.code in {"already_revealed", "round_closed"}

    wait_for(lambda: machine_state(api, machine_id) == "confirmed", TIMEOUT_S)
    closed = first.round(machine_id, 1)
    assert closed["status"] == "closed" and closed["result"] == "confirmed"
    late = refused(lambda: third.commit(machine_id, 1, "00" * 16))
    assert late.code == "round_closed"
    after = refused(lambda: first.capacity_session(machine_id, 1))
    assert (after.status, after.code) == (409, "round_closed")

    # The verdict is written once: closing the same round again is refused by the conditions.
    svc = committee_services()
    stale = svc.store.get_round(machine_id, 1)
    assert stale is not None
    stale.status = logic.OPEN
    assert logic.close_round(svc, stale) is None


def test_late_commit_and_no_consensus_waits_for_fresh_members(
    local_stack: Any, members: dict[str, CommitteeClient]
) -> None:
    api = local_stack.api_url
    machine_id = submit_machine(api)
    rnd = drawn_round(api, machine_id)
    by_account = {c.account: c for c in members.values()}
    drawn = [by_account[a] for a in rnd["members"]]
    member = drawn[0]
    # Each drawn member finds the round among its assignments (a query on its assignment items);
    # the member who was not drawn does not, and the reserved assignment key cannot be asked for.
    for c in drawn:
        assert (machine_id, 1) in {(a["machine_id"], a["round"]) for a in c.assignments()}
    assert machine_id not in {a["machine_id"] for a in members["linked"].assignments()}
    reserved = requests.get(f"{api}/rounds/%23member%23{member.account}/{rnd['beacon_index']}", timeout=10)
    assert reserved.status_code == 422, reserved.text  # not a machine_id: refused before any read
    # The capacity session is a signed GET for the round's drawn members only.
    outsider = refused(lambda: members["linked"].capacity_session(machine_id, 1))
    assert (outsider.status, outsider.code) == (403, "not_assigned")
    unsigned = requests.get(f"{api}/rounds/{machine_id}/1/capacity", timeout=10)
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "signature_missing")
    forged = {**sign_request(SigningKey.generate(), "GET", f"/rounds/{machine_id}/1/capacity", b"")}
    forged["signature-input"] = forged["signature-input"].replace(
        forged["signature-input"].split('keyid="')[1][:64], member.account
    )
    impostor = requests.get(f"{api}/rounds/{machine_id}/1/capacity", headers=forged, timeout=10)
    assert (impostor.status_code, impostor.json()["code"]) == (401, "signature_invalid")
    no_round = refused(lambda: member.capacity_session(machine_id, 2))
    assert (no_round.status, no_round.code) == (404, "unknown_round")
    # The challenge's capacity session gone (as when its item expired): 404, nothing to re-verify.
    challenges = boto3.resource("dynamodb").Table(local_stack.table_name("ChallengesTable"))
    challenges.update_item(
        Key={"challenge_id": rnd["challenge_id"]},
        UpdateExpression="REMOVE #c",
        ExpressionAttributeNames={"#c": "capacity"},
    )
    gone = refused(lambda: member.capacity_session(machine_id, 1))
    assert (gone.status, gone.code) == (404, "capacity_session_missing")
    time.sleep(max(0.0, rnd["commit_deadline"] - time.time()) + 0.2)
    late = refused(lambda: member.commit(machine_id, 1, "ab" * 16))
    assert late.status == 409 and late.code in {"commit_window_closed", "round_closed"}

    wait_for(lambda: machine_state(api, machine_id) == "no_consensus", TIMEOUT_S)
    closed = member.round(machine_id, 1)
    assert closed["result"] == "no_consensus"
    assert sorted(closed["tally"]["absent"]) == sorted(rnd["members"])
    # Fresh members only: the pool holds no other eligible member, so the machine waits.
    time.sleep(1.5)
    assert requests.get(f"{api}/rounds/{machine_id}/2", timeout=10).status_code == 404
    assert machine_state(api, machine_id) == "no_consensus"
