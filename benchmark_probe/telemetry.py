"""Live telemetry for the agent's heartbeat: per GPU through NVML, else the host's load and memory."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import psutil


def _read(nvml: Any, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except nvml.NVMLError:
        return None


def gpu_telemetry(nvml: Any, index: int) -> dict[str, Any]:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    util = _read(nvml, lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
    memory = _read(nvml, lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    power = _read(nvml, lambda: nvml.nvmlDeviceGetPowerUsage(handle))
    procs = _read(nvml, lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle)) or []
    return {
        "index": index,
        "uuid": _read(nvml, lambda: nvml.nvmlDeviceGetUUID(handle)),
        "utilization_pct": util.gpu if util is not None else None,
        "memory_used_bytes": int(memory.used) if memory is not None else None,
        "temperature_c": _read(
            nvml, lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
        ),
        "power_w": power / 1000 if power is not None else None,
        "sm_clock_mhz": _read(nvml, lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
        "mem_clock_mhz": _read(nvml, lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)),
        "processes": [{"pid": int(p.pid), "used_memory_bytes": p.usedGpuMemory} for p in procs],
    }


def host_telemetry() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "load_average": list(os.getloadavg()),
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_used_bytes": memory.total - memory.available,
        "memory_total_bytes": memory.total,
    }


class Telemetry:
    """Reads one heartbeat's worth of telemetry; NVML stays initialised between beats."""

    def __init__(self, nvml: Any | None = None) -> None:
        self.nvml = nvml
        self.note: str | None = None
        if self.nvml is None:
            try:
                import pynvml

                self.nvml = pynvml
            except ImportError:
                self.note = "nvidia-ml-py is not installed"
        if self.nvml is not None:
            try:
                self.nvml.nvmlInit()
            except self.nvml.NVMLError as exc:
                self.note = f"no NVIDIA GPU found (NVML library not loadable: {exc})"
                self.nvml = None

    def read(self, machine_id: str) -> dict[str, Any]:
        gpus: list[dict[str, Any]] = []
        if self.nvml is not None:
            count = _read(self.nvml, self.nvml.nvmlDeviceGetCount) or 0
            for index in range(count):
                try:
                    gpus.append(gpu_telemetry(self.nvml, index))
                except self.nvml.NVMLError as exc:
                    gpus.append({"index": index, "error": f"NVML error: {exc}"})
        beat: dict[str, Any] = {
            "machine_id": machine_id,
            "sent_at": int(time.time()),
            "backend": "nvml" if gpus else "cpu",
            "gpus": gpus,
            "host": host_telemetry(),
        }
        if self.note:
            beat["note"] = self.note
        return beat

    def close(self) -> None:
        if self.nvml is not None:
            _read(self.nvml, self.nvml.nvmlShutdown)
