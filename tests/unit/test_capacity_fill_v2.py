"""Fill format v2 (docs/protocol.md §17.2): every stage map is invertible mod 251.

The maps are measured from `fill.stage_rows` itself (applied to unit rows), so what is tested is the
function the provers run, not a restatement of it; v1's symmetric maps (k = 1 on every row) are
measured beside them and are singular, so these tests can fail.
"""

from __future__ import annotations

import hashlib

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


# -- the vectors of docs/protocol.md §17.13, rebuilt with Python integers from the spec's text ------
NONCE = bytes(range(32))
MACHINE = "11" * 32
SEED_HEX = "883f4a3e8a784aeaf86dba8206490badab468f09aac2919903d29c5a0f002d87"
B0 = [36, 19, -121, 95, 105, -117, 98, 3, 47, -17, 79, -30, -111, -108, -29, -92]
PI1 = [11, 1, 9, 0, 14, 13, 10, 4, 2, 8, 15, 3, 5, 7, 12, 6]
SIGMA1 = [3, 7, 4, 5, 13, 14, 11, 0, 8, 15, 6, 1, 2, 9, 10, 12]
X1_0 = [36, -93, 67, -13, -63, -88, 87, -64, -95, -98, -33, -68, -99, -32, -63, -85]
X1_1 = [-11, -64, 68, 102, -71, 40, 70, -22, 96, -114, -101, -73, 5, 84, -74, -60]
X3_2 = [-38, -65, 74, 115, 27, 106, 48, 120, -3, -12, 56, -1, 59, 71, -125, -11]
CHAIN_S1 = "ac5681a7e30b8184ca7360c1fc7e6af9cd2b5a1393a260e287b5cf7355ca1808"
CHAIN_S2 = "973ba2b7177f420f95d610bfdb8a0c2294cb720591e4843f037ecbd860e4adf7"
CHAIN_S3 = "51ffe91d6c06538b541e45ca22e8ad9def377b870b91d5b909f8c2e54251027f"
RETRY_SEED = bytes.fromhex("028b") + bytes(30)


def _row(seed: bytes, tag: bytes, r: int, d: int) -> list[int]:
    raw = hashlib.shake_128(b"gpuproof/capacity/row/v1" + seed + tag + r.to_bytes(4, "little")).digest(d)
    return [b % 251 - 125 for b in raw]


def _perm(seed: bytes, k: int, d: int) -> list[int]:
    raw = hashlib.shake_128(b"gpuproof/capacity/perm/v2" + seed + k.to_bytes(4, "little")).digest(8 * d)
    keys = [int.from_bytes(raw[8 * j : 8 * j + 8], "little") for j in range(d)]
    return sorted(range(d), key=lambda j: (keys[j], j))


def _no_cycle_of_250(pi: list[int], sigma: list[int]) -> bool:
    inverse = {v: j for j, v in enumerate(pi)}
    r = [inverse[s] for s in sigma]
    seen: set[int] = set()
    for start in range(len(r)):
        length, j = 0, start
        while j not in seen:
            seen.add(j)
            j, length = r[j], length + 1
        if length and length % 250 == 0:
            return False
    return True


def _perms(seed: bytes, stage: int, d: int) -> tuple[list[int], list[int]]:
    pi = _perm(seed, 2 * stage - 1, d)
    t = next(t for t in range(64) if _no_cycle_of_250(pi, _perm(seed, 2 * stage + 128 * t, d)))
    return pi, _perm(seed, 2 * stage + 128 * t, d)


def _centred(v: int) -> int:
    return (v + 125) % 251 - 125


def _layers(seed: bytes, n: int, d: int) -> list[list[list[int]]]:
    g = [_row(seed, b"B", r, d) for r in range(d)]
    lower = [[g[i][j] if j < i else int(i == j) for j in range(d)] for i in range(d)]
    upper = [[(g[i][j] or 1 if i == j else g[i][j]) if j >= i else 0 for j in range(d)] for i in range(d)]
    b = [[_centred(sum(lower[i][m] * upper[m][j] for m in range(d))) for j in range(d)] for i in range(d)]
    out = [[_row(seed, b"X", r, d) for r in range(n)]]
    for stage in range(1, (n - 1).bit_length() + 1):
        pi, sigma = _perms(seed, stage, d)
        prev, layer = out[-1], []
        for i in range(n):
            mate = i ^ (1 << (stage - 1))
            k = -6 if mate >= n else 1 if mate > i else 6
            mate = i if mate >= n else mate
            c = [
                sum(prev[i][j] * b[pi[j]][col] + k * prev[mate][j] * b[sigma[j]][col] for j in range(d))
                for col in range(d)
            ]
            layer.append([(v + stage) % 251 - 125 for v in c])
        out.append(layer)
    return out


