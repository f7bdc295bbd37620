"""The openings' recompute (reopen.py): every stage map inverted exactly (fill.unstage_matrices),
blocks and descents closed under their stages (computed from their own rows alone, they give the
fill's rows), and the plan's cost at an H100's real size."""

from __future__ import annotations

import random
import time
from collections import defaultdict

import numpy as np
import pytest

from gpuproof.claim import capacity_params_for, make_claim
from gpuproof.protocol.capacity.cupy_prover import WINDOW_BYTES, default_kept_height, window_rows
from gpuproof.protocol.capacity.fill import (
    HALF,
    Fill,
    Q,
    inverse_b,
    lu_factors,
    parent_rows,
    parent_stage,
    partner,
    stage_perms,
    unstage_matrices,
)
from gpuproof.protocol.capacity.reopen import Job, block_batches, jobs_for, plan

SEED = bytes(range(32))


@pytest.mark.parametrize(("n", "d"), [(40, 16), (37, 32), (64, 8), (5, 4), (300, 64), (2, 4)])
def test_every_stage_map_is_inverted_exactly(n: int, d: int) -> None:
    """X_(l-1) from X_l alone (pairs and lone rows, N not a power of two) at every stage."""
    fill = Fill(SEED, n, d)
    layers = fill.layers()
    for stage in range(1, fill.n_stages + 1):
        assert np.array_equal(fill.unstep(layers[stage], stage), layers[stage - 1])


def test_the_inverse_at_gpu_width_and_its_cost() -> None:
    """d = 1024: B^-1 B = I and one stage inverted on rows with lone ones; the host's two d^3
    products a stage stay well under a second (they are built ahead, beside the fill)."""
    d = 1024
    start = time.process_time()
    b_inv = inverse_b(SEED, d)
    lower, upper = lu_factors(SEED, d)
    b = (lower.astype(np.float64) @ upper.astype(np.float64)).astype(np.int64)
    eye = (b_inv.astype(np.float64) @ b.astype(np.float64)).astype(np.int64) % Q
    assert np.array_equal(eye, np.eye(d, dtype=np.int64))
    pi, sigma = stage_perms(SEED, 3, d)
    w, lone = unstage_matrices(b_inv, pi, sigma)
    assert time.process_time() - start < 60  # generous: no test may depend on an idle machine
    assert w.shape == (2 * d, 2 * d) and lone.shape == (d, d)
    assert int(np.abs(w).max()) <= HALF and int(np.abs(lone).max()) <= HALF
    fill = Fill(SEED, 6, d)  # rows 4, 5 are lone at stage 3
    fill._b_inv = b_inv
    prev = fill.x0(range(6))
    assert np.array_equal(fill.unstep(fill.step(prev, 3), 3), prev)


def _want(n: int, committed: list[int], stride: int, walks: int, rng: random.Random) -> dict[int, set[int]]:
    want: dict[int, set[int]] = defaultdict(set)
    for _ in range(walks):
        for stage in committed:
            row = rng.randrange(n)
            want[stage].add(row)
            below = parent_stage(stage, stride)
            if below:
                want[below].update(parent_rows(row, stage, below, n))
    return dict(want)


def _run_numpy(fill: Fill, layers: list[np.ndarray], job: Job, height: int) -> dict[tuple[int, int], bytes]:
    """A job computed from its own rows only (X_0's block, or X_L's slabs), as the executor does."""
    n, top = fill.n_rows, fill.n_stages
    v = job.rows(n, top, height)
    got: dict[tuple[int, int], bytes] = {}
    if job.down:
        parts = [job.slab_rows(n, height, k) for k in range(1 << (top - job.layer))]
        globals_ = [first + o for first, count in parts for o in range(count)]
        buf = layers[top][globals_].copy()
    else:
        globals_ = list(range(job.first_row(), job.first_row() + v))
        buf = fill.x0(globals_)
    assert len(globals_) == v and all(job.local(r, height) == i for i, r in enumerate(globals_))
    at = {g: i for i, g in enumerate(globals_)}
    for stage in job.stages(top):
        sub = Fill(fill.seed, n, fill.d)  # the stage over the buffer's rows: mates by global row
        sub._b_inv = fill._b_inv
        full = np.zeros((n, fill.d), dtype=np.int8)
        full[globals_] = buf
        for r in globals_:  # every row's mate is in the buffer, or is a lone row's self
            assert partner(r, stage, n) in at
        buf = (sub.unstep(full, stage) if job.down else sub.step(full, stage))[globals_]
        layer = stage - 1 if job.down else stage
        for row, want_layer in job.wanted:
            if want_layer == layer:
                got[(layer, row)] = buf[at[row]].tobytes()
    return got


