"""The committee CLI's view of the per-input breakdown, and its re-check against the service's."""

from __future__ import annotations

import copy
import json

from rich.console import Console

from benchmark_probe.nvml_double import fixed_host
from gpuproof.claim import Claim, proof_params_for
from gpuproof.cli.evidence_view import evidence_table
from gpuproof.cli.member import breakdown_check, member_facts
from gpuproof.evidence import assess, facts_from_verification
from gpuproof.protocol.machine import Region
from gpuproof.protocol.report import BenchmarkReport, Integrity, Inventory
from tests.unit.evidence_facts import capacity_doc, facts

H100 = "H100 SXM5 80GB"


def bare_report() -> BenchmarkReport:
    return BenchmarkReport(
        machine_id="ab" * 32,
        challenge_id="c1",
        challenge_nonce="00" * 32,
        probe_version="t",
        created_at=0,
        inventory=Inventory(backend="cpu", host=fixed_host()),
        integrity=Integrity(),
    )


def breakdown() -> dict[str, object]:
    claim = Claim(H100, 2)
    return assess(claim, bare_report(), Region.europe, 2048, facts(claim)).as_dict()


def test_the_table_shows_every_input_with_its_status() -> None:
    console = Console(record=True, width=200)
    console.print(evidence_table(breakdown()))
    text = console.export_text()
    for name in (
        "gpu_num",
        "gpu_model",
        "cuda_cores",
        "gpu_mem_GB",
        "RAM_GB",
        "region",
        "large_model_factor",
    ):
        assert name in text
    assert "not_proven" in text and "declared" in text and "reference" in text
    assert "calc_point" in text and "DBC minimums NOT met" in text


def test_the_table_says_the_least_reading_in_its_caption() -> None:
    claim = Claim(H100, 8)
    found = assess(claim, bare_report(), Region.europe, 2048, facts(claim, capacity=capacity_doc(claim)))
    console = Console(record=True, width=240)
    console.print(evidence_table(found.as_dict()))
    text = console.export_text()
    assert "least reading: 6 x H100 SXM5 80GB + 2 x L40S" in text and "least_reading=" not in text


def test_the_member_rechecks_the_services_breakdown() -> None:
    mine = breakdown()
    assert breakdown_check(mine, copy.deepcopy(mine)).ok
    service = copy.deepcopy(mine)
    service["inputs"][4]["value"] = 2048  # type: ignore[index]  # the service scored declared RAM
    service["digest"] = "00" * 32
    found = breakdown_check(mine, service)
    assert not found.ok and "RAM_GB: mine 0, service 2048" in found.detail
    assert not breakdown_check(mine, None).ok


def test_the_member_and_the_service_reach_the_same_breakdown() -> None:
    """The service scores from its verification record (the proof check's details), the member
    from the challenge's service-clock times and the proof it verified itself: same digest."""
    claim = Claim(H100, 2)
    params = proof_params_for(claim)
    challenge = {
        "issued_at": 1_800_000_000.25,
        "commitment_received_at": 1_800_000_020.125,
        "params": {"proof": [p.model_dump(mode="json") for p in params]},
    }
    elapsed = challenge["commitment_received_at"] - challenge["issued_at"]
    record = {
        "checks": [
            {
                "name": "proof_of_throughput",
                "status": "pass",
                "reasons": [],
                "details": {
                    "elapsed_s": elapsed,
                    "commitment_sha256": "aa" * 32,
                    "gpus": [
                        {
                            "gpu_index": p.gpu_index,
                            "ops": p.ops,
                            "proven_tops_lower_bound": p.ops / elapsed / 1e12,
                        }
                        for p in params
                    ],
                },
            }
        ],
        "capacity": capacity_doc(claim),
    }
    record = json.loads(json.dumps(record))  # as stored (a JSON attribute) and served
    rep = bare_report()
    service = assess(claim, rep, Region.europe, 2048, facts_from_verification(record)).as_dict()
    mine = assess(
        claim, rep, Region.europe, 2048, member_facts(challenge, "aa" * 32, record["capacity"])
    ).as_dict()
    assert service["digest"] == mine["digest"] and breakdown_check(mine, service).ok
    assert service["scored"]["gpu_num"] == 2 and service["scored"]["ram_gb"] == 512


def test_a_member_that_did_not_verify_the_proof_scores_no_throughput() -> None:
    claim = Claim(H100, 1)
    challenge = {"issued_at": 100.0, "commitment_received_at": 120.0, "params": {"proof": []}}
    found = member_facts(challenge, None, capacity_doc(claim))
    assert found.throughput is None  # not re-verified here: not proven
    assert found.capacity is not None and found.capacity.digest == "ef" * 32
    bad = member_facts(challenge, None, {"version": 1})
    assert bad.capacity is None and [r.code for r in bad.capacity_reasons] == ["capacity_record_malformed"]


def test_the_console_shows_the_breakdown_with_its_statuses() -> None:
    from gpuproof.logic.console import calc_point_breakdown

    rows = {r["input"]: r for r in calc_point_breakdown({"evidence": breakdown(), "checks": []})}
    assert rows["RAM_GB"]["mark"] == "not_proven" and rows["RAM_GB"]["value"] == 0
    assert rows["region"]["mark"] == "declared" and rows["gpu_num"]["mark"] == "not_proven"
    assert rows["cuda_cores"]["mark"] == "reference" and rows["calc_point"]["mark"] == "computed"
    assert "declared_gb" in rows["RAM_GB"]["evidence"]
