"""Seeded matrices of the proof: per-GPU seed, counter-based rows (SHAKE-128), recentring, packing.

Any row of A_0 or B can be generated alone: row r is one SHAKE-128 call on (seed, tag, r).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

SEED_DOMAIN = b"gpuproof/seed/v1"
ROW_DOMAIN = b"gpuproof/row/v1"
TAG_A0 = b"A"
TAG_B = b"B"

Int8Matrix = npt.NDArray[np.int8]
Int64Array = npt.NDArray[np.int64]


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def gpu_seed(nonce: bytes, machine_id: str, gpu_index: int) -> bytes:
    """SHA-256(SEED_DOMAIN || nonce (32 bytes) || machine_id (32 raw bytes) || u32le gpu_index)."""
    if len(nonce) != 32:
        raise ValueError("the nonce must be 32 bytes")
    machine = bytes.fromhex(machine_id)
    if len(machine) != 32:
        raise ValueError("machine_id must be 32 bytes of hex")
    return hashlib.sha256(SEED_DOMAIN + nonce + machine + u32(gpu_index)).digest()


def _lut(q: int) -> Int8Matrix:
    """Byte b maps to (b mod q) - q//2: slightly biased toward low residues, documented."""
    return ((np.arange(256, dtype=np.int16) % q) - q // 2).astype(np.int8)


def row_bytes(seed: bytes, tag: bytes, row: int, d: int) -> bytes:
    return hashlib.shake_128(ROW_DOMAIN + seed + tag + u32(row)).digest(d)


def gen_rows(seed: bytes, tag: bytes, rows: Iterable[int], d: int, q: int) -> Int8Matrix:
    """Rows `rows` of the matrix named `tag`, entries in [-(q//2), q//2], as an int8 array."""
    raw = b"".join(row_bytes(seed, tag, r, d) for r in rows)
    mapped = raw.translate(_lut(q).view(np.uint8).tobytes())  # 4x a numpy gather on 1 GiB
    return np.frombuffer(mapped, dtype=np.int8).reshape(-1, d).copy()


def gen_matrix(seed: bytes, tag: bytes, n_rows: int, d: int, q: int) -> Int8Matrix:
    return gen_rows(seed, tag, range(n_rows), d, q)


def recentre(
    c: npt.NDArray[np.integer[Any]] | npt.NDArray[np.floating[Any]], step: int, q: int
) -> Int8Matrix:
    """g_t(c) = ((c + t) mod q) - q//2 with the mathematical (non-negative) mod."""
    return ((c.astype(np.int64) + step) % q - q // 2).astype(np.int8)


def pack_rows(a: Int8Matrix, q: int) -> npt.NDArray[np.uint8]:
    """Two entries per byte: u = a + q//2 in 0..q-1; byte k = u[2k] | u[2k+1] << 4."""
    u = (a.astype(np.int16) + q // 2).astype(np.uint8)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def product_rows(a: Int8Matrix, b: Int8Matrix) -> npt.NDArray[np.int32]:
    """C = A . B exactly: float32 sums are exact while d * h * h < 2**24 (ProofParams checks it)."""
    return (a.astype(np.float32) @ b.astype(np.float32)).astype(np.int32)


def b_times_x(seed: bytes, d: int, q: int, x: Int64Array, chunk: int = 512) -> Int64Array:
    """y = B . x in exact int64, generating B a block of rows at a time (memory O(chunk * d))."""
    y = np.empty(d, dtype=np.int64)
    for start in range(0, d, chunk):
        stop = min(d, start + chunk)
        block = gen_rows(seed, TAG_B, range(start, stop), d, q)
        y[start:stop] = block.astype(np.int64) @ x
    return y
