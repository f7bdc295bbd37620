"""Merkle trees over row digests: domain-separated SHA-256, padded to a power of two."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_LEAF = hashlib.sha256(b"\x02").digest()


def leaf_hash(packed_row: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + packed_row).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def depth(n: int) -> int:
    """Tree depth for n leaves: ceil(log2 n), 0 for one leaf."""
    return max(0, (n - 1).bit_length())


def levels(leaves: Sequence[bytes], height: int | None = None) -> list[list[bytes]]:
    """All levels, leaves first, padded with EMPTY_LEAF to 2**height leaves (default: depth(n))."""
    h = depth(len(leaves)) if height is None else height
    if len(leaves) > 2**h:
        raise ValueError("more leaves than the tree holds")
    level = list(leaves) + [EMPTY_LEAF] * (2**h - len(leaves))
    out = [level]
    while len(level) > 1:
        level = [node_hash(level[k], level[k + 1]) for k in range(0, len(level), 2)]
        out.append(level)
    return out


def path(tree: list[list[bytes]], index: int) -> list[bytes]:
    """Sibling digests from the leaf level upward."""
    out = []
    for level in tree[:-1]:
        out.append(level[index ^ 1])
        index >>= 1
    return out


def root_from_path(leaf: bytes, index: int, siblings: Sequence[bytes]) -> bytes:
    node = leaf
    for sibling in siblings:
        node = node_hash(sibling, node) if index & 1 else node_hash(node, sibling)
        index >>= 1
    return node


def verify_path(leaf: bytes, index: int, n: int, siblings: Sequence[bytes], root: bytes) -> bool:
    """True when `siblings` lead from `leaf` at `index` to `root` in a tree of n (padded) leaves."""
    if not 0 <= index < n or len(siblings) != depth(n):
        return False
    return root_from_path(leaf, index, siblings) == root
