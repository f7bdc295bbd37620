"""Benchmark backends: `cpu` (numpy, runs anywhere) and `cupy` (NVIDIA GPUs through CuPy/cuBLAS)."""

from __future__ import annotations

from benchmark_probe.backends.cpu import CpuBackend
from benchmark_probe.bench import Backend
from gpuproof.protocol.report import Inventory


def select_backend(inventory: Inventory) -> tuple[Backend, list[str]]:
    """The GPU backend when NVML found GPUs and CuPy loads; else the CPU backend, saying why."""
    if inventory.backend != "nvml" or not inventory.gpus:
        return CpuBackend(), []
    from benchmark_probe.backends.cupy import CupyBackend, cupy_available

    if not cupy_available():
        return CpuBackend(), [
            "GPU benchmarks skipped: CuPy is not installed (pip install 'gpuproof[gpu]'); "
            "CPU figures reported instead"
        ]
    return CupyBackend(inventory.gpus), []
