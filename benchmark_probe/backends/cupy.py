"""GPU backend through CuPy: cuBLAS GEMMs (cublasGemmEx), device copies and pinned host copies,
timed with CUDA events, verified exactly. Also the CUDA driver's view for the inventory cross-check.

NOT YET RUN ON A GPU (written without one; `scripts/gpu_check.sh` is the first run). Its code runs
in the tests against the CUDA test double (benchmark_probe/cupy_double.py), which checks the calls
and their results, never the speed. CuPy is imported lazily: `import benchmark_probe` works on hosts
without it; `cupy=` takes the double.

Layout: every matrix is a C-contiguous (row-major) n x n buffer; cuBLAS is column-major. We call
gemmEx with op(A)=T, op(B)=N on buffers a, b; cuBLAS computes C_cm = a . b^T, so the row-major
buffer c holds b . a^T, i.e. c[i, j] = sum_l b[i, l] * a[j, l]. `expected_rows_tn` checks exactly
that. TN is also the layout cuBLAS int8 (IMMA) kernels have always accepted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark_probe.bench import (
    BenchPlan,
    Progress,
    copy_rates,
    expected_rows_tn,
    gemm_rates,
    operand_bound,
    pick_rows,
    result,
    row_mismatch,
)
from gpuproof.protocol.report import BenchmarkResult, CudaView, GpuInfo

# cudaDataType_t (library_types.h) and cublasComputeType_t (cublas_api.h): stable ABI values.
CUDA_R_32F, CUDA_R_16F, CUDA_R_8I, CUDA_R_32I, CUDA_R_16BF = 0, 2, 3, 10, 14
CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_32I, CUBLAS_COMPUTE_32F_FAST_TF32 = 68, 72, 77
CUBLAS_OP_N, CUBLAS_OP_T, CUBLAS_GEMM_DEFAULT = 0, 1, -1
MIN_FLUSH_BYTES = 8 << 20
PATTERN_MULTIPLIER = 2654435761


@dataclass(frozen=True)
class GemmSpec:
    """One GEMM flavour: input/output cuBLAS types, compute type, and the host scalar type."""

    in_type: int
    out_type: int
    compute: int
    scalar: type[np.generic]
    unit: str


GEMM_SPECS: dict[str, GemmSpec] = {
    "fp32": GemmSpec(CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F, np.float32, "TFLOPS"),
    "tf32": GemmSpec(CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32, np.float32, "TFLOPS"),
    "fp16": GemmSpec(CUDA_R_16F, CUDA_R_32F, CUBLAS_COMPUTE_32F, np.float32, "TFLOPS"),
    "bf16": GemmSpec(CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F, np.float32, "TFLOPS"),
    "int8": GemmSpec(CUDA_R_8I, CUDA_R_32I, CUBLAS_COMPUTE_32I, np.int32, "TOPS"),
}


def load_cupy() -> Any:
    # Must precede CUDA initialisation so CUDA ordinals follow PCI order, like NVML's.
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    import cupy

    return cupy


def cupy_available() -> bool:
    try:
        load_cupy()
    except Exception:  # ImportError, or a CUDA library that fails to load
        return False
    return True


def format_cuda_uuid(raw: bytes | str) -> str:
    """cudaUUID_t's 16 bytes as NVML writes them (GPU-8-4-4-4-12); "" when unavailable or truncated.

    CuPy converts the char[16] field as a C string: it stops at the first NUL (shorter: unknown)
    or, with no NUL among the 16, runs on into the next fields (longer: the first 16 are the UUID).
    """
    if isinstance(raw, str):
        return raw
    if len(raw) < 16:
        return ""
    h = raw[:16].hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class CupyCudaInspector:
    """The CUDA runtime's view of every visible device (`cupy`: the module, or a test double)."""

    def __init__(self, cupy: Any = None) -> None:
        self._cp = cupy

    def views(self) -> list[CudaView]:
        rt = (self._cp or load_cupy()).cuda.runtime
        views = []
        for ordinal in range(rt.getDeviceCount()):
            props = rt.getDeviceProperties(ordinal)
            name = props["name"]
            views.append(
                CudaView(
                    name=name.decode(errors="replace") if isinstance(name, bytes) else str(name),
                    memory_total_bytes=int(props["totalGlobalMem"]),
                    sm_count=int(props["multiProcessorCount"]),
                    pci_bus_id=rt.deviceGetPCIBusId(ordinal),
                    uuid=format_cuda_uuid(props.get("uuid", b"")),
                )
            )
        return views


