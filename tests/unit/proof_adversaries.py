"""Adversarial provers of protocol v2 (issue 11), shared by tests/unit/test_proof_adversaries.py and
scripts/proof_soundness.py.

A strategy decides the rows it COMMITS (A_1..A_T; A_0 is the seed's) and what it computes. Whatever
it committed, an opened pair (t, i) is the committed rows A_{t-1}[i] and A_t[i] themselves (nothing
else is sent): that passes exactly when the transition is consistent (A_t[i] = g_t(A_{t-1}[i]
. B_t + A_0[i])), and fails the mod-17 product check otherwise (up to 17^-8). So every strategy is judged by
its set of wrong transitions W: P(accept) = prod_{j<m} (N - W - j) / (N - j), N = n T.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import (
    GpuCommitment,
    GpuOpenings,
    GpuPairs,
    Pair,
    ProofParams,
    RowOpening,
    SignedCommitment,
    ThroughputCommitment,
    ThroughputProof,
)
from gpuproof.protocol.proof.executor import leaves_of, step_product
from gpuproof.protocol.proof.matrices import (
    TAG_A0,
    TAG_B,
    b_seed,
    gen_matrix,
    gpu_seed,
    permutation,
    recentre,
)
from gpuproof.protocol.proof.merkle import depth, levels, path
from gpuproof.protocol.proof.transcript import chain_value

Rows = npt.NDArray[np.int8]


@dataclass
class Forgery:
    """What a strategy committed for one GPU: A_0..A_T (A_0 the seeded anchor) and its work."""

    name: str
    chain: list[Rows]
    products: int  # row products v . B_t it computed (N for an honest prover)


class Seeds(NamedTuple):
    """One GPU's seeds: its own (`gpu_seed`: A_0, permutations, root chain) and the challenge's B
    seed (`b_seed`, shared by the host's GPUs)."""

    gpu: bytes
    b: bytes


def b_steps(seed: Seeds, p: ProofParams) -> list[npt.NDArray[np.float32]]:
    """B_t for t = 1..T (index 0 unused)."""
    b = gen_matrix(seed.b, TAG_B, p.d, p.d).astype(np.float32)
    return [b, *(b[permutation(seed.gpu, t, p.d)] for t in range(1, p.steps + 1))]


def step(a_prev: Rows, bt: npt.NDArray[np.float32], a0: Rows, t: int) -> Rows:
    return recentre(step_product(a_prev, bt, a0), t)


def honest(seed: Seeds, p: ProofParams) -> Forgery:
    a0 = gen_matrix(seed.gpu, TAG_A0, p.n, p.d)
    bts = b_steps(seed, p)
    chain = [a0]
    for t in range(1, p.steps + 1):
        chain.append(step(chain[-1], bts[t], a0, t))
    return Forgery("honest", chain, p.n * p.steps)


def wrong_transitions(seed: Seeds, p: ProofParams, chain: Sequence[Rows]) -> npt.NDArray[np.bool_]:
    """(T, n): True where the committed A_t[i] is not g_t(A_{t-1}[i] . B_t + A_0[i])."""
    a0 = gen_matrix(seed.gpu, TAG_A0, p.n, p.d)
    bts = b_steps(seed, p)
    out = np.zeros((p.steps, p.n), dtype=bool)
    for t in range(1, p.steps + 1):
        out[t - 1] = (step(chain[t - 1], bts[t], a0, t) != chain[t]).any(axis=1)
    return out


# --- strategies --------------------------------------------------------------------------------
def collapse(seed: Seeds, p: ProofParams) -> Forgery:
    """The v1 forgery: every row of A_t is row 0's chain v_t (one row product per step)."""
    a0 = gen_matrix(seed.gpu, TAG_A0, p.n, p.d)
    bts = b_steps(seed, p)
    v = a0[:1]
    chain = [a0]
    for t in range(1, p.steps + 1):
        v = step(v, bts[t], a0[:1], t)
        chain.append(np.repeat(v, p.n, axis=0))
    return Forgery("row collapse", chain, p.steps)


def reset(seed: Seeds, p: ProofParams, s: int, r: int = 0) -> Forgery:
    """A_s := A_r (r < s; r = 0 is a reset to the anchor), the chain computed honestly around it."""
    a0 = gen_matrix(seed.gpu, TAG_A0, p.n, p.d)
    bts = b_steps(seed, p)
    chain = [a0]
    for t in range(1, p.steps + 1):
        chain.append(chain[r].copy() if t == s else step(chain[-1], bts[t], a0, t))
    return Forgery(f"reset A_{s} := A_{r}", chain, p.n * (p.steps - 1))


def replay(seed: Seeds, p: ProofParams, s: int, r: int = 0) -> Forgery:
    """The v1 replay: steps s.. are a copy of steps r.. (A_{s+j} := A_{r+j}): only steps up to s - 1
    computed, the tail copied."""
    a0 = gen_matrix(seed.gpu, TAG_A0, p.n, p.d)
    bts = b_steps(seed, p)
    chain = [a0]
    for t in range(1, s):
        chain.append(step(chain[-1], bts[t], a0, t))
    for t in range(s, p.steps + 1):
        chain.append(chain[r + t - s].copy())
    return Forgery(f"replay A_{s}.. := A_{r}..", chain, p.n * (s - 1))


def partial(seed: Seeds, p: ProofParams, eps: float, salt: int) -> Forgery:
    """Skips round(eps N) row products chosen at random: those rows are random, every other
    transition computed from the rows committed before it."""
    a0 = gen_matrix(seed.gpu, TAG_A0, p.n, p.d)
    bts = b_steps(seed, p)
    rng = np.random.default_rng(salt)
    total = p.n * p.steps
    skipped = set(rng.permutation(total)[: round(eps * total)].tolist())
    chain = [a0]
    for t in range(1, p.steps + 1):
        a = step(chain[-1], bts[t], a0, t)
        for i in range(p.n):
            if (t - 1) * p.n + i in skipped:
                a[i] = rng.integers(-8, 9, size=p.d)
        chain.append(a)
    return Forgery(f"partial work, eps = {eps:g}", chain, total - len(skipped))


def copy_rows(seed: Seeds, p: ProofParams, eps: float, salt: int) -> Forgery:
    """The tight case of the bound (c = 2): skips a fraction eps of the products with only eps/2 of
    the transitions wrong. For each chosen (t, i) (t < T), it commits A_t[i] := A_t[j] (a copy of
    another row of the same step: wrong, no product) and then computes (t+1, i) from the product it
    already has for (t+1, j): A_{t+1}[i] = g(A_t[j] . B_{t+1} + A_0[i]) is consistent for free."""
    a0 = gen_matrix(seed.gpu, TAG_A0, p.n, p.d)
    bts = b_steps(seed, p)
    rng = np.random.default_rng(salt)
    slots = [(t, i) for t in range(1, p.steps, 2) for i in range(1, p.n)]  # odd t: copies never chain
    copies = round(eps * p.n * p.steps / 2)
    if copies > len(slots):
        raise ValueError("eps too large for this shape")
    chosen = {slots[k] for k in rng.permutation(len(slots))[:copies].tolist()}
    chain = [a0]
    for t in range(1, p.steps + 1):
        a = step(chain[-1], bts[t], a0, t)  # rows whose input is a copy reuse row 0's product
        for i in range(p.n):
            if (t, i) in chosen:
                a[i] = a[0]
        chain.append(a)
    return Forgery(f"copied rows, eps = {eps:g}", chain, p.n * p.steps - 2 * len(chosen))


def lazy(seed: Seeds, p: ProofParams, salt: int) -> Forgery:
    """Commits random rows and computes only what is opened (after the draw: too late)."""
    rng = np.random.default_rng(salt)
    a0 = gen_matrix(seed.gpu, TAG_A0, p.n, p.d)
    chain = [a0, *(rng.integers(-8, 9, size=(p.n, p.d)).astype(np.int8) for _ in range(p.steps))]
    return Forgery("lazy openings", chain, 0)


def borrowed(name: str, other_seed: Seeds, p: ProofParams) -> Forgery:
    """Commits the honest rows of another seed: another GPU of the host (cross-GPU) or another
    challenge (cross-challenge). The anchor A_0 stays this seed's."""
    return Forgery(name, honest(other_seed, p).chain, 0)


# --- a full transcript from committed rows -----------------------------------------------------
@dataclass
class Committed:
    params: ProofParams
    seed: Seeds
    forgery: Forgery
    roots: list[bytes]
    trees: list[list[list[bytes]]]


def commit(seed: Seeds, p: ProofParams, forgery: Forgery) -> Committed:
    trees = [levels(leaves_of(forgery.chain[t]), depth(p.n)) for t in range(1, p.steps + 1)]
    return Committed(p, seed, forgery, [tree[-1][0] for tree in trees], trees)


def opening(c: Committed, pair: Pair, bts: Sequence[npt.NDArray[np.float32]]) -> RowOpening:
    """The strategy's best answer: k of the product of its own committed A_{t-1}[i]."""
    t, i = pair.step, pair.row
    chain = c.forgery.chain
    return RowOpening(
        step=t,
        row=i,
        a_prev=None if t == 1 else chain[t - 1][i].tolist(),
        a_prev_path=[] if t == 1 else [s.hex() for s in path(c.trees[t - 2], i)],
        a_row=chain[t][i].tolist(),
        a_path=[s.hex() for s in path(c.trees[t - 1], i)],
    )


def signed_commitment(
    key: SigningKey, nonce: bytes, challenge_id: str, committed: Sequence[Committed]
) -> SignedCommitment:
    gpus = [
        GpuCommitment(gpu_index=c.params.gpu_index, chain=chain_value(c.seed.gpu, c.roots).hex())
        for c in committed
    ]
    commitment = ThroughputCommitment(
        machine_id=key.public_hex, challenge_id=challenge_id, nonce=nonce.hex(), gpus=gpus
    )
    return SignedCommitment.sign(commitment, key)


def proof_for(
    signed: SignedCommitment, committed: Sequence[Committed], pairs: Sequence[GpuPairs]
) -> ThroughputProof:
    groups = []
    for c, gp in zip(committed, pairs, strict=True):
        bts = b_steps(c.seed, c.params)
        groups.append(
            GpuOpenings(
                gpu_index=c.params.gpu_index,
                roots=[r.hex() for r in c.roots],
                openings=[opening(c, pair, bts) for pair in gp.pairs],
            )
        )
    return ThroughputProof(
        commitment=signed.commitment, signature=signed.signature, pairs=list(pairs), openings=groups
    )


# --- predictions and intervals -----------------------------------------------------------------
def hypergeometric(total: int, bad: int, checks: int) -> float:
    """P(no bad transition among `checks` distinct uniform draws of `total`)."""
    return math.prod((total - bad - k) / (total - k) for k in range(min(checks, total)))


def wilson(accepted: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    p = accepted / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    denom = 1 + z * z / trials
    return max(0.0, (centre - spread) / denom), min(1.0, (centre + spread) / denom)


Strategy = Callable[[Seeds, ProofParams], Forgery]


def seed_of(nonce: bytes, machine_id: str, gpu_index: int) -> Seeds:
    return Seeds(gpu_seed(nonce, machine_id, gpu_index), b_seed(nonce, machine_id))
