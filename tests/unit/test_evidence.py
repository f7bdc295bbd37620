"""The model from what the service measured, the per-input evidence and fail-closed scoring
(`gpuproof.evidence`, docs/scoring.md): tolerance pairs, an A100 claiming H100, NVML as a
cross-check only, MIG and vGPU, the capacity record absent / present / malformed / failed, RAM,
DBC's weakest-GPU convention and minimums."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest

from benchmark_probe.inventory import collect_inventory
from benchmark_probe.nvml_double import CudaTestDouble, NvmlTestDouble, fake_gpu, fixed_host
from gpuproof import evidence
from gpuproof.claim import Claim, proof_params_for
from gpuproof.committee.findings import findings_from_report
from gpuproof.evidence import (
    GIB,
    NOTHING_MEASURED,
    MeasuredFacts,
    assess,
    facts_from_verification,
    gpu_evidence,
    parse_capacity,
    rate_fits,
    throughput_from_checks,
)
from gpuproof.protocol.machine import Region
from gpuproof.protocol.report import BenchmarkReport, Integrity, Inventory
from gpuproof.reference import lookup, reference_table
from gpuproof.scoring import ScoringError, calc_point, weakest_gpu
from tests.unit.evidence_facts import capacity_doc, facts, throughput
from tests.unit.gpu_host_double import bf16_figures

MID = "ab" * 32
H100 = "H100 SXM5 80GB"
DECLARED_RAM_GB = 2048  # fixed_host(): 2 TiB declared


def inventory(count: int, **gpu: Any) -> Inventory:
    nvml = NvmlTestDouble(gpus=[fake_gpu(i, **gpu) for i in range(count)])
    return collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), fixed_host())


def report(inv: Inventory) -> BenchmarkReport:
    return BenchmarkReport(
        machine_id=MID,
        challenge_id="c1",
        challenge_nonce="00" * 32,
        probe_version="t",
        created_at=0,
        inventory=inv,
        benchmarks=bf16_figures(inv, 790.0),
        integrity=Integrity(),
    )


def codes(reasons: Any) -> set[str]:
    return {r.code for r in reasons}


def by_input(found: Any) -> dict[str, dict[str, Any]]:
    return {i.name: i.as_dict() for i in found.inputs}


def ref(model: str) -> Any:
    row = lookup(model)
    assert row is not None
    return row


# ------------------------------------------------------------------------ the rate classifier
def test_an_honest_h100_rate_is_the_h100_h200_pair() -> None:
    claim = Claim(H100, 1)
    for speed, latency in ((1.1, 0.0), (1.0, 0.5)):
        rate_only = gpu_evidence(0, ref(H100), None, facts(claim, speed=speed, latency_s=latency))
        assert set(rate_only.rate_candidates) == {H100, "H200"}
        # Without a capacity proof nothing is scored (fail closed: as if its phase had failed).
        assert codes(rate_only.reasons) == {"model_capacity_missing"}
        assert (rate_only.mem_gb, rate_only.cuda_cores, rate_only.large_model_factor) == (0, 0, 1)
        g = gpu_evidence(
            0, ref(H100), None, facts(claim, capacity=capacity_doc(claim), speed=speed, latency_s=latency)
        )
        assert set(g.rate_candidates) == {H100, "H200"} and not g.reasons
        assert (g.mem_gb, g.cuda_cores, g.large_model_factor) == (80, 16896, 2)


def test_an_honest_h200_without_capacity_scores_nothing_then_its_own_when_proven() -> None:
    claim = Claim("H200", 1)
    unproven = gpu_evidence(0, ref("H200"), None, MeasuredFacts(throughput(claim)))
    assert set(unproven.candidates) == {H100, "H200"} and unproven.mem_gb == 0
    assert codes(unproven.reasons) == {"model_capacity_missing"}
    proven = gpu_evidence(0, ref("H200"), None, facts(claim, capacity=capacity_doc(claim)))
    assert proven.candidates == ("H200",) and proven.mem_gb == 141 and not proven.reasons


def test_an_a100_claiming_h100_is_refused_by_the_measured_rate() -> None:
    claim = Claim(H100, 1)
    slow = throughput(claim, model="A100 SXM4 80GB")
    assert not slow.passed and slow.late_only  # its deadline is missed: the work is valid, the time slow
    g = gpu_evidence(0, ref(H100), None, MeasuredFacts(slow, parse_capacity(capacity_doc(claim))[0]))
    assert codes(g.reasons) == {"model_rate_below_claim"}
    assert H100 not in g.rate_candidates and "A100 SXM4 80GB" in g.rate_candidates
    assert (g.cuda_cores, g.mem_gb) == (0, 0)  # a refused GPU scores nothing
    fits = {f.model: f.side for f in rate_fits(proof_params_for(claim)[0].ops, slow.elapsed_s or 0)}
    assert fits[H100] == "slower" and fits["H200"] == "slower" and fits["A100 SXM4 80GB"] == "fits"


def test_a_proof_that_failed_otherwise_measures_no_model() -> None:
    claim = Claim(H100, 1)
    checks = [
        {"name": "proof_of_throughput", "status": "fail", "reasons": [{"code": "proof_row_check_failed"}]}
    ]
    tp = throughput_from_checks(checks)
    assert tp is not None and not tp.timed
    g = gpu_evidence(0, ref(H100), None, MeasuredFacts(tp, parse_capacity(capacity_doc(claim))[0]))
    assert codes(g.reasons) == {"model_rate_not_proven"} and g.mem_gb == 0
    nothing = gpu_evidence(0, ref(H100), None, NOTHING_MEASURED)
    assert codes(nothing.reasons) == {"model_rate_not_proven", "model_capacity_missing"}


def test_the_nvml_name_is_a_cross_check_never_the_source() -> None:
    claim = Claim(H100, 1)
    # An honest H100 measurement whose (host-sent) NVML name says H200: not refused by the model
    # check, noted, and scored from the measurement (80 GB), not from the name (141 GB).
    named_h200 = inventory(1, name="NVIDIA H200", memory_total_bytes=150_000_000_000).gpus[0]
    g = gpu_evidence(0, ref(H100), named_h200, facts(claim, capacity=capacity_doc(claim)))
    assert not g.reasons and codes(g.notes) == {"nvml_name_cross_check"} and g.mem_gb == 80
    # An A100's measurement under a perfect H100 NVML name is still refused.
    named_h100 = inventory(1).gpus[0]
    slow = gpu_evidence(0, ref(H100), named_h100, MeasuredFacts(throughput(claim, model="A100 SXM4 80GB")))
    assert "model_rate_below_claim" in codes(slow.reasons) and not slow.notes


def test_a_faster_part_under_claiming_is_noted_and_scored_as_the_claim() -> None:
    claim = Claim("GeForce RTX 4090", 1)
    g = gpu_evidence(0, ref("GeForce RTX 4090"), None, facts(claim, model=H100, capacity=capacity_doc(claim)))
    assert not g.reasons and codes(g.notes) == {"model_rate_above_claim"}
    assert (g.mem_gb, g.large_model_factor) == (24, 1)


def test_an_rtx_4090_passing_an_a100_proof_scores_nothing_without_capacity_and_fails_its_fill() -> None:
    """The A100 | L40S | RTX 4090 int8 envelopes overlap: the rate cannot tell them apart, so
    without capacity nothing is scored; a 4090 cannot fill 90% of an A100 80GB's VRAM."""
    claim = Claim("A100 SXM4 80GB", 1)
    fake = gpu_evidence(
        0, ref("A100 SXM4 80GB"), None, MeasuredFacts(throughput(claim, model="GeForce RTX 4090"))
    )
    assert codes(fake.reasons) == {"model_capacity_missing"} and "GeForce RTX 4090" in fake.candidates
    assert (fake.mem_gb, fake.large_model_factor, fake.cuda_cores) == (0, 1, 0)
    # The 4090's phase: 24 of the 72 GiB filled, the rest answered late or wrong, so it failed.
    failed = capacity_doc(claim, fill=24 / 80, passed=[False])
    fake = gpu_evidence(
        0, ref("A100 SXM4 80GB"), None, facts(claim, model="GeForce RTX 4090", capacity=failed)
    )
    assert codes(fake.reasons) == {"model_capacity_failed"} and (fake.mem_gb, fake.cuda_cores) == (0, 0)
    honest = gpu_evidence(0, ref("A100 SXM4 80GB"), None, facts(claim, capacity=capacity_doc(claim)))
    assert set(honest.candidates) == {"A100 80GB PCIe", "A100 SXM4 80GB"}
    assert (honest.mem_gb, honest.large_model_factor) == (80, 2)


