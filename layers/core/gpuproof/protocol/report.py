"""Wire models of the benchmark report a probe signs: inventory, micro-benchmarks, integrity, proof."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.keys import SigningKey, verify

Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Hex128 = Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]
REPORT_SCHEMA_VERSION = 1


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CudaView(WireModel):
    """What the CUDA driver says of a device, to cross-check NVML."""

    name: str
    memory_total_bytes: int
    sm_count: int
    pci_bus_id: str
    uuid: str


class GpuInfo(WireModel):
    index: int
    name: str
    uuid: str
    serial: str | None = None
    board_part_number: str | None = None
    pci_bus_id: str
    pci_device_id: str | None = None
    vbios_version: str | None = None
    memory_total_bytes: int
    compute_capability: str | None = None
    sm_count: int | None = None
    cuda_cores: int | None = None
    max_sm_clock_mhz: int | None = None
    max_mem_clock_mhz: int | None = None
    power_limit_w: float | None = None
    pcie_gen_max: int | None = None
    pcie_width_max: int | None = None
    pcie_gen_current: int | None = None
    pcie_width_current: int | None = None
    ecc_enabled: bool | None = None
    mig_enabled: bool | None = None
    cuda: CudaView | None = None
    disagreements: list[str] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


class HostInfo(WireModel):
    cpu_model: str
    cpu_cores: int
    cpu_mhz: int
    ram_bytes: int
    sys_disk_bytes: int
    data_disk_bytes: int
    os: str
    kernel: str


class Inventory(WireModel):
    backend: Literal["nvml", "cpu"]
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    gpus: list[GpuInfo] = Field(default_factory=list)
    host: HostInfo
    notes: list[str] = Field(default_factory=list)


class BenchmarkResult(WireModel):
    """One micro-benchmark on one device: median of repeats, with min and max, and its method."""

    name: str
    device: str
    unit: str
    median: float
    min: float
    max: float
    repeats: int
    verified: bool
    method: dict[str, Any] = Field(default_factory=dict)
    # Why a figure is absent: unverified work reports 0 for median/min/max and says why here.
    error: str | None = None


class Integrity(WireModel):
    ld_preload: str | None = None
    ld_so_preload: list[str] = Field(default_factory=list)
    library_sha256: dict[str, str] = Field(default_factory=dict)
    nvidia_smi_sha256: str | None = None
    container_hints: list[str] = Field(default_factory=list)
    vm_hints: list[str] = Field(default_factory=list)


class BenchmarkReport(WireModel):
    """Everything the probe asserts about its host, bound to one challenge."""

    schema_version: Literal[1] = 1
    machine_id: Hex64
    challenge_id: str = Field(min_length=1, max_length=64)
    challenge_nonce: Hex64
    probe_version: str
    created_at: int
    inventory: Inventory
    benchmarks: list[BenchmarkResult] = Field(default_factory=list)
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
