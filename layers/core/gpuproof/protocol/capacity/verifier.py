"""The capacity verifier: a plain, pure function over the service's own records (round nonces and
its clock) and the host's transcript; cheap (the service never recomputes a fill).

Per target: the layer roots chain to the signed commitment (the seed binds machine, challenge
nonce and target); every round was answered within its deadline on the service clock; the spots
drawn after the last round open the answered trees and root_L; the walks drawn then check every
committed stage, each at its own drawn row (Freivalds modulo 251 against B, regenerated once per
target).
It reads the openings as `wire.OpenedTarget` (numpy views of the binary transcript's bytes).
"""

from __future__ import annotations

import hashlib
import secrets
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from gpuproof.protocol.capacity import codes
from gpuproof.protocol.capacity.draws import (
    Walk,
    bandwidth_round,
    draw_spots,
    draw_walks,
    item_rows,
    target_rounds,
)
from gpuproof.protocol.capacity.fill import (
    HALF,
    TAG_X0,
    Q,
    answer_leaf,
    capacity_seed,
    chain_value,
    coefficients,
    gen_rows,
    lu_factors,
    parent_rows,
    parent_stage,
    stage_perms,
)
from gpuproof.protocol.capacity.models import (
    CapacityParams,
    CapacityTargetParams,
    RoundRecord,
    SignedCapacityCommitment,
    TargetOpenings,
)
from gpuproof.protocol.capacity.sweep import fingerprints, split_item, sweep_keys, sweep_leaf, sweep_matrix
from gpuproof.protocol.capacity.wire import (
    Digests,
    OpenedSpot,
    OpenedStep,
    OpenedTarget,
    OpenedWalk,
    Row,
    opened,
)
from gpuproof.protocol.collector import collector_paused
from gpuproof.protocol.proof import merkle
from gpuproof.protocol.reasons import Reason

RESULT_VERSION = 1
FREIVALDS_VECTORS = 4  # a wrong row passes one vector with probability 1/251: all four, 251^-4 < 2^-31


@dataclass
class TargetResult:
    target: int
    claimed_bytes: int
    proven_bytes: int
    bandwidth_bytes_per_s: float
    read_round_p50_s: float
    read_round_max_s: float
    passed: bool
    bandwidth_round_s: float = 0.0  # the bandwidth round's service-clock time (0: none answered)


@dataclass
class CapacityResult:
    """What the service stores as verification["capacity"] (`as_record`)."""

    gpus: list[TargetResult]
    host_ram: TargetResult | None
    reasons: list[Reason] = field(default_factory=list)
    digest: str = ""

    @property
    def passed(self) -> bool:
        return not self.reasons

    def as_record(self) -> dict[str, Any]:
        return {
            "version": RESULT_VERSION,
            "gpus": [
                {
                    "index": g.target,
                    "claimed_bytes": g.claimed_bytes,
                    "proven_bytes": g.proven_bytes,
                    "bandwidth_bytes_per_s": g.bandwidth_bytes_per_s,
                    "read_round_p50_s": g.read_round_p50_s,
                    "read_round_max_s": g.read_round_max_s,
                    "bandwidth_round_s": g.bandwidth_round_s,
                    "passed": g.passed,
                }
                for g in self.gpus
            ],
            "host_ram": None
            if self.host_ram is None
            else {
                "claimed_bytes": self.host_ram.claimed_bytes,
                "proven_bytes": self.host_ram.proven_bytes,
                "passed": self.host_ram.passed,
            },
            "reasons": list(dict.fromkeys(r.code for r in self.reasons)),  # each code once
            "digest": self.digest,
        }


_IN_RANGE = bytes(v & 0xFF for v in range(-HALF, HALF + 1))  # the int8 bytes of -125 .. 125


def _bounded(row: Row | None, d: int) -> bytes | None:
    """The row's d bytes (int8) when it has d entries, every one in [-125, 125]; else None."""
    if row is None or row.shape != (d,):
        return None
    if row.dtype != np.int8:
        if int(row.min()) < -HALF or int(row.max()) > HALF:
            return None
        row = row.astype(np.int8)
    raw = row.tobytes()
    return None if raw.translate(None, _IN_RANGE) else raw  # a byte left: an entry out of range


def _matrix(raws: Sequence[bytes], d: int) -> npt.NDArray[np.int8]:
    return np.frombuffer(b"".join(raws), dtype=np.int8).reshape(len(raws), d)