@dataclass(frozen=True)
class CupyDevice:
    label: str
    index: int
    pci_bus_id: str
    memory_total_bytes: int


class CupyBackend:
    """GPU benchmarks through CuPy (`cupy`: the module, imported when first needed, or a test double)."""

    name = "cupy"

    def __init__(self, gpus: Sequence[GpuInfo], cupy: Any = None) -> None:
        self._gpus = list(gpus)
        self._cp = cupy

    def devices(self) -> Sequence[CupyDevice]:
        return [CupyDevice(f"gpu{g.index}", g.index, g.pci_bus_id, g.memory_total_bytes) for g in self._gpus]

    def steps(self, plan: BenchPlan) -> int:
        return len(plan.gemm_kinds) + 3

    def run_device(self, device: Any, plan: BenchPlan, progress: Progress) -> list[BenchmarkResult]:
        cp = self._cp or load_cupy()
        ordinal = cp.cuda.runtime.deviceGetByPCIBusId(device.pci_bus_id)
        plan = plan.sized_for(device.memory_total_bytes)
        try:
            with cp.cuda.Device(ordinal):
                stream = cp.cuda.Stream(non_blocking=True)
                with stream:
                    return _run_on_device(cp, ordinal, stream, device, plan, progress)
        finally:
            cp.get_default_memory_pool().free_all_blocks()
            cp.get_default_pinned_memory_pool().free_all_blocks()


def _run_on_device(
    cp: Any, ordinal: int, stream: Any, device: CupyDevice, plan: BenchPlan, progress: Progress
) -> list[BenchmarkResult]:
    l2 = int(cp.cuda.runtime.getDeviceProperties(ordinal)["l2CacheSize"])
    flush = cp.empty(plan.flush_bytes or max(2 * l2, MIN_FLUSH_BYTES), dtype=cp.uint8)
    operands = _Operands.make(cp, plan.seed + device.index, plan.gemm_n, plan.check_rows)
    results = []
    for kind in plan.gemm_kinds:
        results.append(_gemm(cp, stream, kind, operands, flush, plan, device.label))
        progress(f"gemm_{kind}")
    del operands
    for name, measure in (
        ("copy_d2d", _copy_d2d),
        ("copy_h2d_pinned", _copy_h2d),
        ("copy_d2h_pinned", _copy_d2h),
    ):
        results.append(measure(cp, stream, plan, device.label))
        progress(name)
    stream.synchronize()
    return results


@dataclass
class _Operands:
    """Seeded small-integer operands on the device, their host copies, and the expected rows."""

    a8: Any
    b8: Any
    rows: list[int]
    expected: np.ndarray
    seed: int
    bound: int

    @classmethod
    def make(cls, cp: Any, seed: int, n: int, check_rows: int) -> _Operands:
        bound = operand_bound(n)
        rs = cp.random.RandomState(seed)
        a8 = rs.randint(-bound, bound + 1, size=(n, n), dtype=cp.int32).astype(cp.int8)
        b8 = rs.randint(-bound, bound + 1, size=(n, n), dtype=cp.int32).astype(cp.int8)
        rows = pick_rows(seed, n, check_rows)
        expected = expected_rows_tn(cp.asnumpy(a8), cp.asnumpy(b8), rows)
        return cls(a8, b8, rows, expected, seed, bound)

    def as_input(self, cp: Any, kind: str) -> tuple[Any, Any]:
        if kind == "int8":
            return self.a8, self.b8
        if kind == "fp16":
            return self.a8.astype(cp.float16), self.b8.astype(cp.float16)
        if kind == "bf16":  # CuPy has no bfloat16: small integers are exact in the top 16 bits of fp32
            return _bf16_bits(cp, self.a8), _bf16_bits(cp, self.b8)
        return self.a8.astype(cp.float32), self.b8.astype(cp.float32)


