"""The openings' recompute (docs/protocol.md §17.11 "The openings' recompute"): a prover holding
only X_L recomputes the rows of the lower committed layers that the walks open, with the kept
block of 2^H rows around each (its Merkle path below the kept nodes), in jobs of two kinds:

- a BLOCK ("up"): rows k 2^l .. (k + 1) 2^l - 1 of X_0, seeded, taken through stages 1..l in
  place. Stage s pairs rows that differ in bit s - 1 < l, so a block is closed under stages 1..l:
  X_l[r]'s cone is exactly its block, 2^l rows, l stages (cheap for low layers);
- a DESCENT ("down"): the rows j = j_low + F 2^H + hi 2^b (j_low < 2^H, hi < 2^(L - b)) of X_L,
  taken DOWN through the inverse stage maps L..b + 1 (`fill.unstage_matrices`: every stage map is
  invertible, fill v2). Inverting stage s needs both rows of each pair, which differ in bit s - 1
  >= b, so the set is closed: X_b[r], and every layer between, is recomputed from the 2^(L - b)
  slabs of 2^H rows of X_L that agree with r on bits H..b - 1 (cheap for high layers).

Rows wanted below a threshold T go to blocks, rows at T or above (below L) to descents, T chosen to
make the fewest row-stages (`plan`). In a descent buffer, slab hi sits at rows hi 2^H .., so the
buffer's order is the rows' order: the rows past N - 1 are its tail, and a stage's lone rows (mate
past N - 1) are exactly those whose buffer mate is past its valid rows, as in a block. A row's kept
block is an aligned block of 2^H buffer rows in both kinds. Pure planning: no device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpuproof.protocol.capacity.draws import Walk
from gpuproof.protocol.capacity.fill import parent_rows, parent_stage
from gpuproof.protocol.capacity.models import CapacityTargetParams


def slab_run(n_rows: int, stride: int, count: int, j0: int, w: int) -> tuple[int, int]:
    """A run of slabs {k stride + j0 .. k stride + j0 + w - 1}, k < count, inside rows 0..N-1 (a
    descent's, stride 2^b; a host window's, stride C): (full, tail): slabs 0..full-1 hold w rows
    each, slab `full` (if tail > 0) its first `tail`, none after it."""
    full = min(count, max(0, (n_rows - j0 - w) // stride + 1)) if n_rows - j0 >= w else 0
    tail = max(0, min(w, n_rows - j0 - full * stride)) if full < count else 0
    return full, tail


@dataclass(frozen=True)
class Job:
    """One recompute job: `down` False, a block (stages 1..layer over rows key 2^layer ..); True,
    a descent (stages L..layer + 1 inverted over the rows whose bits H..layer - 1 are key)."""

    down: bool
    layer: int
    key: int
    wanted: tuple[tuple[int, int], ...]  # (row, layer) it opens, ascending

    def first_row(self) -> int:
        return self.key << self.layer

    def rows(self, n_rows: int, n_stages: int, height: int) -> int:
        """Its buffer's valid rows (those below N; in a descent, every slab's)."""
        if not self.down:
            return max(0, min(1 << self.layer, n_rows - self.first_row()))
        width = 1 << height
        full, tail = slab_run(
            n_rows, 1 << self.layer, 1 << (n_stages - self.layer), self.key << height, width
        )
        return full * width + tail

    def stages(self, n_stages: int) -> list[int]:
        """The stages it computes, in order: 1..layer up; L..layer + 1 down (each inverted)."""
        if self.down:
            return list(range(n_stages, self.layer, -1))
        return list(range(1, self.layer + 1))

    def row_stages(self, n_rows: int, n_stages: int, height: int) -> int:
        return self.rows(n_rows, n_stages, height) * len(self.stages(n_stages))

    def local(self, row: int, height: int) -> int:
        """`row`'s index in the job's buffer."""
        if self.down:
            return (row & ((1 << height) - 1)) + ((row >> self.layer) << height)
        return row - self.first_row()

    def slab_rows(self, n_rows: int, height: int, slab: int) -> tuple[int, int]:
        """A descent's slab `slab`: (its first row of X_L, its rows below N)."""
        first = (slab << self.layer) + (self.key << height)
        return first, max(0, min(1 << height, n_rows - first))


def walk_wants(tp: CapacityTargetParams, walks: Sequence[Walk]) -> dict[int, set[int]]:
    """The rows the walks open, by layer: each step's row and its parents in the committed layer
    below (none in X_0, which the verifier regenerates)."""
    want: dict[int, set[int]] = {}
    for walk in walks:
        for stage, row in zip(walk.stages, walk.rows, strict=True):
            want.setdefault(stage, set()).add(row)
            below = parent_stage(stage, tp.commit_stride)
            if below:
                want.setdefault(below, set()).update(parent_rows(row, stage, below, tp.n_rows))
    return want


