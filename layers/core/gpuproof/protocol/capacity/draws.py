"""The service's draws of the capacity phase: sampled rows of a round, opened spots and walks.

Pure functions of their inputs, so anyone given the recorded nonces and the draw secret replays them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gpuproof.protocol.capacity.fill import u32
from gpuproof.protocol.capacity.models import CapacityParams, CapacityTargetParams

SAMPLE_DOMAIN = b"gpuproof/capacity/sample/v1"
SPOTS_DOMAIN = b"gpuproof/capacity/spots/v1"
WALKS_DOMAIN = b"gpuproof/capacity/walks/v2"


def sample_row(round_nonce: bytes, target: int, item: int, n_rows: int) -> int:
    """Row of item c of a sample round:
    u64le(SHA-256(SAMPLE_DOMAIN || nonce || u32 target || u32 c)[0:8]) mod N."""
    h = hashlib.sha256(SAMPLE_DOMAIN + round_nonce + u32(target) + u32(item)).digest()
    return int.from_bytes(h[:8], "little") % n_rows


def item_rows(tp: CapacityTargetParams, round_nonce: bytes, item: int) -> list[int]:
    """The rows item c of a round covers: chunk c (scan) or the sampled row (sample)."""
    if tp.mode == "scan":
        start = item * tp.chunk_rows
        return list(range(start, min(start + tp.chunk_rows, tp.n_rows)))
    return [sample_row(round_nonce, tp.target, item, tp.n_rows)]


def _prefix(domain: bytes, secret: bytes, commitment_bytes: bytes, target: int) -> bytes:
    return domain + u32(len(secret)) + secret + hashlib.sha256(commitment_bytes).digest() + u32(target)


def round_plan(params: CapacityParams) -> dict[int, list[int]]:
    """Targets per round number: rounds 1..R read every GPU at once (one deadline, one answer);
    rounds R+1..2R read host RAM, when it is claimed; then one bandwidth round (§17.12) sweeps every
    GPU target that has sweeps, at once."""
    gpus = [t.target for t in params.targets if not t.is_host]
    host = [t.target for t in params.targets if t.is_host]
    swept = [t.target for t in params.targets if t.sweeps]
    plan: dict[int, list[int]] = {}
    for _ in range(params.rounds):
        if gpus:
            plan[len(plan) + 1] = gpus
    for _ in range(params.rounds):
        if host:
            plan[len(plan) + 1] = host
    if swept:
        plan[len(plan) + 1] = swept
    return plan


def bandwidth_round(params: CapacityParams) -> int | None:
    """The bandwidth round's number (the plan's last), or None when no target sweeps."""
    if not any(t.sweeps for t in params.targets):
        return None
    return max(round_plan(params))


def target_rounds(params: CapacityParams, target: int) -> list[int]:
    return [r for r, targets in round_plan(params).items() if target in targets]


def draw_spots(
    commitment_bytes: bytes,
    secret: bytes,
    tp: CapacityTargetParams,
    rounds: list[int],
    sweep_round: int | None = None,
) -> dict[int, list[int]]:
    """Per round r of the target, `spots` distinct items:
    u64le(SHA-256(prefix || u32 r || u32 k)[0:8]) mod items, k = 0, 1, ...; repeats skipped;
    every item when spots >= items. In the bandwidth round (`sweep_round`) the same draw picks
    `sweep_spots` of the sweeps x items (sweep, item) pairs, j = (s - 1) x items + c."""
    prefix = _prefix(SPOTS_DOMAIN, secret, commitment_bytes, tp.target)
    out: dict[int, list[int]] = {}
    for r in rounds:
        swept = r == sweep_round and tp.sweeps > 0
        universe = tp.items * tp.sweeps if swept else tp.items
        count = tp.sweep_spots if swept else tp.spots
        if count >= universe:
            out[r] = list(range(universe))
            continue
        chosen: list[int] = []
        k = 0
        while len(chosen) < count:
            h = hashlib.sha256(prefix + u32(r) + u32(k)).digest()
            k += 1
            item = int.from_bytes(h[:8], "little") % universe
            if item not in chosen:
                chosen.append(item)
        out[r] = chosen
    return out


@dataclass(frozen=True)
class Walk:
    """Rows of one walk at its committed stages, from L down: rows[j] is the row opened at stages[j]."""

    index: int
    stages: list[int]
    rows: list[int]


def walk_row(prefix: bytes, walk: int, stage: int, n_rows: int) -> int:
    """Walk w's row at committed stage l: u64le(SHA-256(prefix || u32 w || u32 l)[0:8]) mod N,
    drawn for each stage on its own (walks v2)."""
    h = hashlib.sha256(prefix + u32(walk) + u32(stage)).digest()
    return int.from_bytes(h[:8], "little") % n_rows


def draw_walks(commitment_bytes: bytes, secret: bytes, tp: CapacityTargetParams) -> list[Walk]:
    """Walk w opens the committed stages among L .. L - walk_stages + 1 (every stage, or every
    other: `commit_stride`), each at its own row `walk_row(prefix, w, l)`: the rows of one walk are
    independent of each other, so a walk's chances of meeting an inconsistent row multiply over the
    stages (docs/protocol.md §17.7, Bound 3). Walks v1 went down one path (row i_l, then i_l or
    p_l(i_l)), whose stages an adversary could correlate."""
    prefix = _prefix(WALKS_DOMAIN, secret, commitment_bytes, tp.target)
    committed = set(tp.committed)
    stages = [s for s in range(tp.n_stages, tp.n_stages - tp.walk_stages, -1) if s in committed]
    return [Walk(w, stages, [walk_row(prefix, w, s, tp.n_rows) for s in stages]) for w in range(tp.walks)]


def all_spots(
    commitment_bytes: bytes, secret: bytes, params: CapacityParams
) -> dict[int, dict[int, list[int]]]:
    sweep_round = bandwidth_round(params)
    return {
        tp.target: draw_spots(commitment_bytes, secret, tp, target_rounds(params, tp.target), sweep_round)
        for tp in params.targets
    }
