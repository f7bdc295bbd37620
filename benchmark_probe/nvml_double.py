"""NVML TEST DOUBLE: a stand-in for the `pynvml` module, for tests and demos only.

It mimics the slice of pynvml the probe calls (same function names, same exception classes),
so inventory and telemetry code runs unchanged against 1 or 8 fake GPUs, a missing library,
an error part-way, or a CUDA view that disagrees. Nothing here ever touches a real GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

from gpuproof.protocol.report import CudaView, HostInfo


class NVMLError(Exception):
    value = 999

    def __init__(self, message: str = "Unknown Error") -> None:
        super().__init__(message)


class NVMLError_NotSupported(NVMLError):
    value = 3

    def __init__(self, message: str = "Not Supported") -> None:
        super().__init__(message)


class NVMLError_LibraryNotFound(NVMLError):
    value = 12

    def __init__(self, message: str = "NVML Shared Library Not Found") -> None:
        super().__init__(message)


class NVMLError_Timeout(NVMLError):
    def __init__(self) -> None:
        super().__init__("Timeout")


class NVMLError_Unknown(NVMLError):
    pass


@dataclass(frozen=True)
class FakeGpu:
    """One fake GPU's answers (defaults: an H100 SXM 80GB)."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    serial: str = "1650000000000"
    board_part_number: str = "692-2G520-0200-000"
    pci_bus_id: str = "00000000:18:00.0"
    pci_device_id: int = 0x233010DE
    vbios_version: str = "96.00.99.00.01"
    memory_total_bytes: int = 85_520_809_984
    memory_used_bytes: int = 0
    cuda_cores: int = 16_896
    compute_capability: tuple[int, int] = (9, 0)
    max_sm_clock_mhz: int = 1980
    max_mem_clock_mhz: int = 2619
    power_limit_mw: int = 700_000
    pcie_gen_max: int = 5
    pcie_width_max: int = 16
    pcie_gen_current: int = 5
    pcie_width_current: int = 16
    ecc_mode: tuple[int, int] = (1, 1)
    mig_mode: tuple[int, int] = (0, 0)
    virtualization_mode: int = 0  # NVML_GPU_VIRTUALIZATION_MODE_NONE
    utilization_pct: int = 0
    temperature_c: int = 35
    power_usage_mw: int = 70_000
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 2619
    processes: tuple[tuple[int, int], ...] = ()
    # Health signals: ECC error counts (volatile), retired pages, remapped rows, throttle mask.
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    retired_pages_single_bit: int = 0
    retired_pages_double_bit: int = 0
    retired_pages_pending: bool = False
    remapped_rows: tuple[int, int, bool, bool] = (0, 0, False, False)
    throttle_mask: int = 0

    @property
    def sm_count(self) -> int:
        return self.cuda_cores // 128


def fake_gpu(index: int, **overrides: Any) -> FakeGpu:
    """An H100 with a distinct UUID, serial and PCI bus id per index."""
    base = FakeGpu(
        # No 0x00 byte, as in most real UUIDs (CuPy's view of one with 0x00 is cut short there).
        uuid=f"GPU-{0x5A5A5A10 + index:08x}-1111-2222-3333-{0xA5A5A5A5A510 + index:012x}",
        serial=f"16500000000{index:02d}",
        pci_bus_id=f"00000000:{0x18 + 0x10 * index:02X}:00.0",
    )
    return replace(base, **overrides)


# The TEST DOUBLE GPU model: no such GPU exists. Its reference row is registered only by a local
# stack started with `--test-double-gpu` (gpuproof.local.double_gpu, which holds the same figures);
# it lets the probe's GPU path (NVML inventory, CuPy backend, CuPy proof executor) run end to end
# on a host without a GPU. 1 GiB and one SM of 128 CUDA cores (compute capability 9.0).
DOUBLE_MODEL_NAME = "GPUPROOF TEST DOUBLE GPU"
DOUBLE_MODEL_MEMORY_BYTES = 1 << 30
DOUBLE_MODEL_CUDA_CORES = 128


def double_model_gpu(index: int, **overrides: Any) -> FakeGpu:
    """A GPU of the TEST DOUBLE model, with a UUID, serial and PCI bus id of its own per index
    (distinct from `fake_gpu`'s H100s)."""
    base = FakeGpu(
        name=DOUBLE_MODEL_NAME,
        uuid=f"GPU-{0x7E57D0B1 + index:08x}-d0b1-4e57-9a9a-{0x5EED5EED5E10 + index:012x}",
        serial=f"TESTDOUBLE{index:04d}",
        board_part_number="TEST-DOUBLE",
        pci_bus_id=f"00000000:{0x41 + index:02X}:00.0",
        pci_device_id=0x00000000,
        vbios_version="00.00.00.00.00",
        memory_total_bytes=DOUBLE_MODEL_MEMORY_BYTES,
        cuda_cores=DOUBLE_MODEL_CUDA_CORES,
        compute_capability=(9, 0),
        power_limit_mw=75_000,
        power_usage_mw=10_000,
    )
    return replace(base, **overrides)