def _digests(path: Digests) -> list[bytes]:
    raw = path.tobytes()
    return [raw[k : k + 32] for k in range(0, len(raw), 32)]


def check_signed(
    signed: SignedCapacityCommitment,
    *,
    machine_id: str,
    challenge_id: str,
    nonce: bytes,
    params: CapacityParams,
) -> list[Reason]:
    c = signed.commitment
    reasons = []
    if c.machine_id != machine_id:
        reasons.append(
            Reason(codes.MACHINE_MISMATCH, "commitment names another machine", "commitment.machine_id")
        )
    if c.challenge_id != challenge_id:
        reasons.append(
            Reason(codes.CHALLENGE_MISMATCH, "commitment names another challenge", "commitment.challenge_id")
        )
    if c.nonce != nonce.hex():
        reasons.append(Reason(codes.NONCE_MISMATCH, "commitment is for another nonce", "commitment.nonce"))
    try:
        ok = signed.commitment.machine_id == machine_id and signed.verifies()
    except ValueError:
        ok = False
    if not ok:
        reasons.append(
            Reason(codes.SIGNATURE_INVALID, "commitment is not signed by this machine's key", "signature")
        )
    want = sorted(t.target for t in params.targets)
    got = [t.target for t in c.targets]
    if sorted(got) != want:
        reasons.append(
            Reason(codes.PARAMS_MISMATCH, f"commitment covers {got}, params ask {want}", "commitment.targets")
        )
    return reasons


def _round_times(
    tp: CapacityTargetParams, rounds: Sequence[RoundRecord], planned: list[int], sweep_round: int | None
) -> tuple[list[float], list[Reason], float]:
    """The read rounds' durations, the reasons, and the bandwidth round's duration (0.0: none)."""
    where = f"targets[{tp.target}]"
    elapsed: list[float] = []
    reasons: list[Reason] = []
    swept_s = 0.0
    covering = {r.round: r for r in rounds if tp.target in r.targets}
    for k in planned:
        record = covering.get(k)
        answered = record is not None and any(a.target == tp.target for a in record.answers)
        if record is None or record.received_at is None or not answered:
            reasons.append(
                Reason(codes.ROUND_MISSING, f"round {k} has no answer for target {tp.target}", where)
            )
            continue
        took = record.received_at - record.sent_at
        if took < 0:
            reasons.append(Reason(codes.CLOCK_INVALID, f"round {k} answered before it was sent", where))
            continue
        if k == sweep_round:
            swept_s = took
            late_code, deadline, expected = (
                codes.BANDWIDTH_DEADLINE_MISSED,
                tp.sweep_deadline_s,
                tp.sweep_expected_s,
            )
        else:
            elapsed.append(took)
            late_code = codes.HOST_ROUND_DEADLINE_MISSED if tp.is_host else codes.ROUND_DEADLINE_MISSED
            deadline, expected = tp.round_deadline_s, tp.round_expected_s
        if took > deadline:
            reasons.append(
                Reason(
                    late_code,
                    f"round {k} answered {took:.4f} s after it was sent; "
                    f"deadline {deadline:.4f} s (expected {expected:.4f} s)",
                    where,
                )
            )
    return elapsed, reasons, swept_s


