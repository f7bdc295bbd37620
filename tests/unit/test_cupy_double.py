"""The CUDA test double itself: it must fail where CUDA and cuBLAS would, or the GPU tests prove nothing.

cuBLAS semantics are checked against an independent reading of its documentation (column-major
operands, op(A) = A or A^T, leading dimensions), not against the double's own code.
"""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from benchmark_probe.cupy_double import (
    COMPUTE_32F,
    COMPUTE_32F_FAST_TF32,
    COMPUTE_32I,
    D2H,
    H2D,
    R_8I,
    R_16F,
    R_32F,
    R_32I,
    CUBLASError,
    CUDARuntimeError,
    CupyTestDouble,
    OutOfMemoryError,
)
from benchmark_probe.nvml_double import fake_gpu

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="kernels are built with g++")


@pytest.fixture
def cp() -> CupyTestDouble:
    return CupyTestDouble.for_gpus([fake_gpu(0), fake_gpu(1)])


def scalar(value: float, dtype: type = np.float32) -> np.ndarray:
    return np.array([value], dtype=dtype)


def column_major(buffer: np.ndarray, rows: int, cols: int, ld: int) -> np.ndarray:
    """Element (r, c) of a column-major matrix is buffer[r + c * ld] (cuBLAS's definition)."""
    flat = buffer.reshape(-1)
    return np.array([[flat[r + c * ld] for c in range(cols)] for r in range(rows)])