@dataclass
class NvmlTestDouble:
    """Module-like fake of pynvml. `fail_on` maps a function name to GPU indices that raise NVMLError."""

    gpus: list[FakeGpu] = field(default_factory=lambda: [fake_gpu(0)])
    library_missing: bool = False
    driver_version: str = "550.54.15"
    cuda_driver_version: int = 12040
    fail_on: dict[str, set[int]] = field(default_factory=dict)
    unsupported: set[str] = field(default_factory=set)
    initialised: bool = False
    # XID events queued for nvmlEventSetWait: (gpu index, xid), delivered in order.
    xid_queue: list[tuple[int, int]] = field(default_factory=list)
    registered_events: dict[int, int] = field(default_factory=dict)

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_Timeout = NVMLError_Timeout
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    @classmethod
    def with_gpus(cls, count: int, **kwargs: Any) -> NvmlTestDouble:
        return cls(gpus=[fake_gpu(i) for i in range(count)], **kwargs)

    # -- library ---------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if self.library_missing:
            raise NVMLError_LibraryNotFound()
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda_driver_version

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._maybe_fail("nvmlDeviceGetHandleByIndex", index)
        if not 0 <= index < len(self.gpus):
            raise NVMLError("Invalid Argument")
        return index

    def nvmlDeviceGetIndex(self, h: int) -> int:
        self._maybe_fail("nvmlDeviceGetIndex", h)
        return h

    # -- per device --------------------------------------------------------------------------
    def _call(self, fn: str, handle: int, get: Callable[[FakeGpu], Any]) -> Any:
        self._maybe_fail(fn, handle)
        return get(self.gpus[handle])

    def _maybe_fail(self, fn: str, index: int) -> None:
        if not self.initialised:
            raise NVMLError("Uninitialized")
        if fn in self.unsupported:
            raise NVMLError_NotSupported()
        if index in self.fail_on.get(fn, set()):
            raise NVMLError_Unknown()

    def nvmlDeviceGetName(self, h: int) -> str:
        return str(self._call("nvmlDeviceGetName", h, lambda g: g.name))

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return str(self._call("nvmlDeviceGetUUID", h, lambda g: g.uuid))

    def nvmlDeviceGetSerial(self, h: int) -> str:
        return str(self._call("nvmlDeviceGetSerial", h, lambda g: g.serial))

    def nvmlDeviceGetBoardPartNumber(self, h: int) -> str:
        return str(self._call("nvmlDeviceGetBoardPartNumber", h, lambda g: g.board_part_number))

    def nvmlDeviceGetPciInfo(self, h: int) -> Any:
        return self._call(
            "nvmlDeviceGetPciInfo",
            h,
            # pynvml's nvmlPciInfo_t: busId is a char array, which ctypes gives back as bytes
            lambda g: SimpleNamespace(busId=g.pci_bus_id.encode(), pciDeviceId=g.pci_device_id),
        )

    def nvmlDeviceGetVbiosVersion(self, h: int) -> str:
        return str(self._call("nvmlDeviceGetVbiosVersion", h, lambda g: g.vbios_version))

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        return self._call(
            "nvmlDeviceGetMemoryInfo",
            h,
            lambda g: SimpleNamespace(total=g.memory_total_bytes, used=g.memory_used_bytes),
        )

    def nvmlDeviceGetNumGpuCores(self, h: int) -> int:
        return int(self._call("nvmlDeviceGetNumGpuCores", h, lambda g: g.cuda_cores))

    def nvmlDeviceGetCudaComputeCapability(self, h: int) -> tuple[int, int]:
        return tuple(self._call("nvmlDeviceGetCudaComputeCapability", h, lambda g: g.compute_capability))

    def nvmlDeviceGetMaxClockInfo(self, h: int, clock: int) -> int:
        return int(
            self._call(
                "nvmlDeviceGetMaxClockInfo",
                h,
                lambda g: g.max_sm_clock_mhz if clock == self.NVML_CLOCK_SM else g.max_mem_clock_mhz,
            )
        )

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        return int(
            self._call(
                "nvmlDeviceGetClockInfo",
                h,
                lambda g: g.sm_clock_mhz if clock == self.NVML_CLOCK_SM else g.mem_clock_mhz,
            )
        )

    def nvmlDeviceGetPowerManagementLimit(self, h: int) -> int:
        return int(self._call("nvmlDeviceGetPowerManagementLimit", h, lambda g: g.power_limit_mw))

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: int) -> int:
        return int(self._call("nvmlDeviceGetMaxPcieLinkGeneration", h, lambda g: g.pcie_gen_max))

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: int) -> int:
        return int(self._call("nvmlDeviceGetMaxPcieLinkWidth", h, lambda g: g.pcie_width_max))

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: int) -> int:
        return int(self._call("nvmlDeviceGetCurrPcieLinkGeneration", h, lambda g: g.pcie_gen_current))

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: int) -> int:
        return int(self._call("nvmlDeviceGetCurrPcieLinkWidth", h, lambda g: g.pcie_width_current))

    def nvmlDeviceGetEccMode(self, h: int) -> tuple[int, int]:
        return tuple(self._call("nvmlDeviceGetEccMode", h, lambda g: g.ecc_mode))

    def nvmlDeviceGetMigMode(self, h: int) -> tuple[int, int]:
        return tuple(self._call("nvmlDeviceGetMigMode", h, lambda g: g.mig_mode))

    def nvmlDeviceGetVirtualizationMode(self, h: int) -> int:
        return int(self._call("nvmlDeviceGetVirtualizationMode", h, lambda g: g.virtualization_mode))

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return self._call(
            "nvmlDeviceGetUtilizationRates", h, lambda g: SimpleNamespace(gpu=g.utilization_pct, memory=0)
        )

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return int(self._call("nvmlDeviceGetTemperature", h, lambda g: g.temperature_c))

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return int(self._call("nvmlDeviceGetPowerUsage", h, lambda g: g.power_usage_mw))

    def nvmlDeviceGetTotalEccErrors(self, h: int, error_type: int, counter_type: int) -> int:
        return int(
            self._call(
                "nvmlDeviceGetTotalEccErrors",
                h,
                lambda g: g.ecc_corrected if error_type == 0 else g.ecc_uncorrected,
            )
        )

    def nvmlDeviceGetRetiredPages(self, h: int, cause: int) -> list[int]:
        count = self._call(
            "nvmlDeviceGetRetiredPages",
            h,
            lambda g: g.retired_pages_single_bit if cause == 0 else g.retired_pages_double_bit,
        )
        return [0x1000 * i for i in range(int(count))]

    def nvmlDeviceGetRetiredPagesPendingStatus(self, h: int) -> int:
        return int(self._call("nvmlDeviceGetRetiredPagesPendingStatus", h, lambda g: g.retired_pages_pending))

    def nvmlDeviceGetRemappedRows(self, h: int) -> tuple[int, int, bool, bool]:
        return tuple(self._call("nvmlDeviceGetRemappedRows", h, lambda g: g.remapped_rows))

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: int) -> int:
        return int(self._call("nvmlDeviceGetCurrentClocksThrottleReasons", h, lambda g: g.throttle_mask))

    # -- events (XID) ----------------------------------------------------------------------------
    def nvmlEventSetCreate(self) -> str:
        self._maybe_fail("nvmlEventSetCreate", -1)
        return "event-set"

    def nvmlDeviceRegisterEvents(self, h: int, event_types: int, event_set: str) -> None:
        self._maybe_fail("nvmlDeviceRegisterEvents", h)
        self.registered_events[h] = event_types

    def nvmlEventSetWait(self, event_set: str, timeout_ms: int) -> Any:
        self._maybe_fail("nvmlEventSetWait", -1)
        while self.xid_queue:
            index, xid = self.xid_queue.pop(0)
            if index in self.registered_events:
                return SimpleNamespace(device=index, eventType=0x8, eventData=xid)
        raise NVMLError_Timeout()

    def nvmlEventSetFree(self, event_set: str) -> None:
        return None

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return list(
            self._call(
                "nvmlDeviceGetComputeRunningProcesses",
                h,
                lambda g: [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in g.processes],
            )
        )


