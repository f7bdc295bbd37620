"""The verifier (v2) the service's verify worker and the committee CLI run: pure, AWS-free, exact."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gpuproof.protocol.collector import collector_paused
from gpuproof.protocol.keys import verify
from gpuproof.protocol.proof import codes, merkle
from gpuproof.protocol.proof.matrices import (
    TAG_A0,
    b_seed,
    b_times_x_mod,
    gen_rows,
    gpu_seed,
    pack_rows,
    packed_row_bytes,
    permutation,
    unpack_rows,
)
from gpuproof.protocol.proof.models import (
    GpuCommitment,
    GpuOpenings,
    GpuPairs,
    Pair,
    ProofParams,
    RowOpening,
    ThroughputCommitment,
    ThroughputProof,
)
from gpuproof.protocol.proof.transcript import chain_value, draw_pairs
from gpuproof.protocol.proof.wire import PackedRow
from gpuproof.protocol.reasons import Reason

# Vectors of the mod-17 Freivalds check of each opening: a wrong row escapes one with probability
# 1/17, all of them with 17^-8 (< 2^-32); over m openings the union bound adds m * 17^-8.
FREIVALDS_VECTORS = 8


class Freivalds:
    """The verifier's random vectors for one host: per size d, X (d x 8, entries uniform in Z_17,
    drawn here, after the transcript arrived) and Y = B.X mod 17, computed the first time a GPU of
    that size needs them and shared by the host's GPUs, which all multiply by the one B of the
    challenge (`matrices.b_seed`). One X for every GPU costs no soundness: a wrong row's error e
    escapes e.X = 0 with probability 17^-8 whichever GPU it is on (docs/protocol.md §9)."""

    def __init__(self, seed: bytes, rng: np.random.Generator | None = None) -> None:
        self.seed = seed
        self.rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
        self._by_d: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}

    def vectors(self, d: int, q: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        if d not in self._by_d:
            x = self.rng.integers(0, q, size=(d, FREIVALDS_VECTORS), dtype=np.int64)
            self._by_d[d] = (x, b_times_x_mod(self.seed, d, x).astype(np.float64))
        return self._by_d[d]


def check_deadline(
    issued_at: float, commitment_received_at: float, params: ProofParams | Sequence[ProofParams]
) -> list[Reason]:
    """Both times from the SERVICE's clock; a multi-GPU host is held to its slowest GPU's deadline."""
    plist = [params] if isinstance(params, ProofParams) else list(params)
    if not plist:
        return [Reason(codes.PARAMS_MISMATCH, "no proof parameters")]
    elapsed = commitment_received_at - issued_at
    deadline = max(p.deadline_s for p in plist)
    if elapsed < 0:
        return [
            Reason(
                codes.CLOCK_INVALID, f"commitment received {-elapsed:.3f} s before the challenge was issued"
            )
        ]
    if elapsed > deadline:
        expected = max(p.expected_s for p in plist)
        return [
            Reason(
                codes.DEADLINE_MISSED,
                f"commitment arrived {elapsed:.3f} s after issue; deadline {deadline:.3f} s "
                f"(expected {expected:.3f} s on the claimed GPU)",
                "commitment",
            )
        ]
    return []


def verify_commitment(
    commitment: ThroughputCommitment,
    signature_hex: str,
    *,
    machine_id: str,
    challenge_id: str,
    nonce: bytes,
    params: Sequence[ProofParams],
) -> list[Reason]:
    """Binding and signature: this machine, this challenge, this nonce, these GPUs."""
    reasons = []
    if commitment.machine_id != machine_id:
        reasons.append(
            Reason(codes.MACHINE_MISMATCH, "commitment names another machine", "commitment.machine_id")
        )
    if commitment.challenge_id != challenge_id:
        reasons.append(
            Reason(codes.CHALLENGE_MISMATCH, "commitment names another challenge", "commitment.challenge_id")
        )
    if commitment.nonce != nonce.hex():
        reasons.append(
            Reason(codes.NONCE_MISMATCH, "commitment is for another nonce (replayed?)", "commitment.nonce")
        )
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        signature = b""
    if not verify(machine_id, commitment.signing_bytes(), signature):
        reasons.append(
            Reason(codes.SIGNATURE_INVALID, "commitment is not signed by this machine's key", "signature")
        )
    wanted = sorted(p.gpu_index for p in params)
    got = [g.gpu_index for g in commitment.gpus]
    if sorted(got) != wanted or len(set(got)) != len(got):
        reasons.append(
            Reason(
                codes.PARAMS_MISMATCH,
                f"commitment covers GPUs {got}, challenge asked {wanted}",
                "commitment.gpus",
            )
        )
    return reasons


def _bounded(values: Sequence[object], bound: int) -> npt.NDArray[np.int64] | None:
    """The entries as int64 when every one is a Python int (not a bool, not a float) in
    [-bound, bound]; None otherwise. The type scan comes first, so numpy only ever converts ints
    (exactly, or OverflowError), and the range is checked with min/max, never np.abs (np.abs(-2**63)
    is negative)."""
    if set(map(type, values)) - {int}:  # C-speed type scan; bool is its own type
        return None
    try:
        array = np.array(values, dtype=np.int64)
    except OverflowError:
        return None
    if array.size and (int(array.min()) < -bound or int(array.max()) > bound):
        return None
    return array


def _entries(o: RowOpening, name: str, d: int, bound: int) -> tuple[npt.NDArray[np.int64] | None, bytes]:
    """Row `name` of the opening as int64 entries held to [-bound, bound] (None when any is not),
    and its packed bytes (`pack_rows`, what its Merkle leaf hashes): read from the bytes the binary
    transcript carried when the row was decoded from one (`PackedRow`), else from the list (JSON)."""
    values = getattr(o, name) or []
    if isinstance(values, PackedRow) and len(values.packed) == packed_row_bytes(d):
        array = unpack_rows(np.frombuffer(values.packed, dtype=np.uint8), d).astype(np.int64)
        if array.size and (int(array.min()) < -bound or int(array.max()) > bound):
            return None, b""
        return array, values.packed
    checked = _bounded(values, bound)
    if checked is None:
        return None, b""
    return checked, pack_rows(checked.astype(np.int8)).tobytes()


def _path(hexes: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


def verify_gpu(
    nonce: bytes,
    machine_id: str,
    params: ProofParams,
    commitment: GpuCommitment,
    pairs: Sequence[Pair],
    openings: GpuOpenings,
    *,
    rng: np.random.Generator | None = None,
    freivalds: Freivalds | None = None,
) -> list[Reason]:
    """One GPU: its roots chain to the committed H_T, openings exactly as asked, Merkle paths,
    exact row checks.

    The row check is Freivalds on rows modulo 17 (A_t[i] = g_t(C) depends on C mod 17 only): with
    X (d x 8, entries in Z_17) drawn after the transcript arrived and Y = B.X computed once per host
    (`freivalds`, shared by the host's GPUs; drawn here from `rng` when not given),
    A_{t-1}[i].Y[pi_t] + A_0[i].X == (A_t[i] + 8 - t).X (mod 17), since B_t.X = Y[pi_t].
    """
    where = f"gpus[{params.gpu_index}]"
    seed = gpu_seed(nonce, machine_id, params.gpu_index)
    if commitment.gpu_index != params.gpu_index or openings.gpu_index != params.gpu_index:
        return [Reason(codes.PARAMS_MISMATCH, "gpu_index of commitment, params and openings differ", where)]
    if len(openings.roots) != params.steps:
        return [Reason(codes.PARAMS_MISMATCH, f"{len(openings.roots)} roots for {params.steps} steps", where)]
    roots = [bytes.fromhex(r) for r in openings.roots]
    reasons: list[Reason] = []
    if chain_value(seed, roots).hex() != commitment.chain:
        reasons.append(
            Reason(codes.ROOT_CHAIN_INVALID, "roots do not chain to the committed value", f"{where}.chain")
        )

    asked = [(p.step, p.row) for p in pairs]
    opened = [(o.step, o.row) for o in openings.openings]
    if sorted(asked) != sorted(opened) or len(set(opened)) != len(opened):
        missing = sorted(set(asked) - set(opened))
        extra = sorted(set(opened) - set(asked))
        reasons.append(
            Reason(
                codes.OPENINGS_MISMATCH,
                f"opened rows differ from those asked: {len(missing)} missing {missing[:5]}, "
                f"{len(extra)} not asked {extra[:5]}, {len(opened) - len(set(opened))} repeated",
                f"{where}.openings",
            )
        )
    asked_set = set(asked)
    todo = [(k, o) for k, o in enumerate(openings.openings) if (o.step, o.row) in asked_set]
    if not todo:
        return reasons

    if freivalds is None:
        freivalds = Freivalds(b_seed(nonce, machine_id), rng)
    x, y = freivalds.vectors(params.d, params.q)
    seen: set[tuple[int, int]] = set()
    perms: dict[int, npt.NDArray[np.intp]] = {}  # pi_t per step, shared by the openings of one step
    for k, opening in todo:
        if (opening.step, opening.row) in seen:
            continue
        seen.add((opening.step, opening.row))
        reasons.extend(_check_opening(seed, params, roots, opening, x, y, f"{where}.openings[{k}]", perms))
    return reasons


def _check_opening(
    seed: bytes,
    params: ProofParams,
    roots: Sequence[bytes],
    o: RowOpening,
    x: npt.NDArray[np.int64],
    y: npt.NDArray[np.float64],
    field: str,
    perms: dict[int, npt.NDArray[np.intp]] | None = None,
) -> list[Reason]:
    d, h, t, i = params.d, params.half, o.step, o.row
    depth = merkle.depth(params.n)
    label = f"step {t} row {i}"
    first = t == 1
    shape_ok = (
        1 <= t <= params.steps
        and 0 <= i < params.n
        and len(o.a_row) == d
        and len(o.a_path) == depth
        and (o.a_prev is None if first else (o.a_prev is not None and len(o.a_prev) == d))
        and (len(o.a_prev_path) == (0 if first else depth))
    )
    if not shape_ok:
        return [
            Reason(
                codes.OPENING_MALFORMED, f"{label}: wrong row length, path length or a_prev presence", field
            )
        ]
    a_row, a_packed = _entries(o, "a_row", d, h)
    a_prev, prev_packed = (None, b"") if first else _entries(o, "a_prev", d, h)
    if a_row is None or (not first and a_prev is None):
        return [Reason(codes.VALUE_OUT_OF_RANGE, f"{label}: entries outside [-{h}, {h}]", field)]
    anchor = gen_rows(seed, TAG_A0, [i], d)[0].astype(np.int64)
    if a_prev is None:
        a_prev = anchor
    reasons = []
    try:
        a_path, prev_path = _path(o.a_path), _path(o.a_prev_path)
    except ValueError:
        return [Reason(codes.OPENING_MALFORMED, f"{label}: path is not hex", field)]
    leaf = merkle.leaf_hash(a_packed)
    if not merkle.verify_path(leaf, i, params.n, a_path, roots[t - 1]):
        reasons.append(
            Reason(codes.MERKLE_PATH_INVALID, f"{label}: A_t row does not open root {t}", f"{field}.a_path")
        )
    if not first:
        prev_leaf = merkle.leaf_hash(prev_packed)
        if not merkle.verify_path(prev_leaf, i, params.n, prev_path, roots[t - 2]):
            reasons.append(
                Reason(
                    codes.MERKLE_PATH_INVALID,
                    f"{label}: A_(t-1) row does not open root {t - 1}",
                    f"{field}.a_prev_path",
                )
            )
    if perms is None or t not in perms:
        perm = permutation(seed, t, d)
        if perms is not None:
            perms[t] = perm
    else:
        perm = perms[t]
    q = params.q
    # (A_{t-1}[i].B_t + A_0[i]).X mod 17, with B_t.X = Y[pi_t]: A_{t-1}[i] . Y[pi_t] is the row
    # scattered by pi_t times Y (no d x 8 gather); float64, exact (every sum far below 2^53).
    spread = np.zeros(d)
    spread[perm] = a_prev
    xf = x.astype(np.float64)
    product = (spread @ y + anchor @ xf) % q
    residue = ((a_row + h - t) % q) @ xf % q  # (C mod 17).X mod 17, C's residue read from A_t[i]
    if not np.array_equal(product, residue):
        reasons.append(
            Reason(codes.ROW_CHECK_FAILED, f"{label}: A_t row is not g_t(A_(t-1) row . B_t + A_0 row)", field)
        )
    return reasons


def check_groups(
    found: Sequence[int], committed: Sequence[int], where: str, missing: str, extra: str, duplicate: str
) -> list[Reason]:
    """One group per committed GPU, exactly: none missing, none for an uncommitted GPU, none twice."""
    reasons = []
    want = set(committed)
    for g in sorted(want - set(found)):
        reasons.append(Reason(missing, f"{where}: no group for committed gpu {g}", where))
    for g in sorted(set(found) - want):
        reasons.append(Reason(extra, f"{where}: a group for gpu {g}, which was not committed", where))
    for g in sorted({g for g in found if list(found).count(g) > 1}):
        reasons.append(Reason(duplicate, f"{where}: gpu {g} has more than one group", where))
    return reasons


@collector_paused
def verify_throughput(
    proof: ThroughputProof,
    *,
    machine_id: str,
    challenge_id: str,
    nonce: bytes,
    params: Sequence[ProofParams],
    pairs: Sequence[GpuPairs] | None = None,
    pairs_secret: bytes | None = None,
    issued_at: float | None = None,
    commitment_received_at: float | None = None,
    rng: np.random.Generator | None = None,
) -> list[Reason]:
    """Everything about one host's proof; an empty list means pass.

    The service passes the pairs it recorded (`pairs`) or the secret it drew them with
    (`pairs_secret`, so a committee member can replay the draw); the deadline is checked when
    both service-clock times are given.
    """
    reasons = verify_commitment(
        proof.commitment,
        proof.signature,
        machine_id=machine_id,
        challenge_id=challenge_id,
        nonce=nonce,
        params=params,
    )
    if issued_at is not None and commitment_received_at is not None:
        reasons.extend(check_deadline(issued_at, commitment_received_at, params))
    expected: dict[int, list[Pair]] = {}
    if pairs is not None:
        expected = {g.gpu_index: list(g.pairs) for g in pairs}
    elif pairs_secret is not None or proof.pairs_secret is not None:
        secret = pairs_secret if pairs_secret is not None else bytes.fromhex(proof.pairs_secret or "")
        data = proof.commitment.signing_bytes()
        expected = {p.gpu_index: draw_pairs(data, secret, p) for p in params}
    committed = [p.gpu_index for p in params]
    pair_groups = [g.gpu_index for g in proof.pairs]
    opening_groups = [g.gpu_index for g in proof.openings]
    reasons += check_groups(
        pair_groups, committed, "pairs", codes.PAIRS_MISSING, codes.PAIRS_EXTRA, codes.PAIRS_DUPLICATE
    )
    reasons += check_groups(
        opening_groups,
        committed,
        "openings",
        codes.OPENINGS_MISSING,
        codes.OPENINGS_EXTRA,
        codes.OPENINGS_DUPLICATE,
    )
    claimed = {g.gpu_index: list(g.pairs) for g in proof.pairs}
    freivalds = Freivalds(b_seed(nonce, machine_id), rng)  # one X, one Y = B.X per size d, every GPU
    for p in params:
        want = expected.get(p.gpu_index, claimed.get(p.gpu_index))
        if (
            want is None
            or (p.gpu_index in claimed and claimed[p.gpu_index] != want)
            or len(want) != min(p.checks, p.steps * p.n)
        ):
            reasons.append(
                Reason(codes.PAIRS_MISMATCH, f"gpu {p.gpu_index}: pairs differ from those drawn", "pairs")
            )
        gpu_commitment = proof.commitment.gpu(p.gpu_index)
        gpu_openings = next((o for o in proof.openings if o.gpu_index == p.gpu_index), None)
        if gpu_commitment is None or want is None:
            continue
        if gpu_openings is None or opening_groups.count(p.gpu_index) != 1:
            continue  # refused above (missing or duplicate group)
        reasons.extend(
            verify_gpu(nonce, machine_id, p, gpu_commitment, want, gpu_openings, freivalds=freivalds)
        )
    return reasons


verify_proof = verify_gpu
