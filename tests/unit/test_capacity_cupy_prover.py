"""The capacity phase's GPU executor (`CupyCapacityProver`) against the CUDA test double: the numpy
prover's commitment, answers and openings bit for bit (GPU targets in scan and sample mode, host
RAM out of core), a transcript the real verifier accepts, the memory budget refused before
anything is allocated (and, where it fits, never exceeded), the host fill's PCIe traffic, and a
GEMM that is not exact refused before anything is committed.

The double runs the prover's real cuBLAS calls (int8 gemmEx, int32 accumulate) and builds its real
kernels with g++, one thread at a time: sizes stay tiny. It says nothing about GPU speed.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from benchmark_probe.cupy_double import R_8I, R_32I, CupyTestDouble
from benchmark_probe.nvml_double import fake_gpu
from gpuproof.protocol.capacity import (
    CapacityParams,
    CapacitySession,
    SignedCapacityCommitment,
    gpu_target,
    host_target,
    phase,
)
from gpuproof.protocol.capacity.cupy_prover import (
    CapacityMemoryError,
    CupyCapacityOptions,
    CupyCapacityProver,
    CupyCapacityRuntime,
    HostLayout,
    host_available_bytes,
    host_fill_seconds,
    plan_memory,
    reserve_host,
    stage_matrix,
    stage_work,
)
from gpuproof.protocol.capacity.device import SimulatedDevice
from gpuproof.protocol.capacity.fill import (
    b_matrix,
    coefficients,
    gen_rows,
    partners,
    stage_perms,
    stage_rows,
)
from gpuproof.protocol.capacity.models import CapacityTargetParams, TargetOpenings
from gpuproof.protocol.capacity.prover import CapacityProver
from gpuproof.protocol.capacity.reopen import Job, Plan, block_batches, slab_run, walk_wants
from gpuproof.protocol.capacity.reopen import plan as reopen_plan
from gpuproof.protocol.keys import SigningKey
from tests.unit import capacity_adversaries as adv

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA double builds kernels with g++")

KEY = SigningKey.from_seed(bytes(range(32)))
NONCE = bytes(range(100, 132))
CHALLENGE = "cap-gpu-1"
D = 32
H2D, D2H = 1, 2


def gemms_of(log: Sequence[tuple[Any, ...]], d: int) -> list[tuple[Any, ...]]:
    """The logged GEMMs of a fill of d-byte rows: its pairs' (m = k = 2d: both rows of each pair out)
    and its lone rows' (m = k = d). A test holding two fills gives them d's these cannot confuse."""
    return [e for e in log if e[0] == "gemm" and (e[6], e[8]) in ((2 * d, 2 * d), (d, d))]


def gemm_row_stages(log: Sequence[tuple[Any, ...]], d: int, device: int | None = None) -> int:
    """Rows those GEMMs computed a stage of: 2 per pair, 1 per lone row."""
    return sum(e[7] * e[6] // d for e in gemms_of(log, d) if device is None or e[9] == device)


def double(gpus: int = 2, **kw: object) -> CupyTestDouble:
    return CupyTestDouble.for_gpus([fake_gpu(i) for i in range(gpus)], **kw)  # type: ignore[arg-type]


def gpu(index: int, claimed: int, *, mode: str = "scan", samples: int = 48) -> CapacityTargetParams:
    tp = gpu_target(
        index,
        claimed,
        rate_tops=1e-6,
        bandwidth_gbs=1e-3,
        d=D,
        chunk_rows=4,
        spots=4,
        walks=6,
        hash_bytes_per_s=1e6,
        network_allowance_s=0.2,
    )
    if mode == "sample":
        no_sweeps = {"sweeps": 0, "sweep_spots": 0, "sweep_expected_s": 0.0, "sweep_deadline_s": 0.0}
        tp = tp.model_copy(update={"mode": "sample", "chunk_rows": 1, "samples": samples, **no_sweeps})
    return tp


def host(claimed: int, *, mode: str = "sample", d: int = D) -> CapacityTargetParams:
    tp = host_target(
        claimed,
        fill_rate_tops=2e-6,
        d=d,
        samples=64,
        spots=4,
        walks=6,
        rows_per_s=1e5,
        hash_bytes_per_s=1e6,
        network_allowance_s=0.2,
    )
    if mode == "scan":
        tp = tp.model_copy(update={"mode": "scan", "chunk_rows": 8, "samples": 0})
    return tp


def params_of(*targets: CapacityTargetParams) -> CapacityParams:
    return phase(list(targets), network_allowance_s=0.2, fill_allowance_s=0.2)


def numpy_prover(params: CapacityParams) -> CapacityProver:
    devices = {
        tp.target: SimulatedDevice(f"numpy-{tp.target}", 4 * tp.fill_bytes, 1e9, 1e-6, 1e9, 1e9)
        for tp in params.targets
    }
    return CapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, devices)


def run_both(
    params: CapacityParams, prover: CupyCapacityProver, before_open: Callable[[], object] | None = None
) -> tuple[CapacitySession, dict[int, bytes], list[TargetOpenings], list[TargetOpenings]]:
    """Both provers through the service's own session; every message compared on the way
    (`before_open` runs between the last round and the openings)."""
    reference = numpy_prover(params)
    commitment = prover.fill()
    assert commitment == reference.fill()
    session = CapacitySession(params, opened_at=0.0)
    session.receive_commitment(SignedCapacityCommitment.sign(commitment, KEY), 1.0)
    nonces: dict[int, bytes] = {}
    clock = 1.0
    while not session.done:
        opened = session.open_round(clock + 0.01)
        nonces[opened.round] = bytes.fromhex(opened.nonce)
        answer = prover.answer(opened)
        assert answer == reference.answer(opened), f"round {opened.round}"
        clock += 0.02
        session.receive_answer(answer, clock)
    spots, walks = session.draw()
    if before_open is not None:
        before_open()
    return session, nonces, prover.open(nonces, spots, walks), reference.open(nonces, spots, walks)


def verify(params: CapacityParams, session: CapacitySession, openings: Sequence[TargetOpenings]) -> list[str]:
    result = adv.verify_session(
        params, session, openings, machine_id=KEY.public_hex, challenge_id=CHALLENGE, nonce=NONCE, seed=3
    )
    return [r.code for r in result.reasons]


def test_two_gpus_and_host_ram_out_of_core_match_the_numpy_prover_and_pass_the_verifier() -> None:
    """N = 85 (not a power of two) on two GPUs in scan mode; host RAM of 255 rows in sample mode cut
    into blocks of 32 rows and windows of 8: 8 blocks, then 4 windows over 8 slabs for stages 6..8,
    so the walks' top stages open both passes' layers."""
    params = params_of(gpu(0, 3000), gpu(1, 3000), host(9000))
    assert [(t.n_rows, t.n_stages) for t in params.targets] == [(85, 7), (85, 7), (255, 8)]
    options = CupyCapacityOptions(group_rows=8, host_block_rows=32, host_window_rows=8, margin_bytes=0)
    cp = double(2)
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=cp, options=options)
    session, _nonces, got, want = run_both(params, prover)
    assert got == want
    assert verify(params, session, got) == []
    # the bandwidth round (docs/protocol.md §17.12) swept both GPUs on the device, as numpy does
    swept = session.rounds[-1]
    assert all(len(a.sweep_roots) == params.targets[0].sweeps - 1 > 0 for a in swept.answers)
    assert {e[9] for e in cp.log if e[0] == "gemm"} == {0, 1}
    assert all(e[1:4] == (72, R_8I, R_32I) and e[4:6] == (1, 0) for e in cp.log if e[0] == "gemm")  # TN


def test_the_stage_matrix_gives_the_fills_rows_for_pairs_and_lone_rows() -> None:
    """[X[a] | X[a+h]] times W is both rows of the pair and X times M a lone row, as `fill.stage_rows`
    (the coefficients applied to the rows) has them, exactly: the stage matrix's products are only
    reduced mod 251, which g_l does anyway; the products stay below 2^31."""
    seed, d, n, stage = bytes(range(32)), 64, 23, 5  # rows 8..15 are lone at stage 5 (h = 16)
    b = b_matrix(seed, d)
    pi, sigma = stage_perms(seed, stage, d)
    flat = stage_matrix(b[pi], b[sigma])
    w, m = flat[: 4 * d * d].reshape(2 * d, 2 * d).T, flat[4 * d * d :].reshape(d, d).T
    x = gen_rows(seed, b"X", range(n), d)
    mates = partners(n, stage)
    want = stage_rows(
        x,
        x[mates],
        b[pi].astype(np.float64),
        b[sigma].astype(np.float64),
        stage,
        coefficients(np.arange(n), stage, n),
    )
    h, got = 1 << (stage - 1), np.empty_like(x)
    for a in range(h):
        if a + h < n:
            c = np.concatenate([x[a], x[a + h]]).astype(np.int64) @ w.astype(np.int64)
            assert np.abs(c).max() < 2**31
            got[a], got[a + h] = ((c[:d] + stage) % 251 - 125), ((c[d:] + stage) % 251 - 125)
        else:
            got[a] = (x[a].astype(np.int64) @ m.astype(np.int64) + stage) % 251 - 125
    assert np.array_equal(got, want)


def test_a_stage_gathers_each_pair_once_and_multiplies_lone_rows_from_the_buffer() -> None:
    """One operand row (and one GEMM row of 2d outputs) per PAIR, one GEMM row of d per lone row:
    over a whole GPU fill the GEMMs compute exactly N rows a stage, in as many pair rows as the
    stage has pairs (`fill.partners`), and the operand is never larger than the group's pairs."""
    params = params_of(gpu(0, 3000))
    tp = params.targets[0]
    assert tp.n_rows & (tp.n_rows - 1)  # not a power of two: lone rows at the high stages
    cp = double(1)
    options = CupyCapacityOptions(group_rows=16, margin_bytes=0)
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=cp, options=options)
    prover.check()
    cp.log.clear()
    assert prover.fill() == numpy_prover(params).fill()
    gemms = gemms_of(cp.log, tp.d)
    pairs = sum(e[7] for e in gemms if e[8] == 2 * tp.d)
    lone = sum(e[7] for e in gemms if e[8] == tp.d)
    n, top = tp.n_rows, tp.n_stages
    want_lone = sum(int((partners(n, s) == np.arange(n)).sum()) for s in range(1, top + 1))
    assert (pairs, lone) == ((n * top - want_lone) // 2, want_lone) and want_lone > 0
    assert max(e[7] for e in gemms if e[8] == 2 * tp.d) <= 16  # a group's pairs: G rows of the operand
    for v, h, group in ((85, 1, 8), (85, 4, 8), (85, 8, 8), (85, 64, 16), (7, 4, 8)):
        seen: list[int] = []
        for lo, count, first, rows in stage_work(v, h, group):
            for p in range(count):
                a = lo + (p // h) * 2 * h + p % h
                seen += [a, a + h]
            seen += range(first, first + rows)
            assert all(r ^ h >= v for r in range(first, first + rows))
        assert sorted(seen) == list(range(v))


@pytest.mark.parametrize(
    ("gpu_bytes", "host_bytes", "options"),
    [
        (2266, 1500, CupyCapacityOptions(group_rows=4, margin_bytes=0)),  # 64 rows: a power of two
        (
            1900,
            1500,
            CupyCapacityOptions(group_rows=16, host_block_rows=8, host_window_rows=2, margin_bytes=0),
        ),
    ],
)
def test_a_gpu_in_sample_mode_and_host_ram_in_scan_mode_match(
    gpu_bytes: int, host_bytes: int, options: CupyCapacityOptions
) -> None:
    params = params_of(gpu(3, gpu_bytes, mode="sample"), host(host_bytes, mode="scan"))
    assert params.targets[0].n_rows in (64, 54) and params.targets[1].n_rows == 43
    prover = CupyCapacityProver(
        NONCE, KEY.public_hex, CHALLENGE, params, devices={3: 0}, cupy=double(1), options=options
    )
    session, _nonces, got, want = run_both(params, prover)
    assert got == want
    assert verify(params, session, got) == []


def drawn_plan(session: CapacitySession, tp: CapacityTargetParams, height: int, max_rows: int) -> Plan:
    """The recompute plan (`reopen.plan`) for the walks the session drew for `tp`."""
    wanted = walk_wants(tp, session.draw()[1][tp.target])
    found = reopen_plan(
        {k: v for k, v in wanted.items() if k < tp.n_stages}, tp.n_rows, tp.n_stages, height, max_rows
    )
    assert found is not None
    return found


def _pair_launches(
    tp: CapacityTargetParams, jobs: Sequence[Job], h: int, max_rows: int, *, batched: bool
) -> int:
    """`cap_pairs` launches a recompute's jobs make: one per group with pairs a stage, a GPU's
    blocks of a layer batched (`block_batches`), host RAM's one at a time."""
    top, group = tp.n_stages, 16

    def launches(v: int, h_pair: int) -> int:
        return sum(1 for _lo, pairs, _first, _rows in stage_work(v, h_pair, group) if pairs)

    blocks = [j for j in jobs if not j.down]
    batches = block_batches(blocks, tp.n_rows, max_rows) if batched else [[j] for j in blocks]
    total = 0
    for batch in batches:
        size = 1 << batch[0].layer
        v = (len(batch) - 1) * size + batch[-1].rows(tp.n_rows, top, h)
        total += sum(launches(v, 1 << (s - 1)) for s in range(1, batch[0].layer + 1))
    for j in (j for j in jobs if j.down):
        total += sum(launches(j.rows(tp.n_rows, top, h), 1 << (h + s - 1 - j.layer)) for s in j.stages(top))
    return total


@pytest.mark.parametrize(
    ("kept_height", "window_bytes"), [(2, 1 << 20), (0, 1 << 20), (3, 64 * D), (4, 1 << 20), (2, 32 * D)]
)
def test_the_openings_recompute_only_what_the_walks_need_and_match(
    kept_height: int, window_bytes: int
) -> None:
    """The fill keeps each layer's tree nodes at height H; the openings recompute the walks' rows in
    blocks (X_0 up) and descents (X_L down through the inverse stages, `reopen.py`) and never stage
    L: the same openings as the numpy prover, exactly the row-stages `reopen.plan` counts for the
    rows wanted (what gpu_check.sh records), fewer than the fill's N L, every job within the
    buffer, and X_L still held afterwards (nothing overwrites it)."""
    # the host's GEMMs (K = 96, 48) are not the GPUs' (64, 32)
    params = params_of(gpu(0, 16000), gpu(1, 12000), host(9000, d=48))
    assert [(t.n_rows, t.n_stages) for t in params.targets[:2]] == [(452, 9), (339, 9)]
    options = CupyCapacityOptions(
        group_rows=16,
        host_block_rows=32,
        host_window_rows=8,
        margin_bytes=0,
        kept_height=kept_height,
        window_bytes=window_bytes,
    )
    cp = double(2)
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=cp, options=options)
    held: dict[int, npt.NDArray[np.int8]] = {}

    def before_open() -> None:
        cp.log.clear()
        held.update(
            {
                t: np.asarray(cp.asnumpy(s.held)).copy()
                for t, s in prover.states.items()
                if s.device is not None
            }
        )

    session, _nonces, got, want = run_both(params, prover, before_open=before_open)
    assert got == want
    assert verify(params, session, got) == []
    descents = pair_launches = 0
    for tp in params.targets[:2]:
        rows = gemm_row_stages(cp.log, tp.d, device=tp.target)
        record = prover.recompute[tp.target]
        assert record["row_stages"] == rows  # what gpu_check.sh records
        expected = drawn_plan(session, tp, kept_height, window_bytes // D)
        assert rows == expected.row_stages
        assert record["threshold"] == expected.threshold and record["largest"] <= window_bytes // D
        assert rows < tp.n_rows * (tp.n_stages - 1)  # at this tiny size; an H100's is 3.5% of its fill
        descents += int(record["descents"])
        pair_launches += _pair_launches(tp, expected.jobs, kept_height, window_bytes // D, batched=True)
        assert np.array_equal(np.asarray(cp.asnumpy(prover.states[tp.target].held)), held[tp.target])
    assert descents  # the inverse stages ran
    # a GPU's blocks of a layer side by side: one stage's operand launches serve the whole batch
    # (host RAM's jobs, on both devices' lanes, one at a time)
    hp = params.targets[2]
    host_h = prover.states[hp.target].kept_height
    host_plan = drawn_plan(session, hp, host_h, prover._layout(hp).buffer_rows)
    pair_launches += _pair_launches(hp, host_plan.jobs, host_h, 0, batched=False)
    assert len([e for e in cp.log if e[:2] == ("kernel", "cap_pairs")]) == pair_launches


def test_the_inverse_stages_are_built_beside_the_fill_and_stop_with_it() -> None:
    """The descents' inverse stage matrices are built on a thread of their own while the GPUs
    fill; it stops when the fill ends (no background product beside the timed rounds), and the
    openings build whatever it left."""
    params = params_of(gpu(0, 16000), host(9000, d=48))
    options = CupyCapacityOptions(group_rows=16, host_block_rows=32, host_window_rows=8, margin_bytes=0)
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=double(1), options=options)
    built: list[set[tuple[int, int]]] = []

    def after_fill() -> None:
        assert prover._inverses is not None
        prover._inverses.join(timeout=30)
        assert not prover._inverses.is_alive()  # stopped (or done) once the fill returned
        built.append({k for k in prover._stage_host if k[1] < 0})

    session, _nonces, got, want = run_both(params, prover, before_open=after_fill)
    assert got == want and verify(params, session, got) == []
    # how many were built ahead is the scheduler's; the openings built the rest they needed
    assert {k for k in prover._stage_host if k[1] < 0} >= built[0]
    assert any(k[1] < 0 for k in prover._stage_host)


def test_a_recompute_with_no_buffer_that_fits_is_refused_before_any_job() -> None:
    """A job buffer too small for every threshold's jobs: refused, saying so (no half-built openings)."""
    params = params_of(gpu(0, 16000))
    options = CupyCapacityOptions(group_rows=16, margin_bytes=0, kept_height=2, window_bytes=4 * D)
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=double(1), options=options)
    with pytest.raises(CapacityMemoryError, match="openings' recompute needs a buffer"):
        run_both(params, prover)


@pytest.mark.parametrize("gpu_mode", ["scan", "sample"])
def test_the_openings_rebuild_only_the_spotted_answer_blocks(
    monkeypatch: pytest.MonkeyPatch, gpu_mode: str
) -> None:
    """Each round's (and sweep's) answer tree is kept at height 2 when answered; the openings hash
    again only the 4-leaf blocks of the spotted items, from X_L, and take the rest from the kept
    nodes: the same paths as the numpy prover's, and no leaf computation larger than a block."""
    from gpuproof.protocol.capacity import cupy_prover

    params = params_of(gpu(0, 6000, mode=gpu_mode), host(9000, mode="scan"))
    options = CupyCapacityOptions(
        group_rows=8, host_block_rows=32, host_window_rows=8, margin_bytes=0, answer_kept_height=2
    )
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=double(1), options=options)
    counts: list[int] = []
    answer_leaves, sampled_leaves = cupy_prover._Gpu.answer_leaves, cupy_prover._Gpu.sampled_leaves

    def spy() -> None:
        def rows(
            self: object, rows: object, v: int, chunk: int, head: bytes, first: int, items: int
        ) -> object:
            counts.append(items)
            return answer_leaves(self, rows, v, chunk, head, first, items)  # type: ignore[arg-type]

        def sampled(
            self: object, x: object, n: int, ah: bytes, sh: bytes, items: int, first: int = 0
        ) -> object:
            counts.append(items)
            return sampled_leaves(self, x, n, ah, sh, items, first)  # type: ignore[arg-type]

        monkeypatch.setattr(cupy_prover._Gpu, "answer_leaves", rows)
        monkeypatch.setattr(cupy_prover._Gpu, "sampled_leaves", sampled)

    session, _nonces, got, want = run_both(params, prover, before_open=spy)
    assert got == want and verify(params, session, got) == []
    assert counts and max(counts) <= 4
    assert all(tp.items > 4 for tp in params.targets)  # whole trees would have needed more


