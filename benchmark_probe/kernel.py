"""The kernel's view of the GPUs, beside NVML's: `/proc/driver/nvidia/gpus/*/information` (written by
the NVIDIA kernel module) and PCI enumeration (`/sys/bus/pci/devices/*/{vendor,device,class}`).

The roots are injectable so tests run against a fake tree (`benchmark_probe/kernel_double.py`, the
hardware-boundary test double). What this reads is still host-sent: the service compares it with
NVML's inventory (check `kernel_identity`, shadow mode first) and says that it is a claim.
"""

from __future__ import annotations

from pathlib import Path

from gpuproof.protocol import limits as L
from gpuproof.protocol.report import KernelGpu, KernelView, PciDevice

NVIDIA_VENDOR = 0x10DE
# PCI class codes (base class 0x03 display): 0x0300 VGA compatible, 0x0302 3D controller.
GPU_CLASSES = (0x0300, 0x0302)
_MAX_FILE = 64 * 1024


def normalise_pci_bus_id(bus_id: str | bytes) -> str:
    """NVML says 00000000:3B:00.0, CUDA says 0000:3b:00.0: both become 0000:3b:00.0."""
    text = bus_id.decode() if isinstance(bus_id, bytes) else bus_id
    try:
        domain, bus, devfn = text.strip().split(":")
        dev, fn = devfn.split(".")
        return f"{int(domain, 16):04x}:{int(bus, 16):02x}:{int(dev, 16):02x}.{int(fn, 16):x}"
    except ValueError:
        return text.strip().lower()


def _read(path: Path) -> str:
    with path.open("rb") as fh:
        return fh.read(_MAX_FILE).decode(errors="replace")


def parse_information(text: str) -> dict[str, str]:
    """`Key: value` lines of an information file (keys as written, values stripped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip(), value.strip())
    return out


def _clip(value: str | None) -> str | None:
    return None if value is None else value[: L.MAX_NAME_CHARS]


def read_proc_gpus(proc_root: Path, errors: list[str]) -> list[KernelGpu]:
    base = proc_root / "driver" / "nvidia" / "gpus"
    if not base.is_dir():
        errors.append(f"{base} does not exist (NVIDIA kernel module not loaded, or hidden)")
        return []
    gpus = []
    for entry in sorted(base.iterdir())[: L.MAX_LIST_ITEMS]:
        try:
            info = parse_information(_read(entry / "information"))
        except OSError as exc:
            errors.append(f"{entry.name}/information: {exc.strerror or exc}")
            continue
        bus = info.get("Bus Location") or entry.name
        gpus.append(
            KernelGpu(
                bus_location=normalise_pci_bus_id(bus)[: L.MAX_NAME_CHARS],
                model=_clip(info.get("Model")),
                uuid=_clip(info.get("GPU UUID")),
            )
        )
    return gpus


def _hex(path: Path) -> int:
    return int(_read(path).strip(), 16)


def read_pci_devices(sys_root: Path, errors: list[str]) -> list[PciDevice]:
    base = sys_root / "bus" / "pci" / "devices"
    if not base.is_dir():
        errors.append(f"{base} does not exist")
        return []
    found = []
    for entry in sorted(base.iterdir()):
        try:
            vendor = _hex(entry / "vendor")
            if vendor != NVIDIA_VENDOR:
                continue
            cls = _hex(entry / "class")
            if cls >> 8 not in GPU_CLASSES:
                continue
            device = _hex(entry / "device")
        except (OSError, ValueError) as exc:
            errors.append(f"{entry.name}: {exc}")
            continue
        found.append(
            PciDevice(
                address=normalise_pci_bus_id(entry.name),
                device_id=f"0x{device:04x}",
                class_code=f"0x{cls:06x}",
            )
        )
        if len(found) >= L.MAX_LIST_ITEMS:
            break
    return found


def read_kernel_view(proc_root: Path = Path("/proc"), sys_root: Path = Path("/sys")) -> KernelView:
    """The kernel's GPUs and NVIDIA PCI display/3D controllers; every unreadable part is an error."""
    errors: list[str] = []
    proc = read_proc_gpus(proc_root, errors)
    pci = read_pci_devices(sys_root, errors)
    return KernelView(proc_gpus=proc, pci_devices=pci, errors=errors[: L.MAX_LIST_ITEMS])
