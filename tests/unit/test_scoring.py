"""calc_point exactly as DBC computes it, and the performance index."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gpuproof.protocol.machine import Region
from gpuproof.reference import lookup, reference_table
from gpuproof.scoring import (
    REGIONAL_COEFFICIENTS,
    CalcPoint,
    ScoringError,
    calc_point,
    calc_point_for_model,
    large_model_factor_rule,
    performance_index,
)

VECTOR = {"gpu_num": 4, "cuda_cores": 8704, "gpu_mem_gb": 10, "ram_gb": 440, "large_model_factor": 1}


def test_dbc_vector_4x3080() -> None:
    point = calc_point(**VECTOR, region=Region.china)
    assert point == CalcPoint(Decimal("598.90"), 59890)
    assert point.chain_value == 59890
    assert point.point == 598.9
    assert str(point.decimal) == "598.90"


@pytest.mark.parametrize(
    ("region", "coefficient"),
    [
        (Region.china, "1"),
        (Region.north_america, "1.2"),
        (Region.south_america, "1.3"),
        (Region.europe, "1.5"),
        (Region.middle_east, "1.6"),
        (Region.korea, "1.6"),
        (Region.japan, "1.7"),
        (Region.taiwan, "1.3"),
        (Region.hong_kong_macau, "1.3"),
        (Region.malaysia, "1.5"),
        (Region.indonesia, "1.5"),
        (Region.singapore, "1.5"),
        (Region.vietnam, "1.3"),
    ],
)
def test_each_regional_coefficient(region: Region, coefficient: str) -> None:
    assert REGIONAL_COEFFICIENTS[region] == Decimal(coefficient)
    # A machine whose unrounded point is an integer: 1 GPU, 100 cores, 10 GB, 0 RAM → 25 + 10 = 35.
    point = calc_point(
        gpu_num=1, cuda_cores=100, gpu_mem_gb=10, ram_gb=0, region=region, large_model_factor=1
    )
    assert point.decimal == (Decimal(35) * Decimal(coefficient)).quantize(Decimal("0.01"))
    # The vector machine in this region, recomputed independently in floats (no tie is near).
    vector = calc_point(**VECTOR, region=region)
    expected = (25 * 4 + 440 / 3.5 + 8704**0.5 * (10 / 10) ** 0.5 * 4) * float(coefficient)
    assert vector.chain_value == round(expected * 100)


def test_every_region_has_a_coefficient() -> None:
    assert set(REGIONAL_COEFFICIENTS) == set(Region)


def test_large_model_factor_doubles() -> None:
    one = calc_point(**{**VECTOR, "large_model_factor": 1}, region=Region.europe)
    two = calc_point(**{**VECTOR, "large_model_factor": 2}, region=Region.europe)
    # 598.8952... × 1.5 = 898.3428 → 898.34 (not 598.90 × 1.5 = 898.35: rounded once, at the end);
    # × 2 more = 1796.6856 → 1796.69.
    assert one.chain_value == 89834
    assert two.chain_value == 179669


@pytest.mark.parametrize(
    ("model", "factor"),
    [
        ("A100 SXM4 80GB", 2),
        ("A100 40GB PCIe", 2),
        ("A800", 2),
        ("V100", 2),
        ("H100 PCIe", 2),
        ("H800", 2),
        ("H200", 2),
        ("B200", 2),
        ("GeForce RTX 4090", 1),
        ("RTX A6000", 1),
        ("L40S", 1),
        ("A10", 1),
        ("L4", 1),
    ],
)
def test_large_model_factor_rule(model: str, factor: int) -> None:
    assert large_model_factor_rule(model) == factor


def test_reference_table_factor_agrees_with_rule() -> None:
    for row in reference_table():
        assert row.large_model_factor == large_model_factor_rule(row.model), row.model


def test_calc_point_for_model_uses_table_figures() -> None:
    h100 = lookup("H100 SXM5 80GB")
    assert h100 is not None
    got = calc_point_for_model(h100, gpu_num=8, ram_gb=2048, region=Region.north_america)
    want = calc_point(
        gpu_num=8,
        cuda_cores=16896,
        gpu_mem_gb=80,
        ram_gb=2048,
        region=Region.north_america,
        large_model_factor=2,
    )
    assert got == want
    rtx = lookup("GeForce RTX 3080")
    assert rtx is not None
    assert calc_point_for_model(rtx, gpu_num=4, ram_gb=440, region=Region.china).chain_value == 59890


def test_calc_point_for_model_without_cuda_cores_is_an_error() -> None:
    b200 = lookup("B200")
    assert b200 is not None and b200.cuda_cores is None
    with pytest.raises(ScoringError) as err:
        calc_point_for_model(b200, gpu_num=8, ram_gb=2048, region=Region.china)
    assert err.value.code == "cuda_cores_unknown"


def test_rounding_half_up_on_exact_tie() -> None:
    # 25 + √100·√1 + 0.0175/3.5 = 35.005 exactly: half-up gives 35.01.
    point = calc_point(
        gpu_num=1,
        cuda_cores=100,
        gpu_mem_gb=10,
        ram_gb=Decimal("0.0175"),
        region=Region.china,
        large_model_factor=1,
    )
    assert point.decimal == Decimal("35.01")
    assert point.chain_value == 3501


def test_rounding_is_exact_where_floats_are_not() -> None:
    # 1.0675/3.5 = 0.305 exactly → 0.31; in floats round(1.0675 / 3.5, 2) == 0.3 (banker's/binary).
    point = calc_point(
        gpu_num=0,
        cuda_cores=0,
        gpu_mem_gb=0,
        ram_gb=Decimal("1.0675"),
        region=Region.china,
        large_model_factor=1,
    )
    assert point.chain_value == 31
    assert round(1.0675 / 3.5, 2) == 0.3


def test_rounding_down_below_half() -> None:
    # 0.0140/3.5 = 0.004 → 35.004 → 35.00
    point = calc_point(
        gpu_num=1,
        cuda_cores=100,
        gpu_mem_gb=10,
        ram_gb=Decimal("0.014"),
        region=Region.china,
        large_model_factor=1,
    )
    assert point.chain_value == 3500


def test_coefficient_is_exact_not_float() -> None:
    # 3 × 1.3 = 3.9 exactly in decimal; in floats 3 * 1.3 = 3.9000000000000004.
    point = calc_point(
        gpu_num=0,
        cuda_cores=0,
        gpu_mem_gb=0,
        ram_gb=Decimal("10.5"),
        region=Region.taiwan,
        large_model_factor=1,
    )
    assert point.decimal == Decimal("3.90")
    assert 3 * 1.3 != 3.9


def test_ram_third_decimal() -> None:
    # RAM/3.5 has a repeating expansion: 1 GB → 0.285714... the sum rounds once.
    point = calc_point(
        gpu_num=1, cuda_cores=100, gpu_mem_gb=10, ram_gb=1, region=Region.china, large_model_factor=1
    )
    assert point.decimal == Decimal("35.29")


def test_zero_gpus_scores_ram_only() -> None:
    point = calc_point(
        gpu_num=0, cuda_cores=8704, gpu_mem_gb=10, ram_gb=35, region=Region.china, large_model_factor=1
    )
    assert point.chain_value == 1000


@pytest.mark.parametrize(
    "bad",
    [
        {"gpu_num": -1},
        {"cuda_cores": -1},
        {"ram_gb": -1},
        {"large_model_factor": 3},
        {"ram_gb": 440.0},
    ],
)
def test_bad_inputs_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ScoringError):
        calc_point(**{**VECTOR, **bad}, region=Region.china)  # type: ignore[arg-type]


def test_performance_index_against_achieved() -> None:
    h100 = lookup("H100 SXM5 80GB")
    assert h100 is not None
    assert performance_index(794.5, h100) == pytest.approx(1.0)
    assert performance_index(397.25, h100) == pytest.approx(0.5)


def test_performance_index_against_dense_peak_when_no_achieved() -> None:
    h200 = lookup("H200")
    assert h200 is not None and h200.achieved_bf16_tflops is None
    assert performance_index(791.2, h200) == pytest.approx(0.8)