def test_a_recompute_that_differs_from_the_committed_layer_is_refused() -> None:
    """Each recomputed block's root must be the node the fill kept, and the tree above the kept
    nodes must have the committed root: a changed held row, or a changed kept node, refuses."""
    params = params_of(gpu(0, 3000))
    options = CupyCapacityOptions(group_rows=8, margin_bytes=0, kept_height=2)
    for damage in ("held", "kept"):
        prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=double(1), options=options)

        def spoil(p: CupyCapacityProver = prover, what: str = damage) -> None:
            t = p.states[0]
            if what == "held":
                t.held[:] = 0  # X_L, where the walks start and the spots are read
            else:
                t.kept[3][0, 0] ^= 1

        with pytest.raises(RuntimeError, match="differ"):
            run_both(params, prover, before_open=spoil)


def test_the_host_recompute_uploads_only_its_descents_slabs_and_keeps_x_l() -> None:
    """Host RAM's openings: blocks are seeded on the devices, descents upload their slabs of X_L
    once (one strided copy and the short tail), and nothing is copied back into host memory (it
    still holds X_L). The recompute is the plan's, below a fill."""
    params = params_of(gpu(0, 800), host(20000, d=48))
    tp = params.targets[-1]
    options = CupyCapacityOptions(host_block_rows=64, host_window_rows=16, margin_bytes=0, kept_height=2)
    cp = double(1)
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=cp, options=options)
    held: list[npt.NDArray[np.int8]] = []

    def before_open() -> None:
        cp.log.clear()
        held.append(prover.states[tp.target].held.copy())

    session, _nonces, got, want = run_both(params, prover, before_open=before_open)
    assert got == want and verify(params, session, got) == []
    assert np.array_equal(prover.states[tp.target].held, held[0])
    expected = drawn_plan(session, tp, 2, prover._layout(tp).buffer_rows)
    assert any(j.down for j in expected.jobs)
    copies = [e for e in cp.log if e[0] == "memcpy"]
    ups = Counter(e[2] for e in copies if e[1] == H2D)
    down = sum(e[2] for e in copies if e[1] == D2H)
    slabs: Counter[int] = Counter()
    for j in (j for j in expected.jobs if j.down):  # its full slabs in one strided copy, then its tail
        counts = [j.slab_rows(tp.n_rows, 2, k)[1] for k in range(1 << (tp.n_stages - j.layer))]
        full = sum(1 for c in counts if c == 4)
        slabs[full * 4 * tp.d] += 1
        tail = [c for c in counts if 0 < c < 4]
        if tail:
            slabs[tail[0] * tp.d] += 1
    assert slabs and not slabs - ups  # the slabs of X_L a descent needs, two copies at most
    assert down == 0  # no copy into host memory (the wanted blocks are read back to hash their paths)
    assert params.targets[0].d != tp.d  # the GPU target's GEMMs have another K
    rows = gemm_row_stages(cp.log, tp.d)
    record = prover.recompute[tp.target]  # what gpu_check.sh records
    assert record["row_stages"] == rows == expected.row_stages < tp.n_rows * (tp.n_stages - 1)


