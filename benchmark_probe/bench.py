"""Measurement harness shared by the backends: the plan, statistics, exact verification of GEMMs
on seeded small-integer operands, and the runner that drives every device in parallel.

A number from unverified work is not reported: such a result carries 0 and says why in `error`.
"""

from __future__ import annotations

import statistics
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from gpuproof.protocol.limits import MAX_BENCHMARK_VALUE
from gpuproof.protocol.report import BenchmarkResult

FP32_EXACT = 1 << 24  # every integer below this is exact in fp32 (and so in an fp32 accumulator)
MAX_OPERAND = 31  # exact in fp16 (|x| <= 2048), bf16 (<= 256), tf32 (<= 2048) and int8
GEMM_KINDS = ("fp32", "tf32", "fp16", "bf16", "int8")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchPlan:
    """What to measure and how; the same plan shape for every backend."""

    gemm_n: int = 8192
    gemm_kinds: tuple[str, ...] = GEMM_KINDS
    copy_bytes: int = 512 << 20
    host_copy_bytes: int = 256 << 20
    warmups: int = 3
    repeats: int = 10
    check_rows: int = 4
    seed: int = 20240601
    flush_bytes: int | None = None  # None: 2x the device's L2 (GPU) or 64 MiB (CPU)

    @classmethod
    def quick(cls) -> BenchPlan:
        """Small sizes for tests and smoke runs; still >= 10 repeats and verified."""
        return cls(gemm_n=256, copy_bytes=4 << 20, host_copy_bytes=4 << 20, warmups=1, flush_bytes=1 << 20)

    def sized_for(self, memory_bytes: int) -> BenchPlan:
        """Shrink GEMMs on small-memory devices (8192^2 x 3 buffers needs ~1 GiB at fp32)."""
        if memory_bytes and memory_bytes < 16 << 30 and self.gemm_n > 4096:
            return replace(self, gemm_n=4096)
        return self


def operand_bound(k: int) -> int:
    """Largest |a| = |b| such that k * a * b < 2^24, capped at MAX_OPERAND."""
    bound = MAX_OPERAND
    while bound > 1 and k * bound * bound >= FP32_EXACT:
        bound -= 1
    return bound


def seeded_operands(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two n x n int8 matrices of small integers from a counter-based PRNG (Philox)."""
    bound = operand_bound(n)
    rng = np.random.Generator(np.random.Philox(seed))
    a = rng.integers(-bound, bound + 1, size=(n, n), dtype=np.int8)
    b = rng.integers(-bound, bound + 1, size=(n, n), dtype=np.int8)
    return a, b


def pick_rows(seed: int, n: int, count: int) -> list[int]:
    rng = np.random.Generator(np.random.Philox(seed ^ 0x5EED))
    return sorted(int(r) for r in rng.choice(n, size=min(count, n), replace=False))


def expected_rows_ab(a: np.ndarray, b: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """Rows of A @ B, computed exactly on the CPU in int64."""
    return a[list(rows)].astype(np.int64) @ b.astype(np.int64)


def expected_rows_tn(a: np.ndarray, b: np.ndarray, rows: Sequence[int], chunk: int = 1024) -> np.ndarray:
    """Rows of B @ A^T (what cuBLAS TN on row-major buffers yields), exact in fp32 by the operand bound."""
    b_rows = b[list(rows)].astype(np.float32)
    out = np.empty((len(rows), a.shape[0]), dtype=np.float32)
    for start in range(0, a.shape[0], chunk):
        out[:, start : start + chunk] = b_rows @ a[start : start + chunk].astype(np.float32).T
    return out.astype(np.int64)


def row_mismatch(got: np.ndarray, expected: np.ndarray, rows: Sequence[int]) -> str | None:
    """None when every checked row matches exactly; else where the first difference is."""
    got_i = np.asarray(got).astype(np.int64)
    if got_i.shape != expected.shape:
        return f"shape {got_i.shape} vs expected {expected.shape}"
    bad = np.argwhere(got_i != expected)
    if bad.size == 0:
        return None
    r, c = (int(x) for x in bad[0])
    return f"row {rows[r]} col {c}: got {got_i[r, c]} expected {expected[r, c]} ({len(bad)} cells differ)"


SIGNIFICANT_DIGITS = 6  # no timer here is better than 1e-6 relative; more digits would be noise


def _significant(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def summarize(values: Sequence[float]) -> tuple[float, float, float]:
    return _significant(statistics.median(values)), _significant(min(values)), _significant(max(values))


def result(
    name: str, device: str, unit: str, rates: Sequence[float], error: str | None, method: dict[str, Any]
) -> BenchmarkResult:
    """A result; unverified (error set) results carry no figures."""
    if error is None and any(not 0 <= r <= MAX_BENCHMARK_VALUE for r in rates):  # NaN fails too
        error = f"a sample lies outside 0..{MAX_BENCHMARK_VALUE:g} (timer or measurement fault)"
    if error is not None or not rates:
        return BenchmarkResult(
            name=name,
            device=device,
            unit=unit,
            median=0.0,
            min=0.0,
            max=0.0,
            repeats=len(rates),
            verified=False,
            method=method,
            error=error or "no samples",
        )
    median, low, high = summarize(rates)
    return BenchmarkResult(
        name=name,
        device=device,
        unit=unit,
        median=median,
        min=low,
        max=high,
        repeats=len(rates),
        verified=True,
        method=method,
    )


def gemm_rates(n: int, seconds: Sequence[float]) -> list[float]:
    """TFLOPS (or TOPS) per sample: 2 n^3 operations."""
    return [2 * n**3 / s / 1e12 for s in seconds if s > 0]


def copy_rates(nbytes: int, seconds: Sequence[float]) -> list[float]:
    """GB/s (10^9) per sample, bytes copied counted once."""
    return [nbytes / s / 1e9 for s in seconds if s > 0]


class Device(Protocol):
    @property
    def label(self) -> str: ...


class Backend(Protocol):
    """A backend measures one device at a time; the runner runs its devices in parallel."""

    name: str

    def devices(self) -> Sequence[Device]: ...

    def steps(self, plan: BenchPlan) -> int: ...

    def run_device(self, device: Any, plan: BenchPlan, progress: Progress) -> list[BenchmarkResult]: ...


def _crashed(device: Any, exc: BaseException) -> list[BenchmarkResult]:
    tail = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return [result("device", device.label, "", [], f"benchmark run crashed: {tail}", {})]


def run_benchmarks(
    backend: Backend, plan: BenchPlan, progress: Callable[[str, str], None] | None = None
) -> list[BenchmarkResult]:
    """All devices at once, one thread each; results in device order."""
    devices = list(backend.devices())

    def one(device: Any) -> list[BenchmarkResult]:
        step: Progress = (lambda what: progress(device.label, what)) if progress else (lambda _what: None)
        try:
            return backend.run_device(device, plan, step)
        except Exception as exc:  # one broken GPU must not hide the others' results
            return _crashed(device, exc)

    if not devices:
        return []
    with ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="bench") as pool:
        per_device = list(pool.map(one, devices))
    return [r for results in per_device for r in results]
