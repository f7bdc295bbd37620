"""What a signed report says about a machine in DBC's terms, for the CLAIM its challenge fixed.

The service (expected info stored on each round, and the verify worker's `findings` check) and
every committee member (the `committee` CLI) run this same function on the same signed report
and challenge, so honest reviewers reach the same bytes. Rules:

- The GPU part of CommitteeUploadInfo starts from the challenge's claim (`gpuproof.claim`), which
  the proof of throughput was sized for: gpu_type is the claimed model. Names in the inventory
  never raise a score: they can only fail to match the claim (gpu_count_mismatch,
  gpu_model_mismatch; host-sent cross-checks).
- Every GPU must identify (`gpuproof.reference.identify`: NVML name, visible memory, verified BF16
  rate) as the claimed model; a GPU without a verified BF16 figure is a problem
  (benchmark_missing): missing evidence never scores better than failed evidence.
- calc_point is scored from what the service measured (`gpuproof.evidence.assess`, docs/scoring.md):
  the claimed model must be among the models the service-timed proof (and the capacity phase,
  when present) fit; cores, memory and factor are the least of those models' (DBC's weakest-GPU
  convention over the GPUs); RAM is min(declared, proven) and 0 when not proven; the region is
  declared. gpu_num, cuda_core, gpu_mem and mem_num of CommitteeUploadInfo are these scored
  figures, so calc_point follows from the fields. Disks and CPU are declared (not scored).
- A CPU-only claim (gpu_num 0; accepted only where the CPU backend is allowed) scores
  proven RAM_GB / 3.5 × region coefficient.

`Findings.evidence` is the per-input breakdown (`Assessment.as_dict()`): value, status (proven,
bound, reference, declared, not_proven) and the evidence (digest, measured figure).
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from gpuproof.claim import Claim
from gpuproof.evidence import NOTHING_MEASURED, Assessment, MeasuredFacts, assess
from gpuproof.protocol.dbc_commit import CommitteeUploadInfo
from gpuproof.protocol.machine import Region
from gpuproof.protocol.reasons import Reason
from gpuproof.protocol.report import BenchmarkReport, GpuInfo
from gpuproof.protocol.upload_info import gpu_type_of, host_fields_from_inventory
from gpuproof.reference import GpuReference, identify
from gpuproof.scoring import ScoringError, performance_index

GIB = 1 << 30
BF16_BENCHMARK = "gemm_bf16"


def measured_bf16(report: BenchmarkReport, gpu: GpuInfo) -> float | None:
    """The verified median BF16 GEMM rate the report gives for this GPU, if any (self-measured)."""
    names = {f"gpu{gpu.index}", f"cuda:{gpu.index}", gpu.uuid, gpu.pci_bus_id}
    for b in report.benchmarks:
        if b.name == BF16_BENCHMARK and b.device in names and b.verified:
            return b.median
    return None


@dataclass(frozen=True)
class Findings:
    """CommitteeUploadInfo fields (all but rand_str and is_support), the problems that make an
    honest reviewer refuse, per-GPU comparison rows, the measured performance index, and where
    each calc_point input comes from."""

    fields: dict[str, Any] | None
    problems: list[Reason] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    performance_index: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    assessment: Assessment | None = None

    @property
    def supports(self) -> bool:
        return self.fields is not None and not self.problems


def _count_problems(claim: Claim, report: BenchmarkReport) -> list[Reason]:
    found = len(report.inventory.gpus)
    if found == claim.gpu_count:
        return []
    return [
        Reason(
            "gpu_count_mismatch",
            f"the challenge claimed {claim.gpu_count} GPUs; the report's inventory lists {found}",
            "inventory.gpus",
        )
    ]


def findings_from_report(
    machine_id: str,
    region: str,
    report: BenchmarkReport,
    claim: Claim,
    *,
    allow_cpu_backend: bool,
    facts: MeasuredFacts = NOTHING_MEASURED,
) -> Findings:
    """The findings of `report` for `claim`, scored from `facts` (what the service measured; nothing
    measured scores fail-closed: no RAM, no model, see `gpuproof.evidence`)."""
    problems = _count_problems(claim, report)
    rows: list[dict[str, Any]] = []
    host = host_fields_from_inventory(report.inventory)
    try:
        region_enum = Region(region)
    except ValueError:
        return Findings(None, [Reason("region_unknown", f"region {region!r} has no DBC coefficient")])

    if claim.cpu and not allow_cpu_backend:
        return Findings(
            None,
            [Reason("cpu_claim_refused", "the challenge claims no GPU (a CPU-only host)"), *problems],
        )
    reference = claim.reference
    if not claim.cpu and reference is None:
        return Findings(None, [Reason("claim_missing", f"the claimed model {claim.gpu_model!r} is unknown")])
    found_assessment = assess(claim, report, region_enum, int(host["mem_num"]), facts)
    indices: list[float] = []
    if reference is not None:
        problems += _gpu_problems(report, reference, rows, indices)
    problems += found_assessment.model_reasons
    if found_assessment.point is None:
        error = found_assessment.scoring_error or Reason(
            "calc_point_missing", "calc_point could not be scored"
        )
        return Findings(None, [*problems, error], rows, None, found_assessment.as_dict(), found_assessment)
    scored = found_assessment.scored
    fields = {
        **host,
        "mem_num": scored.ram_gb,
        "gpu_type": "" if reference is None else gpu_type_of(reference.model),
        "gpu_num": scored.gpu_num,
        "cuda_core": scored.cuda_cores,
        "gpu_mem": scored.gpu_mem_gb,
    }
    index = round(fmean(indices), 4) if indices else None
    return Findings(
        _ordered(machine_id, fields, found_assessment.point.chain_value),
        problems,
        rows,
        index,
        found_assessment.as_dict(),
        found_assessment,
    )


def _gpu_problems(
    report: BenchmarkReport, reference: GpuReference, rows: list[dict[str, Any]], indices: list[float]
) -> list[Reason]:
    """Each GPU of the inventory against the claimed model (host-reported figures: cross-checks)."""
    problems: list[Reason] = []
    for gpu in report.inventory.gpus:
        rate = measured_bf16(report, gpu)
        found = identify(gpu.name, gpu.memory_total_bytes / GIB, rate)
        ref = found.reference
        rows.append(
            {
                "gpu": gpu.index,
                "claimed": reference.model,
                "nvml_name": gpu.name,
                "identified": found.model,
                "confidence": str(found.confidence),
                "memory_gib": round(gpu.memory_total_bytes / GIB, 1),
                "reference_mem_gb": reference.mem_gb,
                "measured_bf16_tflops": rate,
                "reference_bf16_tflops": reference.expected_bf16_tflops,
                "cuda_cores_reported": gpu.cuda_cores,
                "cuda_cores_reference": reference.cuda_cores,
            }
        )
        problems += [Reason(r.code, f"GPU {gpu.index}: {r.message}", r.field) for r in found.reasons]
        if found.model != reference.model:
            problems.append(
                Reason(
                    "gpu_model_mismatch",
                    f"GPU {gpu.index} identifies as {found.model or 'no known model'} "
                    f"({gpu.name!r}); the challenge claimed {reference.model}",
                    "inventory.gpus",
                )
            )
        if rate is None:
            problems.append(
                Reason(
                    "benchmark_missing",
                    f"GPU {gpu.index} has no verified {BF16_BENCHMARK} figure to check against the "
                    f"{reference.model} envelope",
                    "benchmarks",
                )
            )
        elif ref is not None:
            with suppress(ScoringError):
                indices.append(performance_index(rate, reference))
    return problems


# CommitteeUploadInfo's fields in DBC's order, without the voter's own (rand_str, is_support).
_ORDER = tuple(name for name in CommitteeUploadInfo.model_fields if name not in ("rand_str", "is_support"))


def _ordered(machine_id: str, hardware: dict[str, Any], chain_point: int) -> dict[str, Any]:
    merged = {**hardware, "machine_id": machine_id, "calc_point": chain_point}
    return {k: merged[k] for k in _ORDER}