def test_an_a100_40gb_claiming_80gb_is_held_to_what_its_capacity_proves() -> None:
    claim = Claim("A100 SXM4 80GB", 1)
    # The A100 40GB's rate fits; the capacity phase proving only 40 GiB fails the 80 GB claim.
    cap = capacity_doc(claim, fill=0.5, passed=[False])
    g = gpu_evidence(0, ref("A100 SXM4 80GB"), None, facts(claim, model="A100 40GB PCIe", capacity=cap))
    assert "model_capacity_failed" in codes(g.reasons) and g.mem_gb == 0


def test_host_memory_over_pcie_misses_the_bandwidth_envelope_a_cross_check_until_calibrated() -> None:
    claim = Claim(H100, 1)
    cap = capacity_doc(claim, bandwidth_fraction=25 / 3350)  # 25 GB/s: host RAM over PCIe
    g = gpu_evidence(0, ref(H100), None, facts(claim, capacity=cap))
    assert not g.reasons and codes(g.notes) == {"model_bandwidth_outside_claim"}
    # It narrows nothing, so it cannot raise the score: the rate and capacity candidates remain.
    assert g.bandwidth_candidates is None and set(g.candidates) == {H100, "H200"} and g.mem_gb == 80


def test_bandwidth_tells_an_rtx_4090_from_an_a100_40gb_once_capacity_is_proven() -> None:
    claim = Claim("GeForce RTX 4090", 1)
    g = gpu_evidence(0, ref("GeForce RTX 4090"), None, facts(claim, capacity=capacity_doc(claim)))
    assert set(g.candidates) == {"GeForce RTX 4090", "L40S"}
    assert (g.cuda_cores, g.mem_gb, g.large_model_factor) == (16384, 24, 1)
    l40s = Claim("L40S", 1)
    assert gpu_evidence(0, ref("L40S"), None, facts(l40s, capacity=capacity_doc(l40s))).candidates == (
        "L40S",
    )


