"""The capacity fill (docs/protocol.md "Capacity phase"): a seeded, row-mixing (butterfly) chain of
exact int8 GEMMs over Z_251 whose last layer is what a target (a GPU, or host RAM) must hold.

X_0[i] is seeded; stage l = 1..L computes, for every row i with partner p_l(i) = i xor 2^(l-1)
(i itself when that is >= N):

    X_l[i] = g_l(X_{l-1}[i] . B[pi_l] + k_l(i) X_{l-1}[p_l(i)] . B[sigma_l])
    g_l(c) = ((c + l) mod 251) - 125
    k_l(i) = 1 (i < p_l(i)), 6 (i > p_l(i)), -6 (i = p_l(i), a lone row)

Fill format v2 (2026-12-07): B = L.U mod 251 is invertible by construction and sigma_l is drawn so
that pi_l^-1 sigma_l has no cycle whose length is a multiple of 250; with the coefficients k_l every
stage's map of a pair (and of a lone row) is then invertible mod 251 (docs/protocol.md §17.2), so
X_L carries all of X_0's N d entries (v1's symmetric maps lost ~11 dimensions a pair a stage).

After L = ceil(log2 N) stages every row depends on at least N/2 rows of X_0: regenerating a row
that is not held costs a cone of ~2N row products, i.e. about two whole stages of the fill.
Entries lie in [-125, 125] (int8, 7.97 bits of information per byte, so the data does not
compress), products are exact in int32 (GPU) and float64 (this numpy code).
"""

from __future__ import annotations

import hashlib
import math
import struct

import numpy as np
import numpy.typing as npt

from gpuproof.protocol.proof import merkle

SEED_DOMAIN = b"gpuproof/capacity/seed/v1"
ROW_DOMAIN = b"gpuproof/capacity/row/v1"
PERM_DOMAIN = b"gpuproof/capacity/perm/v2"
CHAIN_DOMAIN = b"gpuproof/capacity/chain/v1"
TAG_X0 = b"X"
TAG_B = b"B"
Q = 251  # the largest prime whose centred residues fit int8
HALF = Q // 2  # 125
MIX = 6  # k for the upper row of a pair: a generator of Z_251^* (order 250)
LONE = Q - MIX  # k for a lone row (-6: -k is then the generator 6)
SIGMA_TRIES = 64  # sigma_l draws before giving up (each fails with probability < 2% at d <= 8192)
HOST_TARGET = 0xFFFF  # the target number of host RAM (GPUs are 0..255)
BITS_PER_ENTRY = math.log2(Q)

Rows = npt.NDArray[np.int8]


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def capacity_seed(nonce: bytes, machine_id: str, target: int) -> bytes:
    """SHA-256(SEED_DOMAIN || nonce (32 bytes) || raw machine_id (32 bytes) || u32le target)."""
    if len(nonce) != 32:
        raise ValueError("the nonce must be 32 bytes")
    machine = bytes.fromhex(machine_id)
    if len(machine) != 32:
        raise ValueError("machine_id must be 32 bytes of hex")
    return hashlib.sha256(SEED_DOMAIN + nonce + machine + u32(target)).digest()


def _lut() -> bytes:
    return ((np.arange(256, dtype=np.int16) % Q) - HALF).astype(np.int8).view(np.uint8).tobytes()


_LUT = _lut()


def gen_rows(seed: bytes, tag: bytes, rows: range | list[int], d: int) -> Rows:
    """Row r = SHAKE-128(ROW_DOMAIN || seed || tag || u32le r), first d bytes, byte b -> (b mod 251) - 125."""
    raw = b"".join(hashlib.shake_128(ROW_DOMAIN + seed + tag + u32(r)).digest(d) for r in rows)
    return np.frombuffer(raw.translate(_LUT), dtype=np.int8).reshape(-1, d).copy()


def permutation(seed: bytes, index: int, d: int) -> npt.NDArray[np.intp]:
    """Stable argsort of d u64le keys from SHAKE-128(PERM_DOMAIN || seed || u32le index)."""
    keys = np.frombuffer(hashlib.shake_128(PERM_DOMAIN + seed + u32(index)).digest(8 * d), dtype="<u8")
    return np.argsort(keys, kind="stable")


