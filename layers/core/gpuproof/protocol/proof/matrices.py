"""Seeded matrices of the proof (v2): per-GPU seed (A_0, permutations, root chain), one B seed per
challenge shared by the host's GPUs, counter-based rows and per-step permutations (SHAKE-128), the
anchored step's recentring, and 5-bit leaf packing.

Any row of A_0 or B, and any step's permutation, can be generated alone (docs/protocol.md §3).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

SEED_DOMAIN = b"gpuproof/seed/v2"
B_SEED_DOMAIN = b"gpuproof/b-seed/v2"
ROW_DOMAIN = b"gpuproof/row/v2"
PERM_DOMAIN = b"gpuproof/affine-perm/v2"
TAG_A0 = b"A"
TAG_B = b"B"
Q = 17  # fixed in v2: 17 values do not fit int4/fp4, so int8 is the fastest exact path
HALF = Q // 2
PACK_GROUP = 8  # entries per packed group
PACK_GROUP_BYTES = 5  # 8 entries x 5 bits

Int8Matrix = npt.NDArray[np.int8]
Int64Array = npt.NDArray[np.int64]
UInt8Array = npt.NDArray[np.uint8]


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def gpu_seed(nonce: bytes, machine_id: str, gpu_index: int) -> bytes:
    """SHA-256(SEED_DOMAIN || nonce (32 bytes) || machine_id (32 raw bytes) || u32le gpu_index): the
    seed of the GPU's A_0, its permutations and its root chain."""
    return hashlib.sha256(SEED_DOMAIN + _seed_input(nonce, machine_id) + u32(gpu_index)).digest()


def b_seed(nonce: bytes, machine_id: str) -> bytes:
    """SHA-256(B_SEED_DOMAIN || nonce (32 bytes) || machine_id (32 raw bytes)): the seed of B, one
    per challenge, so every GPU of the host multiplies by the same B (each through its own
    permutations, from its own A_0) and the verifier computes B.X once per host and size d."""
    return hashlib.sha256(B_SEED_DOMAIN + _seed_input(nonce, machine_id)).digest()


def _seed_input(nonce: bytes, machine_id: str) -> bytes:
    if len(nonce) != 32:
        raise ValueError("the nonce must be 32 bytes")
    machine = bytes.fromhex(machine_id)
    if len(machine) != 32:
        raise ValueError("machine_id must be 32 bytes of hex")
    return nonce + machine


def _lut() -> bytes:
    """Byte b maps to (b mod 17) - 8 (as an int8 bit pattern): residues 0..0 slightly favoured
    (256 = 15*17 + 1), harmless: soundness rests on the verifier's own randomness."""
    return ((np.arange(256, dtype=np.int16) % Q) - HALF).astype(np.int8).view(np.uint8).tobytes()


_LUT = _lut()


def row_bytes(seed: bytes, tag: bytes, row: int, d: int) -> bytes:
    return hashlib.shake_128(ROW_DOMAIN + seed + tag + u32(row)).digest(d)


def gen_rows(seed: bytes, tag: bytes, rows: Iterable[int], d: int) -> Int8Matrix:
    """Rows `rows` of the matrix named `tag`, entries in [-8, 8], as an int8 array."""
    raw = b"".join(row_bytes(seed, tag, r, d) for r in rows)
    mapped = raw.translate(_LUT)  # 4x a numpy gather on 1 GiB
    return np.frombuffer(mapped, dtype=np.int8).reshape(-1, d).copy()


def gen_matrix(seed: bytes, tag: bytes, n_rows: int, d: int) -> Int8Matrix:
    return gen_rows(seed, tag, range(n_rows), d)


def permutation(seed: bytes, step: int, d: int) -> npt.NDArray[np.intp]:
    """pi_t(j) = (a_t j + b_t) mod d, from h = SHAKE-128(PERM_DOMAIN || seed || u32le t), 16 bytes:
    b_t = u64le(h[8:16]) mod d, a_t = the first of u64le(h[0:8]) mod d, + 1, + 2, ... (mod d) that
    is coprime with d (so pi_t is a permutation). B_t[j] = B[pi_t[j]]. An affine family suffices
    (docs/protocol.md §9): the steps' maps must differ, not look random; it costs the verifier
    ~16 us an opening at d = 4096 where a sort of d random keys cost ~160 us."""
    h = hashlib.shake_128(PERM_DOMAIN + seed + u32(step)).digest(16)
    a = int.from_bytes(h[:8], "little") % d
    while math.gcd(a, d) != 1:
        a = (a + 1) % d
    b = int.from_bytes(h[8:], "little") % d
    out: npt.NDArray[np.intp] = ((np.arange(d, dtype=np.intp) * a + b) % d).astype(np.intp)
    return out


