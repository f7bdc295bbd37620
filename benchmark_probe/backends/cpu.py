"""CPU backend (numpy): the same measurements and result shape as the GPU backend, at small sizes.

GEMMs run on small-integer operands held in fp32 / fp64, so every product is exact and each
result is checked row by row against an int64 computation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark_probe.bench import (
    BenchPlan,
    Progress,
    copy_rates,
    expected_rows_ab,
    gemm_rates,
    pick_rows,
    result,
    row_mismatch,
    seeded_operands,
)
from gpuproof.protocol.report import BenchmarkResult

CPU_GEMM_N_MAX = 1024
CPU_FLUSH_BYTES = 64 << 20
CPU_COPY_MAX = 256 << 20
CPU_GEMM_KINDS = {"fp32": np.float32, "fp64": np.float64}


@dataclass(frozen=True)
class CpuDevice:
    label: str = "cpu"


class CpuBackend:
    name = "cpu"

    def devices(self) -> Sequence[CpuDevice]:
        return [CpuDevice()]

    def steps(self, plan: BenchPlan) -> int:
        return len(CPU_GEMM_KINDS) + 1

    def run_device(self, device: Any, plan: BenchPlan, progress: Progress) -> list[BenchmarkResult]:
        n = min(plan.gemm_n, CPU_GEMM_N_MAX)
        a, b = seeded_operands(plan.seed, n)
        rows = pick_rows(plan.seed, n, plan.check_rows)
        expected = expected_rows_ab(a, b, rows)
        flush = np.empty(plan.flush_bytes or CPU_FLUSH_BYTES, dtype=np.uint8)
        results = []
        for kind, dtype in CPU_GEMM_KINDS.items():
            results.append(_gemm(kind, dtype, a, b, rows, expected, flush, plan, device.label))
            progress(f"gemm_{kind}")
        results.append(_copy(min(plan.host_copy_bytes, CPU_COPY_MAX), plan, device.label))
        progress("copy_host")
        return results


def _timed(fn: Any, warmups: int, repeats: int, before: Any = None) -> list[float]:
    for _ in range(warmups):
        fn()
    seconds = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def _gemm(
    kind: str,
    dtype: Any,
    a: np.ndarray,
    b: np.ndarray,
    rows: list[int],
    expected: np.ndarray,
    flush: np.ndarray,
    plan: BenchPlan,
    device: str,
) -> BenchmarkResult:
    a_f, b_f = a.astype(dtype), b.astype(dtype)
    c = np.empty((a.shape[0], b.shape[1]), dtype=dtype)

    def gemm() -> None:
        np.matmul(a_f, b_f, out=c)

    def before() -> None:
        flush.fill(1)  # evict the operands from the caches
        c.fill(0)

    seconds = _timed(gemm, plan.warmups, plan.repeats, before)
    error = row_mismatch(c[rows], expected, rows)
    n = a.shape[0]
    method = {
        "m": n,
        "n": n,
        "k": n,
        "dtype_in": kind,
        "dtype_out": kind,
        "library": "numpy.matmul (BLAS)",
        "timer": "time.perf_counter",
        "warmups": plan.warmups,
        "statistic": "median",
        "cache_flush_bytes": flush.nbytes,
        "seed": plan.seed,
        "operand_range": int(np.abs(a).max()),
        "verification": {"rows_checked": rows, "exact": True, "against": "int64 on CPU"},
    }
    return result(
        f"gemm_{kind}",
        device,
        "TFLOPS",
        gemm_rates(n, seconds),
        None if error is None else f"verification failed: {error}",
        method,
    )


def _pattern(nbytes: int) -> np.ndarray:
    words = (np.arange(nbytes // 4, dtype=np.uint32) * np.uint32(2654435761)).view(np.uint8)
    return words


def _copy(nbytes: int, plan: BenchPlan, device: str) -> BenchmarkResult:
    src = _pattern(nbytes)
    dst = np.zeros_like(src)
    seconds = _timed(lambda: np.copyto(dst, src), plan.warmups, plan.repeats, lambda: dst.fill(0))
    ok = np.array_equal(dst, src)
    method = {
        "bytes": src.nbytes,
        "timer": "time.perf_counter",
        "warmups": plan.warmups,
        "statistic": "median",
        "bytes_counted": "copied once",
        "verification": "destination compared with source after the last copy",
    }
    return result(
        "copy_host",
        device,
        "GB/s",
        copy_rates(src.nbytes, seconds),
        None if ok else "verification failed: copied bytes differ from the source",
        method,
    )