def test_strided_slab_copies_move_exactly_the_slabs_and_the_double_checks_their_span() -> None:
    """`_copy_slabs`: a run of slabs (stride apart in host memory, w rows each, a short tail at the
    end of the rows) to the device and back in one 2D copy and one plain one; the double refuses a
    pitch below the width and a span outside device memory, as CUDA does."""
    from benchmark_probe.cupy_double import CUDARuntimeError
    from gpuproof.protocol.capacity import cupy_prover

    cp = double(1)
    runtime = CupyCapacityRuntime(cupy=cp)
    rng = np.random.default_rng(5)
    x = rng.integers(-125, 126, size=(103, 8), dtype=np.int8)
    for stride, w, count, j0 in ((16, 4, 7, 2), (8, 8, 13, 0), (32, 2, 4, 31)):
        run = slab_run(len(x), stride, count, j0, w)
        rows = [r for k in range(count) for r in range(k * stride + j0, min(k * stride + j0 + w, len(x)))]
        assert run[0] * w + run[1] == len(rows)

        def both(g: Any, run: tuple[int, int] = run, stride: int = stride, w: int = w, j0: int = j0) -> None:
            buf = g.cp.zeros((count * w, 8), dtype=g.cp.int8)
            v = cupy_prover._copy_slabs(g, True, buf, x, j0, stride, w, run)
            got = np.asarray(g.cp.asnumpy(buf[:v]))
            back = np.zeros_like(x)
            cupy_prover._copy_slabs(g, False, buf, back, j0, stride, w, run)
            g.sync()
            assert np.array_equal(got, x[rows]) and np.array_equal(back[rows], x[rows])
            assert not back[[r for r in range(len(x)) if r not in set(rows)]].any()

        runtime.on(0, both)
    rt = cp.cuda.runtime
    dev = cp.zeros((4, 8), dtype=cp.int8)
    with pytest.raises(CUDARuntimeError, match="pitch"):
        rt.memcpy2DAsync(dev.data.ptr, 4, x.ctypes.data, 8, 8, 2, rt.memcpyHostToDevice, 0)
    with pytest.raises(CUDARuntimeError, match="device memory"):  # 5 rows of 8 into 32 bytes
        rt.memcpy2DAsync(dev.data.ptr, 8, x.ctypes.data, 8, 8, 5, rt.memcpyHostToDevice, 0)