def test_mig_instances_and_vgpus_are_refused() -> None:
    claim = Claim(H100, 1)
    mig = inventory(1, mig_mode=(1, 1)).gpus[0]
    assert mig.mig_enabled
    assert "gpu_mig_refused" in codes(
        gpu_evidence(0, ref(H100), mig, MeasuredFacts(throughput(claim))).reasons
    )
    vgpu = inventory(1, virtualization_mode=2).gpus[0]
    assert vgpu.virtualization_mode == "vgpu"
    assert "gpu_vgpu_refused" in codes(
        gpu_evidence(0, ref(H100), vgpu, MeasuredFacts(throughput(claim))).reasons
    )
    passthrough = inventory(1, virtualization_mode=1).gpus[0]
    assert not gpu_evidence(0, ref(H100), passthrough, facts(claim, capacity=capacity_doc(claim))).reasons


# ------------------------------------------------------------------------ the capacity record
@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("digest"),
        lambda d: d.update(version=2),
        lambda d: d["gpus"][0].update(proven_bytes=-1),
        lambda d: d["gpus"][0].update(bandwidth_bytes_per_s=math.nan),
        lambda d: d["gpus"][0].update(passed="yes"),
        lambda d: d["gpus"].append(dict(d["gpus"][0])),
        lambda d: d.update(extra=1),
        lambda d: d.update(host_ram={"claimed_bytes": 1}),
    ],
)
def test_a_malformed_capacity_record_is_not_proven(mutate: Any) -> None:
    claim = Claim(H100, 2)
    doc = capacity_doc(claim)
    mutate(doc)
    record, reasons = parse_capacity(doc)
    assert record is None and codes(reasons) == {"capacity_record_malformed"}
    malformed = assess(
        claim, report(inventory(2)), Region.europe, DECLARED_RAM_GB, facts(claim, capacity=doc)
    )
    absent = assess(claim, report(inventory(2)), Region.europe, DECLARED_RAM_GB, facts(claim))
    assert malformed.point is not None and absent.point is not None
    assert malformed.point.chain_value == absent.point.chain_value
    assert malformed.scored.gpu_num == absent.scored.gpu_num == 0
    assert "capacity_record_malformed" in codes(malformed.unproven)


