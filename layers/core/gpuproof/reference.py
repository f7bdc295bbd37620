"""The GPU reference table and model identification by envelope (name, memory, measured rate).

Owns `data/gpu_reference.csv` (figures and sources: `data/README.md`), NVML name normalisation and
the envelope rule that decides which model a measured GPU is.

Envelope rule (documented here and in `data/README.md`):

- Expected BF16 rate of a model = its `achieved_bf16_gemm_tflops` when the table has one, else
  `PEAK_FRACTION` (0.8) × its dense BF16 peak. A measured rate fits the model when it lies in
  [`RATE_LOW` (0.70), `RATE_HIGH` (1.15)] × expected: below means a throttled, power-capped or
  different (slower) card; above means a faster card than the one named, or a fabricated rate.
- Memory fits when the visible memory in GiB (NVML `memory.total` / 2**30) lies in
  [`MEM_LOW` (0.90), `MEM_HIGH` (1.10)] × the nominal `mem_gb`: ECC on GDDR cards hides 1/16 of it
  and drivers reserve a little; 1.10 also tolerates a caller that passes decimal GB.
- The NVML name chooses the model; the envelope confirms it. Models whose envelopes both hold the
  measurement (a tolerance pair, see `TOLERANCE_PAIRS`) are reported in `indistinguishable_from`.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources

from gpuproof.protocol.reasons import Reason

RATE_LOW = 0.70
RATE_HIGH = 1.15
PEAK_FRACTION = 0.8
MEM_LOW = 0.90
MEM_HIGH = 1.10

# Pairs of models that a BF16 rate cannot tell apart, and what does. Checked against the table's
# figures in tests/unit/test_reference.py.
TOLERANCE_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("H100 SXM5 80GB", "H200", "same compute; told apart by memory (80 GB vs 141 GB)"),
    (
        "A100 80GB PCIe",
        "A100 SXM4 80GB",
        "speed envelopes overlap and memory is equal; told apart only by the NVML name "
        "(calc_point is the same: same CUDA cores, memory and large-model factor)",
    ),
)

# NVML names that do not reduce to a table model by the generic rule (see `_key`).
_NVML_ALIASES: dict[str, str] = {
    "H100 80GB HBM3": "H100 SXM5 80GB",
    "A100 PCIE 40GB": "A100 40GB PCIe",
    "A100 PCIE 80GB": "A100 80GB PCIe",
}


@dataclass(frozen=True)
class GpuReference:
    """One row of the reference table. None = the figure is not known (the cell is empty)."""

    model: str
    cuda_cores: int | None
    mem_gb: int
    mem_bw_gbs: float | None
    fp32_tflops: float | None
    bf16_dense_tflops: float | None
    large_model_factor: int
    achieved_bf16_tflops: float | None
    achieved_source: str
    notes: str
    sources: str
    # The proof of throughput's exact path (int8 x int8 -> int32; docs/protocol.md "Deadline"):
    # the datasheet's dense int8 rate, and the per-model allowances its deadline is sized with
    # (estimates until calibrated on a GPU: data/README.md gives their method).
    int8_dense_tops: float | None = None
    int8_source: str = ""
    int8_achieved_fraction: float | None = None
    epilogue_fraction: float | None = None
    setup_s: float | None = None
    # The proof's matrix shape, when the model has one of its own (None: GPU_D columns and the
    # GPU_N rule of gpuproof.protocol.proof.params). No packaged row sets them: only the local
    # stack's TEST DOUBLE GPU (gpuproof.local.test_double_gpu), whose tiny rate needs tiny matrices.
    proof_n: int | None = None
    proof_d: int | None = None
    # The capacity phase at test size (`cpu_capacity_params`, one target per GPU) instead of 90% of
    # mem_gb: no packaged row sets it, only the TEST DOUBLE GPU, whose 1 GiB fill no CPU makes in
    # time (without a phase its GPUs would score as failed ones: docs/scoring.md §2).
    test_size_capacity: bool = False

    @property
    def expected_int8_tops(self) -> float | None:
        """Dense int8 datasheet rate x the achieved fraction (an estimate, data/README.md); None
        when the table has no int8 rate for the model (it cannot be claimed). Rounded to 3 decimals
        (every packaged rate is > 1 TOPS); a rate under 1 TOPS keeps 3 significant digits instead,
        so that it never rounds to 0 (a claim sized from a zero rate has no deadline)."""
        if self.int8_dense_tops is None or self.int8_achieved_fraction is None:
            return None
        rate = self.int8_dense_tops * self.int8_achieved_fraction
        if rate <= 0:
            return None
        return round(rate, 3) if rate >= 1 else float(f"{rate:.3g}")

    @property
    def expected_bf16_tflops(self) -> float | None:
        """The centre of the rate envelope: achieved rate, else 0.8 × dense peak, else None."""
        if self.achieved_bf16_tflops is not None:
            return self.achieved_bf16_tflops
        if self.bf16_dense_tflops is not None:
            return PEAK_FRACTION * self.bf16_dense_tflops
        return None

    @property
    def expected_basis(self) -> str:
        if self.achieved_bf16_tflops is not None:
            return f"achieved ({self.achieved_source})"
        if self.bf16_dense_tflops is not None:
            return f"{PEAK_FRACTION} x dense BF16 peak"
        return "none"

    def memory_fits(self, memory_gb: float) -> bool:
        return MEM_LOW * self.mem_gb <= memory_gb <= MEM_HIGH * self.mem_gb

    def rate_fits(self, bf16_tflops: float) -> bool:
        expected = self.expected_bf16_tflops
        return expected is not None and RATE_LOW * expected <= bf16_tflops <= RATE_HIGH * expected


def _opt_float(cell: str) -> float | None:
    return float(cell) if cell.strip() else None


def _opt_int(cell: str) -> int | None:
    return int(cell) if cell.strip() else None


def parse_table(text: str) -> tuple[GpuReference, ...]:
    """Parse the CSV text of the reference table."""
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        rows.append(
            GpuReference(
                model=row["model"].strip(),
                cuda_cores=_opt_int(row["cuda_cores"]),
                mem_gb=int(row["mem_gb"]),
                mem_bw_gbs=_opt_float(row["mem_bw_gbs"]),
                fp32_tflops=_opt_float(row["fp32_tflops"]),
                bf16_dense_tflops=_opt_float(row["fp16_bf16_dense_tflops_fp32acc"]),
                large_model_factor=int(row["large_model_factor"]),
                achieved_bf16_tflops=_opt_float(row["achieved_bf16_gemm_tflops"]),
                achieved_source=row["achieved_source"].strip(),
                notes=row["notes"].strip(),
                sources=row["sources"].strip(),
                int8_dense_tops=_opt_float(row.get("int8_dense_tops") or ""),
                int8_source=(row.get("int8_source") or "").strip(),
                int8_achieved_fraction=_opt_float(row.get("int8_achieved_fraction") or ""),
                epilogue_fraction=_opt_float(row.get("epilogue_fraction") or ""),
                setup_s=_opt_float(row.get("setup_s") or ""),
            )
        )
    return tuple(rows)


@functools.cache
def packaged_table() -> tuple[GpuReference, ...]:
    """The packaged reference table (`gpuproof/data/gpu_reference.csv`, what AWS runs), loaded once."""
    text = resources.files("gpuproof").joinpath("data/gpu_reference.csv").read_text(encoding="utf-8")
    return parse_table(text)


# Rows a local stack process registered at start-up (`python -m gpuproof.local --test-double-gpu`):
# only gpuproof.local.test_double_gpu calls `register_test_double`, and nothing a Lambda handler
# imports reaches it (tests/unit/test_test_double_gpu.py); empty in every deployed function.
_TEST_DOUBLES: dict[str, GpuReference] = {}
TEST_DOUBLE_MARK = "TEST DOUBLE"


def reference_table() -> tuple[GpuReference, ...]:
    """The packaged table, and after it any test-double row this process registered (none in AWS)."""
    return packaged_table() + tuple(_TEST_DOUBLES.values())


def register_test_double(row: GpuReference) -> None:
    """Add a TEST DOUBLE model to this process's table (the local stack's composition root only).
    Refuses a row whose name does not say it is a test double, or one named like a packaged model."""
    if TEST_DOUBLE_MARK not in row.model.upper():
        raise ValueError(f"{row.model!r} is not named as a test double ({TEST_DOUBLE_MARK!r})")
    if lookup(row.model, packaged_table()) is not None:
        raise ValueError(f"{row.model!r} is a packaged model")
    _TEST_DOUBLES[row.model] = row


def unregister_test_double(model: str) -> None:
    _TEST_DOUBLES.pop(model, None)


def _key(name: str) -> str:
    key = re.sub(r"[\s\-_]+", " ", name.strip().upper())
    return key.removeprefix("NVIDIA ").strip()


def normalise_nvml_name(nvml_name: str, table: Sequence[GpuReference] | None = None) -> str | None:
    """Map an NVML device name to a table model name; None when the name is not in the table.

    "NVIDIA H100 80GB HBM3" → "H100 SXM5 80GB"; "NVIDIA GeForce RTX 4090" → "GeForce RTX 4090";
    "NVIDIA A100-SXM4-80GB" → "A100 SXM4 80GB". Matching is exact after normalisation, so
    "NVIDIA GeForce RTX 3080 Ti" does not become a 3080.
    """
    rows = reference_table() if table is None else table
    key = _key(nvml_name)
    key = _key(_NVML_ALIASES.get(key, key))
    for row in rows:
        if _key(row.model) == key:
            return row.model
    return None


def lookup(name: str, table: Sequence[GpuReference] | None = None) -> GpuReference | None:
    """The table row for a model name or an NVML device name; None when unknown."""
    rows = reference_table() if table is None else table
    model = normalise_nvml_name(name, rows)
    return next((row for row in rows if row.model == model), None)


class Confidence(StrEnum):
    """How sure the identification is.

    high: name, memory and measured rate all agree. medium: name and memory agree, no rate was
    measured. low: a model is named but a fact lies outside its envelope, or the model was found
    by the envelope alone (unknown name). none: no model identified.
    """

    high = "high"
    medium = "medium"
    low = "low"
    none = "none"


@dataclass(frozen=True)
class Identification:
    model: str | None
    reference: GpuReference | None
    confidence: Confidence
    reasons: tuple[Reason, ...]
    candidates: tuple[str, ...]
    """Every model whose envelope holds the measured memory (and rate, when measured)."""
    indistinguishable_from: tuple[str, ...]
    """Candidates other than `model`: the measurement cannot tell them apart (tolerance pair)."""
    rate_ratio: float | None
    """Measured rate / expected rate of `model`; None without a rate or a model."""

    @property
    def ok(self) -> bool:
        """True when the model is identified and every fact lies inside its envelope."""
        return self.model is not None and not self.reasons and self.confidence is not Confidence.low


def _envelope_reasons(ref: GpuReference, memory_gb: float, rate: float | None) -> list[Reason]:
    reasons = []
    if not ref.memory_fits(memory_gb):
        reasons.append(
            Reason(
                "gpu_memory_outside_envelope",
                f"{memory_gb:.1f} GiB visible; a {ref.model} has {ref.mem_gb} GB "
                f"(accepted {MEM_LOW * ref.mem_gb:.1f}-{MEM_HIGH * ref.mem_gb:.1f})",
                "memory_gb",
            )
        )
    expected = ref.expected_bf16_tflops
    if rate is not None and expected is not None:
        if rate < RATE_LOW * expected:
            reasons.append(
                Reason(
                    "gpu_rate_below_envelope",
                    f"measured {rate:.1f} BF16 TFLOPS is {rate / expected:.2f}x the {expected:.1f} expected "
                    f"of a {ref.model} ({ref.expected_basis}); the floor is {RATE_LOW}x",
                    "bf16_tflops",
                )
            )
        elif rate > RATE_HIGH * expected:
            reasons.append(
                Reason(
                    "gpu_rate_above_envelope",
                    f"measured {rate:.1f} BF16 TFLOPS is {rate / expected:.2f}x the {expected:.1f} expected "
                    f"of a {ref.model} ({ref.expected_basis}); the ceiling is {RATE_HIGH}x",
                    "bf16_tflops",
                )
            )
    elif rate is not None:
        reasons.append(
            Reason(
                "gpu_rate_reference_missing", f"the table has no BF16 figure for {ref.model}", "bf16_tflops"
            )
        )
    return reasons


def identify(
    nvml_name: str,
    memory_gb: float,
    measured_bf16_tflops: float | None,
    *,
    table: Sequence[GpuReference] | None = None,
) -> Identification:
    """Identify a GPU model from its NVML name, visible memory (GiB) and measured BF16 rate.

    The named model is kept even when a fact lies outside its envelope (confidence low, every
    reason listed) so the verdict can say what was claimed and why it failed. An unknown name
    is identified by the envelope alone when exactly one model fits (confidence low).
    """
    rows = reference_table() if table is None else table
    rate = measured_bf16_tflops
    candidates = tuple(
        row.model for row in rows if row.memory_fits(memory_gb) and (rate is None or row.rate_fits(rate))
    )
    named = lookup(nvml_name, rows)
    if named is not None:
        reasons = _envelope_reasons(named, memory_gb, rate)
        expected = named.expected_bf16_tflops
        ratio = rate / expected if rate is not None and expected else None
        if reasons:
            confidence = Confidence.low
            twins: tuple[str, ...] = ()
        else:
            confidence = Confidence.high if rate is not None else Confidence.medium
            twins = tuple(c for c in candidates if c != named.model)
        return Identification(named.model, named, confidence, tuple(reasons), candidates, twins, ratio)

    unknown = Reason("gpu_name_unknown", f"{nvml_name!r} is not in the GPU reference table", "gpu_name")
    if len(candidates) == 1:
        ref = lookup(candidates[0], rows)
        assert ref is not None
        expected = ref.expected_bf16_tflops
        ratio = rate / expected if rate is not None and expected else None
        return Identification(ref.model, ref, Confidence.low, (unknown,), candidates, (), ratio)
    if candidates:
        ambiguous = Reason(
            "gpu_model_ambiguous",
            f"{len(candidates)} models fit the measured envelope: {', '.join(candidates)}",
            "gpu_name",
        )
        return Identification(None, None, Confidence.none, (unknown, ambiguous), candidates, (), None)
    none_fit = Reason(
        "gpu_not_identified", "no model in the table fits the measured memory and rate", "gpu_name"
    )
    return Identification(None, None, Confidence.none, (unknown, none_fit), (), (), None)