def test_the_host_fill_crosses_pcie_three_times_on_every_gpu_and_can_be_pinned() -> None:
    """Two passes over host memory: pass 1 downloads every row once, pass 2 uploads and downloads
    every row once more, a window's slabs in one strided copy; no round trip per stage."""
    params = params_of(gpu(0, 800), gpu(1, 800), host(20000, d=64))
    tp = params.targets[-1]
    options = CupyCapacityOptions(host_block_rows=64, host_window_rows=16, margin_bytes=0, host_pinned=True)
    cp = double(2)
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=cp, options=options)
    prover.check()
    assert prover.memory is not None and prover.memory.host == HostLayout(283, 9, 6, 16)
    cp.log.clear()
    commitment = prover.fill()
    assert commitment == numpy_prover(params).fill()
    copies = [e for e in cp.log if e[0] == "memcpy"]
    assert sum(e[2] for e in copies if e[1] == H2D) == tp.fill_bytes
    assert sum(e[2] for e in copies if e[1] == D2H) == 2 * tp.fill_bytes
    assert all(e[3] for e in copies)  # the host fill lives in pinned memory
    # pass 2: each window's 2^(L - c) = 8 slabs in one strided copy each way (and a short tail),
    # not one copy a slab: Python calls, which the GIL serialises over every GPU's threads
    blocks, windows = -(-tp.n_rows // 64), 64 // 16
    assert len([e for e in copies if e[1] == H2D]) <= 2 * windows
    assert len([e for e in copies if e[1] == D2H]) <= blocks + 2 * windows
    host_gemms = {e[9] for e in cp.log if e[0] == "gemm" and e[8] == 2 * 64}  # the host's pairs: K = 2d
    assert host_gemms == {0, 1}  # spread over both GPUs


@pytest.mark.parametrize(("lanes", "beside"), [(2, True), (2, False), (1, False)])
def test_the_host_fill_runs_in_lanes_each_on_its_own_stream(lanes: int, beside: bool) -> None:
    """Each device's host-fill work runs in lanes, so one lane's copies overlap another's kernels:
    after the GPU fills on lanes 0.. (lane 0 the default stream, the others non-blocking streams
    of their own), beside them on lanes 1.. (lane 0 runs the GPU fill). Every copy, cuBLAS call
    (its handle's stream) and kernel names its lane's stream, the GPU fills stay on the default
    stream, and the commitment is the numpy prover's."""
    params = params_of(gpu(0, 800), gpu(1, 800), host(20000, d=48))
    options = CupyCapacityOptions(
        host_block_rows=64, host_window_rows=16, margin_bytes=0, host_lanes=lanes, host_beside=beside
    )
    cp = double(2)
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=cp, options=options)
    plan = prover.check()
    assert (plan.host_lanes, plan.beside) == (lanes, beside)
    assert plan.host_lane_ids == (list(range(1, 1 + lanes)) if beside else list(range(lanes)))
    assert prover.fill() == numpy_prover(params).fill()
    host_d, gpu_d = params.targets[-1].d, params.targets[0].d
    # Which lane takes a block is the scheduler's (one queue, a worker a lane): under load a lane may
    # take none, so the streams are checked to be the lanes' own, not that every lane had work.
    used = 0
    for device in (0, 1):
        gemm = {e[10] for e in gemms_of(cp.log, host_d) if e[9] == device}
        kernel = {e[3] for e in cp.log if e[0] == "kernel" and e[2] == device}
        assert {e[10] for e in gemms_of(cp.log, gpu_d) if e[9] == device} == {0}
        assert len(gemm) <= lanes and gemm <= kernel
        assert not beside or 0 not in gemm  # beside the GPU fills, never the GPU fill's default stream
        used += len(gemm)
    assert used >= 1
    copies = {e[4] for e in cp.log if e[0] == "memcpy"}
    assert len(copies) <= (2 * lanes if beside else 1 + 2 * (lanes - 1))  # one stream per device and lane
    parts = prover.fill_parts_s  # the touch runs beside host RAM's fill: only its end is ordered
    assert 0 <= parts["touched"] <= parts["host_done"] and parts["host_start"] <= parts["host_done"]
    assert beside or parts["gpu_done"] <= parts["host_start"]


