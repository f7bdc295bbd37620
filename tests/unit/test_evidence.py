"""The model from what the service measured, the per-input evidence and fail-closed scoring
(`gpuproof.evidence`, docs/scoring.md): tolerance pairs, an A100 claiming H100, NVML as a
cross-check only, MIG and vGPU, the capacity record absent / present / malformed / failed, RAM,
DBC's weakest-GPU convention and minimums."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from gpuproof.protocol.limits import DEFAULT_MAX_GPUS_PER_MACHINE, PROTOCOL_MAX_GPUS
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
    assert by_input(proven)["RAM_GB"]["status"] == "proven"
    assert codes(proven.unproven) == {"least_reading_lower"}  # what 8 slots' totals allow (§17.8)
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


# ------------------------------------------------------------------------ the least reading
# Every capacity round and the proof answer for all slots at once, so what the service measured
# binds the machine's totals (docs/protocol.md §17.8). These adversaries own other hardware than
# they claim and answer with all of it; `honest_value` is the most that hardware scores declared
# honestly, computed here from every split of its devices into machines (not with evidence.py).
RATED = [r for r in reference_table() if r.expected_int8_tops and r.cuda_cores and r.mem_bw_gbs and r.setup_s]
ROUND_THRESHOLD = 0.71  # the bandwidth round needs 0.645-0.707 x the claim's datasheet (§17.12)


def hardware_facts(
    claim: Claim, hardware: dict[str, int], bandwidth_fraction: float = 0.85
) -> MeasuredFacts | None:
    """AN ADVERSARY OWNING `hardware` (model -> count) that answers `claim` with all of it: the
    proof's work at the hardware's pooled rate, every slot's fill held somewhere in its memory (a
    device's headroom holds another slot's rows) and the bandwidth round read by all of it at once,
    each device at `bandwidth_fraction` x its datasheet, so each slot's measured bandwidth is its
    share of one time. None when the claim would not pass: the proof's deadline, the memory, or the
    bandwidth round's threshold at its strictest."""
    params = proof_params_for(claim)
    claimed, devices = ref(claim.gpu_model or ""), [(ref(m), n) for m, n in hardware.items()]
    rate = sum(n * r.expected_int8_tops * 1e12 / (1 + r.epilogue_fraction) for r, n in devices)
    elapsed = sum(p.ops for p in params) / rate + min(r.setup_s for r, _ in devices)
    per_slot = sum(n * bandwidth_fraction * r.mem_bw_gbs * 1e9 for r, n in devices) / claim.gpu_count
    cap = capacity_doc(claim)
    held = sum(g["proven_bytes"] for g in cap["gpus"]) <= sum(n * r.mem_gb * GIB for r, n in devices)
    if elapsed > params[0].deadline_s or not held or per_slot < ROUND_THRESHOLD * claimed.mem_bw_gbs * 1e9:
        return None
    for g in cap["gpus"]:
        g["bandwidth_bytes_per_s"] = per_slot
    tp = throughput(claim)
    record, reasons = parse_capacity(cap)
    return MeasuredFacts(type(tp)(True, elapsed, tp.ops_per_gpu, tp.digest, False), record, tuple(reasons))


def set_partitions(items: list[Any]) -> Iterator[list[list[Any]]]:
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        yield [[first], *part]
        for i in range(len(part)):
            yield [*part[:i], [first, *part[i]], *part[i + 1 :]]


def honest_value(hardware: dict[str, int], ram_gb: int, region: Region) -> Decimal:
    """The most `hardware` (model -> count) scores declared honestly: every way of splitting its
    devices into machines, each under DBC's weakest-GPU rule, the host RAM in any one of them."""
    devices = [ref(m) for m, n in sorted(hardware.items()) for _ in range(n)]
    best = Decimal(0)
    for machines in set_partitions(devices):
        points = [
            [
                calc_point(
                    gpu_num=len(group),
                    cuda_cores=min(r.cuda_cores for r in group),
                    gpu_mem_gb=min(r.mem_gb for r in group),
                    ram_gb=Decimal(ram if holder == i else 0),
                    region=region,
                    large_model_factor=min(r.large_model_factor for r in group),
                ).decimal
                for i, group in enumerate(machines)
            ]
            for holder in range(len(machines))
            for ram in [ram_gb]
        ]
        best = max(best, *(sum(p, Decimal(0)) for p in points))
    return best


