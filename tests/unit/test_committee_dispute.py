"""A disputed round's settlement (issue 10, 4): whose findings the verdict carries, who agreed;
and linked accounts validated and stored as public keys."""

from __future__ import annotations

from typing import Any

from gpuproof.logic.committee import DISPUTED, linked_account_keys, settlement
from gpuproof.logic.records import VerdictResult
from gpuproof.logic.states import MachineState, may_follow
from tests.unit.test_committee_round_view import a_round

SERVICE: dict[str, Any] = {"machine_id": "ab" * 32, "calc_point": 100, "gpu_num": 0, "is_support": True}
BOUGHT = {**SERVICE, "calc_point": 100_000}
A, B, C = "a" * 64, "b" * 64, "c" * 64


def disputed(accept: str, **overrides: Any) -> Any:
    reveals = {A: {"info": {**BOUGHT, "rand_str": "1"}}, B: {"info": {**BOUGHT, "rand_str": "2"}}}
    fields: dict[str, Any] = dict(
        status=DISPUTED,
        expected_info=dict(SERVICE),
        expected_problems=[],
        reveals=reveals,
        tally={"committee_view": dict(BOUGHT), "service_view": dict(SERVICE)},
        resolution={"accept": accept, "note": "", "by": "op", "at": 1.0},
    )
    fields.update(overrides)
    return a_round(**fields)


def votes(verdict: Any) -> dict[str, str]:
    return {m["account"]: m["vote"] for m in verdict.committee}


def test_accepting_the_service_confirms_its_findings_and_overrules_the_majority() -> None:
    verdict, state, reasons = settlement(disputed("service"), 5.0)
    assert verdict.result is VerdictResult.confirmed and state is MachineState.confirmed
    assert verdict.upload_info == SERVICE
    assert votes(verdict) == {A: "dissenting", B: "dissenting", C: "absent"}
    assert reasons[0]["code"] == "dispute_resolved"


def test_accepting_the_service_that_found_problems_refuses() -> None:
    r = disputed("service", expected_problems=[{"code": "unknown_gpu_model", "message": "?"}])
    verdict, state, _ = settlement(r, 5.0)
    assert verdict.result is VerdictResult.refused and state is MachineState.refused
    assert verdict.upload_info["is_support"] is False and verdict.performance_index is None


def test_accepting_the_committee_confirms_the_majority() -> None:
    verdict, state, _ = settlement(disputed("committee"), 5.0)
    assert state is MachineState.confirmed
    assert verdict.result is VerdictResult.confirmed and verdict.upload_info == BOUGHT
    assert votes(verdict) == {A: "agreeing", B: "agreeing", C: "absent"}


def test_a_disputed_machine_only_leaves_to_a_settled_verdict() -> None:
    assert may_follow(MachineState.committee, MachineState.disputed)
    assert {s for s in MachineState if may_follow(MachineState.disputed, s)} == {
        MachineState.confirmed,
        MachineState.refused,
    }


def test_linked_accounts_stored_as_keys_every_bad_one_named() -> None:
    alice = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
    keys, reasons = linked_account_keys(
        ["5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY", "0x" + alice.upper(), "nope", "ab" * 31]
    )
    assert keys == [alice]
    assert [(r.code, r.field) for r in reasons] == [
        ("linked_account_invalid", "linked_accounts.2"),
        ("linked_account_invalid", "linked_accounts.3"),
    ]
    _, too_many = linked_account_keys([alice] * 33)
    assert too_many[0].code == "too_many_linked_accounts"