@pytest.mark.parametrize(("ta", "tb"), [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm_ex_follows_cublas_column_major_definition(cp: CupyTestDouble, ta: int, tb: int) -> None:
    m, n, k, lda, ldb, ldc = 3, 4, 5, 7, 6, 5  # leading dimensions larger than the matrices
    rng = np.random.default_rng(1)
    a = cp.asarray(rng.integers(-9, 9, size=lda * (k if ta == 0 else m)).astype(np.float32))
    b = cp.asarray(rng.integers(-9, 9, size=ldb * (n if tb == 0 else k)).astype(np.float32))
    c = cp.asarray(np.full(ldc * n, 7, dtype=np.float32))
    alpha, beta = scalar(2), scalar(3)
    handle = cp.cuda.device.get_cublas_handle()
    cp.cuda.cublas.gemmEx(
        handle, ta, tb, m, n, k, alpha.ctypes.data, a.data.ptr, R_32F, lda, b.data.ptr, R_32F, ldb,
        beta.ctypes.data, c.data.ptr, R_32F, ldc, COMPUTE_32F, -1,
    )  # fmt: skip
    a_host, b_host = cp.asnumpy(a), cp.asnumpy(b)
    op_a = column_major(a_host, m, k, lda) if ta == 0 else column_major(a_host, k, m, lda).T
    op_b = column_major(b_host, k, n, ldb) if tb == 0 else column_major(b_host, n, k, ldb).T
    want = 2 * op_a @ op_b + 3 * 7
    got = cp.asnumpy(c)
    assert np.array_equal(column_major(got, m, n, ldc), want)
    assert np.all(got.reshape(n, ldc)[:, m:] == 7)  # padding rows beyond m are left alone


def test_int8_gemm_accumulates_in_int32(cp: CupyTestDouble) -> None:
    a = cp.asarray(np.full(64, 127, dtype=np.int8))
    b = cp.asarray(np.full(64, 127, dtype=np.int8))
    c = cp.empty(1, dtype=np.int32)
    one, zero = scalar(1, np.int32), scalar(0, np.int32)
    cp.cuda.cublas.gemmEx(
        cp.cuda.device.get_cublas_handle(), 1, 0, 1, 1, 64, one.ctypes.data, a.data.ptr, R_8I, 64,
        b.data.ptr, R_8I, 64, zero.ctypes.data, c.data.ptr, R_32I, 1, COMPUTE_32I, -1,
    )  # fmt: skip
    assert int(cp.asnumpy(c)[0]) == 64 * 127 * 127


def test_int8_gemm_needs_leading_dimensions_in_fours(cp: CupyTestDouble) -> None:
    a = cp.asarray(np.ones(30, dtype=np.int8))
    c = cp.empty(36, dtype=np.int32)
    one, zero = scalar(1, np.int32), scalar(0, np.int32)
    with pytest.raises(CUBLASError, match="% 4"):
        cp.cuda.cublas.gemmEx(
            cp.cuda.device.get_cublas_handle(), 1, 0, 6, 6, 5, one.ctypes.data, a.data.ptr, R_8I, 5,
            a.data.ptr, R_8I, 5, zero.ctypes.data, c.data.ptr, R_32I, 6, COMPUTE_32I, -1,
        )  # fmt: skip


def test_tf32_rounds_inputs_to_ten_mantissa_bits(cp: CupyTestDouble) -> None:
    a, b = cp.asarray(scalar(2049)), cp.asarray(scalar(1))
    c = cp.empty(1, dtype=np.float32)
    one, zero = scalar(1), scalar(0)
    for compute, exact in ((COMPUTE_32F, True), (COMPUTE_32F_FAST_TF32, False)):
        cp.cuda.cublas.gemmEx(
            cp.cuda.device.get_cublas_handle(), 0, 0, 1, 1, 1, one.ctypes.data, a.data.ptr, R_32F, 1,
            b.data.ptr, R_32F, 1, zero.ctypes.data, c.data.ptr, R_32F, 1, compute, -1,
        )  # fmt: skip
        assert (float(cp.asnumpy(c)[0]) == 2049.0) is exact


def test_cublas_refuses_what_cublas_refuses(cp: CupyTestDouble) -> None:
    a = cp.asarray(np.ones(16, dtype=np.float16))
    c32 = cp.empty(16, dtype=np.float32)
    one, zero = scalar(1), scalar(0)
    h = cp.cuda.device.get_cublas_handle()
    blas = cp.cuda.cublas
    with pytest.raises(CUBLASError, match="not a host pointer"):  # alpha=1.0 cast to address 0x1
        blas.sgemmEx(
            h, 0, 0, 4, 4, 4, 1, a.data.ptr, R_16F, 4, a.data.ptr, R_16F, 4, 0, c32.data.ptr, R_32F, 4
        )
    with pytest.raises(CUBLASError, match="pointer mode is HOST"):
        blas.sgemmEx(
            h, 0, 0, 4, 4, 4, c32.data.ptr, a.data.ptr, R_16F, 4, a.data.ptr, R_16F, 4, zero.ctypes.data,
            c32.data.ptr, R_32F, 4,
        )  # fmt: skip
    with pytest.raises(CUBLASError, match="NOT_SUPPORTED"):  # fp16 inputs, int32 output
        blas.gemmEx(
            h, 0, 0, 4, 4, 4, one.ctypes.data, a.data.ptr, R_16F, 4, a.data.ptr, R_16F, 4, zero.ctypes.data,
            c32.data.ptr, R_32I, 4, COMPUTE_32F, -1,
        )  # fmt: skip
    with pytest.raises(CUBLASError, match="not in device memory"):  # 5 x 4 does not fit in 16 elements
        blas.sgemmEx(
            h, 0, 0, 5, 4, 4, one.ctypes.data, a.data.ptr, R_16F, 5, a.data.ptr, R_16F, 4, zero.ctypes.data,
            c32.data.ptr, R_32F, 5,
        )  # fmt: skip
    with cp.cuda.Device(1), pytest.raises(CUBLASError, match="handle of device 0"):
        blas.sgemmEx(
            h, 0, 0, 4, 4, 4, one.ctypes.data, a.data.ptr, R_16F, 4, a.data.ptr, R_16F, 4, zero.ctypes.data,
            c32.data.ptr, R_32F, 4,
        )  # fmt: skip


def test_copies_and_memsets_must_touch_the_memory_they_claim(cp: CupyTestDouble) -> None:
    stream = cp.cuda.Stream(non_blocking=True)
    dev = cp.empty(64, dtype=np.uint8)
    host = np.zeros(64, dtype=np.uint8)
    rt = cp.cuda.runtime
    with pytest.raises(CUDARuntimeError, match="source not in device memory"):
        rt.memcpyAsync(host.ctypes.data, host.ctypes.data, 64, D2H, stream.ptr)
    with pytest.raises(CUDARuntimeError, match="destination not in device memory"):
        rt.memcpyAsync(host.ctypes.data, dev.data.ptr, 64, H2D, stream.ptr)
    with pytest.raises(CUDARuntimeError, match="outside device memory"):
        rt.memsetAsync(dev.data.ptr, 0, 65, stream.ptr)
    with pytest.raises(CUDARuntimeError, match="no stream"):
        rt.memsetAsync(dev.data.ptr, 0, 64, 12345)
    host[:] = 9
    rt.memcpyAsync(dev.data.ptr, host.ctypes.data, 64, H2D, stream.ptr)
    assert cp.log[-1] == ("memcpy", H2D, 64, False, stream.ptr)  # pageable: not pinned
    pinned = np.frombuffer(cp.cuda.alloc_pinned_memory(64), dtype=np.uint8)
    rt.memcpyAsync(pinned.ctypes.data, dev.data.ptr, 64, D2H, stream.ptr)
    assert cp.log[-1][3] is True and np.all(pinned == 9)


def test_devices_events_and_host_arrays(cp: CupyTestDouble) -> None:
    with pytest.raises(CUDARuntimeError, match="InvalidDevice"):
        cp.cuda.Device(2)
    start, end = cp.cuda.Event(), cp.cuda.Event()
    with pytest.raises(CUDARuntimeError, match="not recorded"):
        cp.cuda.get_elapsed_time(start, end)
    start.record()
    end.record()
    assert cp.cuda.get_elapsed_time(start, end) >= 0
    with pytest.raises(TypeError, match="host array"):
        _ = cp.arange(4, dtype=np.int32) + np.arange(4, dtype=np.int32)
    with cp.cuda.Device(1):
        assert cp.empty(4, dtype=np.uint8).device.id == 1
    assert bool(cp.array_equal(cp.arange(3), cp.arange(3)))


@needs_gxx
def test_kernels_run_their_cuda_source(cp: CupyTestDouble) -> None:
    module = cp.RawModule(
        code='extern "C" __global__ void fill(unsigned* out, unsigned n) {'
        " unsigned i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) out[i] = i * 3u; }"
    )
    out = cp.zeros(10, dtype=np.uint32)
    module.get_function("fill")((3,), (4,), (out, np.uint32(10)))
    assert cp.asnumpy(out).tolist() == [3 * i for i in range(10)]
    with pytest.raises(ValueError, match="non-contiguous"):
        module.get_function("fill")((1,), (4,), (cp.zeros(8, dtype=np.uint32)[::2], np.uint32(4)))
    with pytest.raises(TypeError, match="numpy scalars"):
        module.get_function("fill")((1,), (4,), (out, 4))
    # CuPy's Function.__call__ types grid and block `tuple`; its RawModule takes options by keyword.
    with pytest.raises(TypeError, match="'grid' has incorrect type"):
        module.get_function("fill")([3], (4,), (out, np.uint32(10)))
    with pytest.raises(TypeError, match="'block' has incorrect type"):
        module.get_function("fill")((3,), [4], (out, np.uint32(10)))
    with pytest.raises(TypeError):
        cp.RawModule('extern "C" __global__ void k() {}', ("--std=c++11",))  # type: ignore[misc]
    with pytest.raises(TypeError, match="'options' has incorrect type"):
        cp.RawModule(code='extern "C" __global__ void k() {}', options=["--std=c++11"])  # type: ignore[arg-type]
    with pytest.raises(NotImplementedError, match="one at a time"):
        cp.RawModule(code='extern "C" __global__ void k() { __syncthreads(); }')


@needs_gxx
def test_cublas_runs_on_its_handles_stream_and_kernels_on_theirs(cp: CupyTestDouble) -> None:
    """cuBLAS ignores CuPy's current stream: a handle's calls run on the stream setStream gave it
    (default 0); a kernel runs on the stream it is launched with, else the current one. The log
    says which; unknown streams are refused."""
    a = cp.asarray(np.ones(64, dtype=np.int8))
    c = cp.empty(1, dtype=np.int32)
    one, zero = scalar(1, np.int32), scalar(0, np.int32)
    handle = cp.cuda.device.get_cublas_handle()

    def gemm() -> None:
        cp.cuda.cublas.gemmEx(
            handle, 1, 0, 1, 1, 64, one.ctypes.data, a.data.ptr, R_8I, 64,
            a.data.ptr, R_8I, 64, zero.ctypes.data, c.data.ptr, R_32I, 1, COMPUTE_32I, -1,
        )  # fmt: skip

    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        gemm()
    assert cp.log[-1][0] == "gemm" and cp.log[-1][10] == 0  # the current stream is not cuBLAS's
    cp.cuda.cublas.setStream(handle, stream.ptr)
    assert cp.cuda.cublas.getStream(handle) == stream.ptr
    gemm()
    assert cp.log[-1][10] == stream.ptr
    with pytest.raises(CUDARuntimeError, match="no stream"):
        cp.cuda.cublas.setStream(handle, 0xDEAD)
    module = cp.RawModule(code='extern "C" __global__ void k(unsigned* out) { out[0] = 1u; }')
    out = cp.zeros(1, dtype=np.uint32)
    module.get_function("k")((1,), (1,), (out,), stream=stream)
    assert cp.log[-1] == ("kernel", "k", 0, stream.ptr)
    with stream:
        module.get_function("k")((1,), (1,), (out,))
    assert cp.log[-1] == ("kernel", "k", 0, stream.ptr)
    module.get_function("k")((1,), (1,), (out,))
    assert cp.log[-1] == ("kernel", "k", 0, 0)


def test_device_memory_when_limited_is_enforced_per_device_and_released() -> None:
    cp = CupyTestDouble.for_gpus([fake_gpu(0), fake_gpu(1)], device_memory_bytes=1000)
    assert cp.cuda.runtime.memGetInfo() == (1000, 1000)
    a = cp.empty((600,), dtype=cp.uint8)
    assert cp.cuda.runtime.memGetInfo() == (400, 1000)
    with pytest.raises(OutOfMemoryError, match="Out of memory allocating 800 bytes"):
        cp.zeros((100,), dtype=cp.float64)
    assert (
        isinstance(OutOfMemoryError("x"), MemoryError) and cp.cuda.memory.OutOfMemoryError is OutOfMemoryError
    )
    with cp.cuda.Device(1):  # another device has its own memory
        b = cp.asarray(np.zeros(900, dtype=np.uint8))
        assert cp.cuda.runtime.memGetInfo() == (100, 1000)
    del a, b
    assert cp.cuda.runtime.memGetInfo() == (1000, 1000) and cp.peak_bytes == {0: 600, 1: 900}
    unlimited = CupyTestDouble.for_gpus([fake_gpu(0)])
    free, total = unlimited.cuda.runtime.memGetInfo()
    assert free == total == unlimited.cuda.runtime.getDeviceProperties(0)["totalGlobalMem"]


def test_a_finalizer_never_waits_on_the_doubles_locks() -> None:
    """The double frees its memory accounting and block map from weakref finalizers, which run
    wherever an object dies: here on the very thread that holds the lock (as when the cyclic
    collector runs inside an allocation made under it). A plain Lock hangs that thread, which this
    test turns into a failure (it runs in a thread of its own, joined with a timeout); the update
    is queued and applied when the holder lets go. From another thread it is queued too."""
    import weakref

    from benchmark_probe.cupy_double import FinalizerSafeLock

    lock, seen, inside = FinalizerSafeLock(), [], []

    class Thing:
        pass

    def drop_under_the_lock(box: list[Thing], elsewhere: bool) -> None:
        with lock:
            if elsewhere:  # the last reference dies on another thread
                other = threading.Thread(target=box.clear, daemon=True)
                other.start()
                other.join(timeout=10)
            else:
                box.clear()  # the finalizer runs now, on this thread, under the lock
            inside.append(list(seen))

    for label, elsewhere in (("mine", False), ("theirs", True)):
        thing = Thing()
        weakref.finalize(thing, lock.call, lambda label=label: seen.append(label))
        box = [thing]
        del thing
        runner = threading.Thread(target=drop_under_the_lock, args=(box, elsewhere), daemon=True)
        runner.start()
        runner.join(timeout=10)
        assert not runner.is_alive(), "a finalizer waited on the lock its thread holds"
        assert inside[-1] == seen[:-1] and seen[-1] == label  # queued under the lock, applied after
    lock.call(lambda: seen.append("free"))  # the lock free: applied at once
    assert seen == ["mine", "theirs", "free"]
