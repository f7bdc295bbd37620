"""Wire model of the agent's heartbeat: live telemetry per GPU and of the host."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from gpuproof.protocol import limits as L
from gpuproof.protocol.limits import ClockMhz, FiniteFloat, Text, UnixTime
from gpuproof.protocol.live import LiveEndpoint
from gpuproof.protocol.report import GpuIndex, Hex64, RawUuid, WireModel

Percent = Annotated[FiniteFloat, Field(ge=0, le=100)]
HealthCount = Annotated[int, Field(strict=True, ge=0, le=L.MAX_HEALTH_COUNT)]
# NVML's clock event (throttle) reasons by name (nvmlClocksEventReason*, benchmark_probe/telemetry.py).
ThrottleReason = Literal[
    "gpu_idle",
    "applications_clocks_setting",
    "sw_power_cap",
    "hw_slowdown",
    "sync_boost",
    "sw_thermal_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "display_clock_setting",
]
MemoryBytes = Annotated[int, Field(strict=True, ge=0, le=L.MAX_RAM_BYTES)]


class ProcessTelemetry(WireModel):
    pid: Annotated[int, Field(strict=True, ge=0, le=L.MAX_PID)]
    used_memory_bytes: MemoryBytes | None = None


class GpuTelemetry(WireModel):
    index: GpuIndex
    uuid: RawUuid | None = None
    utilization_pct: Percent | None = None
    memory_used_bytes: MemoryBytes | None = None
    temperature_c: Annotated[FiniteFloat, Field(ge=L.MIN_TEMPERATURE_C, le=L.MAX_TEMPERATURE_C)] | None = None
    power_w: Annotated[FiniteFloat, Field(ge=0, le=L.MAX_GPU_POWER_W)] | None = None
    sm_clock_mhz: ClockMhz | None = None
    mem_clock_mhz: ClockMhz | None = None
    processes: list[ProcessTelemetry] = Field(default_factory=list, max_length=L.MAX_PROCESSES_PER_GPU)
    # Health signals (None: not readable on this GPU or driver). ECC counts since the driver
    # loaded (volatile); retired pages (pre-Ampere) and remapped rows (Ampere and later).
    ecc_corrected: HealthCount | None = None
    ecc_uncorrected: HealthCount | None = None
    retired_pages_single_bit: HealthCount | None = None
    retired_pages_double_bit: HealthCount | None = None
    retired_pages_pending: bool | None = None
    remapped_rows_correctable: HealthCount | None = None
    remapped_rows_uncorrectable: HealthCount | None = None
    remapped_rows_pending: bool | None = None
    remapping_failed: bool | None = None
    throttle_reasons: list[ThrottleReason] | None = Field(default=None, max_length=L.MAX_THROTTLE_REASONS)
    # XID events seen since the previous heartbeat (critical-error events NVML delivered).
    xid_events: list[Annotated[int, Field(strict=True, ge=0, le=L.MAX_XID)]] = Field(
        default_factory=list, max_length=L.MAX_XID_EVENTS
    )
    error: Text | None = None


class HostTelemetry(WireModel):
    load_average: list[Annotated[FiniteFloat, Field(ge=0, le=L.MAX_LOAD_AVERAGE)]] = Field(
        default_factory=list, max_length=3
    )
    cpu_percent: Percent | None = None
    memory_used_bytes: MemoryBytes | None = None
    memory_total_bytes: MemoryBytes | None = None


class Heartbeat(WireModel):
    """Body of POST /machines/{machine_id}/heartbeats, signed like every request."""

    machine_id: Hex64
    sent_at: UnixTime
    backend: Literal["nvml", "cpu"]
    gpus: list[GpuTelemetry] = Field(default_factory=list, max_length=L.MAX_HEARTBEAT_GPUS)
    host: HostTelemetry
    note: str | None = Field(default=None, max_length=512)
    live_endpoint: LiveEndpoint | None = Field(
        default=None, description="where committee members reach the agent's live check: http://<IP>:<port>"
    )
