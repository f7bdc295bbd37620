"""The whole path on the local stack: probe submission → automated verification → committee draw →
three bot members (commit, reveal) → tally → verdict; plus a refusal, an absent member, a draw
recomputed from published data alone, and members re-checking the capacity phase themselves
(agreeing with an honest record, refusing a record an attacker rewrote)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from typer.testing import CliRunner

from gpuproof.claim import Claim, verified_claim
from gpuproof.cli.committee import app as committee_app
from gpuproof.cli.member import commit_findings, inspect_round, inspect_transcript
from gpuproof.cli.operator import OperatorClient
from gpuproof.committee.beacon import verify_beacon_value
from gpuproof.committee.draw import Member, draw_committee
from gpuproof.committee.findings import findings_from_report
from gpuproof.evidence import facts_from_verification
from gpuproof.logic.committee import pool_digest
from gpuproof.protocol.report import Integrity, SignedReport
from gpuproof.protocol.upload_info import host_fields_from_inventory

# Bot and wait_for are used here and imported from here by other modules (with `bots`).
from .api_client import Bot, committee_bots, submit_host, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bots(
    local_stack: Any, operator: OperatorClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Bot]]:
    """Three admitted members (as `gpuproof-ops admit` does), their bots running; retired after, so
    that later tests' machines are not drawn to them."""
    with committee_bots(local_stack.api_url, operator, tmp_path_factory.mktemp("members")) as out:
        yield out