def test_host_ram_fills_beside_the_gpu_fills_not_after_them() -> None:
    """Beside: the GPU fill waits until host RAM's fill has started, and both finish (run after
    the GPU fills, this would wait forever: the wait gives up after 60 s and fails)."""
    params = params_of(gpu(0, 800), host(20000, d=64))
    options = CupyCapacityOptions(host_block_rows=64, host_window_rows=16, margin_bytes=0)
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=double(1), options=options)
    assert prover.check().beside
    started = threading.Event()
    run_host, run_gpu = prover._run_host, prover._run_gpu

    def host_first(t: Any) -> Any:
        started.set()
        return run_host(t)

    def gpu_after(t: Any) -> Any:
        assert started.wait(60), "host RAM's fill did not start beside the GPU fill"
        return run_gpu(t)

    prover._run_host, prover._run_gpu = host_first, gpu_after  # type: ignore[method-assign]
    assert prover.fill() == numpy_prover(params).fill()


def test_a_fill_that_does_not_fit_is_refused_before_anything_is_allocated() -> None:
    params = params_of(gpu(0, 4096), host(8192))
    # the 3,712-byte fill and its layers' kept nodes (7 x 2 x 32 bytes) fit, its working memory not
    cp = double(1, device_memory_bytes=8000)
    options = CupyCapacityOptions(margin_bytes=0, kept_height=6)
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=cp, options=options)
    with pytest.raises(
        CapacityMemoryError, match=r"does not fit: device 0: needs [\d,]+ bytes \(fills 4,160 "
    ):
        prover.fill()
    assert not cp.peak_bytes.get(0) and not [e for e in cp.log if e[0] == "gemm"]
    # host RAM the machine does not have is refused too (MemAvailable, when readable)
    runtime = CupyCapacityRuntime(double(1))
    plan = plan_memory(params, runtime, host_ram=1000)
    assert not plan.fits and "host RAM: the fill needs" in plan.describe()


