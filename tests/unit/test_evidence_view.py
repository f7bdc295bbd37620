"""The committee CLI's view of the per-input breakdown, and its re-check against the service's."""

from __future__ import annotations

import copy

from rich.console import Console

from benchmark_probe.nvml_double import fixed_host
from gpuproof.claim import Claim
from gpuproof.cli.evidence_view import evidence_table
from gpuproof.cli.member import breakdown_check, member_facts
from gpuproof.evidence import assess
from gpuproof.protocol.machine import Region
from gpuproof.protocol.report import BenchmarkReport, Integrity, Inventory
from tests.unit.evidence_facts import capacity_doc, facts

H100 = "H100 SXM5 80GB"


def breakdown() -> dict[str, object]:
    claim = Claim(H100, 2)
    rep = BenchmarkReport(
        machine_id="ab" * 32,
        challenge_id="c1",
        challenge_nonce="00" * 32,
        probe_version="t",
        created_at=0,
        inventory=Inventory(backend="cpu", host=fixed_host()),
        integrity=Integrity(),
    )
    return assess(claim, rep, Region.europe, 2048, facts(claim)).as_dict()


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
    assert "not_proven" in text and "declared" in text and "bound" in text
    assert "calc_point" in text and "DBC minimums NOT met" in text


def test_the_member_rechecks_the_services_breakdown() -> None:
    mine = breakdown()
    assert breakdown_check(mine, copy.deepcopy(mine)).ok
    service = copy.deepcopy(mine)
    service["inputs"][4]["value"] = 2048  # type: ignore[index]  # the service scored declared RAM
    service["digest"] = "00" * 32
    found = breakdown_check(mine, service)
    assert not found.ok and "RAM_GB: mine 0, service 2048" in found.detail
    assert not breakdown_check(mine, None).ok


def test_a_member_that_did_not_verify_the_proof_scores_no_throughput() -> None:
    claim = Claim(H100, 1)
    challenge = {"issued_at": 100.0, "commitment_received_at": 120.0, "params": {"proof": []}}
    found = member_facts(challenge, None, {"capacity": capacity_doc(claim)})
    assert found.throughput is None  # not re-verified here: not proven
    assert found.capacity is not None and found.capacity.digest == "ef" * 32
    bad = member_facts(challenge, None, {"capacity": {"version": 1}})
    assert bad.capacity is None and [r.code for r in bad.capacity_reasons] == ["capacity_record_malformed"]