def test_absent_capacity_is_not_proven_and_never_scores_more_than_proven() -> None:
    claim = Claim(H100, 8)
    absent = assess(claim, report(inventory(8)), Region.europe, DECLARED_RAM_GB, facts(claim))
    inputs = by_input(absent)
    assert inputs["RAM_GB"]["status"] == "not_proven" and inputs["RAM_GB"]["value"] == 0
    assert inputs["gpu_num"]["status"] == "not_proven" and inputs["gpu_mem_GB"]["status"] == "not_proven"
    assert (inputs["gpu_num"]["value"], inputs["gpu_mem_GB"]["value"]) == (0, 0)
    assert inputs["gpu_num"]["evidence"]["claimed"] == 8
    assert inputs["region"]["status"] == "declared"
    assert {"ram_not_proven", "gpu_count_not_proven", "vram_not_proven"} <= codes(absent.unproven)
    proven = assess(
        claim,
        report(inventory(8)),
        Region.europe,
        DECLARED_RAM_GB,
        facts(claim, capacity=capacity_doc(claim)),
    )
    assert by_input(proven)["RAM_GB"]["status"] == "proven" and not proven.unproven
    assert absent.point is not None and proven.point is not None
    assert absent.point.chain_value < proven.point.chain_value
    expected = calc_point(
        gpu_num=8, cuda_cores=16896, gpu_mem_gb=80, ram_gb=512, region=Region.europe, large_model_factor=2
    )
    assert proven.point == expected


def test_missing_capacity_never_scores_more_than_failed() -> None:
    """Fail closed: a host that would fail the capacity phase gains nothing by skipping it (no
    record at all, as when its probe skips a phase whose fills do not fit), and the rate alone
    counts no GPU: K faster GPUs do M > K slower ones' aggregate work."""
    claim = Claim(H100, 4)
    rep = report(inventory(4))
    absent = assess(claim, rep, Region.europe, DECLARED_RAM_GB, facts(claim))
    one_failed = assess(
        claim,
        rep,
        Region.europe,
        DECLARED_RAM_GB,
        facts(claim, capacity=capacity_doc(claim, passed=[True, False, True, True], ram_passed=False)),
    )
    all_failed = assess(
        claim,
        rep,
        Region.europe,
        DECLARED_RAM_GB,
        facts(claim, capacity=capacity_doc(claim, passed=[False] * 4, ram_passed=False)),
    )
    assert absent.point is not None and one_failed.point is not None and all_failed.point is not None
    assert absent.point.chain_value <= all_failed.point.chain_value <= one_failed.point.chain_value
    assert absent.point.chain_value == all_failed.point.chain_value == 0
    assert one_failed.scored.gpu_num == 3 and one_failed.scored.ram_gb == 0  # the failing GPU is not counted
    assert absent.scored.gpu_num == all_failed.scored.gpu_num == 0
    assert codes(absent.model_reasons) == {"model_capacity_missing"}
    assert codes(all_failed.model_reasons) == {"model_capacity_failed"}
    # The findings' calc_point (the CommitteeUploadInfo) is the same 0, and the report is refused
    # by the measured model: missing is a reason of its own, deciding as a failure is.
    found = findings_from_report(MID, "europe", rep, claim, allow_cpu_backend=False, facts=facts(claim))
    assert not found.supports or (found.fields is not None and found.fields["gpu_num"] == 0)


def test_a_gpu_missing_from_the_capacity_record_is_not_counted() -> None:
    claim = Claim(H100, 2)
    cap = capacity_doc(claim)
    cap["gpus"].pop()
    found = assess(claim, report(inventory(2)), Region.europe, DECLARED_RAM_GB, facts(claim, capacity=cap))
    assert found.scored.gpu_num == 1 and "model_capacity_failed" in codes(found.model_reasons)


