"""Fill format v2 (docs/protocol.md §17.2): every stage map is invertible mod 251.

The maps are measured from `fill.stage_rows` itself (applied to unit rows), so what is tested is the
function the provers run, not a restatement of it; v1's symmetric maps (k = 1 on every row) are
measured beside them and are singular, so these tests can fail.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from gpuproof.protocol.capacity import fill
from gpuproof.protocol.capacity.fill import LONE, MIX, Fill, Q


def rank_mod(matrix: npt.NDArray[np.int64]) -> int:
    """Rank over Z_251 (Gaussian elimination)."""
    m = matrix.astype(np.int64) % Q
    rank = 0
    for col in range(m.shape[1]):
        nz = np.nonzero(m[rank:, col])[0]
        if not len(nz):
            continue
        pivot = rank + int(nz[0])
        m[[rank, pivot]] = m[[pivot, rank]]
        m[rank] = m[rank] * pow(int(m[rank, col]), Q - 2, Q) % Q
        factors = m[:, col].copy()
        factors[rank] = 0
        m = (m - np.outer(factors, m[rank])) % Q
        rank += 1
        if rank == m.shape[0]:
            break
    return rank


def measured_pair_map(f: Fill, stage: int, k_upper: int) -> npt.NDArray[np.int64]:
    """The 2d x 2d matrix of (x, y) -> (X_l[lower], X_l[upper]) mod 251, from `stage_rows`."""
    d = f.d
    b_pi, b_sigma = f.matrices(stage)
    zero = np.zeros((1, d), dtype=np.int8)

    def outputs(x: npt.NDArray[np.int8], y: npt.NDArray[np.int8]) -> npt.NDArray[np.int64]:
        lower = fill.stage_rows(x, y, b_pi, b_sigma, stage, 1)
        upper = fill.stage_rows(y, x, b_pi, b_sigma, stage, k_upper)
        return np.concatenate([lower, upper], axis=1).astype(np.int64)

    offset = outputs(zero, zero)
    unit = np.eye(2 * d, dtype=np.int8)
    return (outputs(unit[:, :d], unit[:, d:]) - offset) % Q


def measured_lone_map(f: Fill, stage: int, k_lone: int) -> npt.NDArray[np.int64]:
    d = f.d
    b_pi, b_sigma = f.matrices(stage)
    zero = np.zeros((1, d), dtype=np.int8)
    unit = np.eye(d, dtype=np.int8)
    offset = fill.stage_rows(zero, zero, b_pi, b_sigma, stage, k_lone).astype(np.int64)
    return (fill.stage_rows(unit, unit, b_pi, b_sigma, stage, k_lone).astype(np.int64) - offset) % Q


@pytest.mark.parametrize("seed_byte", [0, 1, 2])
def test_every_stage_map_is_invertible_and_v1_s_were_not(seed_byte: int) -> None:
    d, n = 32, 48  # n not a power of two: the top stage has lone rows
    f = Fill(bytes([seed_byte]) * 32, n, d)
    assert rank_mod(f.b.astype(np.int64)) == d
    v1_kernel = 0
    for stage in range(1, f.n_stages + 1):
        assert rank_mod(measured_pair_map(f, stage, MIX)) == 2 * d, f"stage {stage} pair map"
        assert rank_mod(measured_lone_map(f, stage, LONE)) == d, f"stage {stage} lone map"
        v1_kernel += 2 * d - rank_mod(measured_pair_map(f, stage, 1))
    assert v1_kernel >= f.n_stages  # (P_pi - P_sigma) B kills the all-ones direction at every stage


def test_b_is_l_times_u_and_invertible_even_where_the_seeded_rows_are_not() -> None:
    d = 16
    for seed_byte in range(40):
        seed = bytes([seed_byte]) * 32
        lower, upper = fill.lu_factors(seed, d)
        assert np.array_equal(np.tril(lower, -1), np.tril(fill.gen_rows(seed, fill.TAG_B, range(d), d), -1))
        assert (np.diagonal(lower) == 1).all() and (np.diagonal(upper) != 0).all()
        b = fill.b_matrix(seed, d).astype(np.int64)
        assert np.array_equal(b % Q, (lower.astype(np.int64) @ upper.astype(np.int64)) % Q)
        assert np.abs(b).max() <= fill.HALF
        assert rank_mod(b) == d


def test_k_follows_the_pairing() -> None:
    n = 6  # stage 3 pairs i with i xor 4: 0-4, 1-5; rows 2 and 3 are lone
    assert fill.coefficients(np.arange(n), 3, n).tolist() == [1, 1, LONE, LONE, MIX, MIX]
    assert [fill.coefficient(r, 3, n) for r in range(n)] == [1, 1, LONE, LONE, MIX, MIX]
    assert fill.coefficients(np.arange(4), 1, 4).tolist() == [1, MIX, 1, MIX]
    assert pow(MIX, 125, Q) != 1 and pow(MIX, 50, Q) != 1 and pow(Q - LONE, 250, Q) == 1


def test_a_cycle_of_length_250_makes_a_lone_map_singular_and_is_refused() -> None:
    d = 250
    pi = np.arange(d)
    sigma = np.roll(np.arange(d), 1)  # pi^-1 sigma: one 250-cycle, 6^250 = 1
    assert not fill.invertible_pair(pi, sigma)
    b = fill.b_matrix(bytes(32), d).astype(np.int64)
    lone = (b[pi] + LONE * b[sigma]) % Q  # x . (B[pi] + k B[sigma]): the lone row's linear part
    assert rank_mod(lone) == d - 1
    shorter = np.roll(np.arange(d), 1)
    shorter[[0, 1]] = shorter[[1, 0]]  # split the cycle: no length divisible by 250
    assert fill.invertible_pair(pi, shorter)
    assert rank_mod((b[pi] + LONE * b[shorter]) % Q) == d


def test_stage_perms_draws_sigma_again_when_the_first_would_be_singular() -> None:
    d = 250
    for seed_byte in range(256):
        for index in range(256):
            seed = bytes([seed_byte, index % 256]) + bytes(30)
            first = fill.permutation(seed, 2, d)
            if not fill.invertible_pair(fill.permutation(seed, 1, d), first):
                pi, sigma = fill.stage_perms(seed, 1, d)
                assert fill.invertible_pair(pi, sigma)
                retried = [fill.permutation(seed, 2 + 128 * t, d) for t in range(1, 8)]
                assert any(np.array_equal(sigma, r) for r in retried)
                return
    pytest.fail("no seed drew a singular first sigma (expected about 1 in 250)")