def _bf16_bits(cp: Any, x: Any) -> Any:
    return (x.astype(cp.float32).view(cp.uint32) >> 16).astype(cp.uint16)


def _memset(cp: Any, stream: Any, array: Any, value: int = 0) -> None:
    cp.cuda.runtime.memsetAsync(array.data.ptr, value, array.nbytes, stream.ptr)


def _time_events(
    cp: Any, stream: Any, fn: Callable[[], None], before: Callable[[], None], warmups: int, repeats: int
) -> list[float]:
    """Seconds per repeat between two CUDA events around `fn` only (not around `before`)."""
    start, end = cp.cuda.Event(), cp.cuda.Event()
    for _ in range(warmups):
        before()
        fn()
    seconds = []
    for _ in range(repeats):
        before()
        start.record(stream)
        fn()
        end.record(stream)
        end.synchronize()
        seconds.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    return seconds


def _gemm(
    cp: Any, stream: Any, kind: str, ops: _Operands, flush: Any, plan: BenchPlan, device: str
) -> BenchmarkResult:
    spec = GEMM_SPECS[kind]
    a, b = ops.as_input(cp, kind)
    n = a.shape[0]
    c = cp.empty((n, n), dtype=cp.int32 if spec.out_type == CUDA_R_32I else cp.float32)
    alpha, beta = np.array(1, dtype=spec.scalar), np.array(0, dtype=spec.scalar)
    cublas = cp.cuda.cublas
    handle = cp.cuda.device.get_cublas_handle()
    cublas.setStream(handle, stream.ptr)  # cuBLAS runs on its handle's stream, not CuPy's current one

    def gemm() -> None:
        cublas.gemmEx(
            handle,
            CUBLAS_OP_T,
            CUBLAS_OP_N,
            n,
            n,
            n,
            alpha.ctypes.data,
            a.data.ptr,
            spec.in_type,
            n,
            b.data.ptr,
            spec.in_type,
            n,
            beta.ctypes.data,
            c.data.ptr,
            spec.out_type,
            n,
            spec.compute,
            CUBLAS_GEMM_DEFAULT,
        )

    def before() -> None:
        _memset(cp, stream, c)
        _memset(cp, stream, flush, 1)  # writes 2x L2: the operands are no longer cached

    seconds = _time_events(cp, stream, gemm, before, plan.warmups, plan.repeats)
    got = cp.asnumpy(c[ops.rows])
    error = row_mismatch(got, ops.expected, ops.rows)
    method = {
        "m": n,
        "n": n,
        "k": n,
        "dtype_in": kind,
        "dtype_out": "int32" if kind == "int8" else "fp32",
        "library": "cuBLAS cublasGemmEx via CuPy",
        "layout": "TN",
        "compute_type": spec.compute,
        "timer": "cuda_events",
        "warmups": plan.warmups,
        "statistic": "median",
        "l2_flush_bytes": int(flush.nbytes),
        "seed": ops.seed,
        "operand_range": ops.bound,
        "verification": {"rows_checked": ops.rows, "exact": True, "against": "fp32 BLAS on CPU"},
    }
    return result(
        f"gemm_{kind}",
        device,
        spec.unit,
        gemm_rates(n, seconds),
        None if error is None else f"verification failed: {error}",
        method,
    )


