"""Where the chain runs (v2: C_t = A_{t-1} . B_t + A_0, A_t = g_t(C_t)): the executor interface,
and the numpy executor for CPUs, CI and tests."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from gpuproof.protocol.proof import merkle
from gpuproof.protocol.proof.matrices import (
    TAG_A0,
    TAG_B,
    gen_matrix,
    gen_rows,
    pack_rows,
    permutation,
    recentre,
)
from gpuproof.protocol.proof.models import ProofParams

DigestArray = npt.NDArray[np.uint8]  # shape (m, 32)


@dataclass
class ChainCommit:
    """One GPU's committed chain: root of A_t for t = 1..T, and level `keep_level` of each tree.

    Keeping a level h of every tree (2**(depth-h) digests per step) instead of every leaf lets a
    prover open any row later by recomputing only the 2**h rows of its subtree (row i of A_t
    depends only on row i of A_{t-1} and its own anchor A_0[i]), so memory stays small at GPU sizes.
    """

    roots: list[bytes]
    kept: list[DigestArray]
    keep_level: int
    elapsed_s: float


@dataclass
class RecomputedRows:
    """Rows recomputed for openings: a[(t, i)] = A_t[i] (int8), c[(t, i)] = C_t[i] (int32)."""

    a: dict[tuple[int, int], npt.NDArray[np.int8]] = field(default_factory=dict)
    c: dict[tuple[int, int], npt.NDArray[np.int32]] = field(default_factory=dict)


class ProofExecutor(Protocol):
    """Runs one GPU's chain and recomputes chosen rows of it. One call per GPU; may run in threads.
    `seed` is the GPU's own (`gpu_seed`: A_0, permutations), `b_seed` the challenge's (`b_seed`: B,
    the same for every GPU of the host)."""

    name: str

    def prepare(self, gpu_indices: Sequence[int]) -> None:
        """One-off costs (context, libraries, kernel builds), paid BEFORE the challenge is taken."""
        ...

    def commit(self, seed: bytes, b_seed: bytes, params: ProofParams, keep_level: int) -> ChainCommit: ...

    def recompute(
        self,
        seed: bytes,
        b_seed: bytes,
        params: ProofParams,
        want_a: Mapping[int, Sequence[int]],
        want_c: Mapping[int, Sequence[int]],
    ) -> RecomputedRows: ...


def step_tree_from_leaves(leaves: Sequence[bytes], n: int, keep_level: int) -> tuple[bytes, DigestArray]:
    """Root and level `keep_level` of the padded tree over one step's leaves."""
    tree = merkle.levels(leaves, merkle.depth(n))
    kept = np.frombuffer(b"".join(tree[keep_level]), dtype=np.uint8).reshape(-1, 32)
    return tree[-1][0], kept


def leaves_of(a: npt.NDArray[np.int8]) -> list[bytes]:
    packed = pack_rows(a)
    return [merkle.leaf_hash(packed[i].tobytes()) for i in range(packed.shape[0])]


def wanted_rows(
    want_a: Mapping[int, Sequence[int]], want_c: Mapping[int, Sequence[int]]
) -> tuple[list[int], dict[int, int], int]:
    """The rows an opening needs, each row's position among them, and the last step to compute."""
    rows = sorted({i for wanted in (want_a, want_c) for v in wanted.values() for i in v})
    last = max([*want_a.keys(), *want_c.keys()], default=0)
    return rows, {row: k for k, row in enumerate(rows)}, last


def clamp_keep_level(params: ProofParams, keep_level: int) -> int:
    return max(0, min(keep_level, merkle.depth(params.n)))


def step_product(
    a_prev: npt.NDArray[np.int8], b_t: npt.NDArray[np.float32], a0: npt.NDArray[np.int8]
) -> npt.NDArray[np.int32]:
    """C_t = A_{t-1} . B_t + A_0 exactly: float32 partial sums stay below 2**24 (d <= 8192)."""
    return (a_prev.astype(np.float32) @ b_t).astype(np.int32) + a0.astype(np.int32)


class NumpyExecutor:
    """The chain on the CPU: int8 storage, float32 GEMM (exact, see ProofParams), hashlib digests."""

    name = "numpy-cpu"

    def prepare(self, gpu_indices: Sequence[int]) -> None:
        """Nothing to set up on the CPU."""

    def next_rows(self, step: int, rows: Sequence[int], c: npt.NDArray[np.int32]) -> npt.NDArray[np.int8]:
        """A_t for the given rows from C_t. Tests override it to build dishonest provers."""
        return recentre(c, step)

    def commit(self, seed: bytes, b_seed: bytes, params: ProofParams, keep_level: int) -> ChainCommit:
        start = time.perf_counter()
        keep_level = clamp_keep_level(params, keep_level)
        b = gen_matrix(b_seed, TAG_B, params.d, params.d).astype(np.float32)
        a0 = gen_matrix(seed, TAG_A0, params.n, params.d)
        a = a0
        rows = range(params.n)
        roots: list[bytes] = []
        kept: list[DigestArray] = []
        for t in range(1, params.steps + 1):
            c = step_product(a, b[permutation(seed, t, params.d)], a0)
            a = self.next_rows(t, rows, c)
            root, level = step_tree_from_leaves(leaves_of(a), params.n, keep_level)
            roots.append(root)
            kept.append(level)
        return ChainCommit(roots, kept, keep_level, time.perf_counter() - start)

    def recompute(
        self,
        seed: bytes,
        b_seed: bytes,
        params: ProofParams,
        want_a: Mapping[int, Sequence[int]],
        want_c: Mapping[int, Sequence[int]],
    ) -> RecomputedRows:
        out = RecomputedRows()
        rows, where, last = wanted_rows(want_a, want_c)
        if not rows:
            return out
        b = gen_matrix(b_seed, TAG_B, params.d, params.d).astype(np.float32)
        a0 = gen_rows(seed, TAG_A0, rows, params.d)
        a = a0
        for i in want_a.get(0, ()):
            out.a[(0, i)] = a[where[i]].copy()
        for t in range(1, last + 1):
            c = step_product(a, b[permutation(seed, t, params.d)], a0)
            for i in want_c.get(t, ()):
                out.c[(t, i)] = c[where[i]].copy()
            a = self.next_rows(t, rows, c)
            for i in want_a.get(t, ()):
                out.a[(t, i)] = a[where[i]].copy()
        return out
