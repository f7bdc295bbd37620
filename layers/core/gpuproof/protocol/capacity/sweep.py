"""The bandwidth round of the capacity phase (docs/protocol.md §17.12): P chained sweeps over a GPU
target's X_L whose cost is reading X_L at memory speed, so the service-timed round bounds the
device's memory bandwidth from below (HBM vs GDDR; HBM over PCIe).

Sweep s = 1..P of a round with nonce rho:

    kappa_1 = rho,   kappa_{s+1} = SHA-256(SWEEP_KEY_DOMAIN || kappa_s || root_s)
    R_s     = the d x 4 matrix whose column j is row(kappa_s, "R", j) (fill.gen_rows: SHAKE-128, Z_251)
    F_s(c)  = (X_L[rows of item c] . R_s) mod 251      (chunk_rows x 4 bytes, each in 0..250)
    leaf    = SHA-256(SWEEP_LEAF_DOMAIN || kappa_s || u32 target || u32 c || F_s(c))
    root_s  = the Merkle root over the items' leaves (merkle.py)

The answer carries root_1..root_P (root_P as `root`, the others as `sweep_roots`): R_s is known only
once root_{s-1} is, so the sweeps are sequential, and each needs every row of X_L (F is a fresh
random linear map per sweep: without a row, its 4 residues are guessed with probability 251^-4).
A sweep is one streaming read of X_L plus 4 multiply-adds per byte and ~3 SHA-256 compressions per
item: on a GPU the read dominates (H100: 23 ms of a ~28 ms sweep, estimate).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gpuproof.protocol.capacity.fill import Q, Rows, gen_rows, u32
from gpuproof.protocol.capacity.models import CapacityTargetParams
from gpuproof.protocol.proof import merkle

SWEEP_KEY_DOMAIN = b"gpuproof/capacity/sweep-key/v1"
SWEEP_LEAF_DOMAIN = b"gpuproof/capacity/sweep-leaf/v1"
TAG_R = b"R"
SWEEP_COLUMNS = 4
# SHA-256 input of one sweep leaf: domain, key, target, item and the item's fingerprint
LEAF_HEADER_BYTES = len(SWEEP_LEAF_DOMAIN) + 32 + 4 + 4


def sweep_keys(round_nonce: bytes, roots: Sequence[bytes], sweeps: int) -> list[bytes]:
    """kappa_1..kappa_P from the round nonce and the first P-1 sweep roots."""
    keys = [round_nonce]
    for root in roots[: sweeps - 1]:
        keys.append(hashlib.sha256(SWEEP_KEY_DOMAIN + keys[-1] + root).digest())
    return keys


def sweep_matrix(key: bytes, d: int) -> npt.NDArray[np.float64]:
    """R_s (d x 4), entries in [-125, 125], as float64 (products stay exact: |sum| <= d 125^2 < 2^53)."""
    return gen_rows(key, TAG_R, range(SWEEP_COLUMNS), d).astype(np.float64).T.copy()


def fingerprints(rows: Rows, matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """(rows . R_s) mod 251 as bytes 0..250, one row of 4 per input row."""
    product = rows.astype(np.float64) @ matrix
    return (product.astype(np.int64) % Q).astype(np.uint8)


def sweep_leaf(key: bytes, target: int, item: int, fingerprint: npt.NDArray[np.uint8]) -> bytes:
    body = np.ascontiguousarray(fingerprint, dtype=np.uint8).tobytes()
    return hashlib.sha256(SWEEP_LEAF_DOMAIN + key + u32(target) + u32(item) + body).digest()


def sweep_leaves(tp: CapacityTargetParams, top: Rows, key: bytes) -> list[bytes]:
    """Every item's leaf of one sweep, from the held X_L."""
    prints = fingerprints(top, sweep_matrix(key, tp.d))
    s = tp.chunk_rows
    return [sweep_leaf(key, tp.target, c, prints[c * s : (c + 1) * s]) for c in range(tp.items)]


def sweep_roots(tp: CapacityTargetParams, top: Rows, round_nonce: bytes) -> list[bytes]:
    """root_1..root_P of an honest bandwidth round (what a prover holding X_L computes)."""
    roots: list[bytes] = []
    key = round_nonce
    for _ in range(tp.sweeps):
        roots.append(merkle.levels(sweep_leaves(tp, top, key))[-1][0])
        key = hashlib.sha256(SWEEP_KEY_DOMAIN + key + roots[-1]).digest()
    return roots


def split_item(tp: CapacityTargetParams, index: int) -> tuple[int, int]:
    """A bandwidth-round spot's index j in [0, P x items) -> (sweep s in 1..P, item c)."""
    return index // tp.items + 1, index % tp.items


def sweep_bytes_hashed(items: int, chunk_rows: int) -> int:
    """SHA-256 input of one sweep: each leaf padded to 64-byte blocks, plus the tree's nodes."""
    leaf_bytes = LEAF_HEADER_BYTES + SWEEP_COLUMNS * chunk_rows
    blocks = (leaf_bytes + 9 + 63) // 64
    return items * 64 * (blocks + 2)  # + the tree: ~one 2-block node per leaf


def sweep_seconds(
    fill_bytes: int, items: int, chunk_rows: int, bandwidth_bytes_per_s: float, hash_bytes_per_s: float
) -> float:
    """One sweep on a device: the streaming read of X_L plus its hashing. The fingerprint's
    arithmetic (8 int8 operations per byte read) is below every reference model's int8 operations
    per byte of bandwidth (>= 100), so it overlaps the read (estimate, to calibrate)."""
    return fill_bytes / bandwidth_bytes_per_s + sweep_bytes_hashed(items, chunk_rows) / hash_bytes_per_s


def min_bandwidth(tp: CapacityTargetParams, hash_bytes_per_s: float, rtt_s: float = 0.0) -> float:
    """The slowest read rate (bytes/s) at which a device hashing at `hash_bytes_per_s` still answers
    the bandwidth round by its deadline (inf when even an infinitely fast read is too late)."""
    hashing = tp.sweeps * sweep_bytes_hashed(tp.items, tp.chunk_rows) / hash_bytes_per_s
    room = tp.sweep_deadline_s - rtt_s - hashing
    return tp.sweeps * tp.fill_bytes / room if room > 0 else float("inf")
