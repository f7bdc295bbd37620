"""CUDA TEST DOUBLE: the slice of CuPy that the probe's GPU backend and the proof's GPU executor
call, emulated on the host so that their code runs (and is tested) where no GPU is present.

It is a double at the hardware boundary, not a model of a GPU's speed: every figure measured
through it is a host figure and means nothing. What it does reproduce is what the GPU code can
get wrong:

- device memory is host memory, and a device pointer (`array.data.ptr`) is its real address, so
  `memsetAsync`, `memcpyAsync`, cuBLAS and kernels act on the bytes the code handed them; every
  pointer is checked against the allocations it may touch (device, pinned host, on which device);
- cuBLAS `gemmEx` / `sgemmEx` with CuPy's signatures: column-major operands read through their
  leading dimensions, transposes, alpha/beta read through HOST POINTERS (a Python float would be
  an address: refused), only the type combinations cuBLAS documents, TF32 rounding of inputs,
  fp32 accumulation, the cuBLAS handle tied to its device;
- `RawModule` compiles the very CUDA C source the code ships with g++ and runs it one thread at a
  time (no shared memory or `__syncthreads`: refused loudly);
- devices, streams and events: the current device and stream per thread, `Device(i)` for i out of
  range fails, events must be recorded before they are timed, streams must be known; a cuBLAS
  handle runs on the stream `cublas.setStream` gave it (not CuPy's current stream: default 0), a
  kernel on the `stream=` it is launched with (default: the current one), and the log records
  which;
- host arrays mixed with device arrays in an operation raise TypeError, as CuPy does;
- device memory, when `device_memory_bytes` is set: each fake GPU then has that much memory
  (`runtime.memGetInfo()` answers (free, total) from it) and an allocation through the module's
  constructors (`empty`, `zeros`, `asarray`, ...) beyond it raises `OutOfMemoryError`, as CuPy
  does. Only those allocations are counted, not the temporaries numpy makes inside an operator
  (`a + b`, `a[idx]`): a budget that holds here holds for what the code allocates itself.

Events time the host by default. With a `ModelledClock` (the TEST DOUBLE GPU model's,
`DOUBLE_MODEL_CLOCK`) they time a modelled device clock instead, advanced only by the work the
code asks of the device, so event-timed figures are the double's declared speed on any host,
however loaded: reproducible, and meaning nothing about any GPU (a host's self-measured figures
are claims; the service times the proof of throughput on its own clock).

Build one with `CupyTestDouble.for_gpus(fake_gpus)` and pass it where the code takes `cupy=`.
Needs g++ for kernels (only `RawModule` calls). Never touches a real GPU.
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import hashlib
import re
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmark_probe.nvml_double import FakeGpu, cuda_reserved_bytes

# cudaDataType_t / cublasComputeType_t / cudaMemcpyKind values (stable ABI numbers).
R_32F, R_64F, R_16F, R_8I, R_32I, R_16BF = 0, 1, 2, 3, 10, 14
COMPUTE_16F, COMPUTE_32F, COMPUTE_32I, COMPUTE_64F = 64, 68, 72, 70
COMPUTE_32F_FAST_16F, COMPUTE_32F_FAST_16BF, COMPUTE_32F_FAST_TF32 = 74, 75, 77
H2H, H2D, D2H, D2D, DEFAULT = 0, 1, 2, 3, 4

_STORAGE = {
    R_32F: np.float32,
    R_64F: np.float64,
    R_16F: np.float16,
    R_8I: np.int8,
    R_32I: np.int32,
    R_16BF: np.uint16,
}
# cublasGemmEx's supported (compute type, A/B type, C type) combinations, from the cuBLAS docs.
GEMM_EX_SUPPORTED = {
    (COMPUTE_16F, R_16F, R_16F),
    (COMPUTE_32I, R_8I, R_32I),
    (COMPUTE_32F, R_16BF, R_16BF),
    (COMPUTE_32F, R_16F, R_16F),
    (COMPUTE_32F, R_8I, R_32F),
    (COMPUTE_32F, R_16BF, R_32F),
    (COMPUTE_32F, R_16F, R_32F),
    (COMPUTE_32F, R_32F, R_32F),
    (COMPUTE_32F_FAST_16F, R_32F, R_32F),
    (COMPUTE_32F_FAST_16BF, R_32F, R_32F),
    (COMPUTE_32F_FAST_TF32, R_32F, R_32F),
    (COMPUTE_64F, R_64F, R_64F),
}
# cublasSgemmEx: fp32 compute and scale; (A/B type, C type).
SGEMM_EX_SUPPORTED = {
    (R_16BF, R_16BF),
    (R_16BF, R_32F),
    (R_16F, R_16F),
    (R_16F, R_32F),
    (R_8I, R_32F),
    (R_32F, R_32F),
}
L2_BYTES = 50 << 20  # an H100's L2
LOWEST_HOST_ADDRESS = 1 << 16  # nothing real lives below; a scalar passed as a "pointer" does


class CUDARuntimeError(RuntimeError):
    """What CuPy raises for a failed CUDA runtime call (cupy_backends...CUDARuntimeError)."""


class CUBLASError(RuntimeError):
    """What CuPy raises for a failed cuBLAS call."""


class OutOfMemoryError(MemoryError):
    """What CuPy raises when device memory runs out (cupy.cuda.memory.OutOfMemoryError)."""


# -- memory -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Block:
    start: int
    nbytes: int
    kind: str  # "device" or "pinned"
    device: int


class FinalizerSafeLock:
    """A lock that weakref finalizers never wait on. A finalizer runs wherever its object dies:
    in any thread, and, for an object in a reference cycle, inside whatever allocation triggered
    the cyclic collector, possibly while that very thread holds this lock; a finalizer taking a
    plain Lock there deadlocks the thread on itself (seen once as a unit-suite run that hung).
    So a finalizer hands its update to `call`: run at once when the lock is free, else queued and
    run by the holder before it lets go (and by the next holder on entry)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: collections.deque[Callable[[], None]] = collections.deque()

    def __enter__(self) -> FinalizerSafeLock:
        self._lock.acquire()
        self._drain()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._drain()
        finally:
            self._lock.release()
        if self._pending and self._lock.acquire(blocking=False):  # queued while we let go
            try:
                self._drain()
            finally:
                self._lock.release()

    def _drain(self) -> None:
        while self._pending:
            self._pending.popleft()()

    def call(self, update: Callable[[], None]) -> None:
        """From a finalizer: `update` under the lock, now or by its holder."""
        if self._lock.acquire(blocking=False):
            try:
                update()
                self._drain()
            finally:
                self._lock.release()
        else:
            self._pending.append(update)


