"""Scores of a verified machine: DBC's `calc_point` exactly, and the measured performance index.

calc_point (reference/dbc.md):

    point = (25 × gpu_num + RAM_GB / 3.5 + √cuda_cores × √(gpu_mem_GB / 10) × gpu_num)
            × regional coefficient × large-model factor

rounded to 2 decimals; the chain stores point × 100 as a u64.

Rounding: computed in `decimal` at 50 significant digits (the square roots are the only inexact
step), then quantised to 0.01 with ROUND_HALF_UP. With DBC's integer fields (gpu_num, cuda_cores,
gpu_mem, mem_num) the exact point is never a tie at the third decimal — the square-root term is
either irrational or an integer, the rest has a denominator dividing 70 — so half-up and
half-even cannot differ there; half-up only matters for a fractional `ram_gb`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from types import MappingProxyType

from gpuproof.protocol.machine import Region
from gpuproof.reference import GpuReference

U64_MAX = 2**64 - 1
_PRECISION = 50
_CENT = Decimal("0.01")

REGIONAL_COEFFICIENTS: Mapping[Region, Decimal] = MappingProxyType(
    {
        Region.china: Decimal("1"),
        Region.north_america: Decimal("1.2"),
        Region.south_america: Decimal("1.3"),
        Region.europe: Decimal("1.5"),
        Region.middle_east: Decimal("1.6"),
        Region.korea: Decimal("1.6"),
        Region.japan: Decimal("1.7"),
        Region.taiwan: Decimal("1.3"),
        Region.hong_kong_macau: Decimal("1.3"),
        Region.malaysia: Decimal("1.5"),
        Region.indonesia: Decimal("1.5"),
        Region.singapore: Decimal("1.5"),
        Region.vietnam: Decimal("1.3"),
    }
)

# DBC: 2 for A100, A800, V100, H100, H800 "and newer datacenter parts by the same rule".
_LARGE_MODEL = re.compile(r"^(GB|GH)?(A100|A800|V100|H100|H800|H200|H20|B100|B200|B300)\b")


def large_model_factor_rule(model: str) -> int:
    """DBC's large-model factor by model name (the table's `large_model_factor` is authoritative;
    this rule exists to check the table and to name new parts)."""
    return 2 if _LARGE_MODEL.match(model.strip().upper()) else 1


class ScoringError(ValueError):
    """A machine cannot be scored; `code` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CalcPoint:
    """A whole-machine calc_point: `decimal` is exact to 2 decimals, `chain_value` = point × 100."""

    decimal: Decimal
    chain_value: int

    @property
    def point(self) -> float:
        return float(self.decimal)


def calc_point(
    *,
    gpu_num: int,
    cuda_cores: int,
    gpu_mem_gb: int,
    ram_gb: int | Decimal,
    region: Region,
    large_model_factor: int,
) -> CalcPoint:
    """DBC's calc_point for a whole machine (formula and rounding: module docstring)."""
    if gpu_num < 0 or cuda_cores < 0 or gpu_mem_gb < 0 or ram_gb < 0:
        raise ScoringError("calc_point_negative_input", "calc_point inputs must not be negative")
    if large_model_factor not in (1, 2):
        raise ScoringError(
            "calc_point_bad_factor", f"large-model factor must be 1 or 2, got {large_model_factor}"
        )
    if isinstance(ram_gb, float):
        raise ScoringError("calc_point_float_ram", "pass ram_gb as int or Decimal, not float")
    coefficient = REGIONAL_COEFFICIENTS[Region(region)]
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        n = Decimal(gpu_num)
        gpu_term = Decimal(cuda_cores).sqrt() * (Decimal(gpu_mem_gb) / Decimal(10)).sqrt() * n
        base = Decimal(25) * n + Decimal(ram_gb) / Decimal("3.5") + gpu_term
        exact = base * coefficient * Decimal(large_model_factor)
        if exact * 100 > U64_MAX:  # before quantize, which cannot hold such a number at this precision
            raise ScoringError("calc_point_overflow", "calc_point × 100 does not fit a u64")
        point = exact.quantize(_CENT, rounding=ROUND_HALF_UP)
    chain_value = int(point * 100)
    if chain_value > U64_MAX:
        raise ScoringError("calc_point_overflow", "calc_point × 100 does not fit a u64")
    return CalcPoint(point, chain_value)


def weakest_gpu(gpus: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """DBC's weakest-GPU convention: its calculator scores the whole machine with the weakest GPU's
    CUDA cores and memory. Given (cuda_cores, gpu_mem_gb) per GPU, the fewest cores and the least
    memory (taken separately, so never more than any one GPU's: fail closed)."""
    if not gpus:
        raise ScoringError("calc_point_no_gpus", "the weakest GPU of no GPUs")
    return min(c for c, _ in gpus), min(m for _, m in gpus)


def calc_point_for_model(
    reference: GpuReference, *, gpu_num: int, ram_gb: int | Decimal, region: Region
) -> CalcPoint:
    """calc_point of `gpu_num` GPUs of an identified model: CUDA cores, memory and large-model
    factor come from the reference table, never from the host's claims."""
    if reference.cuda_cores is None:
        raise ScoringError(
            "cuda_cores_unknown", f"the reference table has no CUDA core count for {reference.model}"
        )
    return calc_point(
        gpu_num=gpu_num,
        cuda_cores=reference.cuda_cores,
        gpu_mem_gb=reference.mem_gb,
        ram_gb=ram_gb,
        region=region,
        large_model_factor=reference.large_model_factor,
    )


def performance_index(verified_bf16_tflops: float, reference: GpuReference) -> float:
    """Verified BF16 rate relative to the model's reference: / achieved rate when the table has
    one, else / dense BF16 peak. 1.0 = as fast as the reference card; compare like-for-like only
    (the two bases differ by roughly the 0.8 achievable fraction)."""
    basis = reference.achieved_bf16_tflops or reference.bf16_dense_tflops
    if not basis:
        raise ScoringError(
            "reference_rate_missing", f"the reference table has no BF16 rate for {reference.model}"
        )
    if verified_bf16_tflops < 0:
        raise ScoringError("negative_rate", "a verified rate cannot be negative")
    return verified_bf16_tflops / basis