def _device_pattern(cp: Any, nbytes: int) -> Any:
    return (cp.arange(nbytes // 4, dtype=cp.uint32) * cp.uint32(PATTERN_MULTIPLIER)).view(cp.uint8)


def _host_pattern_pinned(cp: Any, nbytes: int) -> np.ndarray:
    host = _pinned(cp, nbytes)
    host[:] = (np.arange(nbytes // 4, dtype=np.uint32) * np.uint32(PATTERN_MULTIPLIER)).view(np.uint8)
    return host


def _pinned(cp: Any, nbytes: int) -> np.ndarray:
    memory = cp.cuda.alloc_pinned_memory(nbytes)
    return np.frombuffer(memory, dtype=np.uint8, count=nbytes)


def _copy_method(nbytes: int, plan: BenchPlan, kind: str) -> dict[str, Any]:
    return {
        "bytes": nbytes,
        "api": f"cudaMemcpyAsync {kind}",
        "timer": "cuda_events",
        "warmups": plan.warmups,
        "statistic": "median",
        "bytes_counted": "copied once",
        "verification": "destination compared with source after the last copy",
    }


def _copy_result(
    name: str, device: str, nbytes: int, seconds: list[float], ok: bool, method: dict[str, Any]
) -> BenchmarkResult:
    return result(
        name,
        device,
        "GB/s",
        copy_rates(nbytes, seconds),
        None if ok else "verification failed: copied bytes differ from the source",
        method,
    )


def _copy_d2d(cp: Any, stream: Any, plan: BenchPlan, device: str) -> BenchmarkResult:
    nbytes = plan.copy_bytes // 4 * 4
    src, dst = _device_pattern(cp, nbytes), cp.empty(nbytes, dtype=cp.uint8)
    kind = cp.cuda.runtime.memcpyDeviceToDevice

    def copy() -> None:
        cp.cuda.runtime.memcpyAsync(dst.data.ptr, src.data.ptr, nbytes, kind, stream.ptr)

    seconds = _time_events(cp, stream, copy, lambda: _memset(cp, stream, dst), plan.warmups, plan.repeats)
    ok = bool(cp.array_equal(dst, src))
    return _copy_result("copy_d2d", device, nbytes, seconds, ok, _copy_method(nbytes, plan, "DeviceToDevice"))


def _copy_h2d(cp: Any, stream: Any, plan: BenchPlan, device: str) -> BenchmarkResult:
    nbytes = plan.host_copy_bytes // 4 * 4
    host, dst = _host_pattern_pinned(cp, nbytes), cp.empty(nbytes, dtype=cp.uint8)
    kind = cp.cuda.runtime.memcpyHostToDevice

    def copy() -> None:
        cp.cuda.runtime.memcpyAsync(dst.data.ptr, host.ctypes.data, nbytes, kind, stream.ptr)

    seconds = _time_events(cp, stream, copy, lambda: _memset(cp, stream, dst), plan.warmups, plan.repeats)
    ok = bool(cp.array_equal(dst, _device_pattern(cp, nbytes)))
    return _copy_result(
        "copy_h2d_pinned", device, nbytes, seconds, ok, _copy_method(nbytes, plan, "HostToDevice (pinned)")
    )


def _copy_d2h(cp: Any, stream: Any, plan: BenchPlan, device: str) -> BenchmarkResult:
    nbytes = plan.host_copy_bytes // 4 * 4
    src, host = _device_pattern(cp, nbytes), _pinned(cp, nbytes)
    kind = cp.cuda.runtime.memcpyDeviceToHost

    def copy() -> None:
        cp.cuda.runtime.memcpyAsync(host.ctypes.data, src.data.ptr, nbytes, kind, stream.ptr)

    def before() -> None:
        stream.synchronize()  # the previous copy must land before the host buffer is cleared
        host.fill(0)

    seconds = _time_events(cp, stream, copy, before, plan.warmups, plan.repeats)
    expected = (np.arange(nbytes // 4, dtype=np.uint32) * np.uint32(PATTERN_MULTIPLIER)).view(np.uint8)
    ok = bool(np.array_equal(host, expected))
    return _copy_result(
        "copy_d2h_pinned", device, nbytes, seconds, ok, _copy_method(nbytes, plan, "DeviceToHost (pinned)")
    )