def test_ram_scores_the_least_of_declared_and_proven() -> None:
    claim = Claim(H100, 1)
    rep = report(inventory(1))
    more_than_declared = capacity_doc(claim, ram_claimed_gb=4096, ram_proven_gb=4096)
    assert (
        assess(claim, rep, Region.china, 2048, facts(claim, capacity=more_than_declared)).scored.ram_gb
        == 2048
    )
    less = capacity_doc(claim, ram_claimed_gb=2048, ram_proven_gb=1000)
    assert assess(claim, rep, Region.china, 2048, facts(claim, capacity=less)).scored.ram_gb == 1000
    no_ram = capacity_doc(claim, ram_claimed_gb=None)
    found = assess(claim, rep, Region.china, 2048, facts(claim, capacity=no_ram))
    assert found.scored.ram_gb == 0 and "ram_not_proven" in codes(found.unproven)


# ------------------------------------------------------------------------ DBC's rules
def test_the_weakest_gpu_sets_cores_and_memory_for_the_machine() -> None:
    assert weakest_gpu([(16896, 141), (16896, 80), (14592, 141)]) == (14592, 80)
    with pytest.raises(ScoringError):
        weakest_gpu([])
    claim = Claim("H200", 2)
    cap = capacity_doc(claim)
    # GPU 1 passed, but proved what an H100 holds at an H100's bandwidth: both models fit it.
    cap["gpus"][1].update(proven_bytes=75 * GIB, bandwidth_bytes_per_s=0.85 * 3350e9)
    found = assess(claim, report(inventory(2)), Region.europe, DECLARED_RAM_GB, facts(claim, capacity=cap))
    assert [g.mem_gb for g in found.gpus] == [141, 80]
    assert found.scored.gpu_mem_gb == 80 and found.scored.gpu_num == 2
    weakest = by_input(found)["gpu_mem_GB"]["evidence"]
    assert weakest["weakest_gpu"] == 1 and weakest["proven_vram_bytes"] == 75 * GIB


def _mixed(claimed: str, weak: str, n: int, k: int, weak_bandwidth: float) -> tuple[Claim, MeasuredFacts]:
    """A MIXED-MODEL ADVERSARY: n slots claimed as `claimed`, the last k held by `weak` cards (each
    holds its share of VRAM in the capacity phase, at `weak_bandwidth` x its datasheet), and the
    claimed cards do the weak ones' share of the proof's work: one commitment time for all, at the
    pooled rate (the claimed and weak models' estimated pipelines)."""
    claim = Claim(claimed, n)
    params = proof_params_for(claim)
    strong, slow = ref(claimed), ref(weak)
    rate = lambda r: r.expected_int8_tops / (1 + r.epilogue_fraction)  # noqa: E731
    work = sum(p.ops for p in params)
    elapsed = work / ((n - k) * rate(strong) + k * rate(slow)) / 1e12 + strong.setup_s
    assert elapsed <= params[0].deadline_s  # the proof passes: the slack hides k weak cards
    tp = throughput(claim)
    measured = type(tp)(True, elapsed, tp.ops_per_gpu, tp.digest, False)
    cap = capacity_doc(claim)
    for g in cap["gpus"][n - k :]:
        g["bandwidth_bytes_per_s"] = weak_bandwidth * slow.mem_bw_gbs * 1e9
        g["proven_bytes"] = min(g["proven_bytes"], int(0.9 * slow.mem_gb * GIB))
    record, reasons = parse_capacity(cap)
    return claim, MeasuredFacts(measured, record, tuple(reasons))


