"""What a signed report says about a machine in DBC's terms: CommitteeUploadInfo from VERIFIED facts.

The service (expected info stored on each round) and every committee member (the `committee`
CLI) run this same function on the same signed report, so honest reviewers reach the same
bytes. Rules:

- GPU model: identified by envelope (NVML name, visible memory, verified BF16 rate) with
  `gpuproof.reference.identify`; every GPU must identify as the same model.
- gpu_type = the identified model's name without spaces ("H100 SXM5 80GB" -> "H100SXM580GB");
  cuda_core and gpu_mem from the reference table, never from the host's claims.
- RAM, disks and CPU from the inventory (`protocol.upload_info` rounding rules).
- calc_point = DBC's formula (`scoring.calc_point_for_model`) × 100, with the machine's region.
- A CPU-only report (gpu_num 0; accepted only where the CPU backend is allowed) scores
  RAM_GB / 3.5 × region coefficient.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from gpuproof.protocol.dbc_commit import CommitteeUploadInfo
from gpuproof.protocol.machine import Region
from gpuproof.protocol.reasons import Reason
from gpuproof.protocol.report import BenchmarkReport, GpuInfo
from gpuproof.protocol.upload_info import UploadInfoError, gpu_type_of, upload_fields_from_inventory
from gpuproof.reference import identify
from gpuproof.scoring import ScoringError, calc_point, calc_point_for_model, performance_index

GIB = 1 << 30
BF16_BENCHMARK = "gemm_bf16"


def measured_bf16(report: BenchmarkReport, gpu: GpuInfo) -> float | None:
    """The verified median BF16 GEMM rate the report gives for this GPU, if any."""
    names = {f"gpu{gpu.index}", f"cuda:{gpu.index}", gpu.uuid, gpu.pci_bus_id}
    for b in report.benchmarks:
        if b.name == BF16_BENCHMARK and b.device in names and b.verified:
            return b.median
    return None


@dataclass(frozen=True)
class Findings:
    """CommitteeUploadInfo fields (all but rand_str and is_support), the problems that make an
    honest reviewer refuse, per-GPU comparison rows, and the measured performance index."""

    fields: dict[str, Any] | None
    problems: list[Reason] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    performance_index: float | None = None

    @property
    def supports(self) -> bool:
        return self.fields is not None and not self.problems


def findings_from_report(
    machine_id: str, region: str, report: BenchmarkReport, *, allow_cpu_backend: bool
) -> Findings:
    problems: list[Reason] = []
    rows: list[dict[str, Any]] = []
    inventory = report.inventory
    try:
        hardware = upload_fields_from_inventory(inventory)
    except UploadInfoError as exc:
        return Findings(None, [Reason("upload_info_invalid", r) for r in exc.reasons])
    try:
        region_enum = Region(region)
    except ValueError:
        return Findings(None, [Reason("region_unknown", f"region {region!r} has no DBC coefficient")])

    if not inventory.gpus:
        if not allow_cpu_backend:
            return Findings(None, [Reason("no_nvidia_gpu", "the report lists no NVIDIA GPU")])
        point = calc_point(
            gpu_num=0,
            cuda_cores=0,
            gpu_mem_gb=0,
            ram_gb=hardware.mem_num,
            region=region_enum,
            large_model_factor=1,
        )
        fields = {**hardware.as_dict(), "gpu_type": "", "gpu_num": 0, "cuda_core": 0, "gpu_mem": 0}
        return Findings(_ordered(machine_id, fields, point.chain_value), [], [], None)

    models: set[str] = set()
    indices: list[float] = []
    reference = None
    for gpu in inventory.gpus:
        rate = measured_bf16(report, gpu)
        found = identify(gpu.name, gpu.memory_total_bytes / GIB, rate)
        ref = found.reference
        rows.append(
            {
                "gpu": gpu.index,
                "claimed": gpu.name,
                "identified": found.model,
                "confidence": str(found.confidence),
                "memory_gib": round(gpu.memory_total_bytes / GIB, 1),
                "reference_mem_gb": ref.mem_gb if ref else None,
                "measured_bf16_tflops": rate,
                "reference_bf16_tflops": ref.expected_bf16_tflops if ref else None,
                "cuda_cores_reported": gpu.cuda_cores,
                "cuda_cores_reference": ref.cuda_cores if ref else None,
            }
        )
        problems += [Reason(r.code, f"GPU {gpu.index}: {r.message}", r.field) for r in found.reasons]
        if found.model is None or ref is None:
            continue
        models.add(found.model)
        reference = ref
        if rate is not None:
            with suppress(ScoringError):
                indices.append(performance_index(rate, ref))
    if len(models) != 1 or reference is None:
        if len(models) > 1:
            problems.append(
                Reason("gpu_models_mixed", f"GPUs identify as different models: {sorted(models)}")
            )
        return Findings(None, problems or [Reason("gpu_not_identified", "no GPU model identified")], rows)
    try:
        point = calc_point_for_model(
            reference, gpu_num=len(inventory.gpus), ram_gb=hardware.mem_num, region=region_enum
        )
    except ScoringError as exc:
        return Findings(None, [*problems, Reason(exc.code, str(exc))], rows)
    fields = {
        **hardware.as_dict(),
        "gpu_type": gpu_type_of(reference.model),
        "gpu_num": len(inventory.gpus),
        "cuda_core": reference.cuda_cores or 0,
        "gpu_mem": reference.mem_gb,
    }
    index = round(fmean(indices), 4) if indices else None
    return Findings(_ordered(machine_id, fields, point.chain_value), problems, rows, index)


# CommitteeUploadInfo's fields in DBC's order, without the voter's own (rand_str, is_support).
_ORDER = tuple(name for name in CommitteeUploadInfo.model_fields if name not in ("rand_str", "is_support"))


def _ordered(machine_id: str, hardware: dict[str, Any], chain_point: int) -> dict[str, Any]:
    merged = {**hardware, "machine_id": machine_id, "calc_point": chain_point}
    return {k: merged[k] for k in _ORDER}
