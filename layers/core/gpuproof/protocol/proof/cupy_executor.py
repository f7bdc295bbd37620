"""The v2 chain on an NVIDIA GPU with CuPy: int8 x int8 -> int32 GEMM (cuBLAS gemmEx, the fastest exact
path), the per-step row gather of B by pi_t, anchor + recentre + 5-bit packing in one epilogue kernel,
and the Merkle trees hashed on the device.

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
from gpuproof.protocol.proof.epilogue_kernels import ANCHOR_RECENTRE_PACK_SOURCE
from gpuproof.protocol.proof.executor import (
    ChainCommit,
    DigestArray,
    RecomputedRows,
    clamp_keep_level,
    step_product,
    wanted_rows,
)
from gpuproof.protocol.proof.matrices import (
    PACK_GROUP,
    ROW_DOMAIN,
    TAG_A0,
    TAG_B,
    Q,
    gen_rows,
    packed_row_bytes,
    permutation,
)
from gpuproof.protocol.proof.models import ProofParams
from gpuproof.protocol.proof.sha256_kernels import SHA256_SOURCE
from gpuproof.protocol.proof.shake_kernels import RATE_BYTES, SHAKE_ROWS_SOURCE

T = TypeVar("T")

CUDA_R_8I = 3  # cudaDataType_t values (library_types.h)
CUDA_R_32I = 10
CUBLAS_COMPUTE_32I = 72  # cublasComputeType_t
CUBLAS_GEMM_DEFAULT = -1
THREADS = 256
SELF_CHECK_ROWS = 4
WARM_ROWS = 64


class CupyExecutor:
    """One GPU per gpu_index (device id = devices[gpu_index] or gpu_index).

    Memory per GPU: A_0 and two A buffers int8 (3 n d) + C int32 (4 n d) + packed rows (5 n d / 8)
    + B and B_t int8 (2 d d) + one padded tree (64 n): about 7.7 n d bytes, 7.7 GiB at
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

    @property
    def cupy(self) -> Any:
        """The CuPy module this executor runs on (or the CUDA test double)."""
        return self._cp

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
        a8 = self._seeded(module, b"\0" * 32, TAG_A0, WARM_ROWS, WARM_ROWS)
        c32 = cupy.empty((WARM_ROWS, WARM_ROWS), dtype=cupy.int32)
        self._gemm(a8, a8, c32)
        out = cupy.empty_like(a8)
        packed = self._epilogue(module, c32, a8, 1, out)
        self._tree(packed, WARM_ROWS, 0, module)
        cupy.cuda.Device().synchronize()

    def _device(self, params: ProofParams) -> int:
        return self.devices.get(params.gpu_index, params.gpu_index)

    def _kernels(self, device: int) -> Any:
        cupy = self._cp
        if device not in self._modules:
            source = SHA256_SOURCE + SHAKE_ROWS_SOURCE + ANCHOR_RECENTRE_PACK_SOURCE
            self._modules[device] = cupy.RawModule(code=source, options=("--std=c++11",))
        return self._modules[device]

    def _gemm(self, a8: Any, b8: Any, c32: Any) -> None:
        """c32 (r x d, int32) = a8 (r x d, int8) . b8 (d x d, int8): cuBLAS gemmEx, CUBLAS_COMPUTE_32I
        (int8 tensor cores, int32 accumulate: exact for any summation order, |sums| < 2**31).

        Row-major C = A.B is column-major C^T = B^T.A^T, hence B first. d % 4 == 0 (d % 8 == 0 in
        v2) meets gemmEx's int8 rules on leading dimensions and alignment.
        """
        cupy = self._cp
        cublas = cupy.cuda.cublas
        r, d = a8.shape
        handle = cupy.cuda.device.get_cublas_handle()
        # Host pointers to int32 scalars (the compute type's scale type), read under the handle's
        # default host pointer mode. No Python ints: Cython would take them as addresses.
        one, zero = np.ones(1, np.int32), np.zeros(1, np.int32)
        cublas.gemmEx(
            handle,
            0,  # CUBLAS_OP_N
            0,  # CUBLAS_OP_N
            d,
            r,
            d,
            one.ctypes.data,
            b8.data.ptr,
            CUDA_R_8I,
            d,
            a8.data.ptr,
            CUDA_R_8I,
            d,
            zero.ctypes.data,
            c32.data.ptr,
            CUDA_R_32I,
            d,
            CUBLAS_COMPUTE_32I,
            CUBLAS_GEMM_DEFAULT,
        )

    def _epilogue(self, module: Any, c32: Any, a0: Any, step: int, out: Any) -> Any:
        """A_t = g_t(C + A_0) into `out` (int8) and the packed leaf bytes, in one kernel."""
        cupy = self._cp
        rows, d = c32.shape
        if d % PACK_GROUP:
            raise ValueError("packing needs rows of a multiple of 8 entries")
        packed = cupy.empty((rows, packed_row_bytes(d)), dtype=cupy.uint8)
        groups = rows * d // PACK_GROUP
        module.get_function("anchor_recentre_pack")(
            ((groups + THREADS - 1) // THREADS,),
            (THREADS,),
            (c32, a0, np.uint64(groups), np.int32(step), out, packed),
        )
        return packed

    def _b_step(self, b8: Any, seed: bytes, step: int, d: int) -> Any:
        """B_t = B with rows gathered by pi_t (a d x d device gather; pi_t from SHAKE-128 on the host)."""
        cupy = self._cp
        return cupy.ascontiguousarray(b8[cupy.asarray(permutation(seed, step, d))])

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

    def _seeded(self, module: Any, seed: bytes, tag: bytes, rows: int, d: int) -> Any:
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
                np.uint32(Q),
                out,
            ),
        )
        return out

    def commit(self, seed: bytes, b_seed: bytes, params: ProofParams, keep_level: int) -> ChainCommit:
        """The chain of one GPU, run on that GPU's own thread (see `prepare`)."""
        device = self._device(params)
        return self._on_device(
            device, lambda: self._commit(device, seed, b_seed, params, keep_level)
        ).result()

    def _commit(
        self, device: int, seed: bytes, b_seed: bytes, params: ProofParams, keep_level: int
    ) -> ChainCommit:
        """On the device's thread, with the device current."""
        cupy = self._cp
        keep_level = clamp_keep_level(params, keep_level)
        module = self._kernels(device)
        start = time.perf_counter()
        b8 = self._seeded(module, b_seed, TAG_B, params.d, params.d)
        a0 = self._seeded(module, seed, TAG_A0, params.n, params.d)
        self._check_generated(seed, b_seed, params, a0, b8)
        c32 = cupy.empty((params.n, params.d), dtype=cupy.int32)
        buffers = [cupy.empty_like(a0), cupy.empty_like(a0)]
        a8 = a0  # the first step's operand is A_0 itself
        roots: list[bytes] = []
        kept: list[DigestArray] = []
        for t in range(1, params.steps + 1):
            b_t = self._b_step(b8, seed, t, params.d)
            self._gemm(a8, b_t, c32)
            if t == 1:
                self._check_first_product(seed, params, b_t, c32)
            a8 = buffers[t % 2]
            packed = self._epilogue(module, c32, a0, t, a8)
            root, level = self._tree(packed, params.n, keep_level, module)
            roots.append(root)
            kept.append(level)
        cupy.cuda.Device().synchronize()
        return ChainCommit(roots, kept, keep_level, time.perf_counter() - start)

    @staticmethod
    def _sample_rows(count: int) -> list[int]:
        """First, middle and last rows: a generation kernel's bug shows in any row; a few suffice."""
        return sorted({0, 1, count // 2, count - 1} & set(range(count)))

    def _check_generated(self, seed: bytes, b_seed: bytes, params: ProofParams, a8: Any, b8: Any) -> None:
        """Sampled rows of B and A_0 from the device must be hashlib's SHAKE-128 rows, byte for byte.
        (Inside the timed window: a few rows, not all of B, whose host generation alone costs ~0.2 s.)"""
        cupy = self._cp
        for tag, tag_seed, device_rows, count in (
            (TAG_B, b_seed, b8, params.d),
            (TAG_A0, seed, a8, params.n),
        ):
            rows = self._sample_rows(count)
            want = gen_rows(tag_seed, tag, rows, params.d)
            if not np.array_equal(cupy.asnumpy(device_rows[rows]), want):
                raise RuntimeError(
                    "GPU row generation differs from SHAKE-128 on the host: refusing to commit"
                )

    def _check_first_product(self, seed: bytes, params: ProofParams, b_t: Any, c32: Any) -> None:
        """Sampled rows of C_1 = A_0 . B_1 + A_0 against the host's float32 product (exact here:
        |sums| < 2**24), where an int64 product takes ~0.6 s at d = 4096."""
        cupy = self._cp
        rows = self._sample_rows(params.n)
        a_host = gen_rows(seed, TAG_A0, rows, params.d)
        want = step_product(a_host, cupy.asnumpy(b_t).astype(np.float32), a_host)
        got = cupy.asnumpy(c32[rows]).astype(np.int32) + a_host.astype(np.int32)
        if not np.array_equal(got, want):
            raise RuntimeError(
                "GPU int8 GEMM is not exact on the first rows: refusing to commit (check cuBLAS gemmEx)"
            )

    def recompute(
        self,
        seed: bytes,
        b_seed: bytes,
        params: ProofParams,
        want_a: Mapping[int, Sequence[int]],
        want_c: Mapping[int, Sequence[int]],
    ) -> RecomputedRows:
        """Only the wanted rows' chains (rows are independent): r x d GEMMs through the needed steps."""
        if not wanted_rows(want_a, want_c)[0]:
            return RecomputedRows()
        device = self._device(params)
        return self._on_device(
            device, lambda: self._recompute(device, seed, b_seed, params, want_a, want_c)
        ).result()

    def _recompute(
        self,
        device: int,
        seed: bytes,
        b_seed: bytes,
        params: ProofParams,
        want_a: Mapping[int, Sequence[int]],
        want_c: Mapping[int, Sequence[int]],
    ) -> RecomputedRows:
        cupy = self._cp
        out = RecomputedRows()
        rows, where, last = wanted_rows(want_a, want_c)
        module = self._kernels(device)
        b8 = self._seeded(module, b_seed, TAG_B, params.d, params.d)  # on the device: ms, not ~0.2 s of host
        a0_host = gen_rows(seed, TAG_A0, rows, params.d)
        a0 = cupy.asarray(a0_host)
        a8 = a0
        c32 = cupy.empty((len(rows), params.d), dtype=cupy.int32)
        for i in want_a.get(0, ()):
            out.a[(0, i)] = a0_host[where[i]].copy()
        for t in range(1, last + 1):
            self._gemm(a8, self._b_step(b8, seed, t, params.d), c32)
            if t in want_c:  # copy back only the rows asked for at this step, not all of C_t
                idx = [where[i] for i in want_c[t]]
                c_host = cupy.asnumpy(c32[idx]).astype(np.int32) + a0_host[idx].astype(np.int32)
                for k, i in enumerate(want_c[t]):
                    out.c[(t, i)] = c_host[k]
            a8 = cupy.empty_like(a0)
            self._epilogue(module, c32, a0, t, a8)
            if t in want_a:
                a_now = cupy.asnumpy(a8[[where[i] for i in want_a[t]]])
                for k, i in enumerate(want_a[t]):
                    out.a[(t, i)] = a_now[k].astype(np.int8).copy()
        return out