def _cycle_lengths(perm: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """The length of each element's cycle (pointer doubling: after k rounds each element's label is
    the least element among its next 2^k, so ceil(log2 d) rounds give its cycle's least element)."""
    label = np.arange(len(perm), dtype=np.intp)
    step = np.asarray(perm, dtype=np.intp)
    for _ in range(max(1, (len(perm) - 1).bit_length())):
        label = np.minimum(label, label[step])
        step = step[step]
    lengths: npt.NDArray[np.intp] = np.bincount(label, minlength=len(perm))[label]
    return lengths


def invertible_pair(pi: npt.NDArray[np.intp], sigma: npt.NDArray[np.intp]) -> bool:
    """Whether stage maps with these permutations are invertible for an invertible B: R = pi^-1 sigma
    (as an array, argsort(pi)[sigma]) has no cycle whose length is a multiple of ord(6) = 250.
    det of a pair's map is +-det(I - 6 R^2) det(B)^2 and of a lone row's +-det(I - 6 R) det(B), and
    det(I - t C_m) = 1 - t^m for an m-cycle C_m (docs/protocol.md §17.2)."""
    r = np.argsort(pi)[sigma]
    return not bool((_cycle_lengths(r) % (Q - 1) == 0).any())


def stage_perms(seed: bytes, stage: int, d: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(pi_l, sigma_l): pi_l = permutation 2l - 1, sigma_l = permutation 2l + 128 t for the least t
    >= 0 with `invertible_pair` (stages <= 32, so the indices of two stages never meet)."""
    pi = permutation(seed, 2 * stage - 1, d)
    for t in range(SIGMA_TRIES):
        sigma = permutation(seed, 2 * stage + 128 * t, d)
        if invertible_pair(pi, sigma):
            return pi, sigma
    raise ValueError(f"stage {stage}: no invertible sigma in {SIGMA_TRIES} draws")  # p < 2^-350


def b_matrix(seed: bytes, d: int) -> Rows:
    """B = L . U mod 251 (centred), from G = the d seeded rows of tag "B": L = G strictly below the
    diagonal with ones on it, U = G on and above it with a 0 on the diagonal read as 1. B is
    invertible by construction (det B = prod diag U != 0) and uniform over the matrices with
    non-zero leading minors but for that diagonal; the verifier multiplies by L and U in turn."""
    lower, upper = lu_factors(seed, d)
    b = lower.astype(np.float64) @ upper.astype(np.float64)  # |entries| <= d 125^2 < 2^53: exact
    return ((b.astype(np.int64) + HALF) % Q - HALF).astype(np.int8)


def lu_factors(seed: bytes, d: int) -> tuple[Rows, Rows]:
    """(L, U) of `b_matrix`, int8 in [-125, 125]."""
    g = gen_rows(seed, TAG_B, range(d), d)
    lower = np.tril(g, -1)
    np.fill_diagonal(lower, 1)
    upper = np.triu(g)
    diag = np.diagonal(upper).copy()
    diag[diag == 0] = 1
    np.fill_diagonal(upper, diag)
    return lower, upper


def _mod_matmul(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """a . b mod 251, centred (float64: |entries| <= 125, so sums of d products stay < 2^53)."""
    c = a.astype(np.float64) @ b.astype(np.float64)
    return (c.astype(np.int64) + HALF) % Q - HALF


def _inverse_lower(m: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The inverse mod 251 (centred) of a lower-triangular matrix with a non-zero diagonal, by halves:
    [[A, 0], [C, D]]^-1 = [[A^-1, 0], [-D^-1 C A^-1, D^-1]] (a few d^3 / 4 float64 products)."""
    n = m.shape[0]
    if n == 1:
        return np.array([[(pow(int(m[0, 0]) % Q, Q - 2, Q) + HALF) % Q - HALF]], dtype=np.int64)
    h = n // 2
    a, dd = _inverse_lower(m[:h, :h]), _inverse_lower(m[h:, h:])
    out = np.zeros((n, n), dtype=np.int64)
    out[:h, :h], out[h:, h:] = a, dd
    out[h:, :h] = (-_mod_matmul(_mod_matmul(dd, m[h:, :h]), a) + HALF) % Q - HALF
    return out


def inverse_b(seed: bytes, d: int) -> npt.NDArray[np.int64]:
    """B^-1 mod 251 (centred): U^-1 . L^-1 from `lu_factors` (the prover's descent from X_L)."""
    lower, upper = lu_factors(seed, d)
    l_inv = _inverse_lower(lower.astype(np.int64))
    u_inv = _inverse_lower(upper.T.astype(np.int64)).T
    return _mod_matmul(u_inv, l_inv)


def _cycle_inverse(perm: npt.NDArray[np.intp], t: int) -> npt.NDArray[np.int64]:
    """(I - t P)^-1 mod 251 (centred) for the permutation matrix P[j, perm[j]] = 1: on a cycle of
    length m it is sum_k t^k P^k / (1 - t^m), non-zero when t^m != 1 (`invertible_pair`)."""
    d = len(perm)
    lengths = _cycle_lengths(perm)
    scale_ = np.array([pow((1 - pow(t, int(m), Q)) % Q, Q - 2, Q) for m in lengths], dtype=np.int64)
    out = np.zeros((d, d), dtype=np.int64)
    rows, at, power = np.arange(d), np.arange(d), np.ones(d, dtype=np.int64)
    for k in range(int(lengths.max())):
        live = k < lengths
        out[rows[live], at[live]] = power[live] * scale_[live] % Q
        at, power = perm[at], power * t % Q
    return (out + HALF) % Q - HALF


def unstage_matrices(
    b_inv: npt.NDArray[np.int64], pi: npt.NDArray[np.intp], sigma: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The inverse of a stage's linear part (docs/protocol.md §17.11 "descent"), centred mod 251:
    W' (2d x 2d) with [X_l[a] + s | X_l[a'] + s] . W' = [X_(l-1)[a] | X_(l-1)[a']] for a pair (a the
    lower row, s = 125 - l undoing g_l's offset), and M' (d x d) with (X_l[a] + s) . M' = X_(l-1)[a]
    for a lone row. With R = P_sigma P_pi^-1 (the permutation rho = argsort(pi)[sigma]), G = B^-1
    P_pi^-1 (B^-1's columns in pi's order) and S = (I - 6 R^2)^-1: a pair's map (x, y) -> (x P_pi B +
    y P_sigma B, y P_pi B + 6 x P_sigma B) inverts to x = p G (I + 6 S R^2) - q G S R, y = -6 p G S R
    + q G S; a lone row's x -> x (P_pi - 6 P_sigma) B to x = p G (I - 6 R)^-1. R commutes with S, so
    one product G S (and G (I - 6R)^-1 for lone rows) is all the d^3 work; the rest are its columns
    permuted."""
    d = len(pi)
    rho = np.argsort(pi)[sigma]
    g = b_inv[:, pi]
    gs = _mod_matmul(g, _cycle_inverse(rho[rho], MIX))

    def times_r(m: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.int64]:  # m . R^k: columns moved
        perm = np.arange(d)
        for _ in range(k):
            perm = rho[perm]
        out = np.empty_like(m)
        out[:, perm] = m
        return out

    w = np.empty((2 * d, 2 * d), dtype=np.int64)
    w[:d, :d] = g + MIX * times_r(gs, 2)
    w[:d, d:] = -MIX * times_r(gs, 1)
    w[d:, :d] = -times_r(gs, 1)
    w[d:, d:] = gs
    lone = _mod_matmul(g, _cycle_inverse(rho, MIX))
    return (w + HALF) % Q - HALF, lone


def coefficients(rows: npt.NDArray[np.intp], stage: int, n_rows: int) -> npt.NDArray[np.int64]:
    """k_l(i) for each row: 1 below its mate, MIX above it, LONE without one."""
    rows = np.asarray(rows, dtype=np.intp)
    mates = rows ^ (1 << (stage - 1))
    return np.where(mates >= n_rows, LONE, np.where(mates > rows, 1, MIX)).astype(np.int64)


def coefficient(row: int, stage: int, n_rows: int) -> int:
    mate = partner(row, stage, n_rows)
    return LONE if mate == row else 1 if mate > row else MIX


def scale(rows: Rows, k: npt.NDArray[np.int64] | int) -> Rows:
    """k . rows mod 251, centred (int8)."""
    kk = np.asarray(k, dtype=np.int64)
    if kk.ndim == 1:
        kk = kk[:, None]
    return ((rows.astype(np.int64) * kk + HALF) % Q - HALF).astype(np.int8)


def stages(n_rows: int) -> int:
    """L = ceil(log2 N), at least 1."""
    return max(1, (n_rows - 1).bit_length())


def partner(row: int, stage: int, n_rows: int) -> int:
    mate = row ^ (1 << (stage - 1))
    return mate if mate < n_rows else row


def partners(n_rows: int, stage: int) -> npt.NDArray[np.intp]:
    rows = np.arange(n_rows, dtype=np.intp)
    mates = rows ^ (1 << (stage - 1))
    return np.where(mates < n_rows, mates, rows)


def committed_stages(n_stages: int, stride: int = 1) -> list[int]:
    """The stages whose layers are committed (a root each, in this ascending order): L, L - stride,
    ... down to the last >= 1 (docs/protocol.md §17.3). Stride 1: every layer."""
    return list(range(n_stages, 0, -stride))[::-1]


def parent_stage(stage: int, stride: int) -> int:
    """The committed layer below `stage` a walk step opens (0: X_0, which the verifier regenerates)."""
    return max(0, stage - stride)


def parent_rows(row: int, stage: int, below: int, n_rows: int) -> list[int]:
    """The rows of X_below that X_stage[row] depends on, in the order a walk step opens them: for
    one stage [i, p_l(i)]; for two [i, p_{l-1}(i), p_l(i), p_{l-1}(p_l(i))] (each pair the parents
    of one row of X_{l-1}, own first)."""
    rows = [row]
    for s in range(stage, below, -1):
        rows = [r for q in rows for r in (q, partner(q, s, n_rows))]
    return rows


def recentre(c: npt.NDArray[np.float64] | npt.NDArray[np.int64], stage: int) -> Rows:
    return ((c.astype(np.int64) + stage) % Q - HALF).astype(np.int8)


def stage_rows(
    own: Rows,
    mate: Rows,
    b_pi: npt.NDArray[np.float64],
    b_sigma: npt.NDArray[np.float64],
    stage: int,
    k: npt.NDArray[np.int64] | int,
) -> Rows:
    """g_l(own . B[pi] + k . mate . B[sigma]) exactly (k . mate reduced mod 251 first, as the GPU's
    operand gather does; float64: |c| <= 2 d 125^2 < 2^53)."""
    c = own.astype(np.float64) @ b_pi + scale(mate, k).astype(np.float64) @ b_sigma
    return recentre(c, stage)


def row_products(n_rows: int, n_stages: int) -> int:
    """Row products v . B of a whole fill: two per row per stage."""
    return 2 * n_rows * n_stages


def leaf(row: Rows) -> bytes:
    """SHA-256(0x00 || the row's d bytes, int8 two's complement)."""
    return merkle.leaf_hash(np.ascontiguousarray(row, dtype=np.int8).tobytes())


def leaves(rows: Rows) -> list[bytes]:
    return [leaf(rows[i]) for i in range(rows.shape[0])]


def chain_start(seed: bytes) -> bytes:
    return hashlib.sha256(CHAIN_DOMAIN + seed).digest()


def chain_value(seed: bytes, roots: list[bytes]) -> bytes:
    """H_0 = SHA-256(CHAIN_DOMAIN || seed); H_k = SHA-256(H_{k-1} || root of the k-th committed
    layer), ascending; the value is the last."""
    h = chain_start(seed)
    for root in roots:
        h = hashlib.sha256(h + root).digest()
    return h


class Fill:
    """The stage matrices of one target's fill (B, its permutations) and the stage function."""

    def __init__(self, seed: bytes, n_rows: int, d: int) -> None:
        self.seed, self.n_rows, self.d = seed, n_rows, d
        self.n_stages = stages(n_rows)
        self.b = b_matrix(seed, d).astype(np.float64)
        self._perms: dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
        self._b_inv: npt.NDArray[np.int64] | None = None

    def x0(self, rows: range | list[int]) -> Rows:
        return gen_rows(self.seed, TAG_X0, rows, self.d)

    def matrices(self, stage: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        if stage not in self._perms:
            pi, sigma = stage_perms(self.seed, stage, self.d)
            self._perms[stage] = (self.b[pi], self.b[sigma])
        return self._perms[stage]

    def step(self, prev: Rows, stage: int) -> Rows:
        """A whole layer X_l from X_{l-1}."""
        b_pi, b_sigma = self.matrices(stage)
        k = coefficients(np.arange(self.n_rows, dtype=np.intp), stage, self.n_rows)
        return stage_rows(prev, prev[partners(self.n_rows, stage)], b_pi, b_sigma, stage, k)

    def unstep(self, layer: Rows, stage: int) -> Rows:
        """X_(l-1) from a whole layer X_l (`unstage_matrices`: every stage map is invertible)."""
        if self._b_inv is None:
            self._b_inv = inverse_b(self.seed, self.d)
        pi, sigma = stage_perms(self.seed, stage, self.d)
        w, lone = unstage_matrices(self._b_inv, pi, sigma)
        shifted = (layer.astype(np.int64) + HALF - stage + HALF) % Q - HALF
        rows = np.arange(self.n_rows, dtype=np.intp)
        mates = partners(self.n_rows, stage)
        out = np.empty_like(layer)
        lo = rows[mates > rows]
        pair = _mod_matmul(np.concatenate([shifted[lo], shifted[mates[lo]]], axis=1), w)
        out[lo], out[mates[lo]] = pair[:, : self.d], pair[:, self.d :]
        alone = rows[mates == rows]
        out[alone] = _mod_matmul(shifted[alone], lone)
        return out

    def layers(self) -> list[Rows]:
        """X_0 .. X_L (tests and the honest CPU prover at small sizes)."""
        out = [self.x0(range(self.n_rows))]
        for stage in range(1, self.n_stages + 1):
            out.append(self.step(out[-1], stage))
        return out


ANSWER_DOMAIN = b"gpuproof/capacity/answer/v1"


def answer_leaf(round_nonce: bytes, target: int, item: int, rows: Rows) -> bytes:
    """SHA-256(ANSWER_DOMAIN || round nonce || u32 target || u32 item || the item's row bytes)."""
    body = np.ascontiguousarray(rows, dtype=np.int8).tobytes()
    return hashlib.sha256(ANSWER_DOMAIN + round_nonce + u32(target) + u32(item) + body).digest()
