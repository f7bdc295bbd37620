"""KERNEL FILE-SYSTEM TEST DOUBLE: a fake `/proc` and `/sys` tree, for tests and demos only.

Writes the files `benchmark_probe.kernel` reads (the NVIDIA module's
`/proc/driver/nvidia/gpus/<bus>/information` and `/sys/bus/pci/devices/<addr>/{vendor,device,class}`)
under a temporary directory, so the kernel view runs unchanged against 1 or 8 fake GPUs, a hidden
GPU, an extra PCI device or a disagreeing model or UUID. Nothing here reads a real device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmark_probe.kernel import normalise_pci_bus_id
from benchmark_probe.nvml_double import FakeGpu


@dataclass(frozen=True)
class FakeKernelGpu:
    bus: str  # 0000:18:00.0
    model: str
    uuid: str
    device_id: int = 0x2330
    class_code: int = 0x030200  # 3D controller
    in_proc: bool = True
    in_pci: bool = True


def kernel_gpu_of(gpu: FakeGpu) -> FakeKernelGpu:
    """What an honest host's kernel shows for a fake NVML GPU."""
    return FakeKernelGpu(
        bus=normalise_pci_bus_id(gpu.pci_bus_id),
        model=gpu.name,
        uuid=gpu.uuid,
        device_id=gpu.pci_device_id >> 16,
    )


def write_tree(root: Path, gpus: list[FakeKernelGpu], *, other_devices: int = 2) -> tuple[Path, Path]:
    """Write the fake tree; returns (proc_root, sys_root). `other_devices` adds non-NVIDIA devices."""
    proc, sys = root / "proc", root / "sys"
    gpus_dir = proc / "driver" / "nvidia" / "gpus"
    pci = sys / "bus" / "pci" / "devices"
    gpus_dir.mkdir(parents=True, exist_ok=True)
    pci.mkdir(parents=True, exist_ok=True)
    for g in gpus:
        if g.in_proc:
            d = gpus_dir / g.bus
            d.mkdir()
            (d / "information").write_text(
                f"Model: \t\t {g.model}\nIRQ:   \t\t 98\nGPU UUID: \t {g.uuid}\n"
                "Video BIOS: \t 96.00.99.00.01\n"
                f"Bus Type: \t PCIe\nDMA Size: \t 52 bits\nBus Location: \t {g.bus}\nDevice Minor: \t 0\n"
                "GPU Excluded:\t No\n"
            )
        if g.in_pci:
            _pci(pci / g.bus, 0x10DE, g.device_id, g.class_code)
    for i in range(other_devices):
        _pci(pci / f"0000:00:{i + 1:02x}.0", 0x8086, 0x2020 + i, 0x060000)  # host bridges
    return proc, sys


def _pci(d: Path, vendor: int, device: int, cls: int) -> None:
    d.mkdir()
    (d / "vendor").write_text(f"0x{vendor:04x}\n")
    (d / "device").write_text(f"0x{device:04x}\n")
    (d / "class").write_text(f"0x{cls:06x}\n")