def _check_spot(
    tp: CapacityTargetParams, root_l: bytes, record: RoundRecord, spot: OpenedSpot, field_name: str
) -> list[Reason]:
    nonce = bytes.fromhex(record.nonce)
    rows_idx = item_rows(tp, nonce, spot.item)
    depth = merkle.depth(tp.n_rows)
    sub_height = tp.chunk_rows.bit_length() - 1
    if (
        len(spot.rows) != len(rows_idx)
        or len(spot.tree_path) != depth - sub_height
        or len(spot.answer_path) != merkle.depth(tp.items)
    ):
        return [
            Reason(
                codes.OPENING_MALFORMED,
                f"spot {spot.round}/{spot.item}: row count or path length",
                field_name,
            )
        ]
    arrays = [_bounded(r, tp.d) for r in spot.rows]
    if any(a is None for a in arrays):
        return [
            Reason(
                codes.VALUE_OUT_OF_RANGE,
                f"spot {spot.round}/{spot.item}: entries outside ±{HALF}",
                field_name,
            )
        ]
    raws = [a for a in arrays if a is not None]
    rows = _matrix(raws, tp.d)
    reasons = []
    if tp.mode == "scan":
        sub = merkle.levels([merkle.leaf_hash(r) for r in raws], sub_height)[-1][0]
        node_index = spot.item
    else:
        sub = merkle.leaf_hash(raws[0])
        node_index = rows_idx[0]
    if merkle.root_from_path(sub, node_index, _digests(spot.tree_path)) != root_l:
        reasons.append(
            Reason(
                codes.MERKLE_PATH_INVALID,
                f"spot {spot.round}/{spot.item}: rows do not open root_L",
                field_name,
            )
        )
    answered = next(a.root for a in record.answers if a.target == tp.target)
    item_leaf = answer_leaf(nonce, tp.target, spot.item, rows)
    if not merkle.verify_path(
        item_leaf, spot.item, tp.items, _digests(spot.answer_path), bytes.fromhex(answered)
    ):
        reasons.append(
            Reason(
                codes.ANSWER_MISMATCH,
                f"spot {spot.round}/{spot.item}: not the leaf the timed answer committed",
                field_name,
            )
        )
    return reasons


def _check_sweep_spot(
    tp: CapacityTargetParams, root_l: bytes, record: RoundRecord, spot: OpenedSpot, field_name: str
) -> list[Reason]:
    """A bandwidth-round spot j = (sweep s, item c): the item's rows open root_L, and their
    fingerprint under R_s, with kappa_s chained from the recorded roots, opens root_s."""
    s, c = split_item(tp, spot.item)
    nonce = bytes.fromhex(record.nonce)
    rows_idx = item_rows(tp, nonce, c)
    label = f"bandwidth spot sweep {s} item {c}"
    if (
        len(spot.rows) != len(rows_idx)
        or len(spot.tree_path) != merkle.depth(tp.n_rows) - (tp.chunk_rows.bit_length() - 1)
        or len(spot.answer_path) != merkle.depth(tp.items)
    ):
        return [Reason(codes.OPENING_MALFORMED, f"{label}: row count or path length", field_name)]
    arrays = [_bounded(r, tp.d) for r in spot.rows]
    if any(a is None for a in arrays):
        return [Reason(codes.VALUE_OUT_OF_RANGE, f"{label}: entries outside ±{HALF}", field_name)]
    raws = [a for a in arrays if a is not None]
    rows = _matrix(raws, tp.d)
    reasons = []
    sub = merkle.levels([merkle.leaf_hash(r) for r in raws], tp.chunk_rows.bit_length() - 1)[-1][0]
    if merkle.root_from_path(sub, c, _digests(spot.tree_path)) != root_l:
        reasons.append(Reason(codes.MERKLE_PATH_INVALID, f"{label}: rows do not open root_L", field_name))
    answer = next(a for a in record.answers if a.target == tp.target)
    roots = [bytes.fromhex(h) for h in [*answer.sweep_roots, answer.root]]
    if len(roots) != tp.sweeps:
        return [*reasons, Reason(codes.OPENING_MALFORMED, f"{label}: {len(roots)} sweep roots", field_name)]
    key = sweep_keys(nonce, roots, tp.sweeps)[s - 1]
    item_leaf = sweep_leaf(key, tp.target, c, fingerprints(rows, sweep_matrix(key, tp.d)))
    if not merkle.verify_path(item_leaf, c, tp.items, _digests(spot.answer_path), roots[s - 1]):
        reasons.append(
            Reason(codes.SWEEP_MISMATCH, f"{label}: not the leaf the timed sweep committed", field_name)
        )
    return reasons


