"""Wire models of the benchmark report a probe signs: inventory, micro-benchmarks, integrity, proof."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gpuproof.protocol import limits as L
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.keys import SigningKey, verify
from gpuproof.protocol.limits import Bytes, ClockMhz, FiniteFloat, Name, Text, UnixTime

Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Hex128 = Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]
REPORT_SCHEMA_VERSION = 1


class WireModel(BaseModel):
    """Closed, immutable, and no NaN or infinity anywhere (bounds per field: protocol/limits.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


GpuIndex = Annotated[int, Field(strict=True, ge=0, le=L.MAX_GPU_INDEX)]
GpuMemory = Annotated[int, Field(strict=True, ge=0, le=L.MAX_GPU_MEMORY_BYTES)]
SmCount = Annotated[int, Field(strict=True, ge=0, le=L.MAX_SM_COUNT)]
RawUuid = Annotated[str, Field(max_length=L.MAX_GPU_UUID_CHARS)]
Texts = Annotated[list[Text], Field(max_length=L.MAX_LIST_ITEMS)]


class CudaView(WireModel):
    """What the CUDA driver says of a device, to cross-check NVML."""

    name: Name
    memory_total_bytes: GpuMemory
    sm_count: SmCount
    pci_bus_id: Name
    uuid: RawUuid


class GpuInfo(WireModel):
    index: GpuIndex
    name: Name
    uuid: RawUuid
    serial: Name | None = None
    board_part_number: Name | None = None
    pci_bus_id: Name
    pci_device_id: Name | None = None
    vbios_version: Name | None = None
    memory_total_bytes: GpuMemory
    compute_capability: Name | None = None
    sm_count: SmCount | None = None
    cuda_cores: Annotated[int, Field(strict=True, ge=0, le=L.MAX_CUDA_CORES)] | None = None
    max_sm_clock_mhz: ClockMhz | None = None
    max_mem_clock_mhz: ClockMhz | None = None
    power_limit_w: Annotated[FiniteFloat, Field(ge=0, le=L.MAX_GPU_POWER_W)] | None = None
    pcie_gen_max: Annotated[int, Field(strict=True, ge=0, le=L.MAX_PCIE_GEN)] | None = None
    pcie_width_max: Annotated[int, Field(strict=True, ge=0, le=L.MAX_PCIE_WIDTH)] | None = None
    pcie_gen_current: Annotated[int, Field(strict=True, ge=0, le=L.MAX_PCIE_GEN)] | None = None
    pcie_width_current: Annotated[int, Field(strict=True, ge=0, le=L.MAX_PCIE_WIDTH)] | None = None
    ecc_enabled: bool | None = None
    mig_enabled: bool | None = None
    # NVML's virtualization mode: none, passthrough, vgpu (a guest vGPU), host_vgpu, host_vsga.
    virtualization_mode: Name | None = None
    cuda: CudaView | None = None
    disagreements: Texts = Field(default_factory=list)
    errors: Texts = Field(default_factory=list)


class HostInfo(WireModel):
    cpu_model: Name
    cpu_cores: Annotated[int, Field(strict=True, ge=0, le=L.MAX_CPU_CORES)]
    cpu_mhz: ClockMhz
    ram_bytes: Annotated[int, Field(strict=True, ge=0, le=L.MAX_RAM_BYTES)]
    sys_disk_bytes: Bytes
    data_disk_bytes: Bytes
    os: Name
    kernel: Name


class KernelGpu(WireModel):
    """One `/proc/driver/nvidia/gpus/<bus>/information` file, as the NVIDIA kernel module writes it."""

    bus_location: Name
    model: Name | None = None
    uuid: RawUuid | None = None


class PciDevice(WireModel):
    """One NVIDIA (vendor 0x10de) display or 3D controller in `/sys/bus/pci/devices`."""

    address: Name
    device_id: Name
    class_code: Name


class KernelView(WireModel):
    """The kernel's account of the GPUs beside NVML's (host-sent, like everything in a report)."""

    proc_gpus: list[KernelGpu] = Field(default_factory=list, max_length=L.MAX_LIST_ITEMS)
    pci_devices: list[PciDevice] = Field(default_factory=list, max_length=L.MAX_LIST_ITEMS)
    errors: Texts = Field(default_factory=list)


class Inventory(WireModel):
    backend: Literal["nvml", "cpu"]
    driver_version: Name | None = None
    cuda_driver_version: Name | None = None
    # The wire ceiling; the configured MaxGpusPerMachine is checked at intake with its own code.
    gpus: list[GpuInfo] = Field(default_factory=list, max_length=L.PROTOCOL_MAX_GPUS)
    host: HostInfo
    notes: Texts = Field(default_factory=list)
    kernel: KernelView | None = None


BenchmarkValue = Annotated[FiniteFloat, Field(ge=0, le=L.MAX_BENCHMARK_VALUE)]


class BenchmarkResult(WireModel):
    """One micro-benchmark on one device: median of repeats, with min and max, and its method."""

    name: Name
    device: Name
    unit: Name
    median: BenchmarkValue
    min: BenchmarkValue
    max: BenchmarkValue
    repeats: Annotated[int, Field(strict=True, ge=0, le=L.MAX_BENCHMARK_REPEATS)]
    verified: bool
    # Free-form, but the envelope bounds its depth and refuses non-finite numbers in it.
    method: dict[Name, Any] = Field(default_factory=dict, max_length=L.MAX_LIST_ITEMS)
    # Why a figure is absent: unverified work reports 0 for median/min/max and says why here.
    error: Text | None = None


class Integrity(WireModel):
    ld_preload: Text | None = None
    ld_so_preload: Texts = Field(default_factory=list)
    library_sha256: dict[Text, Name] = Field(default_factory=dict, max_length=L.MAX_LIST_ITEMS)
    nvidia_smi_sha256: Name | None = None
    container_hints: Texts = Field(default_factory=list)
    vm_hints: Texts = Field(default_factory=list)


class BenchmarkReport(WireModel):
    """Everything the probe asserts about its host, bound to one challenge."""

    schema_version: Literal[1] = 1
    machine_id: Hex64
    challenge_id: str = Field(min_length=1, max_length=64)
    challenge_nonce: Hex64
    probe_version: Name
    created_at: UnixTime
    inventory: Inventory
    benchmarks: list[BenchmarkResult] = Field(default_factory=list, max_length=L.MAX_BENCHMARKS)
    integrity: Integrity
    proof: dict[str, Any] | None = None

    def signing_bytes(self) -> bytes:
        return b"gpuproof/report/v1\n" + canonical_bytes(self.model_dump(mode="json"))


class SignedReport(WireModel):
    report: BenchmarkReport
    signature: Hex128

    @classmethod
    def sign(cls, report: BenchmarkReport, key: SigningKey) -> SignedReport:
        return cls(report=report, signature=key.sign(report.signing_bytes()).hex())

    def verifies(self) -> bool:
        """True when the machine key named in the report signed exactly these bytes."""
        return verify(self.report.machine_id, self.report.signing_bytes(), bytes.fromhex(self.signature))
