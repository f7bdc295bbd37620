"""Seeded matrices (v2): rows and permutations regenerable alone, ranges, exactness, 5-bit packing,
binding of the seed, and pinned test vectors (docs/protocol.md, "Test vectors")."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from gpuproof.protocol.proof import matrices
from gpuproof.protocol.proof.executor import step_product
from gpuproof.protocol.proof.matrices import (
    TAG_A0,
    TAG_B,
    b_seed,
    gen_matrix,
    gen_rows,
    gpu_seed,
    pack_rows,
    permutation,
    recentre,
    unpack_rows,
)
from gpuproof.protocol.proof.transcript import chain_start

NONCE = bytes(range(32))
MACHINE = "11" * 32


def test_seed_binds_nonce_machine_and_gpu() -> None:
    base = gpu_seed(NONCE, MACHINE, 0)
    assert base == hashlib.sha256(b"gpuproof/seed/v2" + NONCE + bytes.fromhex(MACHINE) + b"\0\0\0\0").digest()
    assert gpu_seed(NONCE, MACHINE, 1) != base
    assert gpu_seed(NONCE, "22" * 32, 0) != base
    assert gpu_seed(bytes(32), MACHINE, 0) != base
    with pytest.raises(ValueError):
        gpu_seed(b"short", MACHINE, 0)


def test_b_seed_binds_nonce_and_machine_and_is_every_gpus() -> None:
    base = b_seed(NONCE, MACHINE)
    assert b_seed(NONCE, "22" * 32) != base and b_seed(bytes(32), MACHINE) != base
    assert base not in {gpu_seed(NONCE, MACHINE, g) for g in range(8)}
    with pytest.raises(ValueError):
        b_seed(b"short", MACHINE)
    with pytest.raises(ValueError):
        b_seed(NONCE, "11" * 31)


def test_known_answer_vectors() -> None:
    """Pinned bytes for other implementers (docs/protocol.md, "Test vectors")."""
    seed = gpu_seed(NONCE, MACHINE, 0)
    assert seed.hex() == "bd6caab826c8d53d6af6bfc0ecc9211ee08d88871b33e9914b601e36756e56e6"
    row = gen_rows(seed, TAG_A0, [0], 16)[0]
    assert row.tolist() == [8, 5, 7, -2, -7, 1, -2, -2, 2, -8, 5, -6, 5, 7, 6, 2]
    b = b_seed(NONCE, MACHINE)  # one per challenge: no gpu_index
    assert b.hex() == "d7678279b14b064880202b8467a921c8fae1b77f773f65919fbb7bdc7c454b2e"
    assert b == hashlib.sha256(b"gpuproof/b-seed/v2" + NONCE + bytes.fromhex(MACHINE)).digest()
    b_row = gen_rows(b, TAG_B, [1], 16)[0].tolist()
    assert b_row == [4, -6, -5, 6, 1, -3, 7, 2, -5, -1, 4, -7, -8, 5, 2, -2]
    b_raw = hashlib.shake_128(b"gpuproof/row/v2" + b + b"B" + b"\1\0\0\0").digest(16)
    assert b_row == [(v % 17) - 8 for v in b_raw]
    raw = hashlib.shake_128(b"gpuproof/row/v2" + seed + b"A" + b"\0\0\0\0").digest(16)
    assert row.tolist() == [(b % 17) - 8 for b in raw]
    assert permutation(seed, 1, 16).tolist() == [13, 4, 11, 2, 9, 0, 7, 14, 5, 12, 3, 10, 1, 8, 15, 6]
    assert chain_start(seed).hex() == "b6ce0e9ffdceda2d3e1f52605639414566e57bc730c04e5d36543c9c481828ad"


@pytest.mark.parametrize("d", [8, 16, 24, 48, 4096, 8192])
def test_permutation_is_the_affine_map_of_its_shake_bytes_and_differs_per_step(d: int) -> None:
    """pi_t(j) = (a j + b) mod d, a the first value from h[0:8] mod d on coprime with d, b = h[8:16]
    mod d (docs/protocol.md §3), rebuilt here from the bytes with Python integers."""
    seed = gpu_seed(NONCE, MACHINE, 2)
    firsts = set()
    for step in range(1, 41):
        h = hashlib.shake_128(b"gpuproof/affine-perm/v2" + seed + step.to_bytes(4, "little")).digest(16)
        a = int.from_bytes(h[:8], "little") % d
        while math.gcd(a, d) != 1:
            a = (a + 1) % d
        b = int.from_bytes(h[8:], "little") % d
        got = permutation(seed, step, d).tolist()
        assert got == [(a * j + b) % d for j in range(d)]
        assert sorted(got) == list(range(d))  # a permutation
        firsts.add(tuple(got[:2]))
    assert len(firsts) > 20  # the steps' maps differ


def test_any_row_regenerates_alone() -> None:
    seed = gpu_seed(NONCE, MACHINE, 3)
    full = gen_matrix(seed, TAG_B, 40, 32)
    assert np.array_equal(gen_rows(seed, TAG_B, [17, 3], 32), full[[17, 3]])
    assert full.min() >= -8 and full.max() <= 8
    assert not np.array_equal(gen_matrix(seed, TAG_A0, 40, 32), full)


def test_recentre_is_mathematical_mod_and_step_dependent() -> None:
    c = np.array([-40, -1, 0, 1, 3, 8, 9, 16, 17, 1000], dtype=np.int64)
    assert recentre(c, 1).tolist() == [((v + 1) % 17) - 8 for v in c.tolist()]
    assert recentre(c, 1).tolist() != recentre(c, 2).tolist()
    assert recentre(c, 5).min() >= -8 and recentre(c, 5).max() <= 8


def test_float32_products_are_exact_at_the_bound() -> None:
    d, h = 8192, 8
    a = np.full((2, d), h, dtype=np.int8)
    a[1] = -h
    b = np.full((d, 4), h, dtype=np.float32)
    a0 = np.full((2, 4), h, dtype=np.int8)
    a0[1] = -h
    exact = a.astype(np.int64) @ b.astype(np.int64) + a0
    assert np.array_equal(step_product(a, b, a0), exact)
    assert int(exact.max()) == d * h * h + h < 2**24


def test_pack_eight_entries_in_five_bytes() -> None:
    a = np.array([[-8, -7, 0, 1, 8, 2, -3, 5]], dtype=np.int8)
    value = sum((v + 8) << (5 * k) for k, v in enumerate(a[0].tolist()))
    assert pack_rows(a).tobytes() == value.to_bytes(5, "little")
    rng = np.random.default_rng(0)
    many = rng.integers(-8, 9, size=(3, 64)).astype(np.int8)
    packed = pack_rows(many)
    assert packed.shape == (3, 40)
    assert np.array_equal(unpack_rows(packed, 64), many)
    with pytest.raises(ValueError):
        pack_rows(np.zeros((1, 12), dtype=np.int8))


@pytest.mark.parametrize("d", [64, 4096, 8192])  # float32 up to 4096, float64 above
def test_b_times_x_mod_matches_the_full_matrix(d: int) -> None:
    """B . X mod 17 from B's raw bytes (B = (b mod 17) - 8 is congruent to b - 8) equals the
    product of the mapped matrix, at the GPU's d (4096) and above, with X at its extremes."""
    seed = gpu_seed(NONCE, MACHINE, 0)
    rng = np.random.default_rng(d)
    x = rng.integers(0, 17, size=(d, 8), dtype=np.int64)
    x[:, 0] = 16  # the largest entries: the float32 bound's case
    b = gen_matrix(seed, TAG_B, d, d).astype(np.int64)
    assert np.array_equal(matrices.b_times_x_mod(seed, d, x, chunk=1000), (b @ x) % 17)
    with pytest.raises(ValueError):
        matrices.b_times_x_mod(seed, d, x + 1)  # 17 is not a residue
    # B_t . x = y[pi_t]: what the verifier uses per opening
    pi = permutation(seed, 3, d)
    assert np.array_equal(b[pi] @ x, (b @ x)[pi])