def b_times_mod(b: npt.NDArray[np.float32], v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """B . v mod 251, exactly, for B's entries in [-125, 125] and v's in [0, 251): float32 BLAS is
    exact while every partial sum stays below 2^24. v centred to [-125, 125] needs one product while
    d . 125^2 < 2^24 (d <= 1073: every GPU and host target); beyond, v is split in 4-bit halves."""
    d = b.shape[1]
    if d * HALF * HALF < 2**24:
        centred = np.where(v > HALF, v - Q, v).astype(np.float32)
        out: npt.NDArray[np.float64] = (b @ centred).astype(np.float64) % Q
        return out
    high, low = np.divmod(v, 16)
    split: npt.NDArray[np.float64] = (
        (b @ high.astype(np.float32)).astype(np.float64) * 16 + (b @ low.astype(np.float32))
    ) % Q
    return split


class LUMatrix:
    """B = L . U (`fill.b_matrix`) as its factors: B . v mod 251 is L . (U . v mod 251) mod 251, two
    `b_times_mod` products, never B itself. Float32 copies are kept up to d = 2048 (32 MB); beyond,
    the int8 factors are converted 512 rows at a time."""

    KEEP_FLOAT_D = 2048

    def __init__(self, seed: bytes, d: int) -> None:
        self.lower, self.upper = lu_factors(seed, d)
        self._float: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None
        if d <= self.KEEP_FLOAT_D:
            self._float = (self.lower.astype(np.float32), self.upper.astype(np.float32))

    @staticmethod
    def _times(m: npt.NDArray[np.int8], v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        out = np.empty((m.shape[0], v.shape[1]), dtype=np.float64)
        for start in range(0, m.shape[0], 512):
            out[start : start + 512] = b_times_mod(m[start : start + 512].astype(np.float32), v)
        return out

    def times_mod(self, v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """B . v mod 251 for v's entries in [0, 251)."""
        if self._float is not None:
            lower, upper = self._float
            return b_times_mod(lower, b_times_mod(upper, v))
        return self._times(self.lower, self._times(self.upper, v))


class LayerPaths:
    """Merkle paths into one layer's tree, checked against its root. Every node a path that opened
    computed or used as a sibling is kept; a later path stops climbing at the first kept node it
    reaches (which must equal what it computed there) and its remaining siblings must equal the kept
    ones. The verdict is the one a full climb gives (short of a SHA-256 collision), at fewer hashes:
    a step's mate row meets its own row's path at level l - 1, and walks share the top of each tree.
    The node hash is `merkle.node_hash`, inlined (this loop is most of the walk check's time)."""

    def __init__(self, root: bytes, n: int) -> None:
        self.n, self.depth = n, merkle.depth(n)
        self.known: list[dict[int, bytes]] = [{} for _ in range(self.depth + 1)]  # per level: index -> node
        self.known[self.depth][0] = root

    def opens(self, digest: bytes, index: int, path: Digests) -> bool:
        depth, known = self.depth, self.known
        if not 0 <= index < self.n or len(path) != depth:
            return False
        raw = path.tobytes()
        sha, prefix = hashlib.sha256, merkle.NODE_PREFIX
        node, at, level = digest, index, 0
        computed = []
        while (kept := known[level].get(at)) is None:  # the root is kept: this ends by level = depth
            sibling = raw[32 * level : 32 * level + 32]
            computed.append(node)
            node = sha(prefix + sibling + node).digest() if at & 1 else sha(prefix + node + sibling).digest()
            at >>= 1
            level += 1
        if kept != node:
            return False
        for upper in range(level, depth):  # the siblings above where it met must be the kept ones
            if known[upper].get(at ^ 1) != raw[32 * upper : 32 * upper + 32]:
                return False
            at >>= 1
        at = index
        for lower, value in enumerate(computed):
            known[lower][at] = value
            known[lower][at ^ 1] = raw[32 * lower : 32 * lower + 32]
            at >>= 1
        return True


@dataclass
class _Step:
    """One walk step that passed its shape and range checks, queued for the batched row check."""

    stage: int
    row: int
    below: int  # the committed layer (0: X_0) its parents lie in
    parents: list[bytes]  # 2^(stage - below) rows of d int8 entries (`fill.parent_rows`)
    a_row: bytes
    reasons: list[Reason]
    row_ok: bool = True


class _Walks:
    """The walks of one target: each step's rows open their layer roots (`LayerPaths`), and a_row
    follows from its parents row by row, checked by Freivalds modulo 251 with FREIVALDS_VECTORS
    random vectors x, k = `fill.coefficients`. Over one stage: (a_row + 125 - l) . x = own . y[pi_l]
    + k_l(i) mate . y[sigma_l] with y = B x. Over two (every other layer committed): modulo 251 the
    stages compose to one affine map, X_{l-1}[j] = X_{l-2}[j] . B[pi'] + k'(j) X_{l-2}[p'(j)] .
    B[sigma'] + (l - 126) with (pi', sigma', p', k') stage l - 1's, so
    (a_row + 125 - l) . x = r0 . z[pi'] + k'(i) r1 . z[sigma'] + k_l(i) (r2 . w[pi'] + k'(p_l(i)) r3 .
    w[sigma']) + (l - 126)(1 . y[pi_l] + k_l(i) 1 . y[sigma_l]) with z = B y[pi_l], w = B y[sigma_l]
    (B . v as L . (U . v), `LUMatrix`: two d x d by d x 2k products per stage). Over s stages the
    same rule s - 1 times: the step is a binary tree of vectors (`_trees`) and coefficients
    (`_coefficients`), its leaves the 2^s parents, each uncommitted node adding (m - 125) 1 . v
    (docs/protocol.md §17.6 check 4). y = B x is computed once per target; the row checks of every
    walk's steps at one stage are one matrix product per parent (float64: each is reduced mod 251
    before its coefficient; every sum is below 2^31, exact)."""

    def __init__(
        self, seed: bytes, tp: CapacityTargetParams, roots: Sequence[bytes], rng: np.random.Generator
    ) -> None:
        self.seed, self.tp = seed, tp
        self.x = rng.integers(0, Q, size=(tp.d, FREIVALDS_VECTORS)).astype(np.float64)
        self.b = LUMatrix(seed, tp.d)
        self.y = self.b.times_mod(self.x)
        self.perms: dict[int, tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]] = {}
        self.layers = {
            stage: LayerPaths(root, tp.n_rows) for stage, root in zip(tp.committed, roots, strict=True)
        }
        self.leaves: set[tuple[int, int, bytes]] = set()  # (layer, row, leaf) already opened

    def _opens(self, layer: int, row: int, values: bytes, path: Digests) -> bool:
        digest = merkle.leaf_hash(values)
        if (layer, row, digest) in self.leaves:
            return True
        ok = self.layers[layer].opens(digest, row, path)
        if ok:
            self.leaves.add((layer, row, digest))
        return ok

    def _step(self, s: OpenedStep, stage: int, row: int, field_name: str) -> _Step | list[Reason]:
        """The step queued for its row check, or its reasons when its shape or range is wrong."""
        tp, label = self.tp, f"stage {stage} row {row}"
        below = parent_stage(stage, tp.commit_stride)
        depth = merkle.depth(tp.n_rows)
        if s.stage != stage or s.row != row:
            return [
                Reason(codes.OPENINGS_MISMATCH, f"{label}: opened stage {s.stage} row {s.row}", field_name)
            ]
        wanted = parent_rows(row, stage, below, tp.n_rows)
        count = len(wanted) if below else 0
        shape_ok = (
            len(s.a_path) == depth
            and len(s.prev) == count
            and len(s.prev_paths) == count
            and all(len(path) == depth for path in s.prev_paths)
        )
        if not shape_ok:
            return [Reason(codes.OPENING_MALFORMED, f"{label}: path length or parents' presence", field_name)]
        a_row = _bounded(s.a_row, tp.d)
        if below == 0:
            x0 = gen_rows(self.seed, TAG_X0, wanted, tp.d).tobytes()
            parents = [x0[k * tp.d : (k + 1) * tp.d] for k in range(len(wanted))]
        else:
            bounded = [_bounded(r, tp.d) for r in s.prev]
            if any(r is None for r in bounded):
                return [Reason(codes.VALUE_OUT_OF_RANGE, f"{label}: entries outside ±{HALF}", field_name)]
            parents = [r for r in bounded if r is not None]
        if a_row is None:
            return [Reason(codes.VALUE_OUT_OF_RANGE, f"{label}: entries outside ±{HALF}", field_name)]
        ok = self._opens(stage, row, a_row, s.a_path)
        if below:
            for parent, values, path in zip(wanted, parents, s.prev_paths, strict=True):
                ok = self._opens(below, parent, values, path) and ok
        reasons = []
        if not ok:
            reasons.append(
                Reason(codes.MERKLE_PATH_INVALID, f"{label}: rows do not open their layer roots", field_name)
            )
        return _Step(stage, row, below, parents, a_row, reasons)

    def _perms(self, stage: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        if stage not in self.perms:
            self.perms[stage] = stage_perms(self.seed, stage, self.tp.d)
        return self.perms[stage]

    def _trees(
        self, groups: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], list[npt.NDArray[np.float64]]]:
        """Per (stage l, span s) the vectors of the step's tree, level by level (the class docstring):
        level 1 is [y[pi_l] | y[sigma_l]], and level t + 1 is, node by node (own first),
        [(B v)[pi_m] | (B v)[sigma_m]] with m = l - t, each a d x 2^t k array. Every group's level t
        goes through B in one product by U and one by L (`LUMatrix`): s - 1 pairs a target's stage
        group, not one a node."""
        k = FREIVALDS_VECTORS
        levels: dict[tuple[int, int], list[npt.NDArray[np.float64]]] = {}
        for stage, span in groups:
            pi, sigma = self._perms(stage)
            levels[(stage, span)] = [np.concatenate([self.y[pi], self.y[sigma]], axis=1)]
        for t in range(1, max((span for _stage, span in groups), default=1)):
            deeper = [g for g in groups if g[1] > t]
            if not deeper:
                break
            bv = self.b.times_mod(np.concatenate([levels[g][t - 1] for g in deeper], axis=1))
            at = 0
            for stage, span in deeper:
                nodes = 1 << t
                block = bv[:, at : at + nodes * k].reshape(self.tp.d, nodes, k)
                at += nodes * k
                pi, sigma = self._perms(stage - t)
                levels[(stage, span)].append(
                    np.stack([block[pi], block[sigma]], axis=2).reshape(self.tp.d, 2 * nodes * k)
                )
        return levels

    def _coefficients(self, rows: npt.NDArray[np.intp], stage: int, span: int) -> list[npt.NDArray[np.int64]]:
        """Per level t = 1..span, each step's coefficient of each node (steps x 2^t, mod 251): a
        node's own child keeps its coefficient, its mate child gains k_m(j) (`fill.coefficients`,
        m = l - t + 1, j the node's row); the last level's are the parents', in `fill.parent_rows`
        order (one stage: [1, k_l(i)]; two: [1, k_{l-1}(i), k_l(i), k_l(i) k_{l-1}(p_l(i))])."""
        n = self.tp.n_rows
        at, coef = rows[:, None], np.ones((len(rows), 1), dtype=np.int64)
        out = []
        for m in range(stage, stage - span, -1):
            mates = at ^ (1 << (m - 1))
            mates = np.where(mates < n, mates, at)
            k = coefficients(at.ravel(), m, n).reshape(at.shape)
            at = np.stack([at, mates], axis=2).reshape(len(rows), -1)
            coef = np.stack([coef, coef * k % Q], axis=2).reshape(len(rows), -1)
            out.append(coef)
        return out

    def _check_rows(self, steps: list[_Step]) -> None:
        by_stage: dict[tuple[int, int], list[_Step]] = {}
        for step in steps:
            by_stage.setdefault((step.stage, step.stage - step.below), []).append(step)
        trees = self._trees(sorted(by_stage))
        k, d = FREIVALDS_VECTORS, self.tp.d
        for (stage, span), group in by_stage.items():
            levels = trees[(stage, span)]
            coefs = self._coefficients(np.array([g.row for g in group], dtype=np.intp), stage, span)
            product = np.zeros((len(group), k))
            # the constants of g_m at the uncommitted layers m = l - t, t = 1..span - 1: (m - 125) 1 . v
            for t in range(1, span):
                sums = levels[t - 1].sum(axis=0).reshape(1 << t, k)
                product += coefs[t - 1].astype(np.float64) @ (((stage - t - HALF) * sums) % Q)
            leaves = levels[span - 1]
            for j in range(1 << span):
                rows = _matrix([g.parents[j] for g in group], d).astype(np.float64)
                product += ((rows @ leaves[:, j * k : (j + 1) * k]) % Q) * coefs[span - 1][:, j, None]
            product %= Q
            a_rows = _matrix([g.a_row for g in group], d).astype(np.float64)
            residue = (((a_rows + (HALF - stage)) % Q) @ self.x) % Q
            for g, ok in zip(group, (product == residue).all(axis=1), strict=True):
                g.row_ok = bool(ok)

    def check(self, walks: Sequence[Walk], got: dict[int, OpenedWalk], where: str) -> list[Reason]:
        """Each walk's reasons up to its first failing step (a walk stops there)."""
        per_walk: list[list[_Step | list[Reason]]] = []
        queued: list[_Step] = []
        for walk in walks:
            steps = got[walk.index].steps
            field_name = f"{where}.walks[{walk.index}]"
            if len(steps) != len(walk.stages):
                per_walk.append(
                    [[Reason(codes.OPENING_MALFORMED, f"walk {walk.index}: {len(steps)} steps", field_name)]]
                )
                continue
            found: list[_Step | list[Reason]] = []
            for step, stage, row in zip(steps, walk.stages, walk.rows, strict=True):
                checked = self._step(step, stage, row, field_name)
                found.append(checked)
                if isinstance(checked, list):
                    break
                queued.append(checked)
                if checked.reasons:
                    break
            per_walk.append(found)
        self._check_rows(queued)
        reasons: list[Reason] = []
        for walk, found in zip(walks, per_walk, strict=True):
            for checked in found:
                step_reasons = checked if isinstance(checked, list) else list(checked.reasons)
                if isinstance(checked, _Step) and not checked.row_ok:
                    label = f"stage {checked.stage} row {checked.row}"
                    step_reasons.append(
                        Reason(
                            codes.WALK_CHECK_FAILED,
                            f"{label}: not the stage map of its parents in layer {checked.below}",
                            f"{where}.walks[{walk.index}]",
                        )
                    )
                reasons.extend(step_reasons)
                if step_reasons:
                    break
        return reasons


def check_walks(
    seed: bytes,
    tp: CapacityTargetParams,
    roots: Sequence[bytes],
    walks: Sequence[Walk],
    got: dict[int, OpenedWalk],
    rng: np.random.Generator,
    where: str,
) -> list[Reason]:
    """The drawn walks against their openings (`got`, by walk index: every drawn one present)."""
    return _Walks(seed, tp, roots, rng).check(walks, got, where)


def verify_target(
    tp: CapacityTargetParams,
    *,
    seed: bytes,
    chain_hex: str,
    root_hex: str,
    commitment_bytes: bytes,
    rounds: Sequence[RoundRecord],
    planned: list[int],
    draw_secret: bytes,
    openings: OpenedTarget,
    rng: np.random.Generator,
    sweep_round: int | None = None,
) -> tuple[list[Reason], list[float], float]:
    """One target; returns its reasons, the service-clock duration of each answered read round and
    that of its bandwidth round (0.0: none)."""
    where = f"targets[{tp.target}]"
    elapsed, reasons, swept_s = _round_times(tp, rounds, planned, sweep_round)
    if len(openings.roots) != len(tp.committed):
        return (
            [
                *reasons,
                Reason(
                    codes.PARAMS_MISMATCH,
                    f"{len(openings.roots)} roots for {len(tp.committed)} committed layers",
                    where,
                ),
            ],
            elapsed,
            swept_s,
        )
    roots = _digests(openings.roots)
    if chain_value(seed, roots).hex() != chain_hex or roots[-1].hex() != root_hex:
        reasons.append(
            Reason(
                codes.ROOT_CHAIN_INVALID, "layer roots do not chain to the committed value", f"{where}.chain"
            )
        )
        return reasons, elapsed, swept_s  # nothing below can be judged against roots not committed

    spots_wanted = draw_spots(commitment_bytes, draw_secret, tp, planned, sweep_round)
    wanted = sorted((r, i) for r, items in spots_wanted.items() for i in items)
    opened_spots = [(s.round, s.item) for s in openings.spots]
    if sorted(opened_spots) != wanted:
        reasons.append(
            Reason(codes.OPENINGS_MISMATCH, "opened spots differ from those drawn", f"{where}.spots")
        )
    by_round = {
        r.round: r for r in rounds if tp.target in r.targets and any(a.target == tp.target for a in r.answers)
    }
    checked: set[tuple[int, int]] = set()
    for k, spot in enumerate(openings.spots):
        key = (spot.round, spot.item)
        if key in checked or key not in set(wanted) or spot.round not in by_round:
            continue
        checked.add(key)
        check = _check_sweep_spot if spot.round == sweep_round else _check_spot
        reasons.extend(check(tp, roots[-1], by_round[spot.round], spot, f"{where}.spots[{k}]"))

    walks = draw_walks(commitment_bytes, draw_secret, tp)
    if sorted(w.walk for w in openings.walks) != [w.index for w in walks]:
        reasons.append(
            Reason(codes.OPENINGS_MISMATCH, "opened walks differ from those drawn", f"{where}.walks")
        )
        return reasons, elapsed, swept_s
    reasons.extend(check_walks(seed, tp, roots, walks, {w.walk: w for w in openings.walks}, rng, where))
    return reasons, elapsed, swept_s


@collector_paused
def verify_capacity(
    params: CapacityParams,
    *,
    machine_id: str,
    challenge_id: str,
    nonce: bytes,
    signed: SignedCapacityCommitment,
    phase_opened_at: float,
    commitment_received_at: float,
    rounds: Sequence[RoundRecord],
    draw_secret: bytes,
    openings: Sequence[OpenedTarget | TargetOpenings],
    rng: np.random.Generator | None = None,
) -> CapacityResult:
    """The whole phase. Times are the SERVICE's clock; `rounds` are the service's own records.
    `openings` are the decoded binary transcript (`wire.decode_openings`, the service's path) or a
    prover's models (in process)."""
    gen = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    commitment_bytes = signed.commitment.signing_bytes()
    reasons = check_signed(
        signed, machine_id=machine_id, challenge_id=challenge_id, nonce=nonce, params=params
    )
    took = commitment_received_at - phase_opened_at
    if took < 0:
        reasons.append(
            Reason(codes.CLOCK_INVALID, "commitment received before the phase opened", "commitment")
        )
    elif took > params.fill_deadline_s:
        reasons.append(
            Reason(
                codes.FILL_DEADLINE_MISSED,
                f"commitment {took:.4f} s after the phase opened; deadline {params.fill_deadline_s:.4f} s",
                "commitment",
            )
        )
    for r in rounds:
        if r.sent_at < commitment_received_at:
            reasons.append(
                Reason(codes.CLOCK_INVALID, f"round {r.round} sent before the commitment arrived", "rounds")
            )
    global_reasons = list(reasons)
    per_target: dict[int, tuple[list[Reason], list[float], float]] = {}
    sweep_round = bandwidth_round(params)
    opened_by = {o.target: o if isinstance(o, OpenedTarget) else opened(o) for o in openings}
    if sorted(opened_by) != sorted(t.target for t in params.targets) or len(opened_by) != len(openings):
        global_reasons.append(
            Reason(codes.PARAMS_MISMATCH, "transcript covers other targets than the params", "transcript")
        )
    for tp in params.targets:
        committed = signed.commitment.target(tp.target)
        target_openings = opened_by.get(tp.target)
        if committed is None or target_openings is None:
            per_target[tp.target] = (
                [
                    Reason(
                        codes.PARAMS_MISMATCH, "target not committed or not opened", f"targets[{tp.target}]"
                    )
                ],
                [],
                0.0,
            )
            continue
        seed = capacity_seed(nonce, machine_id, tp.target)
        per_target[tp.target] = verify_target(
            tp,
            seed=seed,
            chain_hex=committed.chain,
            root_hex=committed.root,
            commitment_bytes=commitment_bytes,
            rounds=rounds,
            planned=target_rounds(params, tp.target),
            draw_secret=draw_secret,
            openings=target_openings,
            rng=gen,
            sweep_round=sweep_round,
        )
    results: list[TargetResult] = []
    host: TargetResult | None = None
    all_reasons = list(global_reasons)
    for tp in params.targets:
        target_reasons, elapsed, swept_s = per_target[tp.target]
        all_reasons.extend(target_reasons)
        passed = not global_reasons and not target_reasons
        worst = max(elapsed, default=0.0)
        # The bandwidth round's figure when the target swept (§17.12), else the scan's lower bound.
        if tp.sweeps and swept_s > 0:
            read_bytes, took = tp.sweeps * tp.fill_bytes, swept_s
        else:
            read_bytes, took = (tp.fill_bytes if tp.mode == "scan" else tp.samples * tp.d), worst
        result = TargetResult(
            target=tp.target,
            claimed_bytes=tp.claimed_bytes,
            proven_bytes=tp.proven_bytes if passed else 0,
            bandwidth_bytes_per_s=read_bytes / took if took > 0 and passed else 0.0,
            read_round_p50_s=statistics.median(elapsed) if elapsed else 0.0,  # 0.0: no round answered
            read_round_max_s=worst,
            passed=passed,
            bandwidth_round_s=swept_s,
        )
        if tp.is_host:
            host = result
        else:
            results.append(result)
    return CapacityResult(
        gpus=results, host_ram=host, reasons=all_reasons, digest=hashlib.sha256(commitment_bytes).hexdigest()
    )