def test_the_fill_v2_vectors_are_the_spec_s_and_fill_py_s() -> None:
    from gpuproof.protocol.proof import merkle

    seed = fill.capacity_seed(NONCE, MACHINE, 0)
    assert seed.hex() == SEED_HEX
    d, n = 16, 6  # L = 3; rows 0/1 a pair at stage 1 (k = 1, 6); rows 2, 3 lone at stage 3 (k = -6)
    mine = _layers(seed, n, d)
    f = Fill(seed, n, d)
    theirs = f.layers()
    assert all(np.array_equal(np.array(a, dtype=np.int8), b) for a, b in zip(mine, theirs, strict=True))
    assert f.b[0].astype(int).tolist() == B0
    assert [p.tolist() for p in fill.stage_perms(seed, 1, d)] == [PI1, SIGMA1] == list(_perms(seed, 1, d))
    assert (mine[1][0], mine[1][1], mine[3][2]) == (X1_0, X1_1, X3_2)
    for stride, want in ((1, CHAIN_S1), (2, CHAIN_S2), (3, CHAIN_S3)):
        roots = [merkle.levels(fill.leaves(theirs[s]))[-1][0] for s in fill.committed_stages(3, stride)]
        assert fill.chain_value(seed, roots).hex() == want
    # sigma drawn again: this seed's first sigma at d = 250 has a 250-cycle, t = 1 is taken
    pi, sigma = fill.stage_perms(RETRY_SEED, 1, 250)
    assert not _no_cycle_of_250(_perm(RETRY_SEED, 1, 250), _perm(RETRY_SEED, 2, 250))
    assert sigma.tolist() == _perm(RETRY_SEED, 2 + 128, 250) and pi.tolist() == _perm(RETRY_SEED, 1, 250)


WALK_ROWS = {  # docs/protocol.md §17.13: walk -> its rows at stages 27, 24, 6, 3
    0: [50061780, 27858638, 55896338, 57512897],
    1: [42662424, 29218006, 3539213, 62286603],
}
WALK_STAGES = (27, 24, 6, 3)


def test_the_walks_v2_vectors_are_the_spec_s_and_draws_py_s() -> None:
    """Walks v2 (§17.6): each step's row is u64le(SHA-256(P(walks/v2) || u32 w || u32 l)[0:8]) mod N,
    P = domain || u32 len(s) || s || SHA-256(commitment signing bytes) || u32 target; rebuilt with
    hashlib from that text and compared with `draws.draw_walks` at an H100's shape."""
    from gpuproof.protocol.capacity.draws import draw_walks
    from tests.unit import capacity_adversaries as adv

    secret, commitment = bytes(range(32)), b"gpuproof test commitment"
    tp = adv.reference_target("H100 SXM5 80GB")
    assert (tp.n_rows, tp.n_stages, tp.commit_stride) == (75_766_980, 27, 3)
    prefix = (
        b"gpuproof/capacity/walks/v2"
        + len(secret).to_bytes(4, "little")
        + secret
        + hashlib.sha256(commitment).digest()
        + (0).to_bytes(4, "little")
    )
    walks = draw_walks(commitment, secret, tp)
    for w, rows in WALK_ROWS.items():
        mine = [
            int.from_bytes(
                hashlib.sha256(prefix + w.to_bytes(4, "little") + stage.to_bytes(4, "little")).digest()[:8],
                "little",
            )
            % tp.n_rows
            for stage in WALK_STAGES
        ]
        drawn = dict(zip(walks[w].stages, walks[w].rows, strict=True))
        assert mine == rows == [drawn[stage] for stage in WALK_STAGES]
    assert walks[0].stages == list(range(27, 0, -3))
