"""A GPU host for CLI-level tests: the NVML and CUDA (CuPy) test doubles patched in where the probe
loads the real libraries, so `benchmark-probe` takes its GPU paths. Test doubles only."""

from __future__ import annotations

from typing import Any

import pytest

import benchmark_probe.backends.cupy as cupy_backend
import benchmark_probe.inventory as inventory_module
from benchmark_probe.cupy_double import CupyTestDouble
from benchmark_probe.nvml_double import NvmlTestDouble


def patch_gpu_host(monkeypatch: pytest.MonkeyPatch, gpus: int, **double: Any) -> CupyTestDouble:
    nvml = NvmlTestDouble.with_gpus(gpus)
    cp = CupyTestDouble.for_gpus(nvml.gpus, **double)
    monkeypatch.setattr(inventory_module, "_load_pynvml", lambda: (nvml, None))
    monkeypatch.setattr(cupy_backend, "_cupy", lambda: cp)  # the CuPy import, answered by the double
    return cp