@dataclass
class CudaTestDouble:
    """CUDA TEST DOUBLE: the CUDA driver's view of devices, for the NVML/CUDA cross-check."""

    devices: list[CudaView]
    error: str | None = None

    @classmethod
    def agreeing_with(cls, nvml: NvmlTestDouble) -> CudaTestDouble:
        """A CUDA view that matches every fake GPU (as a real, honest host would)."""
        return cls([cuda_view_of(g) for g in nvml.gpus])

    def views(self) -> list[CudaView]:
        if self.error is not None:
            raise RuntimeError(self.error)
        return list(self.devices)


def cuda_reserved_bytes(memory_total_bytes: int) -> int:
    """What the driver keeps back from CUDA (a real view reports a little less than NVML): 500 MiB,
    at most 1/64 of a small card's memory (a fixed 500 MiB is half of a 1 GiB card)."""
    return min(500 << 20, memory_total_bytes // 64)


def cuda_view_of(gpu: FakeGpu) -> CudaView:
    domain, bus, rest = gpu.pci_bus_id.split(":")
    return CudaView(
        name=gpu.name,
        memory_total_bytes=gpu.memory_total_bytes - cuda_reserved_bytes(gpu.memory_total_bytes),
        sm_count=gpu.sm_count,
        pci_bus_id=f"{int(domain, 16):04x}:{bus.lower()}:{rest.lower()}",
        uuid=gpu.uuid,
    )


def fixed_host() -> HostInfo:
    """A fixed HostInfo (an 8-GPU server's) so inventory tests do not depend on the machine running them."""
    return HostInfo(
        cpu_model="Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz",
        cpu_cores=224,
        cpu_mhz=2000,
        ram_bytes=2 << 40,
        sys_disk_bytes=960_000_000_000,
        data_disk_bytes=30_000_000_000_000,
        os="Ubuntu 22.04.4 LTS",
        kernel="5.15.0-105-generic",
    )