@pytest.mark.parametrize(
    ("claimed", "weak", "k", "bandwidth"),
    [
        ("GeForce RTX 4090", "GeForce RTX 3090", 2, 0.85),  # the bandwidths overlap
        (H100, "A100 SXM4 80GB", 1, 0.9),  # outside the H100's envelope: a note, no narrowing
    ],
)
def test_a_mixed_model_machine_is_recorded_at_its_weakest_slot_under_the_pooled_rule(
    claimed: str, weak: str, k: int, bandwidth: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any GPU can do another's share of the proof's work, so the machine-wide time bounds the pooled
    rate, not a slot's model: the weak slots pass as the claim under the per-GPU rate, and the pooled
    rule finds them (recorded as cuda_cores_not_proven until it is scored: POOLED_RATE_SCORED)."""
    claim, measured = _mixed(claimed, weak, 8, k, bandwidth)
    found = assess(claim, report(inventory(8)), Region.europe, DECLARED_RAM_GB, measured)
    truth = ref(weak)
    assert found.scored.cuda_cores == ref(claimed).cuda_cores  # what the per-GPU rate scores
    pooled = by_input(found)["cuda_cores"]["evidence"]["pooled"]
    assert pooled["cuda_cores"] == truth.cuda_cores  # at some slot: the rate cannot say which
    assert "cuda_cores_not_proven" in codes(found.unproven)
    assert weak in found.gpus[7].pooled_candidates and weak not in found.gpus[0].candidates
    # Scored, the rule gives DBC's weakest-GPU figure for the machine the host really has.
    monkeypatch.setattr(evidence, "POOLED_RATE_SCORED", True)
    scored = assess(claim, report(inventory(8)), Region.europe, DECLARED_RAM_GB, measured)
    assert scored.scored.cuda_cores == truth.cuda_cores and scored.scored.gpu_num == 8
    assert "cuda_cores_not_proven" not in codes(scored.unproven)


def honest_machine(model: str, gpus: int, region: Region) -> Any:
    """The assessment of an honest machine of `gpus` x `model`: its proof at the model's estimated
    speed, every slot's capacity proven at 90% of the VRAM and 0.85 x the datasheet bandwidth."""
    claim = Claim(model, gpus)
    return assess(
        claim, report(inventory(gpus)), region, DECLARED_RAM_GB, facts(claim, capacity=capacity_doc(claim))
    )


@pytest.mark.parametrize(
    ("model", "gpus", "pooled"),
    [
        (H100, 8, None),  # its bandwidth tells it from every slower model
        ("H200", 8, None),
        ("L40S", 8, None),  # its 48 GB does
        ("GeForce RTX 4090", 1, None),  # alone, its rate does
        ("GeForce RTX 4090", 2, None),
        ("GeForce RTX 4090", 8, "GeForce RTX 3090"),  # the honest cost of the rule, recorded
        ("H100 PCIe", 8, "A100 80GB PCIe"),
    ],
)
def test_honest_machines_under_the_pooled_rule(model: str, gpus: int, pooled: str | None) -> None:
    """What the pooled rule would do to honest machines: nothing where a slot's own capacity or
    bandwidth tells its model from every slower one, or where a slot's share is too large to hide;
    the pairs nothing per slot tells apart (RTX 4090 | 3090, H100 PCIe | A100 80GB) it would score
    as the slower (docs/scoring.md §3): recorded, not scored."""
    found = honest_machine(model, gpus, Region.europe)
    assert found.scored.cuda_cores == ref(model).cuda_cores
    recorded = by_input(found)["cuda_cores"]["evidence"]["pooled"]
    if pooled is None:
        assert recorded is None and "cuda_cores_not_proven" not in codes(found.unproven)
    else:
        assert recorded["cuda_cores"] == ref(pooled).cuda_cores, recorded
        assert "cuda_cores_not_proven" in codes(found.unproven)


@pytest.mark.parametrize(
    ("model", "gpus", "split"),
    [
        (H100, 8, False),  # no device holds two H100 fills
        ("GeForce RTX 3090", 2, False),  # the devices that could answer for both score more
        ("GeForce RTX 3090", 8, True),  # an H200 holds six 3090 fills and reads them at once
        ("A100 40GB PCIe", 8, True),
    ],
)
def test_a_verdict_records_the_least_reading_of_its_slots_as_fewer_larger_devices(
    model: str, gpus: int, split: bool
) -> None:
    """Nothing binds a slot to one device (docs/protocol.md §17.8): where g devices of a larger
    model could answer for the counted slots (their fills in its memory, their measured bandwidths
    together within 1.1 x its datasheet, the pooled rate within the slack) and that machine scores
    less, the verdict records it (`gpu_count_split`, gpu_num's evidence `split`), not scored."""
    found = honest_machine(model, gpus, Region.china)
    recorded = by_input(found)["gpu_num"]["evidence"].get("split")
    assert found.scored.gpu_num == gpus and ("gpu_count_split" in codes(found.unproven)) is split
    if not split:
        assert recorded is None
        return
    assert recorded is not None and Decimal(recorded["calc_point"]) < found.point.decimal
    assert recorded["verdict_calc_point"] == str(found.point.decimal)
    device, slot = ref(recorded["device"]), ref(model)
    each = recorded["slots_each"]
    assert each >= 2 and each * 0.9 * slot.mem_gb <= device.mem_gb
    assert each * 0.85 * slot.mem_bw_gbs <= evidence.BANDWIDTH_HIGH * device.mem_bw_gbs
    assert recorded["gpu_num"] < gpus


# Devices that score more answering for k slots of a smaller model than claimed as themselves, on
# the generous side for the splitter (docs/protocol.md §17.8 "That slots are separate devices": NOT
# proven; the H100 PCIe one needs 0.6 x the A100's bandwidth per slot, where the round takes 0.68 x).
KNOWN_PROFITABLE_SPLITS = {
    ("H100 PCIe", "A100 40GB PCIe", 2),
    ("H200", "A100 40GB PCIe", 3),
    ("H200", "GeForce RTX 3090", 6),
}


def test_the_devices_that_score_more_split_into_slots_are_the_known_ones() -> None:
    """Nothing binds a capacity slot to one physical GPU (docs/protocol.md §17.8): a device with the
    memory, bandwidth and int8 rate of k slots of a smaller model could answer for all k. With
    today's reference table the splits that score more than the device claimed as itself are
    exactly KNOWN_PROFITABLE_SPLITS, found on the generous side for the splitter (k fills of 90%
    in its memory; the bandwidth round reads every slot at once, docs/protocol.md §17.12, so k
    slots' reads at the envelope's low end, 0.6 x
    datasheet, where passing the round takes about 0.68 x; the pooled rate within the fast slack).
    A table change that adds one (or removes one) fails here: the docs list them."""
    rows = [r for r in reference_table() if r.expected_int8_tops and r.cuda_cores and r.mem_bw_gbs]

    def point(model: Any, k: int) -> Decimal:
        return calc_point(
            gpu_num=k,
            cuda_cores=model.cuda_cores,
            gpu_mem_gb=model.mem_gb,
            ram_gb=0,
            region=Region.china,
            large_model_factor=model.large_model_factor,
        ).decimal

    splits = []
    for device in rows:
        for slot in rows:
            for k in range(2, 9):
                fits = k * 0.9 * slot.mem_gb <= device.mem_gb
                fast = device.mem_bw_gbs >= k * evidence.BANDWIDTH_LOW * slot.mem_bw_gbs
                rate = device.expected_int8_tops * evidence.POOL_SLACK >= k * slot.expected_int8_tops
                if fits and fast and rate:
                    splits.append((device.model, slot.model, k, point(slot, k), point(device, 1)))
    assert splits, "the check found no feasible split at all: its conditions are wrong"
    assert {s[:3] for s in splits if s[3] > s[4]} == KNOWN_PROFITABLE_SPLITS
    assert ("L40S", "L4", 2) in {s[:3] for s in splits}  # feasible, and just short: 316.97 < 320.37


@pytest.mark.parametrize(
    ("gpus", "ram_gb", "expected"),
    [
        (8, 512, set()),
        (8, 256, {"dbc_ram_per_gpu_below_minimum"}),
        (1, 48, {"dbc_ram_per_machine_below_minimum"}),
        (1, 64, set()),
        (2, 0, {"dbc_ram_per_gpu_below_minimum", "dbc_ram_per_machine_below_minimum"}),
    ],
)
def test_dbc_minimums_are_checked_against_proven_ram(gpus: int, ram_gb: int, expected: set[str]) -> None:
    claim = Claim(H100, gpus)
    cap = capacity_doc(claim, ram_claimed_gb=ram_gb, ram_proven_gb=ram_gb)
    found = assess(claim, report(inventory(gpus)), Region.europe, 4096, facts(claim, capacity=cap))
    assert codes(found.minimums) == expected
    assert found.as_dict()["minimums"]["met"] is (not expected)


def test_the_findings_upload_info_is_the_scored_inputs() -> None:
    claim = Claim(H100, 8)
    measured = facts(claim, capacity=capacity_doc(claim, ram_proven_gb=1024, ram_claimed_gb=2048))
    found = findings_from_report(
        MID, "europe", report(inventory(8)), claim, allow_cpu_backend=False, facts=measured
    )
    assert found.supports, found.problems
    assert found.fields is not None
    f = found.fields
    assert (f["gpu_num"], f["cuda_core"], f["gpu_mem"], f["mem_num"]) == (8, 16896, 80, 1024)
    point = calc_point(
        gpu_num=8,
        cuda_cores=16896,
        gpu_mem_gb=80,
        ram_gb=Decimal(1024),
        region=Region.europe,
        large_model_factor=2,
    )
    assert f["calc_point"] == point.chain_value == found.evidence["calc_point"]["chain_value"]
    assert found.evidence["scored"]["region_coefficient"] == "1.5"
    assert "claim" in found.evidence["host_sent"]


def test_the_breakdown_digest_is_stable_and_covers_every_value() -> None:
    claim = Claim(H100, 2)
    rep = report(inventory(2))
    one = assess(claim, rep, Region.europe, DECLARED_RAM_GB, facts(claim)).as_dict()
    two = assess(claim, rep, Region.europe, DECLARED_RAM_GB, facts(claim)).as_dict()
    assert one == two and len(one["digest"]) == 64
    other = assess(claim, rep, Region.japan, DECLARED_RAM_GB, facts(claim)).as_dict()
    assert other["digest"] != one["digest"]


def test_facts_from_a_verification_record_read_the_proof_check_and_capacity() -> None:
    claim = Claim(H100, 1)
    params = proof_params_for(claim)[0]
    record = {
        "checks": [
            {
                "name": "proof_of_throughput",
                "status": "pass",
                "reasons": [],
                "details": {
                    "elapsed_s": 20.0,
                    "commitment_sha256": "aa" * 32,
                    "gpus": [{"gpu_index": 0, "ops": params.ops, "proven_tops_lower_bound": 1.0}],
                },
            }
        ],
        "capacity": capacity_doc(claim),
    }
    found = facts_from_verification(record)
    assert found.throughput is not None and found.throughput.proven
    assert found.throughput.ops_per_gpu == {0: float(params.ops)} and found.throughput.digest == "aa" * 32
    assert found.capacity is not None and found.capacity.gpus[0].passed
    assert facts_from_verification(None) == NOTHING_MEASURED
    assert facts_from_verification({"checks": []}).throughput is None


def test_a_cpu_claim_scores_proven_ram_only() -> None:
    cpu = Inventory(backend="cpu", host=fixed_host())
    found = assess(Claim(None, 0), report(cpu), Region.europe, DECLARED_RAM_GB, NOTHING_MEASURED)
    assert found.point is not None and found.point.chain_value == 0
    assert by_input(found)["RAM_GB"]["status"] == "not_proven"


def test_the_capacity_phases_own_record_parses() -> None:
    """The contract with gpuproof.protocol.capacity: its `as_record()` is what `parse_capacity` reads."""
    from gpuproof.protocol.capacity.verifier import CapacityResult, TargetResult

    gpus = [TargetResult(i, 80 * GIB, int(0.9 * 80 * GIB), 2.8e12, 0.004, 0.009, True) for i in range(2)]
    host = TargetResult(255, 512 * GIB, 512 * GIB, 1.5e11, 0.01, 0.02, True)
    result = CapacityResult(gpus, host, [], "ab" * 32)
    record, reasons = parse_capacity(result.as_record())
    assert reasons == [] and record is not None
    assert [g.index for g in record.gpus] == [0, 1] and record.host_ram is not None
    assert record.host_ram.proven_bytes == 512 * GIB
    empty, why = parse_capacity(CapacityResult(gpus, None).as_record())  # no digest: not proven
    assert empty is None and codes(why) == {"capacity_record_malformed"}