@pytest.mark.parametrize(("n", "stride", "height"), [(452, 1, 2), (339, 2, 0), (1000, 3, 3), (513, 2, 4)])
def test_blocks_and_descents_are_closed_and_give_the_fills_rows(n: int, stride: int, height: int) -> None:
    """For walks' wants at every threshold: each job, computed from its own rows alone, yields the
    fill's rows at every wanted (layer, row), each opened by exactly one job; the plan is the
    cheapest threshold."""
    d = 8
    fill = Fill(SEED, n, d)
    fill._b_inv = inverse_b(SEED, d)
    layers = fill.layers()
    top = fill.n_stages
    committed = list(range(top, 0, -stride))[::-1]
    want = {k: v for k, v in _want(n, committed, stride, 5, random.Random(n)).items() if k < top}
    costs = {}
    for threshold in range(top, height, -1):
        jobs = jobs_for(want, top, height, threshold)
        opened: dict[tuple[int, int], bytes] = {}
        for job in jobs:
            got = _run_numpy(fill, layers, job, height)
            assert not set(got) & set(opened)
            opened.update(got)
        assert opened == {
            (layer, r): layers[layer][r].tobytes() for layer, rows in want.items() for r in rows
        }
        costs[threshold] = sum(j.row_stages(n, top, height) for j in jobs)
    best = plan(want, n, top, height, n)
    assert best is not None and best.row_stages == min(costs.values())


def test_an_h100s_recompute_is_a_few_percent_of_its_fill() -> None:
    """At an H100's real size (N = 75,766,980, L = 27, H = 5, every third layer committed, 32
    walks): the plan's row-stages are under 5% of the fill's N L (the windows before it: 54%),
    its largest job within the buffer (2^17 rows)."""
    claim = make_claim("H100 SXM5 80GB", 8, allow_cpu_backend=False)
    params = capacity_params_for(claim, 256 * 2**30)
    assert params is not None
    tp = params.targets[0]
    h = default_kept_height(params)
    assert (tp.n_rows, tp.n_stages, h, tp.walks) == (75766980, 27, 5, 32)
    want = {
        k: v for k, v in _want(tp.n_rows, tp.committed, tp.commit_stride, tp.walks, random.Random(1)).items()
    }
    found = plan(
        {k: v for k, v in want.items() if k < tp.n_stages},
        tp.n_rows,
        tp.n_stages,
        h,
        window_rows(tp, WINDOW_BYTES, h),
    )
    assert found is not None
    assert found.row_stages < 0.05 * tp.n_rows * tp.n_stages
    assert found.largest(tp.n_rows, tp.n_stages, h) <= window_rows(tp, WINDOW_BYTES, h)
    assert any(j.down for j in found.jobs) and any(not j.down for j in found.jobs)


def test_block_batches_align_each_block_and_put_the_short_one_last() -> None:
    """Blocks of a layer side by side: each at a multiple of its 2^l rows, at most max_rows a batch,
    the block holding row N - 1 (short) last in its batch, every block once, layers descending."""
    n = 1000
    blocks = [Job(False, 4, k, ()) for k in (62, 3, 0, 7, 9)] + [Job(False, 6, k, ()) for k in (15, 1)]
    batches = block_batches(blocks, n, 48)
    assert [b[0].layer for b in batches] == [6, 6, 4, 4]  # 64-row blocks one a batch (48 < 64: one)
    assert sorted((j.layer, j.key) for b in batches for j in b) == sorted((j.layer, j.key) for j in blocks)
    for batch in batches:
        size = 1 << batch[0].layer
        assert len(batch) == 1 or len(batch) * size <= 48
        short = [i for i, j in enumerate(batch) if j.first_row() + size > n]
        assert short in ([], [len(batch) - 1])
    assert [j.key for j in batches[-2]] == [0, 3, 7] and [j.key for j in batches[-1]] == [9, 62]
