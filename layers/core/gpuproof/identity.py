"""Device identity from the kernel's view beside NVML's (the verify worker's `kernel_identity` check).

The probe reads `/proc/driver/nvidia/gpus/*/information` (the NVIDIA kernel module's own account:
model, GPU UUID, bus location) and PCI enumeration (`/sys/bus/pci/devices`: NVIDIA display and 3D
controllers) beside NVML (`benchmark_probe/kernel.py`). Every disagreement in count, model, UUID
or bus id is a reason. All of it is host-sent (a modified probe can write any of it consistently),
so this check is a cross-check that catches a careless edit or an NVML shim, not evidence; it runs
in shadow mode (recorded, not deciding) until `EnforceChecks` names it (docs/operations.md).
"""

from __future__ import annotations

from typing import Any

from gpuproof.protocol.gpu_uuid import normalise_gpu_uuid
from gpuproof.protocol.reasons import Reason
from gpuproof.protocol.report import Inventory

NOTE = (
    "host-sent: the kernel's view is read by the probe like NVML's, so agreement is a claim, not "
    "evidence; disagreements are reasons"
)


def _bus(text: str) -> str:
    try:
        domain, bus, devfn = text.strip().split(":")
        dev, fn = devfn.split(".")
        return f"{int(domain, 16):04x}:{int(bus, 16):02x}:{int(dev, 16):02x}.{int(fn, 16):x}"
    except ValueError:
        return text.strip().lower()


def _name(text: str | None) -> str:
    return " ".join((text or "").upper().split())


def kernel_reasons(inventory: Inventory, claimed_count: int) -> tuple[list[Reason], dict[str, Any]]:
    """Why the kernel's view and NVML's (and the claim's count) disagree; details for the record."""
    if inventory.backend == "cpu" and claimed_count == 0:
        return [], {"note": "no GPU claimed: nothing to compare"}
    kernel = inventory.kernel
    if kernel is None:
        return [
            Reason("kernel_view_missing", "the report carries no kernel view of the GPUs", "inventory.kernel")
        ], {"note": NOTE}
    reasons: list[Reason] = []
    nvml = {_bus(g.pci_bus_id): g for g in inventory.gpus}
    proc = {_bus(g.bus_location): g for g in kernel.proc_gpus}
    pci = {_bus(d.address): d for d in kernel.pci_devices}
    counts = {"claimed": claimed_count, "nvml": len(nvml), "proc": len(proc), "pci": len(pci)}
    if len(set(counts.values())) > 1:
        reasons.append(
            Reason(
                "kernel_gpu_count_mismatch",
                "GPU counts differ: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
                "inventory.kernel",
            )
        )
    for bus, gpu in sorted(nvml.items()):
        k = proc.get(bus)
        if bus not in pci:
            reasons.append(
                Reason(
                    "kernel_bus_id_mismatch",
                    f"GPU {gpu.index}: PCI enumeration shows no NVIDIA display/3D controller at {bus}",
                    "inventory.kernel.pci_devices",
                )
            )
        if k is None:
            reasons.append(
                Reason(
                    "kernel_bus_id_mismatch",
                    f"GPU {gpu.index}: /proc/driver/nvidia/gpus has no GPU at {bus}",
                    "inventory.kernel.proc_gpus",
                )
            )
            continue
        if k.model is not None and _name(k.model) != _name(gpu.name):
            reasons.append(
                Reason(
                    "kernel_model_mismatch",
                    f"GPU {gpu.index}: the kernel says {k.model!r}, NVML {gpu.name!r}",
                    "inventory.kernel.proc_gpus",
                )
            )
        ku, nu = normalise_gpu_uuid(k.uuid or ""), normalise_gpu_uuid(gpu.uuid)
        if k.uuid is not None and ku != nu:
            reasons.append(
                Reason(
                    "kernel_uuid_mismatch",
                    f"GPU {gpu.index}: the kernel says {k.uuid!r}, NVML {gpu.uuid!r}",
                    "inventory.kernel.proc_gpus",
                )
            )
    extra = sorted(set(proc) - set(nvml))
    if extra:
        reasons.append(
            Reason(
                "kernel_bus_id_mismatch",
                f"the kernel lists GPUs NVML does not: {', '.join(extra)}",
                "inventory.kernel.proc_gpus",
            )
        )
    return reasons, {"counts": counts, "errors": list(kernel.errors), "note": NOTE}
