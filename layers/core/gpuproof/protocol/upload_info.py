"""DBC's CommitteeUploadInfo hardware fields, derived from a probe's Inventory (reference/dbc.md).

The rounding rules are ours (DBC leaves them to the committee member who types them in):
GPU memory and RAM in GiB rounded to the nearest unit (an "80 GB" H100 reports 79.6 GiB),
disks in decimal GB rounded down, CPU rate in MHz. calc_point is scoring's business, not here.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from gpuproof.protocol.report import GpuInfo, Inventory

GIB = 1 << 30
GB = 1_000_000_000
_CPU_SUFFIX_RE = re.compile(r"\s+(?:CPU\s+)?@\s*[0-9.]+\s*[GM]Hz\s*$", re.IGNORECASE)
_SPACES_RE = re.compile(r"\s+")


class UploadInfoError(ValueError):
    """The inventory cannot be expressed as one CommitteeUploadInfo; `reasons` lists why."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class UploadInfoFields:
    """The hardware part of CommitteeUploadInfo, in DBC's units."""

    gpu_type: str
    gpu_num: int
    cuda_core: int
    gpu_mem: int
    sys_disk: int
    data_disk: int
    cpu_type: str
    cpu_core_num: int
    cpu_rate: int
    mem_num: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gpu_type_of(name: str) -> str:
    """DBC writes models without vendor prefix or spaces: "NVIDIA GeForce RTX 3080" -> "GeForceRTX3080"."""
    stripped = name.strip()
    if stripped.upper().startswith("NVIDIA "):
        stripped = stripped[len("NVIDIA ") :]
    return _SPACES_RE.sub("", stripped)


def cpu_type_of(model: str) -> str:
    """Drop the clock suffix: "Intel(R) Xeon(R) Silver 4214R CPU @ 2.40GHz" -> "...Silver 4214R"."""
    return _CPU_SUFFIX_RE.sub("", model.strip())


def _gpu_problems(gpus: list[GpuInfo]) -> list[str]:
    problems = []
    names = sorted({gpu_type_of(g.name) for g in gpus})
    if len(names) > 1:
        problems.append(f"mixed GPU models {names}: CommitteeUploadInfo holds one gpu_type")
    cores = sorted({g.cuda_cores for g in gpus if g.cuda_cores is not None})
    if len(cores) > 1:
        problems.append(f"GPUs disagree on CUDA cores {cores}")
    if any(g.cuda_cores is None for g in gpus):
        problems.append("CUDA core count unknown for at least one GPU")
    return problems


def round_div(value: int, unit: int) -> int:
    """round(value / unit) in exact integer arithmetic (half to even, as round() does): no float
    overflow or precision loss for any int the wire model lets through."""
    q, r = divmod(value, unit)
    if 2 * r > unit or (2 * r == unit and q % 2):
        q += 1
    return q


HOST_FIELDS = ("sys_disk", "data_disk", "cpu_type", "cpu_core_num", "cpu_rate", "mem_num")


def host_fields_from_inventory(inventory: Inventory) -> dict[str, Any]:
    """The host part of CommitteeUploadInfo (disks, CPU, RAM) in DBC's units, as the host declares
    it. The GPU part of a verdict comes from the challenge's claim, not from here."""
    host = inventory.host
    return {
        "sys_disk": host.sys_disk_bytes // GB,
        "data_disk": host.data_disk_bytes // GB,
        "cpu_type": cpu_type_of(host.cpu_model),
        "cpu_core_num": host.cpu_cores,
        "cpu_rate": host.cpu_mhz,
        "mem_num": round_div(host.ram_bytes, GIB),
    }


def upload_fields_from_inventory(inventory: Inventory) -> UploadInfoFields:
    """Every hardware field of CommitteeUploadInfo; raises UploadInfoError listing every problem."""
    gpus = inventory.gpus
    problems = _gpu_problems(gpus)
    if problems:
        raise UploadInfoError(problems)
    first = gpus[0] if gpus else None
    return UploadInfoFields(
        gpu_type=gpu_type_of(first.name) if first else "",
        gpu_num=len(gpus),
        cuda_core=(first.cuda_cores or 0) if first else 0,
        gpu_mem=round_div(min(g.memory_total_bytes for g in gpus), GIB) if gpus else 0,
        **host_fields_from_inventory(inventory),
    )
