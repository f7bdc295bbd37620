"""The challenge is the claim: a report is held to it and scored from it, never upgraded by names.

Attacks of issue 10 ("Close the breaks") at the level of the rules the verify worker and the
committee share: a no-GPU host claiming 8 x H100 in its inventory, a challenge sized for an RTX
3060 answered by a report naming an H100, a missing benchmark scoring like a passing one.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmark_probe.inventory import collect_inventory
from benchmark_probe.nvml_double import CudaTestDouble, NvmlTestDouble, fake_gpu, fixed_host
from gpuproof.claim import (
    Claim,
    ClaimError,
    challenge_params,
    claim_of,
    make_claim,
    params_reasons,
    proof_params_for,
    verified_claim,
)
from gpuproof.committee.findings import findings_from_report
from gpuproof.protocol.machine import Region
from gpuproof.protocol.report import BenchmarkReport, BenchmarkResult, Integrity, Inventory
from gpuproof.reference import lookup
from gpuproof.scoring import calc_point_for_model
from tests.unit.evidence_facts import capacity_doc, facts
from tests.unit.gpu_host_double import bf16_figures, h100_inventory

MID = "ab" * 32


def codes(reasons: Any) -> set[str]:
    return {r.code for r in reasons}


def cpu_inventory() -> Inventory:
    return Inventory(backend="cpu", host=fixed_host())


def report(inventory: Inventory, benchmarks: list[BenchmarkResult] | None = None) -> BenchmarkReport:
    return BenchmarkReport(
        machine_id=MID,
        challenge_id="c1",
        challenge_nonce="00" * 32,
        probe_version="t",
        created_at=0,
        inventory=inventory,
        benchmarks=benchmarks or [],
        integrity=Integrity(),
    )


def held_to(inventory: Inventory, claim: Claim, *, bf16: float | None = 790.0, proven: bool = True) -> Any:
    """The findings of a report of `inventory` (its BF16 figures at `bf16` TFLOPS; None: none)
    under `claim` on production settings, scored from a passing proof of throughput and, with
    `proven`, an honest capacity record (without one no GPU is counted: docs/scoring.md §2)."""
    rep = report(inventory) if bf16 is None else report(inventory, bf16_figures(inventory, bf16))
    measured = facts(claim, capacity=capacity_doc(claim)) if proven else facts(claim)
    return findings_from_report(MID, "europe", rep, claim, allow_cpu_backend=False, facts=measured)


# ---------------------------------------------------------------------------- making the claim
def test_a_cpu_only_claim_is_refused_unless_the_cpu_backend_is_allowed() -> None:
    with pytest.raises(ClaimError) as refused:
        make_claim(None, 0, allow_cpu_backend=False)
    assert codes(refused.value.reasons) == {"cpu_claim_refused"}
    assert make_claim(None, 0, allow_cpu_backend=True) == Claim(None, 0)


def test_a_model_with_no_gpus_and_an_unknown_model_are_refused() -> None:
    with pytest.raises(ClaimError) as refused:
        make_claim("NVIDIA H100 80GB HBM3", 0, allow_cpu_backend=False)
    assert codes(refused.value.reasons) == {"claim_inconsistent", "cpu_claim_refused"}
    with pytest.raises(ClaimError) as unknown:
        make_claim("NVIDIA Imaginary 9000", 2, allow_cpu_backend=True)
    assert codes(unknown.value.reasons) == {"unknown_gpu_model"}


def test_the_nvml_name_is_normalised_to_the_table_model_and_stored_with_the_params() -> None:
    claim = make_claim("NVIDIA H100 80GB HBM3", 8, allow_cpu_backend=False)
    assert claim == Claim("H100 SXM5 80GB", 8)
    params = challenge_params(claim)
    assert params["claimed_gpu_model"] == "H100 SXM5 80GB" and params["gpu_count"] == 8
    assert len(params["proof"]) == 8
    assert claim_of(params) == claim
    assert params_reasons(params, claim) == []


def test_stored_params_that_are_not_the_claims_are_refused() -> None:
    """A challenge whose stored parameters were sized for a smaller card than its claim."""
    claim = Claim("H100 SXM5 80GB", 1)
    small = challenge_params(Claim("L4", 1))
    tampered = {**challenge_params(claim), "proof": small["proof"]}
    assert codes(params_reasons(tampered, claim)) == {"challenge_params_mismatch"}
    fewer = {**challenge_params(Claim("H100 SXM5 80GB", 2)), "gpu_count": 3}
    assert codes(params_reasons(fewer, claim_of(fewer))) == {"challenge_params_mismatch"}


def test_a_claim_missing_from_the_challenge_or_the_verification_is_an_error() -> None:
    for params in ({}, {"gpu_count": -1}, {"gpu_count": 2, "claimed_gpu_model": "Imaginary"}):
        with pytest.raises(ClaimError) as missing:
            claim_of(params)
        assert codes(missing.value.reasons) == {"claim_missing"}
    with pytest.raises(ClaimError):
        verified_claim({"passed": True})
    assert verified_claim({"claim": Claim("A10", 2).as_dict()}) == Claim("A10", 2)


def test_proof_parameters_grow_with_the_claimed_models_rate() -> None:
    fast = proof_params_for(Claim("H100 SXM5 80GB", 1))[0]
    slow = proof_params_for(Claim("L4", 1))[0]
    assert fast.ops > 5 * slow.ops


# ---------------------------------------------------------------------------- findings from the claim
def test_no_gpu_claim_with_eight_h100_in_the_inventory_is_refused() -> None:
    """The attack: gpu_count 0 for the tiny CPU proof, then a report listing 8 x H100."""
    forged = report(h100_inventory(8), bf16_figures(h100_inventory(8), 790.0))
    prod = findings_from_report(MID, "europe", forged, Claim(None, 0), allow_cpu_backend=False)
    assert not prod.supports and prod.fields is None
    assert {"cpu_claim_refused", "gpu_count_mismatch"} <= codes(prod.problems)
    # Even where the CPU backend is allowed, the inventory cannot add GPUs to the claim.
    demo = findings_from_report(MID, "europe", forged, Claim(None, 0), allow_cpu_backend=True)
    assert not demo.supports and "gpu_count_mismatch" in codes(demo.problems)
    assert demo.fields is not None and demo.fields["gpu_num"] == 0


def test_model_swap_is_refused_and_scored_as_the_claimed_model() -> None:
    """A challenge sized for an L4 answered by a report naming an H100."""
    inventory = h100_inventory(1)
    found = held_to(inventory, Claim("L4", 1))
    assert not found.supports
    assert "gpu_model_mismatch" in codes(found.problems)
    assert found.fields is not None
    ref = lookup("L4")
    assert ref is not None
    expected = calc_point_for_model(ref, gpu_num=1, ram_gb=found.fields["mem_num"], region=Region.europe)
    assert found.fields["mem_num"] == 512  # proven
    assert found.fields["calc_point"] == expected.chain_value
    assert found.fields["gpu_type"] == "L4" and found.fields["cuda_core"] == 7424


def test_more_gpus_in_the_inventory_than_claimed_score_nothing_more() -> None:
    inventory = h100_inventory(4)
    found = held_to(inventory, Claim("H100 SXM5 80GB", 2))
    assert "gpu_count_mismatch" in codes(found.problems)
    assert found.fields is not None and found.fields["gpu_num"] == 2


def test_a_missing_benchmark_is_a_refusal_not_medium_confidence() -> None:
    inventory = h100_inventory(2)
    claim = Claim("H100 SXM5 80GB", 2)
    found = held_to(inventory, claim, bf16=None)
    assert not found.supports
    assert codes(found.problems) == {"benchmark_missing"}


def test_a_rate_outside_the_claimed_envelope_is_refused() -> None:
    inventory = h100_inventory(1)
    found = findings_from_report(
        MID,
        "europe",
        report(inventory, bf16_figures(inventory, 150.0)),
        Claim("H100 SXM5 80GB", 1),
        allow_cpu_backend=False,
    )
    assert "gpu_rate_below_envelope" in codes(found.problems)


def test_an_honest_report_supports_its_claim_and_says_which_input_is_declared() -> None:
    inventory = h100_inventory(8)
    found = held_to(inventory, Claim("H100 SXM5 80GB", 8))
    assert found.supports, found.problems
    assert found.fields is not None and found.fields["gpu_num"] == 8
    assert found.fields["gpu_type"] == "H100SXM580GB" and found.fields["gpu_mem"] == 80
    status = {i["input"]: i["status"] for i in found.evidence["inputs"]}
    # Count, VRAM and RAM proven by the capacity record (RAM: 512 of the declared 2 TiB), region declared.
    assert status["RAM_GB"] == "proven" and found.fields["mem_num"] == 512
    assert status["gpu_num"] == "proven" and status["region"] == "declared"
    # The same report without a capacity record: nothing counted, and refused by the measured model.
    bare = held_to(inventory, Claim("H100 SXM5 80GB", 8), proven=False)
    assert not bare.supports and "model_capacity_missing" in codes(bare.problems)
    assert bare.fields is not None and (bare.fields["gpu_num"], bare.fields["mem_num"]) == (0, 0)


def test_a_mixed_host_is_held_to_its_one_claimed_model() -> None:
    gpus = [fake_gpu(0), fake_gpu(1, name="NVIDIA GeForce RTX 4090", memory_total_bytes=24 << 30)]
    nvml = NvmlTestDouble(gpus=gpus)
    inventory = collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), fixed_host())
    found = findings_from_report(
        MID,
        "europe",
        report(inventory, bf16_figures(inventory, 790.0)),
        Claim("H100 SXM5 80GB", 2),
        allow_cpu_backend=False,
    )
    assert "gpu_model_mismatch" in codes(found.problems)
    assert found.fields is not None and found.fields["gpu_type"] == "H100SXM580GB"


def test_huge_or_negative_ram_never_raises() -> None:
    """One bad report must not stop a draw: scoring errors become problems; declared RAM scores
    only up to what was proven (none here: 0)."""
    for ram in (10**400, 10**30, -(1 << 40)):
        host = fixed_host().model_copy(update={"ram_bytes": ram})
        found = findings_from_report(
            MID, "europe", report(Inventory(backend="cpu", host=host)), Claim(None, 0), allow_cpu_backend=True
        )
        assert found.fields is not None and found.fields["mem_num"] == 0 and found.fields["calc_point"] == 0