def jobs_for(want: Mapping[int, set[int]], n_stages: int, height: int, threshold: int) -> list[Job]:
    """The jobs that open `want` (layer -> rows; X_L's rows are read, not recomputed) with
    `threshold` T: blocks for the layers below T, each at the highest wanted layer it covers (at
    least H, so a row's kept block lies inside it), descents for T..L - 1, each at the lowest.
    A block (l, k) covers (row, layer) when layer <= l and row >> l = k; a descent (b, F) when
    layer >= b and row's bits H..b - 1 are F."""
    found: dict[tuple[bool, int, int], list[tuple[int, int]]] = {}
    keys: dict[tuple[bool, int], set[int]] = {}  # (kind, job layer) -> its jobs' keys

    def key_of(down: bool, top: int, row: int) -> int:
        return (row >> height) & ((1 << (top - height)) - 1) if down else row >> top

    low = sorted((layer for layer in want if 0 < layer < threshold), reverse=True)
    high = sorted(layer for layer in want if threshold <= layer < n_stages)
    for down, layers in ((False, low), (True, high)):
        for layer in layers:
            for row in sorted(want[layer]):
                job = next(
                    (
                        (down, top, key_of(down, top, row))
                        for (kind, top), ks in keys.items()
                        if kind == down
                        and (top <= layer if down else top >= layer)
                        and key_of(down, top, row) in ks
                    ),
                    None,
                )
                if job is None:
                    top = layer if down else max(layer, height)
                    job = (down, top, key_of(down, top, row))
                    keys.setdefault((down, top), set()).add(job[2])
                    found[job] = []
                found[job].append((row, layer))
    return [Job(down, layer, key, tuple(sorted(rows))) for (down, layer, key), rows in found.items()]


def block_batches(blocks: Sequence[Job], n_rows: int, max_rows: int) -> list[list[Job]]:
    """Blocks of one layer side by side, at most `max_rows` rows a batch: a batch's blocks are
    aligned at multiples of 2^l, so its stages pair rows within each block; the short block (the
    one holding row N - 1, at most one a layer) goes last, where its missing rows are the batch's
    tail. Batches in descending layer order."""
    by_layer: dict[int, list[Job]] = {}
    for job in blocks:
        assert not job.down
        by_layer.setdefault(job.layer, []).append(job)
    out: list[list[Job]] = []
    for layer in sorted(by_layer, reverse=True):
        size = 1 << layer
        jobs = sorted(by_layer[layer], key=lambda j: (j.first_row() + size > n_rows, j.key))
        per = max(1, max_rows // size)
        out.extend(jobs[i : i + per] for i in range(0, len(jobs), per))
    return out


def rows_cap(n_stages: int, height: int) -> int:
    """A job buffer's rows that always leave a threshold whose jobs fit, with room for a cheap
    one: blocks below T need 2^(T - s) rows (s the commit stride, at least 1), descents at T and
    above 2^(H + L - T), so a buffer of 2^((L + H - 1) / 2) rows fits both; twice that, rounded
    up, lets the plan move T for cost (an H100, L = 27, H = 5: 2^17 rows; its cheapest plan's
    largest job is 74,016)."""
    return 1 << ((n_stages + height + 1) // 2 + 1)


@dataclass(frozen=True)
class Plan:
    threshold: int
    jobs: list[Job]
    row_stages: int

    def largest(self, n_rows: int, n_stages: int, height: int) -> int:
        return max((j.rows(n_rows, n_stages, height) for j in self.jobs), default=0)


def plan(want: Mapping[int, set[int]], n_rows: int, n_stages: int, height: int, max_rows: int) -> Plan | None:
    """The threshold (H < T <= L, a wanted layer or L) whose jobs make the fewest row-stages with
    every job's buffer within `max_rows`; None when no threshold fits (the caller says why)."""
    best: Plan | None = None
    cuts = sorted({layer for layer in want if height < layer < n_stages} | {n_stages}, reverse=True)
    for threshold in cuts:  # only a wanted layer moves a row from one kind to the other
        jobs = jobs_for(want, n_stages, height, threshold)
        if any(j.rows(n_rows, n_stages, height) > max_rows for j in jobs):
            continue
        cost = sum(j.row_stages(n_rows, n_stages, height) for j in jobs)
        if best is None or cost < best.row_stages:
            best = Plan(threshold, jobs, cost)
    return best


__all__ = ["Job", "Plan", "block_batches", "jobs_for", "plan", "rows_cap", "slab_run", "walk_wants"]