@settings(max_examples=40, deadline=None)
@given(
    hardware=st.dictionaries(
        st.sampled_from([r.model for r in RATED]), st.integers(1, 2), min_size=1, max_size=3
    )
)
def test_one_machine_per_model_is_the_most_hardware_earns_honestly(hardware: dict[str, int]) -> None:
    """DBC's weakest-GPU rule scores a machine of mixed models below its models apart, so the
    least reading prices a set of devices one machine per model (`evidence.declared_apart`): the
    best of every split into machines, to the cent of rounding each machine."""
    apart = evidence.declared_apart([(ref(m), n) for m, n in hardware.items()], 512, Region.china)
    assert abs(apart - honest_value(hardware, 512, Region.china)) <= Decimal("0.02")


def least(found: Any) -> dict[str, Any] | None:
    recorded: dict[str, Any] | None = by_input(found)["gpu_num"]["evidence"].get("least_reading")
    assert (recorded is not None) is ("least_reading_lower" in codes(found.unproven))
    return recorded


@pytest.mark.parametrize(
    ("claimed", "hardware"),
    [
        ("GeForce RTX 4090", {"GeForce RTX 4090": 6, "GeForce RTX 3090": 2}),  # mixed models: +4%
        (H100, {H100: 7, "A100 SXM4 80GB": 1}),  # the A100's rows partly in the H100s' headroom: +4%
        ("H200", {"H200": 7, "L40S": 1}),  # +9%
        ("H100 PCIe", {"H200": 3, "GeForce RTX 4090": 1, "L40S": 3}),  # 7 devices for 8 slots: +35%
    ],
)
def test_other_hardware_answering_a_claim_is_bounded_by_the_least_reading(
    claimed: str, hardware: dict[str, int]
) -> None:
    """Each adversary passes every check as the claim (nothing per slot tells its hardware apart:
    every slot's figures are shares of one time) and scores more than its hardware would declared
    honestly; the verdict records a least reading that scores no more than that hardware."""
    claim = Claim(claimed, 8)
    measured = hardware_facts(claim, hardware)
    assert measured is not None, "the adversary must pass the checks for this test to mean anything"
    found = assess(claim, report(inventory(8)), Region.china, DECLARED_RAM_GB, measured)
    assert not found.model_reasons and found.scored.gpu_num == 8
    assert found.scored.cuda_cores == ref(claimed).cuda_cores  # what the slots' own figures score
    truth = honest_value(hardware, found.scored.ram_gb, Region.china)
    assert truth < found.point.decimal  # the claim gains
    recorded = least(found)
    assert recorded is not None and Decimal(recorded["calc_point"]) <= truth
    assert recorded["verdict_calc_point"] == str(found.point.decimal)


MODELS = [r.model for r in RATED]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    claimed=st.sampled_from(MODELS),
    slots=st.integers(2, 8),
    hardware=st.dictionaries(st.sampled_from(MODELS), st.integers(1, 3), min_size=1, max_size=3).filter(
        lambda h: sum(h.values()) <= 6
    ),
    bandwidth=st.floats(0.75, 1.0),
)
def test_no_hardware_passing_as_a_claim_scores_more_than_the_record_allows(
    claimed: str, slots: int, hardware: dict[str, int], bandwidth: float
) -> None:
    """Over any hardware that passes as any claim (a strategy, not a list of attacks): the verdict,
    or its least reading where one is recorded, never scores more than that hardware declared
    honestly, split into machines in any way. The bound the verdict states holds for every
    answering set (up to six devices here, for the brute force over splits)."""
    if sum(hardware.values()) > slots:
        return  # more devices than slots: declared honestly, they would be counted
    claim = Claim(claimed, slots)
    measured = hardware_facts(claim, hardware, bandwidth)
    if measured is None:
        return  # the claim fails a check: nothing to bound
    found = assess(claim, report(inventory(slots)), Region.china, DECLARED_RAM_GB, measured)
    if found.point is None:
        return
    recorded = least(found)
    bound = found.point.decimal if recorded is None else Decimal(recorded["calc_point"])
    assert bound <= honest_value(hardware, found.scored.ram_gb, Region.china) + Decimal("0.02"), hardware


def brute_least(found: Any, slots: int) -> Decimal | None:
    """evidence.least_reading's figure by brute force: every multiset of at most `slots` rated
    devices whose totals meet the record's, its best declaration, the least below the verdict."""
    counted = [g for g in found.gpus if g.capacity_passed]
    need_mem = sum(g.proven_bytes for g in counted)
    need_bw = sum(g.bandwidth_bytes_per_s for g in counted)
    tp = found_facts[id(found)].throughput
    ops = sum(tp.ops_per_gpu.values())
    setup = min(r.setup_s for r in RATED)
    out: Decimal | None = None
    for n in range(1, slots + 1):
        for combo in itertools.combinations_with_replacement(RATED, n):
            mem = sum(r.mem_gb * GIB for r in combo)
            bw = sum(evidence.BANDWIDTH_HIGH * r.mem_bw_gbs * 1e9 for r in combo)
            rate = sum(r.expected_int8_tops * 1e12 / (1 + r.epilogue_fraction) for r in combo)
            if mem < need_mem or bw < need_bw or ops / rate + setup > evidence.POOL_SLACK * tp.elapsed_s:
                continue
            kinds = sorted({r.model for r in combo})
            value = evidence.declared_apart(
                [(ref(m), sum(r.model == m for r in combo)) for m in kinds], found.scored.ram_gb, Region.china
            )
            if value < found.point.decimal and (out is None or value < out):
                out = value
    return out


