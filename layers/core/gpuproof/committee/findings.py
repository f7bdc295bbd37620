"""What a signed report says about a machine in DBC's terms, for the CLAIM its challenge fixed.

The service (expected info stored on each round, and the verify worker's `findings` check) and
every committee member (the `committee` CLI) run this same function on the same signed report
and challenge, so honest reviewers reach the same bytes. Rules:

- The GPU part of CommitteeUploadInfo comes from the challenge's claim (`gpuproof.claim`), which
  the proof of throughput was sized for: gpu_num = the claimed count; gpu_type, cuda_core and
  gpu_mem = the claimed model's reference row. Names in the inventory never raise a score: they
  can only fail to match the claim (gpu_count_mismatch, gpu_model_mismatch).
- Every GPU must identify (`gpuproof.reference.identify`: NVML name, visible memory, verified BF16
  rate) as the claimed model; a GPU without a verified BF16 figure is a problem
  (benchmark_missing): missing evidence never scores better than failed evidence.
- RAM, disks and CPU are what the host declares (`protocol.upload_info` rounding rules): not proven.
- calc_point = DBC's formula (`scoring.calc_point_for_model`) × 100, with the machine's region.
- A CPU-only claim (gpu_num 0; accepted only where the CPU backend is allowed) scores
  RAM_GB / 3.5 × region coefficient.

`Findings.evidence` says, for every calc_point input, whether it is measured or declared.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from gpuproof.claim import Claim
from gpuproof.protocol.dbc_commit import CommitteeUploadInfo
from gpuproof.protocol.machine import Region
from gpuproof.protocol.reasons import Reason
from gpuproof.protocol.report import BenchmarkReport, GpuInfo
from gpuproof.protocol.upload_info import gpu_type_of, host_fields_from_inventory
from gpuproof.reference import identify
from gpuproof.scoring import ScoringError, calc_point, calc_point_for_model, performance_index

GIB = 1 << 30
BF16_BENCHMARK = "gemm_bf16"

# Where each calc_point input comes from (shown in the verification and the committee CLI).
GPU_EVIDENCE = {
    "gpu_num": "claimed in the challenge; bound only by the proof of throughput (aggregate exact GEMM "
    "work at the claimed model's rate, service-timed); the GPU count itself is not proven",
    "gpu_type": "claimed in the challenge; NVML names, memory and the self-measured BF16 rate are "
    "checked against it (host-reported, cross-check only)",
    "cuda_core": "reference table row of the claimed model",
    "gpu_mem": "reference table row of the claimed model; visible memory is host-reported",
}
HOST_EVIDENCE = {
    "mem_num": "declared by the host (not proven)",
    "sys_disk": "declared by the host (not proven)",
    "data_disk": "declared by the host (not proven)",
    "cpu_type": "declared by the host (not proven)",
    "cpu_core_num": "declared by the host (not proven)",
    "cpu_rate": "declared by the host (not proven)",
    "region": "declared by the owner at registration (not proven)",
}


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
    evidence: dict[str, str] = field(default_factory=dict)

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
    machine_id: str, region: str, report: BenchmarkReport, claim: Claim, *, allow_cpu_backend: bool
) -> Findings:
    problems = _count_problems(claim, report)
    rows: list[dict[str, Any]] = []
    host = host_fields_from_inventory(report.inventory)
    try:
        region_enum = Region(region)
    except ValueError:
        return Findings(None, [Reason("region_unknown", f"region {region!r} has no DBC coefficient")])

    if claim.cpu:
        if not allow_cpu_backend:
            return Findings(
                None,
                [Reason("cpu_claim_refused", "the challenge claims no GPU (a CPU-only host)"), *problems],
            )
        try:
            point = calc_point(
                gpu_num=0,
                cuda_cores=0,
                gpu_mem_gb=0,
                ram_gb=host["mem_num"],
                region=region_enum,
                large_model_factor=1,
            )
        except ScoringError as exc:
            return Findings(None, [*problems, Reason(exc.code, str(exc))])
        fields = {**host, "gpu_type": "", "gpu_num": 0, "cuda_core": 0, "gpu_mem": 0}
        return Findings(_ordered(machine_id, fields, point.chain_value), problems, [], None, HOST_EVIDENCE)

    reference = claim.reference
    if reference is None:
        return Findings(None, [Reason("claim_missing", f"the claimed model {claim.gpu_model!r} is unknown")])
    indices: list[float] = []
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
    try:
        point = calc_point_for_model(
            reference, gpu_num=claim.gpu_count, ram_gb=host["mem_num"], region=region_enum
        )
    except ScoringError as exc:
        return Findings(None, [*problems, Reason(exc.code, str(exc))], rows)
    fields = {
        **host,
        "gpu_type": gpu_type_of(reference.model),
        "gpu_num": claim.gpu_count,
        "cuda_core": reference.cuda_cores or 0,
        "gpu_mem": reference.mem_gb,
    }
    index = round(fmean(indices), 4) if indices else None
    return Findings(
        _ordered(machine_id, fields, point.chain_value),
        problems,
        rows,
        index,
        {**GPU_EVIDENCE, **HOST_EVIDENCE},
    )


# CommitteeUploadInfo's fields in DBC's order, without the voter's own (rand_str, is_support).
_ORDER = tuple(name for name in CommitteeUploadInfo.model_fields if name not in ("rand_str", "is_support"))


def _ordered(machine_id: str, hardware: dict[str, Any], chain_point: int) -> dict[str, Any]:
    merged = {**hardware, "machine_id": machine_id, "calc_point": chain_point}
    return {k: merged[k] for k in _ORDER}
