"""The batch Merkle tree: blake2b-256, domain-separated leaves and nodes, odd nodes promoted.

leaf = blake2_256(0x00 ‖ SCALE(VerdictRecord)); node = blake2_256(0x01 ‖ left ‖ right).
A level with an odd count carries its last node up unchanged (never duplicated), so no two
different leaf lists share a root. A proof is (leaf_index, leaf_count, siblings bottom-up).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

HASH_BYTES = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=HASH_BYTES).digest()


def leaf_hash(record: bytes) -> bytes:
    return blake2_256(LEAF_PREFIX + record)


def node_hash(left: bytes, right: bytes) -> bytes:
    return blake2_256(NODE_PREFIX + left + right)


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    out = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        out.append(level[-1])
    return out


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root over leaf hashes; an empty batch has no root (refused upstream)."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    level = list(leaves)
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


@dataclass(frozen=True)
class MerkleProof:
    leaf_index: int
    leaf_count: int
    siblings: tuple[bytes, ...]


def merkle_proof(leaves: Sequence[bytes], index: int) -> MerkleProof:
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is outside a tree of {len(leaves)}")
    siblings: list[bytes] = []
    level = list(leaves)
    i = index
    while len(level) > 1:
        if i % 2 == 1:
            siblings.append(level[i - 1])
        elif i + 1 < len(level):
            siblings.append(level[i + 1])
        level = _next_level(level)
        i //= 2
    return MerkleProof(leaf_index=index, leaf_count=len(leaves), siblings=tuple(siblings))


def root_from_proof(leaf: bytes, proof: MerkleProof) -> bytes | None:
    """The root that `leaf` and `proof` lead to; None when the proof's shape is wrong."""
    if not 0 <= proof.leaf_index < proof.leaf_count:
        return None
    h, i, n, k = leaf, proof.leaf_index, proof.leaf_count, 0
    while n > 1:
        if i % 2 == 1 or i + 1 < n:
            if k >= len(proof.siblings):
                return None
            sibling = proof.siblings[k]
            k += 1
            h = node_hash(sibling, h) if i % 2 == 1 else node_hash(h, sibling)
        i //= 2
        n = (n + 1) // 2
    return h if k == len(proof.siblings) else None


def verify_proof(leaf: bytes, proof: MerkleProof, root: bytes) -> bool:
    got = root_from_proof(leaf, proof)
    return got is not None and hmac.compare_digest(got, root)