def test_a_fill_budgeted_to_the_byte_runs_within_it() -> None:
    """The stated budget bounds what the prover allocates: with exactly that much device memory
    (the double enforces it), the fill, every round and the openings run, first with host RAM's
    two lanes beside the GPU fill (working sets added); with one byte less each time, the plan
    takes the next of its choices that fits (one lane beside, two lanes after, one after), each
    running within ITS budget, until one byte less than the last is refused by the check."""
    params = params_of(gpu(0, 3000), host(6000))
    options = CupyCapacityOptions(
        group_rows=8, host_block_rows=16, host_window_rows=4, margin_bytes=0, kept_height=6
    )
    choices = [(2, True), (1, True), (2, False), (1, False)]
    memory = max(b.need_bytes for b in plan_memory(params, CupyCapacityRuntime(double(1)), options).devices)
    taken: list[tuple[int, bool]] = []
    while not taken or taken[-1] != choices[-1]:
        cp = double(1, device_memory_bytes=memory)
        prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=cp, options=options)
        plan = prover.check()
        taken.append((plan.host_lanes, plan.beside))
        assert len(taken) == 1 or choices.index(taken[-1]) > choices.index(taken[-2])
        budget = max(b.need_bytes for b in plan.devices)
        session, _nonces, got, want = run_both(params, prover)
        assert got == want and verify(params, session, got) == []
        assert 0 < cp.peak_bytes[0] <= budget <= memory
        memory = budget - 1
    assert taken[0] == choices[0] and len(taken) >= 3
    tight = CupyCapacityProver(
        NONCE, KEY.public_hex, CHALLENGE, params, cupy=double(1, device_memory_bytes=memory), options=options
    )
    with pytest.raises(CapacityMemoryError):
        tight.check()


def test_defaults_shrink_the_working_memory_to_what_is_free() -> None:
    params = params_of(gpu(0, 60000), host(60000))
    fill = params.targets[0].fill_bytes
    runtime = CupyCapacityRuntime(double(1, device_memory_bytes=fill + 400_000))
    plan = plan_memory(params, runtime, CupyCapacityOptions(margin_bytes=0))
    assert plan.fits and plan.group_rows < 2**16 and plan.host is not None
    assert plan.devices[0].need_bytes <= fill + 400_000


def test_a_host_buffer_too_small_for_two_passes_says_so() -> None:
    with pytest.raises(CapacityMemoryError, match="needs a device buffer of at least 2\\^5 rows"):
        HostLayout.choose(n_rows=1000, n_stages=10, buffer_rows=16)
    layout = HostLayout.choose(n_rows=1000, n_stages=10, buffer_rows=32)
    assert (layout.block_rows, layout.slabs, layout.window_rows, layout.buffer_rows) == (32, 32, 1, 32)


def test_a_gemm_that_is_not_exact_is_refused_before_anything_is_committed() -> None:
    params = params_of(gpu(0, 2048))
    lying = double(1, gemm_fault=lambda c: c + 1)
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=lying)
    with pytest.raises(RuntimeError, match="not exact"):
        prover.fill()


def test_rows_generated_wrong_on_the_device_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpuproof.protocol.capacity import cupy_prover

    honest = cupy_prover._Gpu.seeded_rows

    def off_by_one(
        self: cupy_prover._Gpu, out: object, seed: bytes, tag: bytes, first: int, rows: int
    ) -> None:
        honest(self, out, seed, tag, first, rows)
        out[rows - 1, 0] += 1  # type: ignore[index]

    monkeypatch.setattr(cupy_prover._Gpu, "seeded_rows", off_by_one)
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params_of(gpu(0, 2048)), cupy=double(1))
    with pytest.raises(RuntimeError, match="differs from SHAKE-128"):
        prover.fill()