def machine_state(api_url: str, machine_id: str) -> dict[str, Any]:
    r = requests.get(f"{api_url}/machines/{machine_id}", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def verdict(local_stack: Any, machine_id: str, round_no: int) -> dict[str, Any] | None:
    table = boto3.resource("dynamodb").Table(local_stack.table_name("VerdictsTable"))
    item: dict[str, Any] | None = table.get_item(
        Key={"verdict_id": f"{machine_id}:{round_no}"}, ConsistentRead=True
    ).get("Item")
    if item is not None:  # PynamoDB JSONAttributes are stored as JSON strings
        for name in ("upload_info", "committee", "publication"):
            item[name] = json.loads(item[name]) if isinstance(item.get(name), str) else item.get(name)
    return item


def final_state(api_url: str, machine_id: str, states: set[str]) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        doc = machine_state(api_url, machine_id)
        return doc if doc["machine"]["state"] in states else None

    result: dict[str, Any] = wait_for(reached)
    return result


def test_probe_to_confirmed_with_calc_point(local_stack: Any, bots: list[Bot]) -> None:
    machine_id, _ = submit_host(local_stack.api_url)
    doc = final_state(local_stack.api_url, machine_id, {"confirmed", "refused", "no_consensus"})
    assert doc["machine"]["state"] == "confirmed", doc

    v = verdict(local_stack, machine_id, 1)
    assert v is not None and v["result"] == "confirmed"
    assert {m["vote"] for m in v["committee"]} == {"agreeing"}
    assert {m["account"] for m in v["committee"]} == {b.client.account for b in bots}
    # calc_point from verified facts: recompute from the stored report, as anyone can.
    report = requests.get(
        f"{local_stack.api_url}/machines/{machine_id}/reports/{doc['machine']['last_challenge_id']}",
        timeout=10,
    ).json()
    signed = SignedReport.model_validate(report["signed_report"])
    claim = verified_claim(report["verification"])
    assert claim == Claim(None, 0)  # this host has no GPU: a CPU-only claim, allowed here
    findings = findings_from_report(
        machine_id,
        "europe",
        signed.report,
        claim,
        allow_cpu_backend=True,
        facts=facts_from_verification(report["verification"]),
    )
    assert findings.fields is not None
    assert int(v["upload_info"]["calc_point"]) == findings.fields["calc_point"]
    # Every calc_point input with its evidence, on GET /machines/{id}: the probe ran the CPU
    # claim's test-size capacity phase, so host RAM is proven, but only its 32 KiB (29 KiB of
    # information): 0 GiB, never the RAM this host declares (fail closed); the region is declared.
    latest = machine_state(local_stack.api_url, machine_id)["reports"][0]["verification"]
    breakdown = latest["evidence"]
    assert breakdown == findings.evidence and breakdown["calc_point"]["chain_value"] == 0
    inputs = {i["input"]: i for i in breakdown["inputs"]}
    assert inputs["RAM_GB"]["status"] == "proven" and inputs["RAM_GB"]["value"] == 0
    ram = latest["capacity"]["host_ram"]
    assert ram["passed"] and inputs["RAM_GB"]["evidence"]["proven_bytes"] == ram["proven_bytes"] < 2**15
    assert inputs["RAM_GB"]["evidence"]["capacity_digest"] == latest["capacity"]["digest"]
    declared = host_fields_from_inventory(signed.report.inventory)["mem_num"]
    assert inputs["RAM_GB"]["evidence"]["declared_gb"] == declared > 0
    assert inputs["region"] == {**inputs["region"], "status": "declared", "value": "europe"}
    assert "claim" in breakdown["host_sent"]
    checks = {c["name"]: c for c in latest["checks"]}
    assert checks["capacity"]["shadow"] and checks["capacity"]["status"] == "pass"
    assert "ram_not_proven" not in {r["code"] for r in checks["evidence"]["reasons"]}
    assert checks["dbc_minimums"]["shadow"] and checks["dbc_minimums"]["status"] == "fail"
    assert checks["kernel_identity"]["shadow"]
    assert v["evidence_digest"] == report["report_sha256"]
    assert v["publication"] is None

    rnd = bots[0].client.round(machine_id, 1)
    assert rnd["status"] == "closed" and rnd["result"] == "confirmed"
    assert rnd["tally"]["matches_expected"] is True

    # The proof travelled out of band: the signed report references the uploaded transcript, the
    # verify worker fetched it at that size and digest, and a member fetches and checks the same.
    ref = signed.report.proof
    # The binary transcript (format 2): the object holds roots and openings; the signed reference
    # carries the commitment, its signature and the drawn pairs.
    assert ref is not None and ref["version"] == 2
    assert set(ref) == {
        "version",
        "transcript_sha256",
        "transcript_bytes",
        "commitment",
        "signature",
        "pairs",
    }
    (proof_check,) = [c for c in report["verification"]["checks"] if c["name"] == "proof_of_throughput"]
    delivered = proof_check["details"]["transcript"]
    assert delivered["delivered"] is True and delivered["sha256"] == ref["transcript_sha256"]
    # The round is closed: the transcript is public, the capacity session is not handed out any more.
    inspection = inspect_transcript(bots[0].client.transcript(machine_id, 1), allow_cpu_backend=True)
    (transcript_check,) = [c for c in inspection.checks if c.name == "transcript"]
    assert transcript_check.ok, inspection.problems
    assert inspection.proof_status == "verified"


def test_draw_recomputed_from_published_data_alone(local_stack: Any, bots: list[Bot]) -> None:
    anyone = requests.Session()
    base = local_stack.api_url
    tip = anyone.get(f"{base}/beacon", timeout=10).json()
    machine_id, _ = submit_host(base)
    rnd = wait_for(lambda: (r := anyone.get(f"{base}/rounds/{machine_id}/1", timeout=10)).ok and r.json())

    value = bytes.fromhex(rnd["beacon_value"])
    assert rnd["beacon_tip"] == tip["tip"]
    assert verify_beacon_value(value, rnd["beacon_index"], bytes.fromhex(tip["tip"]), max_index=tip["length"])
    assert rnd["pool"] is not None and pool_digest(rnd["pool"]) == rnd["pool_digest"]
    assert rnd["pool"] == sorted(rnd["pool"]) and len(rnd["pool"]) == rnd["pool_size"]
    pool = [Member(a) for a in rnd["pool"]]
    members = draw_committee(value, machine_id, rnd["round"], pool, owner=rnd["owner"], in_flight={}, cap=1)
    assert members == rnd["members"]
    final_state(base, machine_id, {"confirmed", "refused", "no_consensus"})


def test_refused_at_verification_never_reaches_the_committee(local_stack: Any, bots: list[Bot]) -> None:
    machine_id, _ = submit_host(local_stack.api_url, Integrity(ld_preload="/tmp/libfake-nvml.so"))
    doc = final_state(local_stack.api_url, machine_id, {"refused", "auto_verified", "committee"})
    assert doc["machine"]["state"] == "refused"
    assert "integrity_ld_preload" in {r["code"] for r in doc["machine"]["state_reasons"]}
    time.sleep(1.5)  # a sweeper tick: a refused machine is never drawn
    r = requests.get(f"{local_stack.api_url}/rounds/{machine_id}/1", timeout=10)
    assert r.status_code == 404 and r.json()["code"] == "unknown_round"


def test_absent_member_recorded(local_stack: Any, bots: list[Bot]) -> None:
    absent = bots[2]
    absent.halt()
    machine_id, _ = submit_host(local_stack.api_url)
    doc = final_state(local_stack.api_url, machine_id, {"confirmed", "refused", "no_consensus"})
    v = verdict(local_stack, machine_id, 1)
    assert v is not None
    votes = {m["account"]: m["vote"] for m in v["committee"]}
    assert votes[absent.client.account] == "absent"
    assert sorted(votes.values()) == ["absent", "agreeing", "agreeing"]
    assert doc["machine"]["state"] == "confirmed" and v["result"] == "confirmed"


def forge_capacity_record(
    local_stack: Any, machine_id: str, challenge_id: str, forged: dict[str, Any]
) -> None:
    """What a compromised service (or one fooled by a verifier bug) would store: its own
    verification["capacity"], rewritten in the ReportsTable item (a PynamoDB JSON attribute)."""
    table = boto3.resource("dynamodb").Table(local_stack.table_name("ReportsTable"))
    key = {"machine_id": machine_id, "challenge_id": challenge_id}
    item = table.get_item(Key=key, ConsistentRead=True)["Item"]
    verification = json.loads(item["verification"])
    verification["capacity"] = forged
    table.update_item(
        Key=key,
        UpdateExpression="SET verification = :v",
        ExpressionAttributeValues={":v": json.dumps(verification)},
    )


def _drawn_after_admission(
    local_stack: Any,
    bots: list[Bot],
    operator: OperatorClient,
    capacity_prover: Any = None,
    forge: Any = None,
    delivery: str = "auto",
) -> tuple[str, dict[str, Any]]:
    """A machine verified while no member is admitted (so it waits for a draw), its stored report
    rewritten by `forge` if given, then drawn once the members are admitted again."""
    api = local_stack.api_url
    for bot in bots:
        operator.admit(bot.client.account, admitted=False)
    try:
        machine_id, _ = submit_host(api, capacity_prover=capacity_prover, delivery=delivery)
        report = final_state(api, machine_id, {"auto_verified"})["reports"][0]
        if forge is not None:
            forge(machine_id, report)
    finally:
        for bot in bots:
            operator.admit(bot.client.account)
    wait_for(lambda: requests.get(f"{api}/rounds/{machine_id}/1", timeout=10).ok)
    return machine_id, report


def test_members_recheck_the_capacity_phase_and_refuse_a_forged_record(
    local_stack: Any, bots: list[Bot], operator: OperatorClient, tmp_path: Path
) -> None:
    """Issue 12 §5: an honest machine's capacity phase is re-verified by the member and agreed; a
    machine that held half its fill (recorded as failed, in shadow) whose record the service then
    rewrote to "proven" is refused by each member's own verifier run (member_capacity_mismatch, per
    target; the agents too), so the round refuses it; once the round is closed the member gets no
    session and the CLI says why it cannot agree. One member votes by hand, two are agents."""
    from .test_capacity_flow import half_memory

    api = local_stack.api_url
    me, agents = bots[0], bots[1:]
    me.halt()
    for bot in agents:
        bot.start()  # an earlier test may have halted one
    # The honest machine's openings travel out of band: the member reads them by presigned GET.
    honest_id, honest_report = _drawn_after_admission(local_stack, bots, operator, delivery="upload")
    # Inside the commit window (12 s here), next to the agents: inspect, commit; the agent reveals.
    _, honest = inspect_round(me.client, honest_id, 1, allow_cpu_backend=True)
    commit_findings(me.client, me.state, honest)
    me.start()
    where = me.client.capacity_session(honest_id, 1)["openings"]
    # in two parts (the GPU target's, then host RAM's, §17.10): the member fetches both, in order
    assert where["delivery"] == "upload" and len(where["urls"]) == 2 == len(where["reference"]["parts"])
    honest_record = honest_report["verification"]["capacity"]
    capacity = honest.capacity
    assert honest.supports and capacity["agreed"] and capacity["basis"] == "rechecked", honest.problems
    assert capacity["commitment_signed"] is True and capacity["record"] == honest_record
    rows = {t["target"]: t for t in capacity["targets"]}
    assert set(rows) == {"GPU 0", "host RAM"}
    for row in rows.values():
        assert row["agreed"] and row["member"]["passed"] and row["member"]["proven_bytes"] > 0
        assert row["member"]["proven_bytes"] == row["service"]["proven_bytes"]
    assert rows["host RAM"]["breakdown"] == {**rows["host RAM"]["member"], "reasons": None}
    assert "service's clock" in capacity["note"] and capacity["timing_reasons"] == []
    assert [c.ok for c in honest.checks if c.name == "capacity_recheck"] == [True]

    def forge(machine_id: str, report: dict[str, Any]) -> None:
        half = report["verification"]["capacity"]
        assert not half["host_ram"]["passed"] and not half["gpus"][0]["passed"]
        forged = {
            **half,
            "gpus": [{**g, "passed": True, "proven_bytes": h["proven_bytes"], "bandwidth_bytes_per_s": 1e6}
                     for g, h in zip(half["gpus"], honest_record["gpus"], strict=True)],
            "host_ram": honest_record["host_ram"],
            "reasons": [],
        }  # fmt: skip
        forge_capacity_record(local_stack, machine_id, report["challenge_id"], forged)

    me.halt()
    half_id, _ = _drawn_after_admission(local_stack, bots, operator, half_memory, forge)
    _, half = inspect_round(me.client, half_id, 1, allow_cpu_backend=True)
    commit_findings(me.client, me.state, half)
    me.start()
    refused = half.capacity
    assert (
        not half.supports and refused["agreed"] is False and refused["reason"] == "member_capacity_mismatch"
    )
    # zeros for the rows it lacks: the read rounds' spots fail, and the GPU's bandwidth-round spots
    both = ["capacity_answer_mismatch", "capacity_sweep_mismatch"]
    assert refused["basis"] == "rechecked" and refused["data_reasons"] == both
    for row in refused["targets"]:  # the service says proven; the member's own verifier run does not
        assert not row["agreed"] and row["service"]["passed"] and not row["member"]["passed"], row
        assert row["member"]["reasons"] == (both[:1] if row["target"] == "host RAM" else both), row
    assert f"reasons: service [], mine {both}" in refused["differences"]
    assert any(p.startswith("member_capacity_mismatch: ") for p in half.problems)
    final_state(api, honest_id, {"confirmed"})
    final_state(api, half_id, {"refused"})
    v = verdict(local_stack, half_id, 1)
    assert v is not None and v["result"] == "refused"
    for bot in agents:  # each agent ran its own re-check and refused, with the reason
        (line,) = [x for x in bot.log if x.startswith(f"committed {half_id} round 1")]
        assert "is_support=False" in line and "member_capacity_mismatch" in line, line
        assert "host RAM: service passed=True" in line, line

    # The round is closed: no session is handed out, and the CLI says why the member cannot agree.
    key_file = tmp_path / "member.key"
    me.client.key.save(key_file)
    args = ["inspect", half_id, "1", "--api", api, "--key", str(key_file), "--allow-cpu-backend"]
    result = CliRunner().invoke(committee_app, [*args, "--json"])
    inspected = cli_json(result.stdout)
    assert result.exit_code == 0 and inspected["supports"] is False, result.output
    closed = inspected["capacity"]
    assert closed["basis"] == "not_rechecked" and closed["reason"] == "member_capacity_mismatch"
    assert all("could not re-check it: round_closed (409)" in t["differences"][0] for t in closed["targets"])
    table = CliRunner().invoke(committee_app, args)
    assert "capacity phase re-checked by you" in table.stdout and "host RAM" in table.stdout, table.output
    assert "round_closed" in table.stdout


def cli_json(stdout: str) -> dict[str, Any]:
    """The CLI's --json document (the in-process stack's log lines may share the captured stdout)."""
    doc, _ = json.JSONDecoder().raw_decode(stdout[stdout.index("{\n") :])
    assert isinstance(doc, dict)
    return doc