found_facts: dict[int, MeasuredFacts] = {}


@pytest.mark.parametrize(
    ("claimed", "slots"),
    [
        (H100, 2),
        (H100, 3),
        ("GeForce RTX 3090", 3),
        ("GeForce RTX 4090", 4),
        ("A100 40GB PCIe", 4),
        ("L40S", 3),
    ],
)
def test_the_least_reading_is_the_least_over_every_set_of_devices(claimed: str, slots: int) -> None:
    """The search (a depth-first search over multisets that stops growing a set once it qualifies or
    declares more than the best so far) finds what brute force over every multiset finds."""
    claim = Claim(claimed, slots)
    measured = facts(claim, capacity=capacity_doc(claim))
    found = assess(claim, report(inventory(slots)), Region.china, DECLARED_RAM_GB, measured)
    found_facts[id(found)] = measured
    recorded = least(found)
    exact = brute_least(found, slots)
    assert (recorded is None) is (exact is None)
    if recorded is not None and exact is not None:  # a cent apart: each machine rounds its points
        assert abs(Decimal(recorded["calc_point"]) - exact) <= Decimal("0.02") and recorded["exhaustive"]


def honest_machine(model: str, gpus: int, region: Region) -> Any:
    """The assessment of an honest machine of `gpus` x `model`: its proof at the model's estimated
    speed, every slot's capacity proven at 90% of the VRAM and 0.85 x the datasheet bandwidth."""
    claim = Claim(model, gpus)
    return assess(
        claim, report(inventory(gpus)), region, DECLARED_RAM_GB, facts(claim, capacity=capacity_doc(claim))
    )


# The least reading of an honest machine of 8 x the model, as a fraction of its verdict (region
# china, 512 GB of RAM proven; docs/protocol.md §17.8 lists them): what its evidence alone binds.
HONEST_LEAST_READINGS = {
    "GeForce RTX 3090": 0.96,
    "GeForce RTX 4090": 0.93,
    "L4": None,
    "L40S": 0.94,
    "A100 40GB PCIe": 0.75,
    "A100 80GB PCIe": 0.91,
    "A100 SXM4 80GB": 0.91,
    "H100 PCIe": 0.74,
    H100: 0.86,
    "H200": 0.92,
}


@pytest.mark.parametrize(("model", "gpus"), [("GeForce RTX 4090", 2), ("GeForce RTX 3090", 2)])
def test_two_honest_gpus_record_no_lower_reading(model: str, gpus: int) -> None:
    """Two slots leave no room: no other set of devices meeting their totals declares less."""
    assert least(honest_machine(model, gpus, Region.china)) is None


@pytest.mark.parametrize(
    ("gpus", "exhaustive"), [(DEFAULT_MAX_GPUS_PER_MACHINE, True), (PROTOCOL_MAX_GPUS, False)]
)
def test_the_search_is_bounded_at_the_protocols_largest_machine(gpus: int, exhaustive: bool) -> None:
    """At a machine's default most GPUs the search ends; at the protocol's 64 an honest 64 x A100
    40GB (the widest search of the table) stops at LEAST_READING_VISITS and still records a set
    that qualifies (a bound, maybe not the least)."""
    found = honest_machine("A100 40GB PCIe", gpus, Region.china)
    recorded = least(found)
    assert recorded is not None and recorded["exhaustive"] is exhaustive
    assert Decimal(recorded["calc_point"]) < found.point.decimal and recorded["device_count"] <= gpus


def test_the_least_readings_of_honest_eight_gpu_machines_are_the_documented_ones() -> None:
    """What an honest 8-GPU machine's evidence binds, model by model (a table change, a slack or
    an envelope that moves one fails here: the docs list them)."""
    found = {}
    for r in RATED:
        verdict = honest_machine(r.model, 8, Region.china)
        recorded = least(verdict)
        found[r.model] = (
            None
            if recorded is None
            else round(float(recorded["calc_point"]) / float(verdict.point.decimal), 2)
        )
    assert found == HONEST_LEAST_READINGS


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