def test_another_mode_over_the_same_fill_answers_as_the_numpy_prover_would() -> None:
    """`answer_root` with a sample-mode view of a scan target (what gpu_check.sh times)."""
    params = params_of(gpu(0, 2048))
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, cupy=double(1))
    prover.fill()
    no_sweeps = {"sweeps": 0, "sweep_spots": 0, "sweep_expected_s": 0.0, "sweep_deadline_s": 0.0}
    sampled = params.targets[0].model_copy(
        update={"mode": "sample", "chunk_rows": 1, "samples": 40, **no_sweeps}
    )
    reference = numpy_prover(params_of(sampled))
    reference.fill()
    nonce = bytes(range(32))
    want = reference.answer_leaves(reference.states[0], nonce)
    from gpuproof.protocol.proof import merkle

    assert prover.answer_root(sampled, nonce) == merkle.levels(want)[-1][0]


# -- the probe's wiring ---------------------------------------------------------------------------------


def test_the_probe_takes_the_cupy_prover_on_the_gpu_backend_and_numpy_on_the_cpu_backend() -> None:
    from benchmark_probe.capacity import CupyCapacityFactory, default_prover
    from gpuproof.protocol.proof import NumpyExecutor
    from gpuproof.protocol.proof.cupy_executor import CupyExecutor

    cp = double(2)
    factory = default_prover(CupyExecutor({0: 1}, cupy=cp))
    assert isinstance(factory, CupyCapacityFactory)
    assert factory.runtime.cp is cp and factory.runtime.device_of(0) == 1
    assert default_prover(NumpyExecutor()) is CapacityProver
    assert default_prover(None) is CapacityProver


def test_host_ram_reserved_ahead_is_the_array_the_fill_fills() -> None:
    """`reserve_host` (the probe: right after taking the challenge) allocates host RAM's array and
    touches its pages in the background; the factory's memory plan counts what it already holds,
    the prover it makes takes that very array (once), and the commitment is the numpy prover's."""
    from benchmark_probe.capacity import CupyCapacityFactory

    params = params_of(gpu(0, 800), host(20000, d=48))
    factory = CupyCapacityFactory(CupyCapacityRuntime(double(1)))
    factory.reserve(params)
    reserved = factory._reserved
    assert reserved is not None and reserved.touch is not None
    array = reserved.touch.array
    assert array.shape == (params.targets[-1].n_rows, 48)
    assert factory.prepare(params).fits
    prover = factory(NONCE, KEY.public_hex, CHALLENGE, params, {})
    assert factory._reserved is None and reserved.touch is None  # taken, once
    assert prover.states[params.targets[-1].target].held is array
    assert prover.fill() == numpy_prover(params).fill()
    assert prover.fill_parts_s["touched"] >= 0  # touched before the fill, or during it


def test_a_reservation_is_given_back_when_the_phase_differs_or_is_refused() -> None:
    """A reservation for other params is cancelled and the prover allocates its own; `release` (the
    proof hook, when the phase did not take it) cancels it; nothing is reserved where host RAM
    cannot hold the fill now, so the memory plan refuses the phase exactly as without one."""
    small, other = params_of(gpu(0, 800), host(20000, d=48)), params_of(gpu(0, 800), host(40000, d=48))
    reserved = reserve_host(small)
    assert reserved is not None and reserved.touch is not None
    touch = reserved.touch
    prover = CupyCapacityProver(NONCE, KEY.public_hex, CHALLENGE, other, cupy=double(1), reserved=reserved)
    assert prover.states[other.targets[-1].target].held is None and reserved.touch is None
    with pytest.raises(RuntimeError, match="cancelled"):
        touch.wait(0, 1)  # the slices it had not touched were skipped
    assert prover.fill() == numpy_prover(other).fill()
    again = reserve_host(small)
    assert again is not None and again.touch is not None
    kept = again.touch
    again.release()
    assert again.touch is None and again.take(small.targets[-1]) is None
    with pytest.raises(RuntimeError, match="cancelled"):
        kept.wait(0, 1)
    assert reserve_host(params_of(gpu(0, 800))) is None  # no host target
    assert reserve_host(small, CupyCapacityOptions(host_pinned=True)) is None  # pinned: in the fill
    available = host_available_bytes()
    if available is not None:
        huge = params_of(gpu(0, 800), host(2 * available, d=48))
        assert reserve_host(huge) is None  # nothing allocated: the plan refuses the phase


def test_a_gpu_size_phase_that_does_not_fit_is_skipped_before_it_is_opened() -> None:
    """An H100-size phase on GPUs with 1 GiB each: said so, with the numbers, and the service is
    never asked to open the phase (the client points nowhere: any request would fail the test)."""
    from benchmark_probe.capacity import CupyCapacityFactory, run_capacity
    from benchmark_probe.client import ServiceClient
    from benchmark_probe.report import Challenge
    from gpuproof.protocol.capacity import derive_capacity_params

    params = derive_capacity_params(
        gpu_count=1, mem_gb=80, rate_tops=1385.3, bandwidth_gbs=3350.0, host_ram_bytes=None
    )
    factory = CupyCapacityFactory(CupyCapacityRuntime(double(1, device_memory_bytes=1 << 30)))
    challenge = Challenge("ch", "00" * 32, params={"capacity": params.model_dump(mode="json")})
    outcome = run_capacity(ServiceClient("http://127.0.0.1:9", KEY), KEY, challenge, factory)
    assert not outcome.ran and outcome.steps == []
    assert "NOT run: the capacity fill does not fit: device 0: needs" in outcome.note
    assert "capacity_missing" in outcome.note


