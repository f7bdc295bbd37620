"""Merkle trees of the proof: padding, paths, tampering."""

from __future__ import annotations

import hashlib

import pytest

from gpuproof.protocol.proof import merkle


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(bytes([k]) * 8) for k in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 9, 17])
def test_every_path_verifies(n: int) -> None:
    tree = merkle.levels(_leaves(n))
    root = tree[-1][0]
    assert len(tree[0]) == 2 ** merkle.depth(n)
    for i, leaf in enumerate(_leaves(n)):
        path = merkle.path(tree, i)
        assert len(path) == merkle.depth(n)
        assert merkle.verify_path(leaf, i, n, path, root)


def test_padding_is_the_empty_leaf_and_domains_differ() -> None:
    tree = merkle.levels(_leaves(3))
    assert tree[0][3] == merkle.EMPTY_LEAF == hashlib.sha256(b"\x02").digest()
    assert tree[1][1] == merkle.node_hash(tree[0][2], merkle.EMPTY_LEAF)
    assert merkle.leaf_hash(b"ab") != merkle.node_hash(b"a", b"b")


def test_tampered_paths_fail() -> None:
    n = 6
    tree = merkle.levels(_leaves(n))
    root = tree[-1][0]
    leaf = _leaves(n)[4]
    path = merkle.path(tree, 4)
    assert not merkle.verify_path(leaf, 5, n, path, root)  # wrong index
    assert not merkle.verify_path(leaf, 4, n, path[:-1], root)  # short path
    assert not merkle.verify_path(leaf, 4, n, [path[0][::-1], *path[1:]], root)
    assert not merkle.verify_path(merkle.leaf_hash(b"other"), 4, n, path, root)
    assert not merkle.verify_path(leaf, 6, n, path, root)  # a padding position is never a row


def test_subtree_level_composes_with_upper_levels() -> None:
    n, h = 13, 2
    full = merkle.levels(_leaves(n))
    upper = merkle.levels(full[h])
    assert upper[-1][0] == full[-1][0]
    sub = merkle.levels(_leaves(n)[12:13], h)  # last, partial subtree: padded the same way
    assert sub[-1][0] == full[h][3]
