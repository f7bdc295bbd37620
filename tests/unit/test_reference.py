"""The GPU reference table, NVML name normalisation and identification by envelope."""

from __future__ import annotations

import csv
from importlib import resources

import pytest

from gpuproof.reference import (
    MEM_HIGH,
    MEM_LOW,
    RATE_HIGH,
    RATE_LOW,
    TOLERANCE_PAIRS,
    Confidence,
    lookup,
    normalise_nvml_name,
    reference_table,
)
from gpuproof.reference import identify as identify_gpu


def test_table_loads_with_sources() -> None:
    table = reference_table()
    assert len(table) == 21
    assert len({row.model for row in table}) == len(table)
    for row in table:
        assert row.sources.startswith("specs: "), row.model
        if row.achieved_bf16_tflops is not None:
            assert row.achieved_source and "achieved: " in row.sources, row.model


def test_empty_cells_stay_unknown() -> None:
    b200 = lookup("B200")
    h200 = lookup("H200")
    assert b200 is not None and b200.cuda_cores is None
    assert h200 is not None and h200.achieved_bf16_tflops is None
    assert h200.expected_bf16_tflops == pytest.approx(0.8 * 989)


def test_packaged_csv_figures_are_unchanged() -> None:
    text = resources.files("gpuproof").joinpath("data/gpu_reference.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    h100 = next(r for r in rows if r["model"] == "H100 SXM5 80GB")
    assert (h100["cuda_cores"], h100["mem_gb"], h100["achieved_bf16_gemm_tflops"]) == ("16896", "80", "794.5")


@pytest.mark.parametrize(
    ("nvml", "model"),
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM5 80GB"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"),
        ("GeForce RTX 3080", "GeForce RTX 3080"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB"),
        ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe"),
        ("NVIDIA A100-PCIE-40GB", "A100 40GB PCIe"),
        ("NVIDIA RTX A6000", "RTX A6000"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA H200", "H200"),
        ("  nvidia   geforce rtx 3090 ", "GeForce RTX 3090"),
    ],
)
def test_nvml_name_normalisation(nvml: str, model: str) -> None:
    assert normalise_nvml_name(nvml) == model
    ref = lookup(nvml)
    assert ref is not None and ref.model == model


@pytest.mark.parametrize(
    "nvml",
    [
        "NVIDIA GeForce RTX 3080 Ti",
        "NVIDIA GeForce RTX 3060 Laptop GPU",
        "NVIDIA A100-SXM4-40GB",
        "Tesla T4",
        "",
    ],
)
def test_names_not_in_table(nvml: str) -> None:
    assert normalise_nvml_name(nvml) is None
    assert lookup(nvml) is None


def test_h100_identified_with_high_confidence() -> None:
    got = identify_gpu("NVIDIA H100 80GB HBM3", 79.65, 798.0)
    assert got.ok
    assert got.model == "H100 SXM5 80GB"
    assert got.confidence is Confidence.high
    assert got.reasons == ()
    assert got.rate_ratio == pytest.approx(798 / 794.5)
    assert "H200" not in got.candidates  # memory tells the pair apart


def test_h200_told_from_h100_by_memory() -> None:
    got = identify_gpu("NVIDIA H200", 140.4, 792.0)
    assert got.ok and got.model == "H200"
    assert got.candidates == ("H200",)
    # An "H100" reporting 141 GB is outside its own envelope, and the envelope points to the H200.
    claimed = identify_gpu("NVIDIA H100 80GB HBM3", 140.4, 792.0)
    assert not claimed.ok
    assert claimed.model == "H100 SXM5 80GB"
    assert claimed.confidence is Confidence.low
    assert [r.code for r in claimed.reasons] == ["gpu_memory_outside_envelope"]
    assert claimed.candidates == ("H200",)


def test_a100_pcie_and_sxm4_are_a_tolerance_pair() -> None:
    got = identify_gpu("NVIDIA A100 80GB PCIe", 80.0, 262.0)
    assert got.ok and got.model == "A100 80GB PCIe"
    assert got.indistinguishable_from == ("A100 SXM4 80GB",)
    sxm = identify_gpu("NVIDIA A100-SXM4-80GB", 80.0, 262.0)
    assert sxm.ok and sxm.indistinguishable_from == ("A100 80GB PCIe",)


@pytest.mark.parametrize(("a", "b", "_how"), TOLERANCE_PAIRS)
def test_declared_tolerance_pairs_overlap_in_speed(a: str, b: str, _how: str) -> None:
    ra, rb = lookup(a), lookup(b)
    assert ra is not None and rb is not None
    ea, eb = ra.expected_bf16_tflops, rb.expected_bf16_tflops
    assert ea is not None and eb is not None
    assert max(RATE_LOW * ea, RATE_LOW * eb) <= min(RATE_HIGH * ea, RATE_HIGH * eb)
    memory_overlaps = max(MEM_LOW * ra.mem_gb, MEM_LOW * rb.mem_gb) <= min(
        MEM_HIGH * ra.mem_gb, MEM_HIGH * rb.mem_gb
    )
    assert memory_overlaps == (ra.mem_gb == rb.mem_gb)


def test_too_slow_card_is_flagged() -> None:
    # A 4090 delivering 100 TFLOPS (0.64× of 157): power-capped, throttled, or not a 4090.
    got = identify_gpu("NVIDIA GeForce RTX 4090", 23.99, 100.0)
    assert not got.ok
    assert got.model == "GeForce RTX 4090"
    assert got.confidence is Confidence.low
    assert [r.code for r in got.reasons] == ["gpu_rate_below_envelope"]
    assert got.reasons[0].field == "bf16_tflops"
    assert got.rate_ratio == pytest.approx(100 / 157)


def test_too_fast_card_is_flagged() -> None:
    got = identify_gpu("NVIDIA GeForce RTX 3080", 10.0, 150.0)
    assert [r.code for r in got.reasons] == ["gpu_rate_above_envelope"]


def test_envelope_edges() -> None:
    # 3080: no achieved figure, so expected = 0.8 × 59.5 = 47.6; envelope 33.32 .. 54.74.
    assert identify_gpu("NVIDIA GeForce RTX 3080", 10.0, 33.33).ok
    assert not identify_gpu("NVIDIA GeForce RTX 3080", 10.0, 33.3).ok
    assert identify_gpu("NVIDIA GeForce RTX 3080", 10.0, 54.7).ok
    assert not identify_gpu("NVIDIA GeForce RTX 3080", 10.0, 54.8).ok


def test_ecc_hidden_memory_still_fits() -> None:
    # RTX A6000 with ECC on shows 15/16 of 48 GiB.
    assert identify_gpu("NVIDIA RTX A6000", 45.0, 95.0).ok


def test_several_problems_are_all_listed() -> None:
    got = identify_gpu("NVIDIA GeForce RTX 3080", 12.0, 20.0)  # a 12 GB card, and slow
    assert [r.code for r in got.reasons] == ["gpu_memory_outside_envelope", "gpu_rate_below_envelope"]


def test_no_rate_gives_medium_confidence() -> None:
    got = identify_gpu("NVIDIA A100-SXM4-80GB", 80.0, None)
    assert got.ok and got.confidence is Confidence.medium and got.rate_ratio is None


def test_unknown_name_identified_by_envelope_alone() -> None:
    got = identify_gpu("NVIDIA Graphics Device", 140.4, 790.0)
    assert got.model == "H200"
    assert got.confidence is Confidence.low
    assert not got.ok
    assert [r.code for r in got.reasons] == ["gpu_name_unknown"]


def test_unknown_name_ambiguous_envelope() -> None:
    got = identify_gpu("NVIDIA Graphics Device", 80.0, 262.0)
    assert got.model is None and got.confidence is Confidence.none
    assert [r.code for r in got.reasons] == ["gpu_name_unknown", "gpu_model_ambiguous"]
    assert set(got.candidates) == {"A100 80GB PCIe", "A100 SXM4 80GB"}


def test_unknown_name_nothing_fits() -> None:
    got = identify_gpu("Tesla T4", 15.0, 40.0)
    assert got.model is None
    assert [r.code for r in got.reasons] == ["gpu_name_unknown", "gpu_not_identified"]
