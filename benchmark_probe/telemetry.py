"""Live telemetry for the agent's heartbeat: per GPU through NVML, else the host's load and memory."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import psutil


def _read(nvml: Any, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except nvml.NVMLError:
        return None


# NVML's clock event (throttle) reason bits (nvml.h nvmlClocksEventReason*/nvmlClocksThrottleReason*),
# by the names the heartbeat carries (gpuproof.protocol.telemetry.ThrottleReason).
THROTTLE_REASON_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# nvml.h constants (pynvml exports the same names; the values are NVML's ABI).
MEMORY_ERROR_CORRECTED = 0
MEMORY_ERROR_UNCORRECTED = 1
VOLATILE_ECC = 0
RETIRED_SINGLE_BIT = 0  # NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
RETIRED_DOUBLE_BIT = 1  # NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
EVENT_XID_CRITICAL = 0x8  # nvmlEventTypeXidCriticalError
MAX_XIDS_PER_READ = 64


def throttle_reasons(mask: int) -> list[str]:
    return [name for bit, name in THROTTLE_REASON_BITS.items() if mask & bit]


def health_telemetry(nvml: Any, handle: Any) -> dict[str, Any]:
    """ECC error counts, retired pages, remapped rows and throttle reasons; None where NVML
    cannot tell (not supported on this GPU, or ECC off)."""

    def ecc(kind: int) -> int | None:
        value = _read(nvml, lambda: nvml.nvmlDeviceGetTotalEccErrors(handle, kind, VOLATILE_ECC))
        return None if value is None else int(value)

    def retired(cause: int) -> int | None:
        pages = _read(nvml, lambda: nvml.nvmlDeviceGetRetiredPages(handle, cause))
        return None if pages is None else len(pages)

    pending = _read(nvml, lambda: nvml.nvmlDeviceGetRetiredPagesPendingStatus(handle))
    remapped = _read(nvml, lambda: nvml.nvmlDeviceGetRemappedRows(handle))
    mask = _read(nvml, lambda: nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle))
    return {
        "ecc_corrected": ecc(MEMORY_ERROR_CORRECTED),
        "ecc_uncorrected": ecc(MEMORY_ERROR_UNCORRECTED),
        "retired_pages_single_bit": retired(RETIRED_SINGLE_BIT),
        "retired_pages_double_bit": retired(RETIRED_DOUBLE_BIT),
        "retired_pages_pending": None if pending is None else bool(pending),
        "remapped_rows_correctable": None if remapped is None else int(remapped[0]),
        "remapped_rows_uncorrectable": None if remapped is None else int(remapped[1]),
        "remapped_rows_pending": None if remapped is None else bool(remapped[2]),
        "remapping_failed": None if remapped is None else bool(remapped[3]),
        "throttle_reasons": None if mask is None else throttle_reasons(int(mask)),
    }


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
        **health_telemetry(nvml, handle),
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
        self.events = self._register_xid_events()

    def _register_xid_events(self) -> Any:
        """An NVML event set for every GPU's critical XID errors; None where unsupported."""
        nvml = self.nvml
        if nvml is None:
            return None
        events = _read(nvml, nvml.nvmlEventSetCreate)
        if events is None:
            return None
        for index in range(_read(nvml, nvml.nvmlDeviceGetCount) or 0):
            handle = _read(nvml, partial(nvml.nvmlDeviceGetHandleByIndex, index))
            if handle is not None:
                _read(nvml, partial(nvml.nvmlDeviceRegisterEvents, handle, EVENT_XID_CRITICAL, events))
        return events

    def xid_events(self) -> dict[int, list[int]]:
        """The XID events NVML queued since the last read, per GPU index (without waiting)."""
        nvml = self.nvml
        found: dict[int, list[int]] = {}
        if nvml is None or self.events is None:
            return found
        count = _read(nvml, nvml.nvmlDeviceGetCount) or 0
        for _ in range(MAX_XIDS_PER_READ * max(1, count)):
            data = _read(nvml, lambda: nvml.nvmlEventSetWait(self.events, 0))
            if data is None:  # NVML_ERROR_TIMEOUT: nothing more queued
                break
            # NVML hands back a device handle; its index says which GPU (handles are pointers).
            index = _read(nvml, partial(nvml.nvmlDeviceGetIndex, data.device))
            if index is not None:
                xids = found.setdefault(int(index), [])
                if len(xids) < MAX_XIDS_PER_READ:
                    xids.append(int(data.eventData))
        return found

    def read(self, machine_id: str) -> dict[str, Any]:
        gpus: list[dict[str, Any]] = []
        xids = self.xid_events()
        if self.nvml is not None:
            count = _read(self.nvml, self.nvml.nvmlDeviceGetCount) or 0
            for index in range(count):
                try:
                    gpus.append({**gpu_telemetry(self.nvml, index), "xid_events": xids.get(index, [])})
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
        if self.nvml is not None and self.events is not None:
            _read(self.nvml, partial(self.nvml.nvmlEventSetFree, self.events))
        if self.nvml is not None:
            _read(self.nvml, self.nvml.nvmlShutdown)
