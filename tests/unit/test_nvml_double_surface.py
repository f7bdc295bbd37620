"""The NVML TEST DOUBLE held to the real pynvml (nvidia-ml-py, in the project's venv; no GPU or
NVML library needed to read it): the probe has only ever called the double, so whatever the double
offers as pynvml's must be pynvml's, with signatures that accept the same calls, the same constants,
the same exception classes, and structures with the fields (and field types) the real ones have."""

from __future__ import annotations

import ctypes
import inspect
import re
from pathlib import Path
from typing import Any

import pynvml
import pytest

from benchmark_probe import inventory, telemetry
from benchmark_probe.double_surface import accepts, from_inspect
from benchmark_probe.nvml_double import NvmlTestDouble, fake_gpu

# The probe's own NVML numbers, by the name pynvml gives each.
PROBE_CONSTANTS = {
    "NVML_MEMORY_ERROR_TYPE_CORRECTED": telemetry.MEMORY_ERROR_CORRECTED,
    "NVML_MEMORY_ERROR_TYPE_UNCORRECTED": telemetry.MEMORY_ERROR_UNCORRECTED,
    "NVML_VOLATILE_ECC": telemetry.VOLATILE_ECC,
    "NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS": telemetry.RETIRED_SINGLE_BIT,
    "NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR": telemetry.RETIRED_DOUBLE_BIT,
    "nvmlEventTypeXidCriticalError": telemetry.EVENT_XID_CRITICAL,
    **{
        f"NVML_GPU_VIRTUALIZATION_MODE_{name.upper()}": value
        for value, name in inventory.VIRTUALIZATION_MODES.items()
    },
}
# What each double call returns, standing for pynvml's structure.
STRUCTURES = {
    "nvmlDeviceGetPciInfo": pynvml.nvmlPciInfo_t,
    "nvmlDeviceGetMemoryInfo": pynvml.c_nvmlMemory_t,
    "nvmlDeviceGetUtilizationRates": pynvml.c_nvmlUtilization_t,
    "nvmlEventSetWait": pynvml.c_nvmlEventData_t,
    "nvmlDeviceGetComputeRunningProcesses": pynvml.c_nvmlProcessInfo_t,
}


PROBE = Path(inventory.__file__).resolve().parent


def _double_functions() -> list[str]:
    return sorted(
        n for n in dir(NvmlTestDouble) if n.startswith("nvml") and callable(getattr(NvmlTestDouble, n))
    )


def _probe_calls() -> set[str]:
    """Every `nvml.<name>` the probe's own modules use (the doubles left out)."""
    used: set[str] = set()
    for path in PROBE.glob("*.py"):
        if not path.name.endswith("_double.py"):
            used |= set(re.findall(r"\bnvml\.((?:nvml|NVML)\w+)", path.read_text()))
    return used


def test_every_nvml_function_of_the_double_is_pynvmls_and_accepts_no_call_pynvml_refuses() -> None:
    names = _double_functions()
    used = _probe_calls()  # inventory, telemetry, events: each must be the double's
    assert len(used) >= 30 and used <= set(names) | set(vars(NvmlTestDouble)), used - set(names)
    problems = []
    for name in names:
        real = getattr(pynvml, name, None)
        if real is None:
            problems.append(f"{name}: not in nvidia-ml-py {pynvml.__name__}")
            continue
        ours, theirs = from_inspect(getattr(NvmlTestDouble, name)), from_inspect(real)
        assert ours is not None and theirs is not None, name
        # The probe calls NVML positionally and pynvml's own parameter names vary (handle, device).
        problems += [f"{name}: {why}" for why in accepts(ours, theirs, names=False)]
    assert problems == []


def test_the_doubles_and_the_probes_constants_and_exceptions_are_pynvmls() -> None:
    ours = {n: v for n, v in vars(NvmlTestDouble).items() if n.startswith("NVML_") and isinstance(v, int)}
    assert ours and {n: getattr(pynvml, n, None) for n in ours} == ours
    assert {n: getattr(pynvml, n, None) for n in PROBE_CONSTANTS} == PROBE_CONSTANTS
    for name in ("NVMLError", "NVMLError_NotSupported", "NVMLError_LibraryNotFound", "NVMLError_Timeout"):
        real = getattr(pynvml, name)
        assert inspect.isclass(real) and issubclass(real, pynvml.NVMLError), name
        assert issubclass(getattr(NvmlTestDouble, name), getattr(NvmlTestDouble, "NVMLError")), name


def _field_types(structure: type[ctypes.Structure]) -> dict[str, type]:
    """Python's type of each field as ctypes returns it: a char array comes back as bytes."""
    out: dict[str, type] = {}
    for name, kind, *_ in structure._fields_:
        if isinstance(kind, type) and issubclass(kind, ctypes.Array) and kind._type_ is ctypes.c_char:
            out[name] = bytes
        elif isinstance(kind, type) and issubclass(kind, (ctypes.c_uint, ctypes.c_ulonglong, ctypes.c_int)):
            out[name] = int
        else:
            out[name] = object
    return out


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_the_doubles_structures_have_pynvmls_fields_and_field_types(name: str) -> None:
    nvml = NvmlTestDouble(gpus=[fake_gpu(0, processes=((4242, 1 << 30),))], xid_queue=[(0, 79)])
    nvml.nvmlInit()
    args: dict[str, tuple[Any, ...]] = {
        "nvmlEventSetWait": ("event-set", 0),
        "nvmlDeviceGetComputeRunningProcesses": (0,),
    }
    if name == "nvmlEventSetWait":
        nvml.nvmlDeviceRegisterEvents(0, telemetry.EVENT_XID_CRITICAL, nvml.nvmlEventSetCreate())
    got = getattr(nvml, name)(*args.get(name, (0,)))
    for item in got if isinstance(got, list) else [got]:
        real = _field_types(STRUCTURES[name])
        fields = vars(item)
        assert set(fields) <= set(real), (name, set(fields) - set(real))
        for field, value in fields.items():
            if real[field] is not object:
                assert isinstance(value, real[field]), (name, field, type(value), real[field])
