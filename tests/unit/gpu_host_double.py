"""A GPU host for tests: the NVML and CUDA (CuPy) test doubles patched in where the probe loads the
real libraries, so `benchmark-probe` takes its GPU paths; and what a (possibly modified) probe on
such a host reports: an H100 inventory and self-measured BF16 figures. Test doubles only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

import benchmark_probe.backends.cupy as cupy_backend
import benchmark_probe.inventory as inventory_module
from benchmark_probe.cupy_double import CupyTestDouble
from benchmark_probe.inventory import collect_inventory
from benchmark_probe.nvml_double import CudaTestDouble, FakeGpu, NvmlTestDouble, fixed_host
from gpuproof.protocol.report import BenchmarkResult, Inventory


def patch_gpu_host(
    monkeypatch: pytest.MonkeyPatch, gpus: int | Sequence[FakeGpu], **double: Any
) -> CupyTestDouble:
    """`gpus` H100s (`fake_gpu`), or exactly these fake GPUs; `double` goes to the CuPy double
    (e.g. `clock=DOUBLE_MODEL_CLOCK`). The probe's own loaders answer with the doubles: NVML for the
    inventory, CuPy for its CUDA view, the benchmarks and the proof's executor."""
    nvml = NvmlTestDouble.with_gpus(gpus) if isinstance(gpus, int) else NvmlTestDouble(gpus=list(gpus))
    cp = CupyTestDouble.for_gpus(nvml.gpus, **double)
    monkeypatch.setattr(inventory_module, "_load_pynvml", lambda: (nvml, None))
    monkeypatch.setattr(cupy_backend, "load_cupy", lambda: cp)  # the CuPy import, answered by the double
    return cp


def h100_inventory(count: int) -> Inventory:
    """What a probe on `count` H100s reports, or a modified one on a host without them: NVML's
    answers are the probe's to make."""
    nvml = NvmlTestDouble.with_gpus(count)
    return collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), fixed_host())


def bf16_figures(inventory: Inventory, tflops: float) -> list[BenchmarkResult]:
    """A verified `gemm_bf16` micro-benchmark of `tflops` for every GPU of `inventory` (self-measured)."""
    return [
        BenchmarkResult(
            name="gemm_bf16",
            device=f"gpu{g.index}",
            unit="TFLOPS",
            median=tflops,
            min=tflops,
            max=tflops,
            repeats=5,
            verified=True,
        )
        for g in inventory.gpus
    ]
