"""The commitment's hash chain over step roots, and the service's draw of (step, row) pairs (m = 72)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from gpuproof.protocol.proof.matrices import u32
from gpuproof.protocol.proof.models import GpuPairs, Pair, ProofParams, SignedCommitment

CHAIN_DOMAIN = b"gpuproof/chain/v2"
PAIRS_DOMAIN = b"gpuproof/pairs/v1"


def chain_start(seed: bytes) -> bytes:
    """H_0 = SHA-256(CHAIN_DOMAIN || seed). (The shape is the service's params, and the seed binds
    nonce, machine and GPU; the transcript header repeats the shape and must match the params.)"""
    return hashlib.sha256(CHAIN_DOMAIN + seed).digest()


def chain_next(previous: bytes, root: bytes) -> bytes:
    """H_t = SHA-256(H_{t-1} || root_t)."""
    return hashlib.sha256(previous + root).digest()


def chain_value(seed: bytes, roots: Sequence[bytes]) -> bytes:
    """H_T over the roots of steps 1..T."""
    h = chain_start(seed)
    for root in roots:
        h = chain_next(h, root)
    return h


def draw_pairs(commitment_bytes: bytes, secret: bytes, params: ProofParams) -> list[Pair]:
    """`params.checks` distinct (step, row) pairs, uniform over steps 1..T x rows 0..n-1.

    Deterministic in its inputs so a transcript can be replayed; the service passes a fresh
    secret drawn only after the signed commitment arrived. Draw k (k = 0, 1, ...):
    h = SHA-256(PAIRS_DOMAIN || u32le len(secret) || secret || SHA-256(commitment_bytes)
    || u32le gpu_index || u32le k); step = 1 + (u64le h[0:8] mod T); row = u64le h[8:16] mod n;
    a pair already drawn is skipped. If checks >= T * n every pair is returned.
    """
    total = params.steps * params.n
    if params.checks >= total:
        return [Pair(step=t, row=i) for t in range(1, params.steps + 1) for i in range(params.n)]
    prefix = (
        PAIRS_DOMAIN
        + u32(len(secret))
        + secret
        + hashlib.sha256(commitment_bytes).digest()
        + u32(params.gpu_index)
    )
    seen: set[tuple[int, int]] = set()
    out: list[Pair] = []
    k = 0
    while len(out) < params.checks:
        h = hashlib.sha256(prefix + u32(k)).digest()
        k += 1
        step = 1 + int.from_bytes(h[0:8], "little") % params.steps
        row = int.from_bytes(h[8:16], "little") % params.n
        if (step, row) in seen:
            continue
        seen.add((step, row))
        out.append(Pair(step=step, row=row))
    return out


def draw_all_pairs(signed: SignedCommitment, secret: bytes, params: Sequence[ProofParams]) -> list[GpuPairs]:
    """Pairs for every GPU of a commitment (commitment_bytes = its signing bytes)."""
    data = signed.commitment.signing_bytes()
    return [GpuPairs(gpu_index=p.gpu_index, pairs=draw_pairs(data, secret, p)) for p in params]
