"""Wire model of the agent's heartbeat: live telemetry per GPU and of the host."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gpuproof.protocol.report import Hex64, WireModel


class ProcessTelemetry(WireModel):
    pid: int
    used_memory_bytes: int | None = None


class GpuTelemetry(WireModel):
    index: int
    uuid: str | None = None
    utilization_pct: float | None = None
    memory_used_bytes: int | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    processes: list[ProcessTelemetry] = Field(default_factory=list, max_length=1024)
    error: str | None = None


class HostTelemetry(WireModel):
    load_average: list[float] = Field(default_factory=list, max_length=3)
    cpu_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None


class Heartbeat(WireModel):
    """Body of POST /machines/{machine_id}/heartbeats, signed like every request."""

    machine_id: Hex64
    sent_at: int
    backend: Literal["nvml", "cpu"]
    gpus: list[GpuTelemetry] = Field(default_factory=list, max_length=64)
    host: HostTelemetry
    note: str | None = Field(default=None, max_length=512)