def recentre(c: npt.NDArray[np.integer[Any]] | npt.NDArray[np.floating[Any]], step: int) -> Int8Matrix:
    """g_t(c) = ((c + t) mod 17) - 8 with the mathematical (non-negative) mod."""
    return ((c.astype(np.int64) + step) % Q - HALF).astype(np.int8)


def pack_rows(a: Int8Matrix) -> UInt8Array:
    """8 entries in 5 bytes: u = a + 8 in 0..16; group g is sum u[8g+k] << 5k as 40 bits LE."""
    if a.shape[-1] % PACK_GROUP:
        raise ValueError("rows must have a multiple of 8 entries")
    u = (a.astype(np.int16) + HALF).astype(np.uint64)
    groups = u.reshape(*a.shape[:-1], a.shape[-1] // PACK_GROUP, PACK_GROUP)
    shifts = np.arange(0, 5 * PACK_GROUP, 5, dtype=np.uint64)
    value = np.bitwise_or.reduce(groups << shifts, axis=-1).astype("<u8")
    as_bytes = value.view(np.uint8).reshape(*value.shape, 8)[..., :PACK_GROUP_BYTES]
    return np.ascontiguousarray(as_bytes).reshape(*a.shape[:-1], -1)


def unpack_rows(packed: UInt8Array, d: int) -> npt.NDArray[np.int16]:
    """Inverse of pack_rows: 5-bit fields minus 8, so entries lie in [-8, 23] (the verifier holds
    them to [-8, 8]); the result is int16 so nothing wraps."""
    groups = packed.reshape(*packed.shape[:-1], d // PACK_GROUP, PACK_GROUP_BYTES).astype(np.uint64)
    value = np.zeros(groups.shape[:-1], dtype=np.uint64)
    for b in range(PACK_GROUP_BYTES):
        value |= groups[..., b] << np.uint64(8 * b)
    shifts = np.arange(0, 5 * PACK_GROUP, 5, dtype=np.uint64)
    u = (value[..., None] >> shifts) & np.uint64(31)
    return u.reshape(*packed.shape[:-1], d).astype(np.int16) - HALF


def packed_row_bytes(d: int) -> int:
    return d * PACK_GROUP_BYTES // PACK_GROUP


def b_times_x_mod(seed: bytes, d: int, x: Int64Array, chunk: int = 512) -> Int64Array:
    """B . x mod 17 (x a d x r matrix, entries in [0, 17)), the product the verifier's Freivalds
    check needs, from B's raw SHAKE bytes without mapping them: B = (b mod 17) - 8 is congruent to
    b - 8 modulo 17, so B . x = b . x - 8 sum(x) (mod 17). Exact in float32 while
    d * 255 * max(x) < 2**24 (so up to d = 4096), else float64 (< 2**53)."""
    if x.size and (int(x.min()) < 0 or int(x.max()) >= Q):
        raise ValueError("x must have entries in [0, 17)")
    bound = d * 255 * int(x.max(initial=0))
    if bound >= 2**53:
        raise ValueError("d too large for an exact product")
    exact: type[np.floating[Any]] = np.float32 if bound < 2**24 else np.float64
    xf: npt.NDArray[np.floating[Any]] = x.astype(exact)
    y: Int64Array = np.empty((d, *x.shape[1:]), dtype=np.int64)
    for start in range(0, d, chunk):
        stop = min(d, start + chunk)
        raw = b"".join(row_bytes(seed, TAG_B, r, d) for r in range(start, stop))
        block = np.frombuffer(raw, dtype=np.uint8).reshape(-1, d).astype(exact)
        y[start:stop] = np.matmul(block, xf).astype(np.int64)
    out: Int64Array = (y - HALF * x.sum(axis=0)) % Q
    return out
