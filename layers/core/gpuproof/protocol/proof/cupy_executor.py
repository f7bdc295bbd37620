"""The chain on an NVIDIA GPU with CuPy: fp16 operands, fp32-accumulate GEMM, hashing on the device.

NOT YET RUN ON A GPU (none was available when it was written). Its code runs in the tests against
the CUDA test double (benchmark_probe/cupy_double.py: the same cuBLAS calls, and the same kernel
source built with g++), giving the numpy executor's roots and rows; `commit` checks its first step
against numpy before going on (a number from unverified work is never reported). CuPy is imported
lazily so that importing this module never needs a GPU; `cupy=` takes the double.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from gpuproof.protocol.proof import merkle
from gpuproof.protocol.proof.epilogue_kernels import MAX_Q, RECENTRE_PACK_SOURCE
from gpuproof.protocol.proof.executor import (
    ChainCommit,
    DigestArray,
    RecomputedRows,
    clamp_keep_level,
    wanted_rows,
)
from gpuproof.protocol.proof.matrices import ROW_DOMAIN, TAG_A0, TAG_B, gen_matrix, gen_rows, recentre
from gpuproof.protocol.proof.models import ProofParams
from gpuproof.protocol.proof.sha256_kernels import SHA256_SOURCE
from gpuproof.protocol.proof.shake_kernels import RATE_BYTES, SHAKE_ROWS_SOURCE

T = TypeVar("T")

CUDA_R_16F = 2  # cudaDataType_t values (library_types.h)
CUDA_R_32F = 0
THREADS = 256
SELF_CHECK_ROWS = 4
WARM_ROWS = 64


class CupyExecutor:
    """One GPU per gpu_index (device id = devices[gpu_index] or gpu_index).

    Memory per GPU: A fp16 (2 n d, twice while a step writes the next) + C fp32 (4 n d) + packed
    rows (n d / 2) + B (3 d d) + one padded tree (64 n): about 8.5 n d bytes, 8.5 GiB at
    n = 2**18, d = 4096.
    Host memory: level `keep_level` of every tree, 32 * n / 2**keep_level bytes per step.
    A_0 and B are generated on the device (one SHAKE-128 thread per row, shake_kernels.py): on the
    host, hashlib holds the GIL and 2**18 rows take seconds, more than SETUP_S in params.py allows.
    Sampled rows of B and A_0 are checked against hashlib before the first step.
    """

    name = "cupy-gpu"

    def __init__(self, devices: Mapping[int, int] | None = None, cupy: Any = None) -> None:
        if cupy is None:
            import cupy as module  # fail early, with CuPy's own message, when it is missing

            cupy = module
        self._cp: Any = cupy  # the module, or a CUDA test double with the same slice of its API
        self.devices = dict(devices or {})
        self._modules: dict[int, Any] = {}
        # One thread per device runs all of that device's work: CuPy keeps cuBLAS handles per thread,
        # so the handle `prepare` creates is the one `commit` uses (none is created in the timed window).
        self._workers: dict[int, ThreadPoolExecutor] = {}
        self._workers_lock = threading.Lock()

    def _on_device(self, device: int, work: Callable[[], T]) -> Future[T]:
        with self._workers_lock:
            if device not in self._workers:
                self._workers[device] = ThreadPoolExecutor(1, thread_name_prefix=f"gpu{device}")
            worker = self._workers[device]

        def run() -> T:
            with self._cp.cuda.Device(device):
                return work()

        return worker.submit(run)

    def prepare(self, gpu_indices: Sequence[int]) -> None:
        """CUDA context, cuBLAS handle and heuristics, NVRTC builds: one tiny chain step per GPU, on
        the thread that will run that GPU's chain. All GPUs at once.

        The service times the proof from the challenge's issue, so none of this may fall inside it.
        """
        devices = sorted({self.devices.get(i, i) for i in gpu_indices})
        warming = [self._on_device(d, functools.partial(self._warm, d)) for d in devices]
        for future in warming:
            future.result()

    def _warm(self, device: int) -> None:
        cupy = self._cp
        module = self._kernels(device)
        a8 = self._seeded(module, b"\0" * 32, TAG_A0, WARM_ROWS, WARM_ROWS, 7)
        a16 = a8.astype(cupy.float16)
        c32 = cupy.empty((WARM_ROWS, WARM_ROWS), dtype=cupy.float32)
        self._gemm(a16, a16, c32)
        _, packed = self._recentre_pack(module, c32, 1, 7)
        self._tree(packed, WARM_ROWS, 0, module)
        cupy.cuda.Device().synchronize()

    def _device(self, params: ProofParams) -> int:
        return self.devices.get(params.gpu_index, params.gpu_index)

    def _kernels(self, device: int) -> Any:
        cupy = self._cp
        if device not in self._modules:
            source = SHA256_SOURCE + SHAKE_ROWS_SOURCE + RECENTRE_PACK_SOURCE
            self._modules[device] = cupy.RawModule(code=source, options=("--std=c++11",))
        return self._modules[device]

    def _gemm(self, a16: Any, b16: Any, c32: Any) -> None:
        """c32 (r x d, fp32) = a16 (r x d, fp16) . b16 (d x d, fp16), fp32 accumulate (tensor cores).

        Row-major C = A.B is column-major C^T = B^T.A^T, hence B first.
        """
        cupy = self._cp
        cublas = cupy.cuda.cublas
        r, d = a16.shape
        handle = cupy.cuda.device.get_cublas_handle()
        # CuPy's sgemmEx takes alpha and beta as host pointers (size_t), read under the handle's
        # default host pointer mode. No Python floats: Cython 0.29 casts 1.0 to address 0x1, no TypeError.
        one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
        cublas.sgemmEx(
            handle,
            0,  # CUBLAS_OP_N
            0,  # CUBLAS_OP_N
            d,
            r,
            d,
            one.ctypes.data,
            b16.data.ptr,
            CUDA_R_16F,
            d,
            a16.data.ptr,
            CUDA_R_16F,
            d,
            zero.ctypes.data,
            c32.data.ptr,
            CUDA_R_32F,
            d,
        )

    def _recentre_pack(self, module: Any, c32: Any, step: int, q: int) -> tuple[Any, Any]:
        """A_t (fp16) and the packed leaf bytes from C_t, in one kernel (epilogue_kernels.py)."""
        cupy = self._cp
        rows, d = c32.shape
        if d % 2 or q > MAX_Q:
            raise ValueError("packing needs an even row length and q <= 16")
        a_bits = cupy.empty((rows, d), dtype=cupy.uint16)
        packed = cupy.empty((rows, d // 2), dtype=cupy.uint8)
        pairs = rows * d // 2
        module.get_function("recentre_pack")(
            ((pairs + THREADS - 1) // THREADS,),
            (THREADS,),
            (c32, np.uint64(pairs), np.int32(step), np.int32(q), a_bits, packed),
        )
        return a_bits.view(cupy.float16), packed

    def _tree(self, packed: Any, n: int, keep_level: int, module: Any) -> tuple[bytes, DigestArray]:
        cupy = self._cp
        depth = merkle.depth(n)
        level = cupy.empty((2**depth, 32), dtype=cupy.uint8)
        level[n:] = cupy.asarray(np.frombuffer(merkle.EMPTY_LEAF, dtype=np.uint8))
        leaf = module.get_function("leaf_hashes")
        leaf(
            ((n + THREADS - 1) // THREADS,),
            (THREADS,),
            (packed, np.uint32(packed.shape[1]), np.uint32(n), level),
        )
        node = module.get_function("node_hashes")
        kept = cupy.asnumpy(level) if keep_level == 0 else None
        for height in range(1, depth + 1):
            parents = level.shape[0] // 2
            up = cupy.empty((parents, 32), dtype=cupy.uint8)
            node(((parents + THREADS - 1) // THREADS,), (THREADS,), (level, np.uint32(parents), up))
            level = up
            if height == keep_level:
                kept = cupy.asnumpy(level)
        assert kept is not None
        return bytes(cupy.asnumpy(level[0]).tobytes()), kept

    def _seeded(self, module: Any, seed: bytes, tag: bytes, rows: int, d: int, q: int) -> Any:
        """Rows 0..rows-1 of a seeded matrix (int8), generated on the device (`matrices.gen_rows`)."""
        cupy = self._cp
        prefix = ROW_DOMAIN + seed + tag
        if len(prefix) + 4 >= RATE_BYTES:
            raise ValueError("the row message must fit one SHAKE-128 block")
        out = cupy.empty((rows, d), dtype=cupy.int8)
        module.get_function("seeded_rows")(
            ((rows + THREADS - 1) // THREADS,),
            (THREADS,),
            (
                cupy.asarray(np.frombuffer(prefix, dtype=np.uint8)),
                np.uint32(len(prefix)),
                np.uint32(0),
                np.uint32(rows),
                np.uint32(d),
                np.uint32(q),
                out,
            ),
        )
        return out

    def commit(self, seed: bytes, params: ProofParams, keep_level: int) -> ChainCommit:
        """The chain of one GPU, run on that GPU's own thread (see `prepare`)."""
        device = self._device(params)
        return self._on_device(device, lambda: self._commit(device, seed, params, keep_level)).result()

    def _commit(self, device: int, seed: bytes, params: ProofParams, keep_level: int) -> ChainCommit:
        """On the device's thread, with the device current."""
        cupy = self._cp
        keep_level = clamp_keep_level(params, keep_level)
        module = self._kernels(device)
        start = time.perf_counter()
        b8 = self._seeded(module, seed, TAG_B, params.d, params.d, params.q)
        a8 = self._seeded(module, seed, TAG_A0, params.n, params.d, params.q)
        self._check_generated(seed, params, a8, b8)
        b16, a16 = b8.astype(cupy.float16), a8.astype(cupy.float16)
        del a8
        c32 = cupy.empty((params.n, params.d), dtype=cupy.float32)
        roots: list[bytes] = []
        kept: list[DigestArray] = []
        for t in range(1, params.steps + 1):
            self._gemm(a16, b16, c32)
            if t == 1:
                self._check_first_product(seed, params, b8, c32)
            a16, packed = self._recentre_pack(module, c32, t, params.q)
            root, level = self._tree(packed, params.n, keep_level, module)
            roots.append(root)
            kept.append(level)
        cupy.cuda.Device().synchronize()
        return ChainCommit(roots, kept, keep_level, time.perf_counter() - start)

    @staticmethod
    def _sample_rows(count: int) -> list[int]:
        """First, middle and last rows: a generation kernel's bug shows in any row; a few suffice."""
        return sorted({0, 1, count // 2, count - 1} & set(range(count)))

    def _check_generated(self, seed: bytes, params: ProofParams, a8: Any, b8: Any) -> None:
        """Sampled rows of B and A_0 from the device must be hashlib's SHAKE-128 rows, byte for byte.
        (Inside the timed window: a few rows, not all of B, whose host generation alone costs ~0.2 s.)"""
        cupy = self._cp
        for tag, device_rows, count in ((TAG_B, b8, params.d), (TAG_A0, a8, params.n)):
            rows = self._sample_rows(count)
            want = gen_rows(seed, tag, rows, params.d, params.q)
            if not np.array_equal(cupy.asnumpy(device_rows[rows]), want):
                raise RuntimeError(
                    "GPU row generation differs from SHAKE-128 on the host: refusing to commit"
                )

    def _check_first_product(self, seed: bytes, params: ProofParams, b8: Any, c32: Any) -> None:
        """Sampled rows of C_1 against the host product, in float32: exact here (|sums| < 2**24,
        ProofParams checks it) and a BLAS call, where an int64 product takes ~0.6 s at d = 4096."""
        cupy = self._cp
        rows = self._sample_rows(params.n)
        a_host = gen_rows(seed, TAG_A0, rows, params.d, params.q).astype(np.float32)
        want = a_host @ cupy.asnumpy(b8).astype(np.float32)
        got = cupy.asnumpy(c32[rows])
        if not np.array_equal(got, want):
            raise RuntimeError(
                "GPU GEMM is not exact on the first rows: refusing to commit (check cuBLAS math mode)"
            )

    def recompute(
        self,
        seed: bytes,
        params: ProofParams,
        want_a: Mapping[int, Sequence[int]],
        want_c: Mapping[int, Sequence[int]],
    ) -> RecomputedRows:
        """Only the wanted rows' chains (rows are independent): r x d GEMMs through the needed steps."""
        if not wanted_rows(want_a, want_c)[0]:
            return RecomputedRows()
        device = self._device(params)
        return self._on_device(device, lambda: self._recompute(device, seed, params, want_a, want_c)).result()

    def _recompute(
        self,
        device: int,
        seed: bytes,
        params: ProofParams,
        want_a: Mapping[int, Sequence[int]],
        want_c: Mapping[int, Sequence[int]],
    ) -> RecomputedRows:
        cupy = self._cp
        out = RecomputedRows()
        rows, where, last = wanted_rows(want_a, want_c)
        module = self._kernels(device)
        b16 = cupy.asarray(gen_matrix(seed, TAG_B, params.d, params.d, params.q), dtype=cupy.float16)
        a_host = gen_rows(seed, TAG_A0, rows, params.d, params.q)
        a16 = cupy.asarray(a_host, dtype=cupy.float16)
        c32 = cupy.empty((len(rows), params.d), dtype=cupy.float32)
        for i in want_a.get(0, ()):
            out.a[(0, i)] = a_host[where[i]].copy()
        for t in range(1, last + 1):
            self._gemm(a16, b16, c32)
            if t in want_c:  # copy back only the rows asked for at this step, not all of C_t
                c_host = cupy.asnumpy(c32[[where[i] for i in want_c[t]]])
                for k, i in enumerate(want_c[t]):
                    out.c[(t, i)] = c_host[k].astype(np.int32)
            if t in want_a:
                a_now = recentre(cupy.asnumpy(c32[[where[i] for i in want_a[t]]]), t, params.q)
                for k, i in enumerate(want_a[t]):
                    out.a[(t, i)] = a_now[k].copy()
            a16, _ = self._recentre_pack(module, c32, t, params.q)
        return out