def test_the_host_fill_model_adds_with_one_lane_and_overlaps_with_two() -> None:
    """`host_fill_seconds` at H100 parameters (256 GiB on 8 GPUs, 1 GiB buffers): one lane is the
    service's `fill_expected_s` (compute + three crossings, the terms added); two lanes take each
    pass's longer part plus one job's worth of the shorter, so no less than either part alone."""
    from gpuproof.protocol.capacity.params import (
        GPU_HASH_BYTES_PER_S,
        HOST_LINK_BYTES_PER_S,
        derive_capacity_params,
        fill_seconds,
    )

    rate, bandwidth = 1385.3, 3350.0
    params = derive_capacity_params(
        gpu_count=8, mem_gb=80, rate_tops=rate, bandwidth_gbs=bandwidth, host_ram_bytes=256 * 2**30
    )
    tp = params.targets[-1]
    layout = HostLayout.choose(tp.n_rows, tp.n_stages, (1 << 30) // tp.d)
    assert layout.two_pass
    rates = dict(
        rate_tops=rate * 8,
        bandwidth_gbs=bandwidth * 8,
        hash_bytes_per_s=GPU_HASH_BYTES_PER_S * 8,
        link_bytes_per_s=HOST_LINK_BYTES_PER_S * 8,
    )
    one = host_fill_seconds(tp, layout, 8, 1, **rates)
    two = host_fill_seconds(tp, layout, 8, 2, **rates)
    assert one == pytest.approx(tp.fill_expected_s, abs=1e-5)
    compute = fill_seconds(
        tp.n_rows,
        tp.d,
        rate_tops=rate * 8,
        bandwidth_gbs=bandwidth * 8,
        hash_bytes_per_s=GPU_HASH_BYTES_PER_S * 8,
    )
    link = one - compute  # the three crossings
    share = layout.block_log / tp.n_stages  # pass 1's stages
    floor = max(share * compute, link / 3) + max((1 - share) * compute, 2 * link / 3)
    assert floor <= two < 0.75 * one


@pytest.mark.parametrize(("work", "copies"), [(4.0, 0.5), (0.1, 0.6)])
def test_a_lane_pass_adds_with_one_lane_and_hides_the_shorter_part_with_two(
    work: float, copies: float
) -> None:
    """`lane_pass_seconds` (host RAM's fill passes and its recompute's, in the estimate): one lane
    adds the kernels and the copies; with two, the shorter part hides behind the longer but for
    one job's worth per device, so a single job per device hides nothing, and more jobs hide more."""
    from gpuproof.protocol.capacity.cupy_prover import lane_pass_seconds

    assert lane_pass_seconds(work, copies, 64, 8, 1) == pytest.approx(work + copies)
    assert lane_pass_seconds(work, copies, 8, 8, 2) == pytest.approx(work + copies)  # one job each
    many = lane_pass_seconds(work, copies, 64, 8, 2)
    assert many == pytest.approx(max(work, copies) + min(work, copies) / 8)
    assert max(work, copies) < many < lane_pass_seconds(work, copies, 16, 8, 2) < work + copies


def test_host_ram_is_touched_in_order_and_a_block_waits_only_for_its_own_pages() -> None:
    """Host RAM's first touch runs in the background in slices: a block's copy waits for its own
    slices only (slice 0 touched while slice 1 is held up), `touched` fires once every page is,
    a touch that fails raises in the waiting block instead of leaving it waiting, and one cancelled
    (a fill that failed) stops."""
    from gpuproof.protocol.capacity import cupy_prover

    hold = threading.Event()
    calls: list[int] = []

    class Held(cupy_prover._Touch):
        def _touch(self, k: int) -> None:
            if k == 1:
                assert hold.wait(60)
            super()._touch(k)

    array = np.full((40, 8), 7, dtype=np.int8)
    touch = Held(array, 10, lambda: calls.append(1))
    touch.wait(0, 10)  # slice 0 only: returns while slice 1 waits
    assert not array[:10].any() and not calls
    hold.set()
    touch.close()
    assert not array.any() and calls == [1]

    class Failing(cupy_prover._Touch):
        def _touch(self, k: int) -> None:
            if k == 2:
                self._error = MemoryError("no more pages")
            super()._touch(k)

    failing = Failing(np.zeros((40, 8), dtype=np.int8), 10, lambda: None)
    with pytest.raises(MemoryError, match="no more pages"):
        failing.wait(20, 10)
    with pytest.raises(MemoryError, match="no more pages"):
        failing.close()
    hold.clear()  # a cancelled touch skips the slices not yet started and returns
    cancelled = Held(np.full((40, 8), 7, dtype=np.int8), 10, lambda: calls.append(2))
    threading.Timer(0.2, hold.set).start()
    cancelled.cancel()
    assert cancelled._pool is None and calls == [1]  # not reported as touched


def test_an_h100s_plan_at_real_size_and_the_window_shrinking_to_fit() -> None:
    """`plan_for_free` at the real 8 x H100 + 256 GiB parameters on 79 GiB cards: host RAM's two
    lanes beside the GPU fill and a 1 GiB recompute window fit (the later steps run alone, so the
    window is not added to the lanes). With less free memory the window halves (and the kept nodes
    rise to a higher H) before the fill is refused; the fill itself never shrinks."""
    from gpuproof.claim import capacity_params_for, make_claim
    from gpuproof.protocol.capacity.cupy_prover import MIN_WINDOW_BYTES, WINDOW_BYTES, plan_for_free

    params = capacity_params_for(make_claim("H100 SXM5 80GB", 8, allow_cpu_backend=False), 256 * 2**30)
    assert params is not None
    gpus = [t.target for t in params.targets if not t.is_host]

    def plan(free_bytes: int) -> Any:
        free = dict.fromkeys(gpus, free_bytes)
        return plan_for_free(params, lambda target: target, gpus, free, None, None)

    roomy = plan(79 * 2**30)
    assert roomy.fits and (roomy.host_lanes, roomy.beside, roomy.window_bytes) == (2, True, WINDOW_BYTES)
    fills = roomy.devices[0].fill_bytes
    assert fills > 0.9 * 80 * 10**9 * 0.99  # 90% of the card's information, + the kept nodes
    tight = plan(fills + roomy.devices[0].margin_bytes + (600 << 20))
    assert tight.fits and MIN_WINDOW_BYTES <= tight.window_bytes < WINDOW_BYTES
    assert tight.kept_height > roomy.kept_height and tight.devices[0].fill_bytes < fills  # fewer kept nodes
    fill = sum(t.fill_bytes for t in params.targets if t.target == 0)
    assert tight.devices[0].fill_bytes > fill  # the whole fill, and its kept nodes
    assert not plan(fill).fits  # no room beside the fill itself: refused
