"""Seeded matrices: rows regenerable alone, ranges, exactness, packing, binding of the seed."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from gpuproof.protocol.proof import matrices
from gpuproof.protocol.proof.matrices import (
    TAG_A0,
    TAG_B,
    gen_matrix,
    gen_rows,
    gpu_seed,
    pack_rows,
    recentre,
)

NONCE = bytes(range(32))
MACHINE = "11" * 32


def test_seed_binds_nonce_machine_and_gpu() -> None:
    base = gpu_seed(NONCE, MACHINE, 0)
    assert base == hashlib.sha256(b"gpuproof/seed/v1" + NONCE + bytes.fromhex(MACHINE) + b"\0\0\0\0").digest()
    assert gpu_seed(NONCE, MACHINE, 1) != base
    assert gpu_seed(NONCE, "22" * 32, 0) != base
    assert gpu_seed(bytes(32), MACHINE, 0) != base
    with pytest.raises(ValueError):
        gpu_seed(b"short", MACHINE, 0)


def test_known_answer_vector() -> None:
    """Pinned bytes for other implementers (docs/protocol.md, "Test vectors")."""
    seed = gpu_seed(NONCE, MACHINE, 0)
    assert seed.hex() == "29647b4cf1c713d6f405c635dffc01aec5ea40adb0e962c31498fe8747bfa121"
    row = gen_rows(seed, TAG_A0, [0], 16, 7)[0]
    assert row.tolist() == [2, -3, 1, -3, -1, 1, -3, 1, 0, 0, 3, 0, 2, -1, 1, -2]
    assert gen_rows(seed, TAG_B, [1], 16, 7)[0].tolist() == [
        0,
        2,
        3,
        0,
        2,
        -2,
        2,
        -2,
        2,
        0,
        2,
        0,
        -2,
        0,
        -3,
        -3,
    ]
    raw = hashlib.shake_128(b"gpuproof/row/v1" + seed + b"A" + b"\0\0\0\0").digest(16)
    assert row.tolist() == [(b % 7) - 3 for b in raw]


def test_any_row_regenerates_alone() -> None:
    seed = gpu_seed(NONCE, MACHINE, 3)
    full = gen_matrix(seed, TAG_B, 40, 32, 7)
    assert np.array_equal(gen_rows(seed, TAG_B, [17, 3], 32, 7), full[[17, 3]])
    assert full.min() >= -3 and full.max() <= 3
    assert not np.array_equal(gen_matrix(seed, TAG_A0, 40, 32, 7), full)


def test_recentre_is_mathematical_mod_and_step_dependent() -> None:
    c = np.array([-10, -1, 0, 1, 3, 4, 6, 7, 100], dtype=np.int64)
    assert recentre(c, 1, 7).tolist() == [((v + 1) % 7) - 3 for v in c.tolist()]
    assert recentre(c, 1, 7).tolist() != recentre(c, 2, 7).tolist()
    assert recentre(c, 5, 7).min() >= -3 and recentre(c, 5, 7).max() <= 3


def test_float32_products_are_exact_at_the_bound() -> None:
    d, h = 2048, 3
    a = np.full((2, d), h, dtype=np.int8)
    a[1] = -h
    b = np.full((d, 4), h, dtype=np.int8)
    exact = a.astype(np.int64) @ b.astype(np.int64)
    assert np.array_equal(matrices.product_rows(a, b), exact)
    rng = np.random.default_rng(1)
    a = rng.integers(-h, h + 1, size=(8, d)).astype(np.int8)
    b = rng.integers(-h, h + 1, size=(d, d)).astype(np.int8)
    assert np.array_equal(matrices.product_rows(a, b), a.astype(np.int64) @ b.astype(np.int64))


def test_pack_two_entries_per_byte() -> None:
    a = np.array([[-3, 3, 0, -1]], dtype=np.int8)
    assert pack_rows(a, 7).tolist() == [[0 | (6 << 4), 3 | (2 << 4)]]


def test_b_times_x_matches_full_matrix() -> None:
    seed = gpu_seed(NONCE, MACHINE, 0)
    x = np.arange(64, dtype=np.int64) * 1000
    b = gen_matrix(seed, TAG_B, 64, 64, 7).astype(np.int64)
    assert np.array_equal(matrices.b_times_x(seed, 64, 7, x, chunk=10), b @ x)
