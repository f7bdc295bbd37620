"""The GPU inventory: every NVML field per GPU, cross-checked against what the CUDA driver says.

A field NVML does not support on this board is None; a real NVML error is recorded in the
GPU's `errors` and the walk goes on. Every NVML/CUDA disagreement lands in `disagreements`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from benchmark_probe.host import collect_host
from benchmark_probe.kernel import normalise_pci_bus_id, read_kernel_view
from gpuproof.protocol.report import CudaView, GpuInfo, HostInfo, Inventory

# CUDA cores per SM by compute capability (CUDA C Programming Guide, "Arithmetic Instructions").
CORES_PER_SM: dict[tuple[int, int], int] = {
    (6, 0): 64,
    (6, 1): 128,
    (6, 2): 128,
    (7, 0): 64,
    (7, 2): 64,
    (7, 5): 64,
    (8, 0): 64,
    (8, 6): 128,
    (8, 7): 128,
    (8, 9): 128,
    (9, 0): 128,
    (10, 0): 128,
    (10, 3): 128,
    (12, 0): 128,
    (12, 1): 128,
}
# The driver keeps some memory back from CUDA contexts; beyond this fraction the views disagree.
MEMORY_TOLERANCE = 0.03


class CudaInspector(Protocol):
    """What the CUDA driver reports per visible device."""

    def views(self) -> list[CudaView]: ...


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class _Reader:
    """Calls NVML for one GPU; NotSupported gives None, any other NVML error is recorded."""

    def __init__(self, nvml: Any, handle: Any) -> None:
        self.nvml = nvml
        self.handle = handle
        self.errors: list[str] = []

    def get(self, field: str, call: Callable[[Any], Any]) -> Any:
        try:
            return call(self.handle)
        except self.nvml.NVMLError_NotSupported:
            return None
        except self.nvml.NVMLError as exc:
            self.errors.append(f"{field}: NVML error: {exc}")
            return None


# nvmlDeviceGetVirtualizationMode's values (nvml.h NVML_GPU_VIRTUALIZATION_MODE_*).
VIRTUALIZATION_MODES = {0: "none", 1: "passthrough", 2: "vgpu", 3: "host_vgpu", 4: "host_vsga"}


def _virtualization(mode: Any) -> str | None:
    return None if mode is None else VIRTUALIZATION_MODES.get(int(mode), f"unknown({int(mode)})")


def _mode_enabled(mode: Any) -> bool | None:
    return None if mode is None else bool(mode[0])


def _sm_count(cores: int | None, cc: tuple[int, int] | None) -> int | None:
    per_sm = CORES_PER_SM.get(cc) if cc else None
    if cores is None or per_sm is None or cores % per_sm:
        return None
    return cores // per_sm


def read_gpu(nvml: Any, index: int) -> GpuInfo:
    """Every inventory field of one GPU, each tolerant of NotSupported."""
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
    except nvml.NVMLError as exc:
        return GpuInfo(
            index=index,
            name="",
            uuid="",
            pci_bus_id="",
            memory_total_bytes=0,
            errors=[f"handle: NVML error: {exc}"],
        )
    r = _Reader(nvml, handle)
    pci = r.get("pci", nvml.nvmlDeviceGetPciInfo)
    memory = r.get("memory_total", nvml.nvmlDeviceGetMemoryInfo)
    cores = r.get("cuda_cores", nvml.nvmlDeviceGetNumGpuCores)
    cc = r.get("compute_capability", nvml.nvmlDeviceGetCudaComputeCapability)
    cc = (int(cc[0]), int(cc[1])) if cc else None
    power_mw = r.get("power_limit", nvml.nvmlDeviceGetPowerManagementLimit)
    return GpuInfo(
        index=index,
        name=_text(r.get("name", nvml.nvmlDeviceGetName) or ""),
        uuid=_text(r.get("uuid", nvml.nvmlDeviceGetUUID) or ""),
        serial=_opt_text(r.get("serial", nvml.nvmlDeviceGetSerial)),
        board_part_number=_opt_text(r.get("board_part_number", nvml.nvmlDeviceGetBoardPartNumber)),
        pci_bus_id=normalise_pci_bus_id(pci.busId) if pci is not None else "",
        pci_device_id=f"0x{int(pci.pciDeviceId):08x}" if pci is not None else None,
        vbios_version=_opt_text(r.get("vbios_version", nvml.nvmlDeviceGetVbiosVersion)),
        memory_total_bytes=int(memory.total) if memory is not None else 0,
        compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
        sm_count=_sm_count(cores, cc),
        cuda_cores=cores,
        max_sm_clock_mhz=r.get(
            "max_sm_clock", lambda h: nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_SM)
        ),
        max_mem_clock_mhz=r.get(
            "max_mem_clock", lambda h: nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_MEM)
        ),
        power_limit_w=power_mw / 1000 if power_mw is not None else None,
        pcie_gen_max=r.get("pcie_gen_max", nvml.nvmlDeviceGetMaxPcieLinkGeneration),
        pcie_width_max=r.get("pcie_width_max", nvml.nvmlDeviceGetMaxPcieLinkWidth),
        pcie_gen_current=r.get("pcie_gen_current", nvml.nvmlDeviceGetCurrPcieLinkGeneration),
        pcie_width_current=r.get("pcie_width_current", nvml.nvmlDeviceGetCurrPcieLinkWidth),
        ecc_enabled=_mode_enabled(r.get("ecc_mode", nvml.nvmlDeviceGetEccMode)),
        mig_enabled=_mode_enabled(r.get("mig_mode", nvml.nvmlDeviceGetMigMode)),
        virtualization_mode=_virtualization(
            r.get("virtualization_mode", nvml.nvmlDeviceGetVirtualizationMode)
        ),
        errors=r.errors,
    )


def _opt_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def disagreements(gpu: GpuInfo, cuda: CudaView) -> list[str]:
    """Every way NVML's and CUDA's account of the same device differ."""
    found = []
    if gpu.name and gpu.name.strip() != cuda.name.strip():
        found.append(f"name: NVML {gpu.name!r} vs CUDA {cuda.name!r}")
    if gpu.memory_total_bytes:
        gap = abs(gpu.memory_total_bytes - cuda.memory_total_bytes) / gpu.memory_total_bytes
        if gap > MEMORY_TOLERANCE:
            found.append(f"memory: NVML {gpu.memory_total_bytes} B vs CUDA {cuda.memory_total_bytes} B")
    if gpu.sm_count is not None and gpu.sm_count != cuda.sm_count:
        found.append(f"sm_count: NVML-derived {gpu.sm_count} vs CUDA {cuda.sm_count}")
    if cuda.uuid and gpu.uuid and gpu.uuid.lower() != cuda.uuid.lower():
        found.append(f"uuid: NVML {gpu.uuid} vs CUDA {cuda.uuid}")
    return found


def cross_check(gpus: list[GpuInfo], views: list[CudaView]) -> tuple[list[GpuInfo], list[str]]:
    """Pair NVML GPUs with CUDA devices by PCI bus id; return checked GPUs and inventory notes."""
    by_bus = {normalise_pci_bus_id(v.pci_bus_id): v for v in views}
    checked = []
    for gpu in gpus:
        view = by_bus.pop(gpu.pci_bus_id, None)
        if view is None:
            msg = f"pci_bus_id: CUDA shows no device at {gpu.pci_bus_id or '(unknown)'}"
            checked.append(gpu.model_copy(update={"disagreements": [*gpu.disagreements, msg]}))
            continue
        update: dict[str, Any] = {
            "cuda": view,
            "disagreements": [*gpu.disagreements, *disagreements(gpu, view)],
        }
        if gpu.sm_count is None:
            update["sm_count"] = view.sm_count
        checked.append(gpu.model_copy(update=update))
    notes = [f"CUDA device at {bus} ({v.name}) has no NVML counterpart" for bus, v in by_bus.items()]
    notes += [
        f"uuid of {g.pci_bus_id} not cross-checked: CUDA's UUID came back cut short "
        "(CuPy reads its 16 raw bytes as a C string, which ends at a 0x00 byte)"
        for g in checked
        if g.cuda is not None and not g.cuda.uuid and g.uuid
    ]
    return checked, notes


def _load_pynvml() -> tuple[Any | None, str | None]:
    try:
        import pynvml
    except ImportError as exc:
        return None, f"nvidia-ml-py is not installed ({exc}); pip install 'gpuproof[nvml]'"
    return pynvml, None


def _default_cuda() -> CudaInspector | None:
    from benchmark_probe.backends.cupy import CupyCudaInspector, cupy_available

    return CupyCudaInspector() if cupy_available() else None


def _cpu_inventory(host: HostInfo, why: str, extra: list[str] | None = None) -> Inventory:
    notes = [f"no NVIDIA GPU found ({why}); benchmarks run on the CPU backend", *(extra or [])]
    return Inventory(backend="cpu", host=host, notes=notes)


def _nvml_walk(nvml: Any) -> tuple[str | None, str | None, list[GpuInfo]]:
    driver = _opt_text(_safe(nvml, nvml.nvmlSystemGetDriverVersion))
    cuda_v = _safe(nvml, nvml.nvmlSystemGetCudaDriverVersion)
    cuda_text = f"{cuda_v // 1000}.{cuda_v % 1000 // 10}" if isinstance(cuda_v, int) else None
    count = nvml.nvmlDeviceGetCount()
    return driver, cuda_text, [read_gpu(nvml, i) for i in range(count)]


def _safe(nvml: Any, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except nvml.NVMLError:
        return None


def _cuda_views(cuda: CudaInspector | None) -> tuple[list[CudaView] | None, list[str]]:
    if cuda is None:
        return None, ["CUDA cross-check skipped: CuPy is not installed (pip install 'gpuproof[gpu]')"]
    try:
        return cuda.views(), []
    except Exception as exc:  # a broken driver must not stop the inventory; it is reported
        return None, [f"CUDA cross-check failed: {exc}"]


def collect_inventory(
    nvml: Any | None = None,
    cuda: CudaInspector | None = None,
    host: HostInfo | None = None,
    *,
    use_default_cuda: bool = True,
    kernel_roots: tuple[Path, Path] = (Path("/proc"), Path("/sys")),
) -> Inventory:
    """Inventory of this host. Pass an NvmlTestDouble / CudaTestDouble in tests, and the roots of a
    fake /proc and /sys tree (`kernel_double.write_tree`) for the kernel's view."""
    host = host or collect_host()
    if nvml is None:
        nvml, why = _load_pynvml()
        if nvml is None:
            return _cpu_inventory(host, why or "NVML unavailable")
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return _cpu_inventory(host, f"NVML library not loadable: {exc}")
    try:
        driver, cuda_version, gpus = _nvml_walk(nvml)
    except nvml.NVMLError as exc:
        return _cpu_inventory(host, f"NVML failed to enumerate devices: {exc}")
    finally:
        _safe(nvml, nvml.nvmlShutdown)
    if not gpus:
        return _cpu_inventory(host, "NVML reports 0 devices")
    if cuda is None and use_default_cuda:
        cuda = _default_cuda()
    views, notes = _cuda_views(cuda)
    if views is not None:
        gpus, extra = cross_check(gpus, views)
        notes += extra
        if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
            notes.append(f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} limits the CUDA view")
    return Inventory(
        backend="nvml",
        driver_version=driver,
        cuda_driver_version=cuda_version,
        gpus=gpus,
        host=host,
        notes=notes,
        kernel=read_kernel_view(*kernel_roots),
    )
