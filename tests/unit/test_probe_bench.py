"""The measurement harness and the CPU backend: verified figures, exact checks, the TN layout."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark_probe.backends import select_backend
from benchmark_probe.backends.cpu import CpuBackend
from benchmark_probe.backends.cupy import format_cuda_uuid
from benchmark_probe.bench import (
    BenchPlan,
    expected_rows_ab,
    expected_rows_tn,
    operand_bound,
    pick_rows,
    row_mismatch,
    run_benchmarks,
    seeded_operands,
)
from benchmark_probe.inventory import collect_inventory
from benchmark_probe.nvml_double import CudaTestDouble, NvmlTestDouble, fixed_host


def test_cpu_backend_reports_verified_figures() -> None:
    steps: list[tuple[str, str]] = []
    results = run_benchmarks(CpuBackend(), BenchPlan.quick(), lambda dev, what: steps.append((dev, what)))
    assert [r.name for r in results] == ["gemm_fp32", "gemm_fp64", "copy_host"]
    for r in results:
        assert r.device == "cpu"
        assert r.verified, r.error
        assert r.error is None
        assert r.repeats >= 10
        assert 0 < r.min <= r.median <= r.max
        assert r.method["statistic"] == "median"
    assert results[0].unit == "TFLOPS" and results[2].unit == "GB/s"
    assert results[0].method["verification"]["rows_checked"]
    assert steps == [("cpu", "gemm_fp32"), ("cpu", "gemm_fp64"), ("cpu", "copy_host")]


def test_operands_keep_every_fp32_sum_exact() -> None:
    for k in (256, 1024, 8192, 16384, 65536):
        bound = operand_bound(k)
        assert k * bound * bound < 2**24
    assert operand_bound(8192) == 31  # fp16, bf16 and tf32 hold these integers exactly
    a, _ = seeded_operands(7, 64)
    assert a.dtype == np.int8 and np.abs(a).max() <= 31
    assert np.array_equal(a, seeded_operands(7, 64)[0])  # seeded: reproducible


def test_a_wrong_cell_fails_verification() -> None:
    a, b = seeded_operands(1, 32)
    rows = pick_rows(1, 32, 4)
    expected = expected_rows_ab(a, b, rows)
    got = (a.astype(np.float32) @ b.astype(np.float32))[rows]
    assert row_mismatch(got, expected, rows) is None
    got[1, 5] += 1
    assert row_mismatch(got, expected, rows).startswith(f"row {rows[1]} col 5")


def _cublas_tn_on_row_major_buffers(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """What cublasGemmEx(OP_T, OP_N, n, n, n, a, lda=n, b, ldb=n, c, ldc=n) leaves in c's buffer."""
    n = a.shape[0]
    a_cm = a.reshape(-1).reshape((n, n), order="F")  # column-major view of a's bytes (k x m)
    b_cm = b.reshape(-1).reshape((n, n), order="F")  # (k x n)
    c_cm = a_cm.T.astype(np.int64) @ b_cm.astype(np.int64)  # op(A) . op(B), m x n column-major
    return c_cm.reshape(-1, order="F").reshape((n, n))  # c's buffer read row-major


def test_tn_expected_rows_match_cublas_semantics() -> None:
    a, b = seeded_operands(3, 48)
    rows = pick_rows(3, 48, 5)
    c = _cublas_tn_on_row_major_buffers(a, b)
    assert np.array_equal(expected_rows_tn(a, b, rows, chunk=16), c[rows])


def test_cuda_uuid_formats_like_nvml() -> None:
    raw = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert format_cuda_uuid(raw) == "GPU-00112233-4455-6677-8899-aabbccddeeff"
    assert format_cuda_uuid(raw[:7]) == ""  # truncated at a NUL byte: unknown, not a disagreement


def test_gpus_without_cupy_fall_back_to_the_cpu_backend_and_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmark_probe.backends.cupy as cupy_backend

    monkeypatch.setattr(cupy_backend, "cupy_available", lambda: False)
    nvml = NvmlTestDouble.with_gpus(2)
    inv = collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), fixed_host())
    backend, notes = select_backend(inv)
    assert backend.name == "cpu"
    assert "CuPy is not installed" in notes[0]


def test_a_crashing_device_is_reported_not_hidden() -> None:
    class Broken(CpuBackend):
        def run_device(self, device, plan, progress):
            raise RuntimeError("cudaErrorIllegalAddress")

    [r] = run_benchmarks(Broken(), BenchPlan.quick())
    assert not r.verified and r.median == 0.0
    assert "cudaErrorIllegalAddress" in r.error


def test_plan_shrinks_gemms_on_small_gpus() -> None:
    assert BenchPlan().sized_for(8 << 30).gemm_n == 4096
    assert BenchPlan().sized_for(80 << 30).gemm_n == 8192


def test_a_sample_outside_the_wire_bounds_is_reported_unverified_not_raised() -> None:
    from benchmark_probe.bench import result

    for bad in (float("nan"), float("inf"), 1e300, -1.0):
        r = result("gemm_bf16", "gpu0", "TFLOPS", [100.0, bad], None, {})
        assert not r.verified and r.median == 0.0 and r.error and "outside" in r.error
