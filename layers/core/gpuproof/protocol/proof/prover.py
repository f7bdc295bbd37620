"""The prover the probe runs: one chain per GPU, a signed-ready commitment (H_T per GPU), then the
transcript (roots and openings)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from gpuproof.protocol.proof import merkle
from gpuproof.protocol.proof.executor import ChainCommit, ProofExecutor, RecomputedRows, leaves_of
from gpuproof.protocol.proof.matrices import b_seed, gpu_seed
from gpuproof.protocol.proof.models import (
    GpuCommitment,
    GpuOpenings,
    GpuPairs,
    Pair,
    ProofParams,
    RowOpening,
    ThroughputCommitment,
)
from gpuproof.protocol.proof.transcript import chain_value

DEFAULT_KEEP_LEVEL = 6  # 64-row subtrees: kept digests are n/64 * 32 bytes per step


class Prover:
    """Runs the chains of every GPU (in parallel threads when `parallel`) and opens drawn pairs."""

    def __init__(
        self,
        nonce: bytes,
        machine_id: str,
        challenge_id: str,
        params: Sequence[ProofParams],
        executor: ProofExecutor,
        *,
        keep_level: int = DEFAULT_KEEP_LEVEL,
        parallel: bool = False,
    ) -> None:
        if len({p.gpu_index for p in params}) != len(params):
            raise ValueError("one ProofParams per gpu_index")
        self.nonce = nonce
        self.machine_id = machine_id
        self.challenge_id = challenge_id
        self.params = list(params)
        self.executor = executor
        self.keep_level = keep_level
        self.parallel = parallel
        self._seeds = {p.gpu_index: gpu_seed(nonce, machine_id, p.gpu_index) for p in self.params}
        self._b_seed = b_seed(nonce, machine_id)  # B is the challenge's: every GPU multiplies by it
        self._chains: dict[int, ChainCommit] = {}

    def _commit_one(self, params: ProofParams) -> ChainCommit:
        return self.executor.commit(self._seeds[params.gpu_index], self._b_seed, params, self.keep_level)

    def run(self) -> ThroughputCommitment:
        """Run every GPU's chain; the commitment carries H_T per GPU (`elapsed` has the prover's
        own timings, informative only: the service times the proof)."""
        if self.parallel and len(self.params) > 1:
            with ThreadPoolExecutor(max_workers=len(self.params)) as pool:
                chains = list(pool.map(self._commit_one, self.params))
        else:
            chains = [self._commit_one(p) for p in self.params]
        gpus = []
        for params, chain in zip(self.params, chains, strict=True):
            self._chains[params.gpu_index] = chain
            seed = self._seeds[params.gpu_index]
            gpus.append(GpuCommitment(gpu_index=params.gpu_index, chain=chain_value(seed, chain.roots).hex()))
        return ThroughputCommitment(
            machine_id=self.machine_id, challenge_id=self.challenge_id, nonce=self.nonce.hex(), gpus=gpus
        )

    @property
    def elapsed(self) -> dict[int, float]:
        """Self-measured seconds per GPU of the last run (informative only)."""
        return {g: c.elapsed_s for g, c in self._chains.items()}

    def open(self, pairs_by_gpu: Sequence[GpuPairs]) -> list[GpuOpenings]:
        """The transcript: per GPU its roots and one opening per drawn pair, in the drawn order."""
        by_index = {p.gpu_index: p for p in self.params}
        out = []
        for gpu_pairs in pairs_by_gpu:
            params = by_index.get(gpu_pairs.gpu_index)
            chain = self._chains.get(gpu_pairs.gpu_index)
            if params is None or chain is None:
                raise ValueError(f"no chain was run for gpu {gpu_pairs.gpu_index}")
            out.append(
                GpuOpenings(
                    gpu_index=params.gpu_index,
                    roots=[r.hex() for r in chain.roots],
                    openings=self._open_gpu(params, chain, gpu_pairs.pairs),
                )
            )
        return out

    def _open_gpu(self, params: ProofParams, chain: ChainCommit, pairs: Sequence[Pair]) -> list[RowOpening]:
        h = chain.keep_level
        for pair in pairs:
            if not (1 <= pair.step <= params.steps and 0 <= pair.row < params.n):
                raise ValueError(f"pair {pair} is outside the chain")
        want_a: dict[int, set[int]] = defaultdict(set)
        want_c: dict[int, set[int]] = defaultdict(set)
        for pair in pairs:
            sub = _subtree_rows(pair.row, h, params.n)
            want_a[pair.step].update(sub)
            if pair.step > 1:
                want_a[pair.step - 1].update(sub)
            want_c[pair.step].add(pair.row)
        rows = self.executor.recompute(
            self._seeds[params.gpu_index],
            self._b_seed,
            params,
            {t: sorted(v) for t, v in want_a.items()},
            {t: sorted(v) for t, v in want_c.items()},
        )
        upper: dict[int, list[list[bytes]]] = {}

        def path_at(step: int, row: int) -> list[str]:
            sub = _subtree_rows(row, h, params.n)
            leaves = leaves_of(_stack(rows, step, sub))
            inner = merkle.path(merkle.levels(leaves, h), row - (row >> h << h))
            if step not in upper:
                kept = chain.kept[step - 1]
                upper[step] = merkle.levels([kept[k].tobytes() for k in range(kept.shape[0])])
            outer = merkle.path(upper[step], row >> h)
            return [s.hex() for s in inner + outer]

        openings = []
        for pair in pairs:
            t, i = pair.step, pair.row
            openings.append(
                RowOpening(
                    step=t,
                    row=i,
                    a_prev=None if t == 1 else rows.a[(t - 1, i)].tolist(),
                    a_prev_path=[] if t == 1 else path_at(t - 1, i),
                    a_row=rows.a[(t, i)].tolist(),
                    a_path=path_at(t, i),
                )
            )
        return openings


def _subtree_rows(row: int, h: int, n: int) -> list[int]:
    start = row >> h << h
    return list(range(start, min(start + (1 << h), n)))


def _stack(rows: RecomputedRows, step: int, sub: Sequence[int]) -> npt.NDArray[np.int8]:
    return np.stack([rows.a[(step, i)] for i in sub])