_BLOCKS: dict[int, _Block] = {}
_BLOCKS_LOCK = FinalizerSafeLock()


def _register(owner: Any, kind: str, device: int, start: int, nbytes: int) -> None:
    with _BLOCKS_LOCK:
        if start in _BLOCKS:
            return
        _BLOCKS[start] = _Block(start, nbytes, kind, device)
    weakref.finalize(owner, _forget, start)


def _forget(start: int) -> None:
    def update() -> None:
        _BLOCKS.pop(start, None)

    _BLOCKS_LOCK.call(update)


def _block_at(ptr: int, nbytes: int) -> _Block | None:
    with _BLOCKS_LOCK:
        for block in _BLOCKS.values():
            if block.start <= ptr and ptr + nbytes <= block.start + block.nbytes:
                return block
    return None


def _owner(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    base: Any = array
    while isinstance(base, np.ndarray) and base.base is not None and isinstance(base.base, np.ndarray):
        base = base.base
    return base  # type: ignore[no-any-return]


class _State(threading.local):
    device: int = 0
    stream: int = 0

    def __init__(self) -> None:
        self.cublas_streams: dict[int, int] = {}  # this thread's cuBLAS handles -> their stream


_STATE = _State()


@dataclass(frozen=True)
class MemoryPointer:
    ptr: int
    device_id: int


class DeviceArray(np.ndarray):
    """A "device" array: host memory whose address stands for the device pointer."""

    _device: int

    def __array_finalize__(self, obj: Any) -> None:
        # New memory lives on the current device (as CuPy allocates); a view stays where its base is.
        inherit = self.base is not None and isinstance(obj, DeviceArray)
        self._device = obj._device if inherit else _STATE.device
        owner = _owner(self)
        if owner.nbytes:
            _register(owner, "device", self._device, int(owner.ctypes.data), int(owner.nbytes))

    @property
    def data(self) -> MemoryPointer:  # type: ignore[override]
        return MemoryPointer(int(self.ctypes.data), self._device)

    @property
    def device(self) -> SimpleNamespace:  # type: ignore[override]
        return SimpleNamespace(id=self._device)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        outs = kwargs.get("out", ())
        for x in (*inputs, *outs):
            if isinstance(x, np.ndarray) and not isinstance(x, DeviceArray) and x.ndim > 0:
                raise TypeError(f"Unsupported type {type(x)}: a host array in a device operation")
        plain = [x.view(np.ndarray) if isinstance(x, DeviceArray) else x for x in inputs]
        if outs:
            kwargs["out"] = tuple(o.view(np.ndarray) for o in outs)
        result = getattr(ufunc, method)(*plain, **kwargs)
        if outs:
            return outs[0] if len(outs) == 1 else outs
        if isinstance(result, tuple):
            return tuple(r.view(DeviceArray) if isinstance(r, np.ndarray) else r for r in result)
        return result.view(DeviceArray) if isinstance(result, np.ndarray) else result

    def get(self) -> np.ndarray[Any, Any]:
        return np.array(self, subok=False, copy=True)


def _device_array(host: Any, dtype: Any = None) -> DeviceArray:
    """A copy of `host` (a host or device array) in new memory on the current device."""
    plain = host.view(np.ndarray) if isinstance(host, DeviceArray) else np.asarray(host)
    return np.array(plain, dtype=dtype, copy=True).view(DeviceArray)


class _PinnedBuffer(bytearray):
    """Page-locked host memory of the double (a bytearray that can be weak-referenced)."""


# -- events, streams, devices --------------------------------------------------------------------------
class Event:
    def __init__(self, block: bool = False, disable_timing: bool = False, interprocess: bool = False) -> None:
        self.disable_timing = disable_timing
        self.recorded_at: float | None = None

    def record(self, stream: Stream | None = None) -> None:
        if stream is not None:
            _check_stream(stream.ptr)
        self.recorded_at = time.perf_counter()

    def synchronize(self) -> None:
        """Everything in the double runs synchronously."""


class Stream:
    _next = 0x5700
    _known: set[int] = {0}  # noqa: RUF012  (shared registry of stream handles)

    def __init__(self, null: bool = False, non_blocking: bool = False, ptds: bool = False) -> None:
        if null:
            self.ptr = 0
        else:
            Stream._next += 1
            self.ptr = Stream._next
            Stream._known.add(self.ptr)
        self._previous: list[int] = []

    def __enter__(self) -> Stream:
        self._previous.append(_STATE.stream)
        _STATE.stream = self.ptr
        return self

    def __exit__(self, *exc: object) -> None:
        _STATE.stream = self._previous.pop()

    def synchronize(self) -> None:
        """Everything in the double runs synchronously."""


def _check_stream(ptr: int) -> None:
    if ptr not in Stream._known:
        raise CUDARuntimeError(f"cudaErrorInvalidResourceHandle: no stream {ptr:#x}")


def get_elapsed_time(start_event: Event, end_event: Event) -> float:
    if start_event.recorded_at is None or end_event.recorded_at is None:
        raise CUDARuntimeError("cudaErrorInvalidResourceHandle: event not recorded")
    if start_event.disable_timing or end_event.disable_timing:
        raise CUDARuntimeError("cudaErrorInvalidResourceHandle: event created with disable_timing")
    return (end_event.recorded_at - start_event.recorded_at) * 1e3


@dataclass(frozen=True)
class ModelledClock:
    """A device clock for the double's CUDA events: every cuBLAS GEMM advances its device's clock by
    its operations (2 m n k) / `gemm_tops`, every memsetAsync / memcpyAsync by its bytes /
    `copy_gbs`; nothing else advances it. Events record it instead of the host's clock."""

    gemm_tops: float
    copy_gbs: float

    def __post_init__(self) -> None:
        if not (self.gemm_tops > 0 and self.copy_gbs > 0):
            raise ValueError("a modelled clock needs positive rates")


# The TEST DOUBLE GPU model's speed (benchmark_probe.nvml_double.double_model_gpu): its reference
# row (gpuproof.local.double_gpu) has the same BF16 rate and bandwidth, so its self-measured
# figures sit at the centre of the model's envelope. 5e-6 TFLOPS is below the model's expected
# int8 rate (1.4e-5 TOPS), as a real part's BF16 rate is below its int8 rate: the service does not
# believe a BF16 figure above 1.5x the int8 rate it timed (benchmark_exceeds_proven).
DOUBLE_MODEL_CLOCK = ModelledClock(gemm_tops=5e-6, copy_gbs=10.0)


class _Pool:
    def free_all_blocks(self) -> None:
        """Memory of the double is freed by Python's garbage collector."""


# -- cuBLAS -------------------------------------------------------------------------------------------
def _view(ptr: int, dtype: Any, count: int) -> np.ndarray[Any, Any]:
    nbytes = int(np.dtype(dtype).itemsize * count)
    memory: Any = (ctypes.c_char * nbytes).from_address(ptr)
    view: np.ndarray[Any, Any] = np.frombuffer(memory, dtype=dtype, count=count)
    return view


def _host_scalar(ptr: int, dtype: Any, what: str) -> Any:
    if ptr < LOWEST_HOST_ADDRESS:
        raise CUBLASError(f"CUBLAS_STATUS_INVALID_VALUE: {what}={ptr:#x} is not a host pointer")
    block = _block_at(ptr, 1)
    if block is not None and block.kind == "device":
        raise CUBLASError(f"{what} points into device memory, but the handle's pointer mode is HOST")
    return _view(ptr, dtype, 1)[0]


def _tf32(x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """fp32 rounded to TF32 (10 mantissa bits; to nearest, ties away, as cvt.rna.tf32.f32 does)."""
    u = x.astype(np.float32).view(np.uint32)
    return ((u + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


class _Cublas:
    def __init__(self, double: CupyTestDouble) -> None:
        self._double = double

    def setStream(self, handle: int, stream: int) -> None:
        """cublasSetStream: the handle's later calls run on `stream` (handles are per thread)."""
        self._double._handle_device(handle)
        _check_stream(stream)
        _STATE.cublas_streams[handle] = stream

    def getStream(self, handle: int) -> int:
        self._double._handle_device(handle)
        return _STATE.cublas_streams.get(handle, 0)

    def _matrix(self, ptr: int, dtype_code: int, rows: int, cols: int, ld: int, device: int) -> Any:
        """A column-major rows x cols matrix at ptr with leading dimension ld, as a strided view."""
        if ld < max(1, rows):
            raise CUBLASError(f"CUBLAS_STATUS_INVALID_VALUE: leading dimension {ld} < rows {rows}")
        storage = _STORAGE[dtype_code]
        itemsize = np.dtype(storage).itemsize
        count = ld * (cols - 1) + rows
        block = _block_at(ptr, count * itemsize)
        if block is None or block.kind != "device":
            raise CUBLASError(f"matrix at {ptr:#x} ({count * itemsize} bytes) is not in device memory")
        if block.device != device:
            raise CUBLASError(f"matrix on device {block.device} used by a handle of device {device}")
        flat = _view(ptr, storage, count)
        return np.lib.stride_tricks.as_strided(flat, shape=(rows, cols), strides=(itemsize, ld * itemsize))

    @staticmethod
    def _decode(m: Any, dtype_code: int) -> np.ndarray[Any, Any]:
        if dtype_code == R_16BF:
            return (m.astype(np.uint32) << np.uint32(16)).view(np.float32)  # type: ignore[no-any-return]
        return np.array(m)

    def _run(
        self,
        handle: int,
        transa: int,
        transb: int,
        m: int,
        n: int,
        k: int,
        alpha_ptr: int,
        a: int,
        a_type: int,
        lda: int,
        b: int,
        b_type: int,
        ldb: int,
        beta_ptr: int,
        c: int,
        c_type: int,
        ldc: int,
        compute: int,
    ) -> None:
        device = self._double._handle_device(handle)
        if a_type != b_type:
            raise CUBLASError("CUBLAS_STATUS_NOT_SUPPORTED: A and B types differ")
        if a_type == R_8I and (lda % 4 or ldb % 4 or a % 4 or b % 4):
            # cublasGemmEx's int8 (IMMA) rules: leading dimensions multiples of 4, 4-byte aligned operands
            raise CUBLASError(
                "CUBLAS_STATUS_NOT_SUPPORTED: int8 operands need lda, ldb % 4 == 0 and 4-byte alignment"
            )
        scale = {COMPUTE_32I: np.int32, COMPUTE_16F: np.float16, COMPUTE_64F: np.float64}.get(
            compute, np.float32
        )
        alpha = _host_scalar(alpha_ptr, scale, "alpha")
        beta = _host_scalar(beta_ptr, scale, "beta")
        a_m = self._matrix(a, a_type, *((m, k) if transa == 0 else (k, m)), lda, device)
        b_m = self._matrix(b, b_type, *((k, n) if transb == 0 else (n, k)), ldb, device)
        c_m = self._matrix(c, c_type, m, n, ldc, device)
        op_a = self._decode(a_m, a_type) if transa == 0 else self._decode(a_m, a_type).T
        op_b = self._decode(b_m, b_type) if transb == 0 else self._decode(b_m, b_type).T
        if compute == COMPUTE_32I:
            product = (op_a.astype(np.int64) @ op_b.astype(np.int64)).astype(np.int32)
            out: Any = alpha * product + (beta * c_m.astype(np.int32) if beta else 0)
        else:
            acc: Any = np.float64 if compute == COMPUTE_64F else np.float32
            if compute == COMPUTE_32F_FAST_TF32:
                op_a, op_b = _tf32(op_a), _tf32(op_b)
            product = op_a.astype(acc) @ op_b.astype(acc)
            old = self._decode(c_m, c_type).astype(acc) if beta else 0
            out = acc(alpha) * product + (acc(beta) * old if beta else 0)
        out = self._double.gemm_fault(np.asarray(out)) if self._double.gemm_fault else out
        if c_type == R_16BF:
            c_m[...] = (np.asarray(out, dtype=np.float32).view(np.uint32) >> np.uint32(16)).astype(np.uint16)
        else:
            c_m[...] = np.asarray(out).astype(_STORAGE[c_type])
        if self._double.clock is not None:
            self._double.spend(2 * m * n * k / (self._double.clock.gemm_tops * 1e12))
        self._double.log.append(
            (
                "gemm",
                compute,
                a_type,
                c_type,
                transa,
                transb,
                m,
                n,
                k,
                device,
                _STATE.cublas_streams.get(handle, 0),
            )
        )

    def gemmEx(
        self,
        handle: int,
        transa: int,
        transb: int,
        m: int,
        n: int,
        k: int,
        alpha: int,
        A: int,
        Atype: int,
        lda: int,
        B: int,
        Btype: int,
        ldb: int,
        beta: int,
        C: int,
        Ctype: int,
        ldc: int,
        computeType: int,
        algo: int,
    ) -> None:
        if (computeType, Atype, Ctype) not in GEMM_EX_SUPPORTED:
            raise CUBLASError(f"CUBLAS_STATUS_NOT_SUPPORTED: gemmEx {(computeType, Atype, Ctype)}")
        self._run(
            handle,
            transa,
            transb,
            m,
            n,
            k,
            alpha,
            A,
            Atype,
            lda,
            B,
            Btype,
            ldb,
            beta,
            C,
            Ctype,
            ldc,
            computeType,
        )

    def sgemmEx(
        self,
        handle: int,
        transa: int,
        transb: int,
        m: int,
        n: int,
        k: int,
        alpha: int,
        A: int,
        Atype: int,
        lda: int,
        B: int,
        Btype: int,
        ldb: int,
        beta: int,
        C: int,
        Ctype: int,
        ldc: int,
    ) -> None:
        if (Atype, Ctype) not in SGEMM_EX_SUPPORTED:
            raise CUBLASError(f"CUBLAS_STATUS_NOT_SUPPORTED: sgemmEx {(Atype, Ctype)}")
        self._run(
            handle,
            transa,
            transb,
            m,
            n,
            k,
            alpha,
            A,
            Atype,
            lda,
            B,
            Btype,
            ldb,
            beta,
            C,
            Ctype,
            ldc,
            COMPUTE_32F,
        )


# -- kernels (compiled for the host with g++) -----------------------------------------------------------
_SCALARS = {
    np.dtype(np.int8): ctypes.c_int8,
    np.dtype(np.uint8): ctypes.c_uint8,
    np.dtype(np.int16): ctypes.c_int16,
    np.dtype(np.uint16): ctypes.c_uint16,
    np.dtype(np.int32): ctypes.c_int32,
    np.dtype(np.uint32): ctypes.c_uint32,
    np.dtype(np.int64): ctypes.c_int64,
    np.dtype(np.uint64): ctypes.c_uint64,
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.float64): ctypes.c_double,
}
_BUILD_LOCK = threading.Lock()
_BUILT: dict[str, ctypes.CDLL] = {}
_BUILD_DIR: list[Path] = []


def _build(source: str) -> ctypes.CDLL:
    """Compile C++ source into a shared library once per process (cached by its digest)."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    with _BUILD_LOCK:
        if digest in _BUILT:
            return _BUILT[digest]
        compiler = shutil.which("g++")
        if compiler is None:
            raise RuntimeError("the CUDA test double needs g++ to build kernel source for the host")
        if not _BUILD_DIR:
            _BUILD_DIR.append(Path(tempfile.mkdtemp(prefix="cupy-double-")))
            # A loaded library stays mapped once its file is gone: the folder goes with the process.
            atexit.register(shutil.rmtree, _BUILD_DIR[0], True)
        src = _BUILD_DIR[0] / f"k{digest}.cpp"
        lib = _BUILD_DIR[0] / f"k{digest}.so"
        src.write_text(source)
        done = subprocess.run(  # noqa: S603  (fixed argv: g++ on a file we wrote)
            [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", str(src), "-o", str(lib)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kernel source does not compile:\n{done.stderr[-4000:]}")
        _BUILT[digest] = ctypes.CDLL(str(lib))
        return _BUILT[digest]


def _device_arg(x: DeviceArray, what: str) -> ctypes.c_void_p:
    if x._device != _STATE.device:
        raise CUDARuntimeError(
            f"{what}: array on device {x._device}, kernel launched on device {_STATE.device}"
        )
    if not x.flags.c_contiguous:
        raise ValueError(f"{what}: a non-contiguous array passed to a kernel that indexes it as contiguous")
    return ctypes.c_void_p(int(x.ctypes.data))


_PRELUDE = r"""
#define __CUDACC__ 1
#define __device__
#define __constant__
#define __global__
struct gpuproof_dim3 { unsigned x, y, z; };
static thread_local gpuproof_dim3 blockIdx, blockDim, threadIdx, gridDim;
"""
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')


class _RawFunction:
    def __init__(self, lib: ctypes.CDLL, name: str, log: list[tuple[Any, ...]] | None = None) -> None:
        self._launch = getattr(lib, f"gpuproof_launch_{name}")
        self.name = name
        self._log = log

    def __call__(
        self, grid: tuple[int, ...], block: tuple[int, ...], args: Sequence[Any], stream: Any = None, **_: Any
    ) -> None:
        for what, value in (("grid", grid), ("block", block)):
            if not isinstance(value, tuple):  # CuPy's Function.__call__ types them `tuple`
                raise TypeError(
                    f"Argument '{what}' has incorrect type (expected tuple, got {type(value).__name__})"
                )
        on = _STATE.stream if stream is None else stream.ptr
        _check_stream(on)
        g = (*grid, 1, 1)[:3]
        b = (*block, 1, 1)[:3]
        if b[0] * b[1] * b[2] > 1024:
            raise CUDARuntimeError("cudaErrorInvalidConfiguration: more than 1024 threads per block")
        c_args: list[Any] = [ctypes.c_uint(v) for v in (*g, *b)]
        for k, x in enumerate(args):
            if isinstance(x, DeviceArray):
                c_args.append(_device_arg(x, f"{self.name} argument {k}"))
            elif isinstance(x, np.generic) and x.dtype in _SCALARS:
                c_args.append(_SCALARS[x.dtype](x.item()))
            else:
                raise TypeError(
                    f"{self.name} argument {k}: pass device arrays or numpy scalars, not {type(x)}"
                )
        self._launch(*c_args)
        if self._log is not None:
            self._log.append(("kernel", self.name, _STATE.device, on))


class RawModule:
    """CuPy's RawModule: the CUDA source, built for the host, kernels run thread by thread."""

    def __init__(self, code: str, *, options: tuple[str, ...] = (), **_: Any) -> None:
        if not isinstance(options, tuple):  # CuPy's RawModule types it `tuple options=()`
            raise TypeError(
                f"Argument 'options' has incorrect type (expected tuple, got {type(options).__name__})"
            )
        if "__syncthreads" in code or "__shared__" in code:
            raise NotImplementedError("the double runs threads one at a time: no shared memory or barriers")
        launchers = []
        for name, params in _KERNEL.findall(code):
            names = [p.split()[-1].lstrip("*") for p in params.split(",") if p.strip()]
            launchers.append(
                f'extern "C" void gpuproof_launch_{name}(unsigned gx, unsigned gy, unsigned gz, '
                f"unsigned bx, unsigned by, unsigned bz, {params}) {{\n"
                "  gridDim = {gx, gy, gz}; blockDim = {bx, by, bz};\n"
                "  for (unsigned z = 0; z < gz; ++z) for (unsigned y = 0; y < gy; ++y)\n"
                "  for (unsigned x = 0; x < gx; ++x) for (unsigned tz = 0; tz < bz; ++tz)\n"
                "  for (unsigned ty = 0; ty < by; ++ty) for (unsigned tx = 0; tx < bx; ++tx) {\n"
                "    blockIdx = {x, y, z}; threadIdx = {tx, ty, tz};\n"
                f"    {name}({', '.join(names)});\n"
                "  }\n}\n"
            )
        if not launchers:
            raise NotImplementedError('no extern "C" __global__ kernels found in the module source')
        self._lib = _build(_PRELUDE + code + "\n" + "".join(launchers))

    def get_function(self, name: str) -> _RawFunction:
        return _RawFunction(self._lib, name, self._log)

    _log: list[tuple[Any, ...]] | None = None


# -- the module -------------------------------------------------------------------------------------------
class _RandomState:
    def __init__(self, seed: int) -> None:
        self._rs = np.random.RandomState(seed % 2**32)

    def randint(self, low: int, high: int | None = None, size: Any = None, dtype: Any = int) -> DeviceArray:
        return _device_array(self._rs.randint(low, high, size=size, dtype=dtype))


@dataclass
class CupyTestDouble:
    """Module-like fake of `cupy` over a list of fake GPUs (same PCI ids and UUIDs as the NVML double).

    `gemm_fault`, when set, rewrites every GEMM's result before it is stored (a lying GPU).
    `log` records each GEMM, copy and kernel launch, with its device and stream: what the code
    asked the hardware to do.
    `device_memory_bytes`, when set, is every fake GPU's memory, enforced (see the module's notes);
    `peak_bytes` then records the most each device held at once.
    `build_gate`, when set, is called with a RawModule's source before it is built, on the building
    thread: a test holds or fails a build there (NVRTC's seconds, or its error).
    """

    gpus: list[FakeGpu]
    gemm_fault: Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]] | None = None
    l2_bytes: int = L2_BYTES
    log: list[tuple[Any, ...]] = field(default_factory=list)
    clock: ModelledClock | None = None
    # Seconds of modelled device time per device (advanced only with a `clock`).
    device_seconds: dict[int, float] = field(default_factory=dict)
    device_memory_bytes: int | None = None
    allocated_bytes: dict[int, int] = field(default_factory=dict)
    peak_bytes: dict[int, int] = field(default_factory=dict)
    build_gate: Callable[[str], None] | None = None

    float16, float32, float64 = np.float16, np.float32, np.float64
    int8, int16, int32, int64 = np.int8, np.int16, np.int32, np.int64
    uint8, uint16, uint32, uint64 = np.uint8, np.uint16, np.uint32, np.uint64
    ndarray = DeviceArray
    RawModule = RawModule
    __version__ = "test-double"

    @classmethod
    def for_gpus(cls, gpus: Sequence[FakeGpu], **kwargs: Any) -> CupyTestDouble:
        return cls(list(gpus), **kwargs)

    def __post_init__(self) -> None:
        double = self

        class Device:
            def __init__(self, device: int | None = None) -> None:
                self.id = _STATE.device if device is None else int(device)
                if not 0 <= self.id < len(double.gpus):
                    raise CUDARuntimeError(f"cudaErrorInvalidDevice: device {self.id}")
                self._previous: list[int] = []

            def __enter__(self) -> Device:
                self._previous.append(_STATE.device)
                _STATE.device = self.id
                return self

            def __exit__(self, *exc: object) -> None:
                _STATE.device = self._previous.pop()

            def synchronize(self) -> None:
                """Everything in the double runs synchronously."""

        class ClockedEvent(Event):
            """An event of this double: the host's clock, or the double's modelled device clock."""

            def record(self, stream: Stream | None = None) -> None:
                super().record(stream)
                if double.clock is not None:
                    self.recorded_at = double.device_seconds.get(_STATE.device, 0.0)

        runtime = SimpleNamespace(
            memcpyHostToHost=H2H,
            memcpyHostToDevice=H2D,
            memcpyDeviceToHost=D2H,
            memcpyDeviceToDevice=D2D,
            memcpyDefault=DEFAULT,
            getDeviceCount=lambda: len(self.gpus),
            getDeviceProperties=self._properties,
            deviceGetPCIBusId=self._bus_id,
            deviceGetByPCIBusId=self._by_bus_id,
            memsetAsync=self._memset,
            memcpyAsync=self._memcpy,
            memcpy2DAsync=self._memcpy2d,
            memGetInfo=self._mem_info,
            CUDARuntimeError=CUDARuntimeError,
        )
        self._memory_lock = FinalizerSafeLock()  # `_release` runs from finalizers
        pinned_pool, pool = _Pool(), _Pool()
        self.cuda = SimpleNamespace(
            Device=Device,
            Stream=Stream,
            Event=ClockedEvent,
            get_elapsed_time=get_elapsed_time,
            runtime=runtime,
            cublas=_Cublas(self),
            device=SimpleNamespace(get_cublas_handle=lambda: 0xCB00 + _STATE.device),
            alloc_pinned_memory=self._alloc_pinned,
            memory=SimpleNamespace(OutOfMemoryError=OutOfMemoryError),
        )

        class LoggedRawModule(RawModule):
            """This double's RawModule: its launches go to the double's log; its build passes the
            double's `build_gate` first."""

            _log = double.log

            def __init__(self, code: str, *, options: tuple[str, ...] = (), **kwargs: Any) -> None:
                if double.build_gate is not None:
                    double.build_gate(code)
                super().__init__(code, options=options, **kwargs)

        self.RawModule = LoggedRawModule
        self.random = SimpleNamespace(RandomState=_RandomState)
        self.get_default_memory_pool = lambda: pool
        self.get_default_pinned_memory_pool = lambda: pinned_pool

    # -- runtime ------------------------------------------------------------------------------------
    def _gpu(self, ordinal: int) -> FakeGpu:
        if not 0 <= ordinal < len(self.gpus):
            raise CUDARuntimeError(f"cudaErrorInvalidDevice: device {ordinal}")
        return self.gpus[ordinal]

    def _properties(self, device: int) -> dict[str, Any]:
        gpu = self._gpu(device)
        domain, bus, rest = gpu.pci_bus_id.split(":")
        return {
            "name": gpu.name.encode(),
            "totalGlobalMem": gpu.memory_total_bytes - cuda_reserved_bytes(gpu.memory_total_bytes),
            "multiProcessorCount": gpu.sm_count,
            "l2CacheSize": self.l2_bytes,
            # CuPy converts the char[16] as a C string: it ends at the first 0x00 byte (on Linux the
            # field after it, luid, is zero, so a UUID without 0x00 comes back as exactly 16 bytes).
            "uuid": bytes.fromhex(gpu.uuid.removeprefix("GPU-").replace("-", "")).split(b"\0")[0],
            "pciDomainID": int(domain, 16),
            "pciBusID": int(bus, 16),
            "pciDeviceID": int(rest.split(".")[0], 16),
            "major": gpu.compute_capability[0],
            "minor": gpu.compute_capability[1],
        }

    def _bus_id(self, device: int) -> str:
        props = self._properties(device)
        return f"{props['pciDomainID']:04x}:{props['pciBusID']:02x}:{props['pciDeviceID']:02x}.0"

    def _by_bus_id(self, pci_bus_id: str) -> int:
        def key(text: str) -> tuple[int, ...]:
            domain, bus, rest = text.split(":")
            device, function = rest.split(".")
            return int(domain, 16), int(bus, 16), int(device, 16), int(function, 16)

        try:
            wanted = key(pci_bus_id)
        except ValueError as exc:
            raise CUDARuntimeError(f"cudaErrorInvalidValue: PCI bus id {pci_bus_id!r}") from exc
        for ordinal, gpu in enumerate(self.gpus):
            if key(gpu.pci_bus_id) == wanted:
                return ordinal
        raise CUDARuntimeError(f"cudaErrorInvalidDevice: no device at {pci_bus_id}")

    def spend(self, seconds: float) -> None:
        """Advance the current device's modelled clock (no-op without a `clock`)."""
        if self.clock is not None:
            device = _STATE.device
            self.device_seconds[device] = self.device_seconds.get(device, 0.0) + seconds

    def _spend_bytes(self, nbytes: int) -> None:
        if self.clock is not None:
            self.spend(nbytes / (self.clock.copy_gbs * 1e9))

    def _handle_device(self, handle: int) -> int:
        device = handle - 0xCB00
        if device != _STATE.device:
            raise CUBLASError(
                f"cuBLAS handle of device {device} used while device {_STATE.device} is current"
            )
        return device

    def _memset(self, ptr: int, value: int, size: int, stream: int) -> None:
        _check_stream(stream)
        block = _block_at(ptr, size)
        if block is None or block.kind != "device":
            raise CUDARuntimeError(
                f"cudaErrorInvalidValue: memset of {size} bytes at {ptr:#x} outside device memory"
            )
        ctypes.memset(ptr, value, size)
        self._spend_bytes(size)

    @staticmethod
    def _check_copy(dst: int, dst_span: int, src: int, src_span: int, kind: int, stream: int) -> bool:
        """A copy's stream and both spans' memory as its kind says (CUDA's refusals); whether either
        side is pinned."""
        _check_stream(stream)
        to, frm = _block_at(dst, dst_span), _block_at(src, src_span)
        on_device = {H2D: (True, False), D2H: (False, True), D2D: (True, True), H2H: (False, False)}
        if kind not in on_device:
            raise NotImplementedError(f"memcpy kind {kind}")
        want_dst, want_src = on_device[kind]
        for where, block, want in (("destination", to, want_dst), ("source", frm, want_src)):
            is_device = block is not None and block.kind == "device"
            if is_device != want:
                raise CUDARuntimeError(
                    f"cudaErrorInvalidValue: {where} {'not ' if want else ''}in device memory"
                )
        return any(b is not None and b.kind == "pinned" for b in (to, frm))

    def _memcpy(self, dst: int, src: int, size: int, kind: int, stream: int) -> None:
        pinned = self._check_copy(dst, size, src, size, kind, stream)
        ctypes.memmove(dst, src, size)
        self._spend_bytes(size)
        self.log.append(("memcpy", kind, size, pinned, stream))

    def _memcpy2d(
        self, dst: int, dpitch: int, src: int, spitch: int, width: int, height: int, kind: int, stream: int
    ) -> None:
        """cudaMemcpy2DAsync: `height` rows of `width` bytes, `spitch` apart in the source and
        `dpitch` in the destination (each pitch >= width, as CUDA requires); logged as one copy of
        width x height bytes, checked as the whole span on each side."""
        if height <= 0 or width <= 0:
            return
        if dpitch < width or spitch < width:
            raise CUDARuntimeError("cudaErrorInvalidPitchValue: a pitch below the width")
        spans = (dpitch * (height - 1) + width, spitch * (height - 1) + width)
        pinned = self._check_copy(dst, spans[0], src, spans[1], kind, stream)
        for row in range(height):
            ctypes.memmove(dst + row * dpitch, src + row * spitch, width)
        self._spend_bytes(width * height)
        self.log.append(("memcpy", kind, width * height, pinned, stream))

    def _alloc_pinned(self, size: int) -> _PinnedBuffer:
        buffer = _PinnedBuffer(size)
        address = ctypes.addressof((ctypes.c_char * size).from_buffer(buffer)) if size else 0
        if size:
            _register(buffer, "pinned", -1, address, size)
        return buffer

    # -- arrays -------------------------------------------------------------------------------------
    def _mem_info(self) -> tuple[int, int]:
        """cudaMemGetInfo on the current device: (free, total) bytes."""
        total = self.device_memory_bytes
        if total is None:
            total = self._properties(_STATE.device)["totalGlobalMem"]
        with self._memory_lock:  # releases queued by finalizers counted first
            used = self.allocated_bytes.get(_STATE.device, 0)
        return max(0, total - used), total

    def _new(self, nbytes: int, make: Callable[[], DeviceArray]) -> DeviceArray:
        """An allocation of nbytes on the current device, refused beyond `device_memory_bytes`."""
        device = _STATE.device
        if self.device_memory_bytes is not None:
            with self._memory_lock:
                used = self.allocated_bytes.get(device, 0)
                if used + nbytes > self.device_memory_bytes:
                    raise OutOfMemoryError(
                        f"Out of memory allocating {nbytes:,} bytes (allocated so far: {used:,} bytes)."
                    )
                self.allocated_bytes[device] = used + nbytes
                self.peak_bytes[device] = max(self.peak_bytes.get(device, 0), used + nbytes)
        array = make()
        if self.device_memory_bytes is not None and nbytes:
            weakref.finalize(_owner(array), self._release, device, nbytes)
        return array

    def _release(self, device: int, nbytes: int) -> None:
        def update() -> None:
            self.allocated_bytes[device] = self.allocated_bytes.get(device, 0) - nbytes

        self._memory_lock.call(update)

    @staticmethod
    def _nbytes(shape: Any, dtype: Any) -> int:
        return int(np.prod(shape, dtype=np.int64)) * int(np.dtype(dtype).itemsize)

    def empty(self, shape: Any, dtype: Any = np.float64) -> DeviceArray:
        return self._new(self._nbytes(shape, dtype), lambda: _device_array(np.empty(shape, dtype=dtype)))

    def zeros(self, shape: Any, dtype: Any = np.float64) -> DeviceArray:
        return self._new(self._nbytes(shape, dtype), lambda: _device_array(np.zeros(shape, dtype=dtype)))

    def ones(self, shape: Any, dtype: Any = np.float64) -> DeviceArray:
        return self._new(self._nbytes(shape, dtype), lambda: _device_array(np.ones(shape, dtype=dtype)))

    def arange(self, start: Any, stop: Any = None, step: Any = 1, dtype: Any = None) -> DeviceArray:
        host = (
            np.arange(start, stop, step, dtype=dtype) if stop is not None else np.arange(start, dtype=dtype)
        )
        return self._new(host.nbytes, lambda: _device_array(host))

    def empty_like(self, prototype: DeviceArray, dtype: Any = None) -> DeviceArray:
        return self.empty(prototype.shape, dtype=dtype or prototype.dtype)

    def matmul(self, x1: DeviceArray, x2: DeviceArray, /, out: DeviceArray | None = None) -> DeviceArray:
        """cupy.matmul (cuBLAS underneath in CuPy); here numpy's, in the operands' precision."""
        product = np.matmul(*(self._on_device(x).view(np.ndarray) for x in (x1, x2)))
        if out is None:
            return _device_array(product)
        out[...] = product
        return out

    def copyto(self, dst: DeviceArray, src: DeviceArray) -> None:
        self._on_device(dst)[...] = self._on_device(src)

    @staticmethod
    def _on_device(x: Any) -> DeviceArray:
        if not isinstance(x, DeviceArray):
            raise TypeError(f"Unsupported type {type(x)}")
        return x

    def asarray(self, a: Any, dtype: Any = None) -> DeviceArray:
        if (
            isinstance(a, DeviceArray)
            and (dtype is None or np.dtype(dtype) == a.dtype)
            and a._device == _STATE.device
        ):
            return a
        plain = a.view(np.ndarray) if isinstance(a, DeviceArray) else np.asarray(a)
        nbytes = plain.size * np.dtype(dtype or plain.dtype).itemsize
        return self._new(nbytes, lambda: _device_array(plain, dtype))

    def ascontiguousarray(self, a: DeviceArray, dtype: Any = None) -> DeviceArray:
        if a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
            return a
        nbytes = a.size * np.dtype(dtype or a.dtype).itemsize
        return self._new(nbytes, lambda: _device_array(a, dtype))

    def asnumpy(self, a: Any) -> np.ndarray[Any, Any]:
        if isinstance(a, DeviceArray):
            return a.get()
        return np.asarray(a)

    def array_equal(self, a1: DeviceArray, a2: DeviceArray) -> DeviceArray:
        for x in (a1, a2):
            if not isinstance(x, DeviceArray):
                raise TypeError(f"Unsupported type {type(x)}")
        return _device_array(np.array(np.array_equal(a1.view(np.ndarray), a2.view(np.ndarray))))
