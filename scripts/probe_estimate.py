"""ESTIMATE of an honest host's probe (issue 12: "whole probe ≤ 60 s on 8 × H100"), step by step,
from the parameters the service issues and the GPU executor's own cost model: the service-timed
part, from taking the challenge to uploading the capacity openings (`estimate`), then the stages
around it as the probe runs them, side by side where it does (`around`), which make the whole probe. Nothing here was measured on
a GPU (none has been lent): every rate is the estimate `params.py` and the reference table state,
to be replaced by `scripts/gpu_check.sh`'s figures.

Method: the probe's steps run one after another, all GPUs in parallel within a step:
- throughput proof: the challenge's `expected_s` (§8) + the prover's host work per step, not
  overlapped with the GPU (each step reads its root back: π_t, its upload, the launches;
  STEP_HOST_S) + its openings (THROUGHPUT_OPENINGS_S);
- capacity fill: B = L·U on the host before the first stage (B_LU_S; the stages' matrices after
  it are built ahead on a host thread while the GPUs run, `_prefetch_stages`), then as the
  executor's memory plan for an H100 holding its GPU fill has it
  (`plan_for_free`, free = the card's memory - FREE_RESERVE): host RAM's fill BESIDE the GPU
  fills, on lanes 1.., takes the longer of the GPUs' work (the slowest GPU's `fill_expected_s` +
  host RAM's kernels, which share the GPUs: they add) and host RAM's own path
  (`cupy_prover.host_fill_seconds` with the plan's lanes, copies overlapping kernels, its pass 1
  behind the first touch of its pages, which runs in the background at HOST_TOUCH_BYTES_PER_S
  from the throughput proof's start, `CupyCapacityFactory.reserve`, so only what is left of it
  when the fill starts counts); AFTER them, the sum of the GPU fill and that host fill. The service's fill deadline keeps the one-lane sum after the GPU fills (§17.5): a host
  whose memory fits neither lanes nor beside must still make it;
- rounds: R × (GPU `round_expected_s` + RTT) + R × (host round + RTT), the host round the
  executor's (`_host_leaves`: the sampled rows gathered at HOST_ROWS_PER_S, sent to the GPUs and
  hashed there; the service's `round_expected_s` allows hashing them on the CPU);
- bandwidth round: `sweep_expected_s` + RTT;
- the openings: the spotted items' blocks of the answer trees (kept at height 6 when answered)
  rebuilt from X_L, then the recompute (`reopen.plan` for walks drawn as the service draws them):
  its row-stages as a fraction of the fill's N·L of GEMM + stage traffic (`fill_seconds` without
  the hashing term: no layer is hashed whole) + its calls at CALL_S and PATH_SYNC_S a path,
  host RAM's descents crossing PCIe once; GPU targets at once, then host RAM;
- issuing the work: every launch, cuBLAS call and copy costs the host CALL_S of Python, which the
  GIL serialises across the GPUs' and lanes' threads, so the fill and the recompute take at least
  their calls summed over every GPU (counted from the executor's own work: `stage_work`, trees,
  copies, the recompute plan's jobs) times CALL_S;
- upload: `wire.max_size` of the openings at UPLOAD_BYTES_PER_S; with host RAM in two parts
  (§17.10): the GPU targets' part beside host RAM's recompute, host RAM's after it.

`python scripts/probe_estimate.py [gpus] [host GiB]` prints the table (default 8 × H100 SXM5 80GB,
256 GiB).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sha_static import RECORDED

from benchmark_probe.bench import BenchPlan
from gpuproof.claim import capacity_params_for, make_claim, proof_params_for
from gpuproof.protocol.capacity import CapacityParams, CapacityTargetParams, wire
from gpuproof.protocol.capacity.cupy_prover import (
    ANSWER_KEPT_HEIGHT,
    HOST_BUFFER_BYTES,
    HOST_KEPT_HEIGHT,
    TREE_BASE_HEIGHT,
    HostLayout,
    host_fill_seconds,
    lane_pass_seconds,
    plan_for_free,
    stage_work,
    window_rows,
)
from gpuproof.protocol.capacity.draws import draw_walks
from gpuproof.protocol.capacity.params import (
    COMMIT_STRIDE,
    FILL_OVERHEAD,
    GPU_HASH_BYTES_PER_S,
    HOST_HASH_BYTES_PER_S,
    HOST_LINK_BYTES_PER_S,
    HOST_ROWS_PER_S,
    fill_seconds,
)
from gpuproof.protocol.capacity.reopen import Plan, block_batches, plan, walk_wants
from gpuproof.reference import GpuReference, reference_table

MODEL = "H100 SXM5 80GB"
RTT_S = 0.1  # one round trip to the service (estimate)
THROUGHPUT_OPENINGS_S = 0.5  # the throughput proof's openings: recompute of 140 rows + upload (estimate)
# The prover's host work between two steps of the chain, on the critical path (the step's root is
# read back before the next step's launches): the affine π_t, 16 µs at d = 4096 (timeit, the dev
# machine, 2026-12-06), plus its 16 KiB upload, ~6 launches and the 32-byte readback (ESTIMATE:
# 40 µs).
STEP_HOST_S = 16e-6 + 40e-6
# B = L·U of a GPU target (d = 1024), one float64 d x d product on the host: 44 ms idle, 73 ms with
# `make bench` running beside it (timeit, the dev machine, 2026-12-07); the targets' run in parallel.
B_LU_S = 0.073
UPLOAD_BYTES_PER_S = 40e6  # the openings' upload to S3 (estimate: a 320 Mbit/s uplink)
BLOCK_OVERHEAD_S = 1e-3  # one spotted block: a few launches and copies (estimate)
FREE_RESERVE = 1 << 30  # of a card's memory, held by the CUDA context and the driver (estimate)
LIKELY_HASH_BYTES_PER_S = 15e9 * 64  # 15 G compressions/s: hashcat-class kernels (what-if only)
# Device SHA-256 over a fill's rows of d bytes (leaves and their tree's nodes), derived from the
# executor's kernels as built for sm_90 by NVRTC and ptxas 12.9.86: the instructions
# `python scripts/sha_static.py` counted (its RECORDED, 2026-12-03; docs/measurements.md) under its
# model (x 132 SMs x 64 integer lanes x 1.98 GHz x 0.70). ESTIMATES until `scripts/gpu_check.sh`
# measures them.
SHA_COUNTS = RECORDED
DERIVED_HASH_BYTES_PER_S = {d: SHA_COUNTS.row_bytes_per_s(d) for d in (512, 1024)}
HOST_TOUCH_BYTES_PER_S = 32e9  # host RAM's first touch, 16 threads at ~2 GB/s each (estimate)
PATH_SYNC_S = 40e-6  # one wanted row's path: its two readbacks (root, rows) wait for the device (estimate)
# Host seconds one kernel launch, cuBLAS call or copy takes to issue from Python (CuPy; the GPU
# runs it later): ESTIMATE, 10 µs, until `scripts/gpu_check.sh` measures it (`fill_cpu`: call_s /
# calls). The GIL serialises the issuing threads of every GPU and lane of the host, so the calls of
# a step, summed over its GPUs, bound it from below ("issuing the work").
CALL_S = 10e-6
COLLECT_CALLS = 6  # one wanted block's path: a copy, its subtree's launches, two readbacks


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    how: str


# The probe's stages around the service-timed part (from taking the challenge to uploading the
# openings, `estimate`), as `benchmark_probe.submit` runs them: inventory; then SIDE BY SIDE
# (`prepare_side_by_side`) the registration, the integrity signals, the micro-benchmarks and the
# proof hook's preparation (the throughput executor and, beside it, the capacity phase's kernels and
# lanes: `ProofRunner.prepare`); the challenge; after the timed part, the signed report and the
# state. Each from its sizes (`around`); what could be timed without a GPU was timed here.
SERVICE_S = 0.2  # the service's handling of one request: a warm Lambda and its DynamoDB writes (estimate)
INVENTORY_S = 2.0  # NVML walk (~25 calls a GPU), the CUDA cross-check, host figures: docs/probe.md's budget
# NVRTC builds for sm_90 (CUBIN, what CuPy asks for on a GPU it knows), timed by
# `scripts/nvrtc_check.py --arch sm_90` (nvidia-cuda-nvrtc-cu12 12.9.86, this dev machine's one core,
# 2026-12-07): the throughput executor's source, the capacity phase's. CuPy caches the result on disk
# (~/.cupy/kernel_cache, reused by later processes): a first run pays them, later runs do not.
PROOF_BUILD_S, CAPACITY_BUILD_S = 1.50, 7.54
CONTEXTS_S = 0.5  # CUDA primary contexts and cuBLAS handles, every GPU at once (estimate)
LANE_WARM_S = (
    0.3  # the capacity lanes' warm-up (a tiny stage each; every lane loads the built module) (estimate)
)
INTEGRITY_BYTES = 60e6  # libnvidia-ml, libcuda and nvidia-smi (docs/probe.md)
SHA256_HOST_BYTES_PER_S = 1.79e9  # hashlib over 64 MiB, median of 5, this dev machine (2026-12-07)
EXPECTED_ROWS_S = 0.060  # the micro-benchmarks' CPU reference rows (4 at n = 8192), timeit here (2026-12-07)
PIN_BYTES_PER_S = 4e9  # page-locking the pinned copies' host buffers (estimate)
HANDLE_S = 0.1  # the micro-benchmarks' threads' cuBLAS handles and heuristics (estimate)
L2_BYTES = 50 << 20  # an H100's L2: the micro-benchmarks flush twice this before every GEMM
ACHIEVED = 0.70  # of a datasheet rate, as the reference table applies to int8 (fp32 and TF32 here)


def bench_seconds(plan: BenchPlan, ref: GpuReference) -> tuple[float, str]:
    """The micro-benchmarks of one GPU (all GPUs at once), from the plan's sizes: every GEMM kind's
    runs at its rate (fp32 at ACHIEVED of the datasheet, TF32 at half the bf16 dense rate x
    ACHIEVED, fp16/bf16 at the table's measured bf16 rate, int8 at the proof's expected rate), the
    memsets before each run, the operands, the copies (device at 0.8 x the bandwidth, host at the
    PCIe figure the fill assumes) and the pinned buffers."""
    assert ref.fp32_tflops and ref.bf16_dense_tflops and ref.expected_int8_tops and ref.mem_bw_gbs
    runs, n = plan.warmups + plan.repeats, plan.gemm_n
    rates = {
        "fp32": ref.fp32_tflops * ACHIEVED,
        "tf32": ref.bf16_dense_tflops / 2 * ACHIEVED,
        "fp16": ref.achieved_bf16_tflops or ref.bf16_dense_tflops * ACHIEVED,
        "bf16": ref.achieved_bf16_tflops or ref.bf16_dense_tflops * ACHIEVED,
        "int8": ref.expected_int8_tops,
    }
    device = 0.8 * ref.mem_bw_gbs * 1e9
    gemm = sum(runs * 2 * n**3 / (rates[k] * 1e12) for k in plan.gemm_kinds)
    memsets = len(plan.gemm_kinds) * runs * (4 * n * n + 2 * L2_BYTES) / device
    operands = 2 * n * n / HOST_LINK_BYTES_PER_S + EXPECTED_ROWS_S
    copies = runs * (2 * plan.copy_bytes / device + 2 * plan.host_copy_bytes / HOST_LINK_BYTES_PER_S)
    pinned = 2 * plan.host_copy_bytes / PIN_BYTES_PER_S
    total = gemm + memsets + operands + copies + pinned + HANDLE_S
    how = (
        f"GEMMs {gemm:.2f} ({len(plan.gemm_kinds)} kinds x {runs} runs at n = {n}) + memsets {memsets:.2f} + "
        f"operands {operands:.2f} + copies {copies:.2f} + pinned buffers {pinned:.2f} + handles {HANDLE_S:.1f}"
    )
    return total, how


def around(
    gpus: int = 8, model: str = MODEL, *, built: bool = False, proof_s: float | None = None
) -> tuple[list[Step], list[Step]]:
    """(the side-by-side stages before the challenge, the stages one after another); `built`: CuPy's
    kernel cache already holds the builds (every run after the first). The capacity phase's
    warm-up (its NVRTC build and lanes, `CupyCapacityFactory.warm_beside`) starts with the
    preparation and runs beside everything up to the end of the throughput proof (`proof_s`, its
    estimate's first step by default); only what is left of it then falls on the path."""
    ref = next(m for m in reference_table() if m.model == model)
    if proof_s is None:
        proof_s = estimate(model, gpus)[0].seconds
    request = RTT_S + SERVICE_S
    bench, bench_how = bench_seconds(BenchPlan(), ref)
    proof_build = 0.0 if built else PROOF_BUILD_S
    capacity_warm = LANE_WARM_S + (0.0 if built else CAPACITY_BUILD_S)
    prepare = CONTEXTS_S + proof_build
    builds = "kernels cached" if built else f"the throughput kernels' NVRTC build {PROOF_BUILD_S:.2f}"
    side = [
        Step("register", request, "one signed request"),
        Step(
            "integrity",
            0.05 + INTEGRITY_BYTES / SHA256_HOST_BYTES_PER_S,
            "/proc/self/maps, SHA-256 of ~60 MB",
        ),
        Step("micro-benchmarks", bench, bench_how),
        Step("prepare", prepare, f"contexts {CONTEXTS_S:.1f}; {builds}"),
    ]
    together = max(s.seconds for s in side)
    beside = together + request + proof_s
    left = max(0.0, capacity_warm - beside)
    warm_how = (
        f"lanes {LANE_WARM_S:.1f}"
        if built
        else f"NVRTC build {CAPACITY_BUILD_S:.2f} + lanes {LANE_WARM_S:.1f}"
    )
    serial = [
        Step(
            "inventory", INVENTORY_S, "NVML walk, the CUDA cross-check, host figures (docs/probe.md budget)"
        ),
        Step("side by side", together, "the longest of the four above"),
        Step("challenge", request, "one signed request"),
        Step(
            "capacity warm-up left",
            left,
            f"{warm_how} = {capacity_warm:.2f}, beside side by side, challenge and throughput proof "
            f"({beside:.1f} s)",
        ),
        Step(
            "sign + submit + state", 2 * request, "the signed report (Ed25519: 0.3 ms here) and two requests"
        ),
    ]
    return side, serial


def _log2(x: int) -> int:
    return x.bit_length() - 1


def _reopen(tp: CapacityTargetParams, height: int, max_rows: int) -> Plan:
    """The openings' recompute as the executor plans it (`reopen.plan`) for walks drawn as the
    service draws them (`draw_walks`, a fixed commitment and secret: the rows are uniform, so
    any draw costs about the same)."""
    want = walk_wants(tp, draw_walks(bytes(32), bytes(range(32)), tp))
    found = plan({k: v for k, v in want.items() if k < tp.n_stages}, tp.n_rows, tp.n_stages, height, max_rows)
    assert found is not None, "no recompute plan fits"
    return found


def _stage_calls(v: int, h: int, group: int) -> int:
    """Calls one stage over v rows pairing b with b xor h makes (`_Gpu.stage`): per group with
    pairs its operand, GEMM and epilogue, per lone range a GEMM and an epilogue."""
    return sum(3 * bool(pairs) + 2 * bool(rows) for _lo, pairs, _first, rows in stage_work(v, h, group))


def _tree_calls(top: int, base: int) -> int:
    return 1 + max(0, top - base)  # the subtrees, then one launch a level


def _gpu_fill_calls(tp: CapacityTargetParams, group: int, kept: int) -> int:
    n, top = tp.n_rows, tp.n_stages
    base = min(TREE_BASE_HEIGHT, top, kept)
    stages = sum(_stage_calls(n, 1 << (s - 1), group) for s in range(1, top + 1))
    return 1 + stages + len(tp.committed) * _tree_calls(top, base)


def _host_fill_calls(tp: CapacityTargetParams, layout: HostLayout, group: int, kept: int) -> int:
    """Pass 1: per block its seed, stages 1..c, trees and one download; pass 2: per window its two
    strided copies (and their tails), stages c + 1..L and trees."""
    n, top, c = tp.n_rows, tp.n_stages, layout.block_log
    base = min(TREE_BASE_HEIGHT, kept)
    blocks = -(-n // layout.block_rows)
    committed = set(tp.committed)
    block = sum(_stage_calls(layout.block_rows, 1 << (s - 1), group) for s in range(1, c + 1))
    calls = blocks * (2 + block + sum(_tree_calls(c, base) for s in committed if s <= c))
    if layout.two_pass:
        v = layout.slabs * layout.window_rows
        w = layout.window_rows
        window = sum(_stage_calls(v, (1 << (s - 1 - c)) * w, group) for s in range(c + 1, top + 1))
        windows = layout.block_rows // layout.window_rows
        calls += windows * (
            4 + window + sum(_tree_calls(layout.window_log, base) for s in committed if s > c)
        )
    return calls


def _reopen_calls(
    tp: CapacityTargetParams, p: Plan, height: int, group: int, batch_rows: int = 0
) -> tuple[int, int]:
    """(calls, paths) of the recompute (`_run_job`, `_run_blocks`): a GPU's blocks of a layer side
    by side in `batch_rows` (`block_batches`; 0: one job at a time, host RAM's lanes), per stage
    its calls (and a descent's shift), per job its seed or slab load, per wanted block
    COLLECT_CALLS."""
    n, top = tp.n_rows, tp.n_stages
    blocks = [j for j in p.jobs if not j.down]
    batches = block_batches(blocks, n, batch_rows) if batch_rows else [[j] for j in blocks]
    calls = 0
    for batch in batches:
        v = (len(batch) - 1 << batch[0].layer) + batch[-1].rows(n, top, height)
        calls += len(batch) + sum(_stage_calls(v, 1 << (s - 1), group) for s in range(1, batch[0].layer + 1))
    for j in (j for j in p.jobs if j.down):
        v = j.rows(n, top, height)
        calls += 2 + sum(_stage_calls(v, 1 << (height + s - 1 - j.layer), group) + 1 for s in j.stages(top))
    paths = sum(len({(layer, row >> height) for row, layer in j.wanted}) for j in p.jobs)
    return calls + COLLECT_CALLS * paths, paths


def estimate(
    model: str = MODEL,
    gpus: int = 8,
    host_gib: int = 256,
    hash_bytes_per_s: float = DERIVED_HASH_BYTES_PER_S[1024],
    host_hash_bytes_per_s: float | None = DERIVED_HASH_BYTES_PER_S[512],
    commit_stride: int = COMMIT_STRIDE,
) -> list[Step]:
    """The steps, with the parameters re-derived at the device SHA-256 rates given (per GPU: over
    the GPU fills' rows, over host RAM's; default the rates derived from the kernels' code,
    DERIVED_HASH_BYTES_PER_S). The service derives its deadlines at GPU_HASH_BYTES_PER_S, every
    other layer committed (COMMIT_STRIDE; `commit_stride` 1, every layer, is the what-if)."""
    host_hash = host_hash_bytes_per_s or hash_bytes_per_s
    ref = next(m for m in reference_table() if m.model == model)
    assert ref.expected_int8_tops and ref.mem_bw_gbs, model
    claim = make_claim(model, gpus, allow_cpu_backend=False)
    proof = max(p.expected_s for p in proof_params_for(claim))
    steps_t = max(p.steps for p in proof_params_for(claim))
    throughput_s = proof + steps_t * STEP_HOST_S + THROUGHPUT_OPENINGS_S
    host_bytes = host_gib * 2**30 if host_gib else None
    params: CapacityParams | None = capacity_params_for(
        claim,
        host_bytes,
        hash_bytes_per_s=hash_bytes_per_s,
        host_hash_bytes_per_s=host_hash,
        commit_stride=commit_stride,
    )
    assert params is not None
    gpu = [t for t in params.targets if not t.is_host]
    host = [t for t in params.targets if t.is_host]
    g = gpu[0]
    rounds = params.rounds
    free = {t.target: ref.mem_gb * 2**30 - FREE_RESERVE for t in gpu}
    plan = plan_for_free(params, lambda target: target, sorted(free), free, None, None)
    assert plan.fits, plan.describe()
    gpu_fill = max(t.fill_expected_s for t in gpu)
    fill, fill_how = gpu_fill, f"GPU fill {gpu_fill:.2f} (fill_expected_s)"
    for t in host:
        assert plan.host is not None
        rates = dict(
            rate_tops=ref.expected_int8_tops * gpus,
            bandwidth_gbs=ref.mem_bw_gbs * gpus,
            hash_bytes_per_s=host_hash * gpus,
        )
        # host RAM's first touch, in the background from the throughput proof's start (the probe
        # reserves the array right after taking the challenge): what is left of it at the fill's
        touch = max(0.0, t.fill_bytes / HOST_TOUCH_BYTES_PER_S - throughput_s)
        lanes = f"{plan.host_lanes} lane{'s' if plan.host_lanes > 1 else ''}"
        link = HOST_LINK_BYTES_PER_S * gpus
        if plan.beside:
            own = host_fill_seconds(
                t, plan.host, gpus, plan.host_lanes, link_bytes_per_s=link, touch_s=touch, **rates
            )
            kernels = fill_seconds(t.n_rows, t.d, **rates, commit_stride=t.commit_stride)
            fill = max(gpu_fill + kernels, own)
            fill_how = (
                f"host RAM beside the GPU fill ({lanes} per GPU): max(GPU fill {gpu_fill:.2f} + host "
                f"kernels {kernels:.2f}, host fill {own:.2f} behind what is left of its first touch "
                f"{touch:.2f}); after "
                f"it, one lane: {gpu_fill + t.fill_expected_s:.2f}"
            )
        else:
            own = host_fill_seconds(
                t, plan.host, gpus, plan.host_lanes, link_bytes_per_s=link, touch_s=touch - gpu_fill, **rates
            )
            fill += own
            fill_how += f" + host RAM {own:.2f} after it ({lanes} per GPU; one lane {t.fill_expected_s:.2f})"

    fill_calls = sum(_gpu_fill_calls(t, plan.group_rows, plan.kept_height) for t in gpu) + sum(
        _host_fill_calls(t, plan.host, plan.group_rows, plan.kept_height)
        for t in host
        if plan.host is not None
    )
    issuing = fill_calls * CALL_S
    fill_how += (
        f"; issuing the work: {fill_calls:,} calls x {CALL_S * 1e6:.0f} us = {issuing:.2f} s under the GIL "
        f"({'binds' if issuing > fill else 'beside it'})"
    )
    fill = max(fill, issuing)
    fill, fill_how = B_LU_S + fill, f"B = L·U {B_LU_S:.2f} first, then " + fill_how

    def host_round(t: CapacityTargetParams) -> float:
        """The executor's host round (`_host_leaves`): the sampled rows gathered by the CPU, sent to
        the GPUs and hashed there (the service's round_expected_s allows hashing on the CPU)."""
        sampled = t.samples * t.d
        return (
            t.samples / HOST_ROWS_PER_S
            + sampled / (HOST_LINK_BYTES_PER_S * gpus)
            + sampled / (host_hash * gpus)
        )

    steps = [
        Step(
            "throughput proof",
            throughput_s,
            f"expected_s {proof:.2f} + host work {steps_t} x {STEP_HOST_S * 1e6:.0f} us + openings 0.5",
        ),
        Step("capacity fill", fill, fill_how),
        Step(
            "read rounds",
            rounds * (g.round_expected_s + RTT_S) + sum(rounds * (host_round(t) + RTT_S) for t in host),
            f"{rounds} x (GPU round {g.round_expected_s:.2f} + RTT) + {rounds} x (host round "
            f"{sum(host_round(t) for t in host):.2f} + RTT; round_expected_s, hashing on the CPU: "
            f"{sum(t.round_expected_s for t in host):.2f})",
        ),
        Step("bandwidth round", g.sweep_expected_s + RTT_S, "sweep_expected_s + RTT"),
    ]
    block = 1 << ANSWER_KEPT_HEIGHT  # answer items per kept node
    gpu_blocks = rounds * g.spots + g.sweep_spots
    answer_s = gpu_blocks * (block * g.chunk_rows * g.d / hash_bytes_per_s + BLOCK_OVERHEAD_S)
    for t in host:
        host_blocks = rounds * t.spots
        answer_s += host_blocks * (block * t.chunk_rows * t.d / HOST_HASH_BYTES_PER_S + BLOCK_OVERHEAD_S)
    steps.append(
        Step(
            "answer blocks again",
            answer_s,
            f"the spotted items' blocks of {block} leaves rebuilt from X_L ({gpu_blocks} per GPU), the rest kept",
        )
    )
    gpu_work = fill_seconds(
        g.n_rows, g.d, rate_tops=ref.expected_int8_tops, bandwidth_gbs=ref.mem_bw_gbs, hash_bytes_per_s=None
    )
    gh = min(plan.kept_height, g.n_stages)
    gpu_plan = _reopen(g, gh, window_rows(g, plan.window_bytes, gh))
    gpu_fraction = gpu_plan.row_stages / (g.n_rows * g.n_stages)
    rows = window_rows(g, plan.window_bytes, gh)
    per_gpu, paths = _reopen_calls(g, gpu_plan, gh, plan.group_rows, rows)
    gpu_calls = len(gpu) * per_gpu
    fixed = per_gpu * CALL_S + paths * PATH_SYNC_S
    recompute = max(gpu_work * gpu_fraction + fixed, gpu_calls * CALL_S)
    host_s = 0.0
    how = (
        f"GPU: {len(gpu_plan.jobs)} jobs below/above stage {gpu_plan.threshold} (`reopen.plan`; a layer's "
        f"blocks side by side), {gpu_fraction:.4f} of the fill's GEMM + traffic ({gpu_work:.2f} s) + "
        f"{per_gpu:,} calls and {paths} paths' readbacks {fixed:.2f} s; issuing the {len(gpu)} GPUs' "
        f"{gpu_calls:,} calls under the GIL: {gpu_calls * CALL_S:.2f} s"
    )
    for t in host:
        layout = HostLayout.choose(t.n_rows, t.n_stages, 1 << _log2(max(2, HOST_BUFFER_BYTES // t.d)))
        h = max(0, min(HOST_KEPT_HEIGHT, layout.window_log))
        host_plan = _reopen(t, h, layout.buffer_rows)
        fraction = host_plan.row_stages / (t.n_rows * t.n_stages)
        host_fill = fill_seconds(
            t.n_rows,
            t.d,
            rate_tops=ref.expected_int8_tops * gpus,
            bandwidth_gbs=ref.mem_bw_gbs * gpus,
            hash_bytes_per_s=None,
        )
        descent_bytes = sum(j.rows(t.n_rows, t.n_stages, h) for j in host_plan.jobs if j.down) * t.d
        link = descent_bytes / (HOST_LINK_BYTES_PER_S * gpus) * (1 + FILL_OVERHEAD)  # up only
        # `_reopen_host` on host RAM's lanes: jobs in turn, a descent's upload beside another lane's
        # kernels (`lane_pass_seconds`); nothing comes back to host memory
        host_calls, blocks_h = _reopen_calls(t, host_plan, h, plan.group_rows)
        host_s = max(
            lane_pass_seconds(host_fill * fraction, link, len(host_plan.jobs), gpus, plan.host_lanes)
            + blocks_h * PATH_SYNC_S / gpus,
            host_calls * CALL_S,
        )
        recompute += host_s
        how += (
            f"; host RAM: {len(host_plan.jobs)} jobs (stage {host_plan.threshold}), {fraction:.4f} of "
            f"{host_fill:.2f} s, descents' {descent_bytes / 1e9:.2f} GB up over PCIe {link:.2f} s "
            f"(one strided copy a descent) beside it on {plan.host_lanes} lane{'s' if plan.host_lanes > 1 else ''}, "
            f"{blocks_h} blocks' paths, {host_calls:,} calls ({host_calls * CALL_S:.2f} s under the GIL): {host_s:.2f} s"
        )
    steps.append(Step("openings recompute", recompute, how))
    size, tail = wire.max_size(params), wire.host_part_max_size(params)
    if tail:  # two parts (§17.10): the GPU targets' beside host RAM's recompute, then host RAM's
        head_s, tail_s = (size - tail) / UPLOAD_BYTES_PER_S, tail / UPLOAD_BYTES_PER_S
        left = max(0.0, head_s - host_s)
        steps.append(
            Step(
                "upload",
                left + tail_s,
                f"{size:,} bytes at 40 MB/s in two parts: the GPU targets' {size - tail:,} ({head_s:.2f} s) "
                f"beside host RAM's recompute ({host_s:.2f} s; {left:.2f} s left after it), then host "
                f"RAM's {tail:,} ({tail_s:.2f} s)",
            )
        )
    else:
        steps.append(Step("upload", size / UPLOAD_BYTES_PER_S, f"{size:,} bytes at 40 MB/s"))
    return steps


def main() -> None:
    gpus = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    host_gib = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    steps = estimate(MODEL, gpus, host_gib)
    print(f"ESTIMATE, honest {gpus} x {MODEL} + {host_gib} GiB probe (scripts/probe_estimate.py)\n")
    print("| step | seconds | how |\n|---|---:|---|")
    for s in steps:
        print(f"| {s.name} | {s.seconds:.1f} | {s.how} |")
    print(f"| **total** | **{sum(s.seconds for s in steps):.1f}** | |")
    gpu_rate, host_rate = DERIVED_HASH_BYTES_PER_S[1024], DERIVED_HASH_BYTES_PER_S[512]
    print(
        f"\nDevice SHA-256 above: {gpu_rate / 1e9:.0f} GB/s over 1024-byte rows, {host_rate / 1e9:.0f} GB/s "
        "over 512-byte rows (derived from the kernels' code: scripts/sha_static.py)."
    )
    for label, rate in (
        ("the deadlines' pessimistic rate", GPU_HASH_BYTES_PER_S),
        ("hashcat-class (docs/benchmarks.md)", LIKELY_HASH_BYTES_PER_S),
    ):
        total = sum(s.seconds for s in estimate(MODEL, gpus, host_gib, rate, rate))
        print(f"At {rate / 1e9:.0f} GB/s for every row ({label}): total {total:.1f} s")
    every = sum(s.seconds for s in estimate(MODEL, gpus, host_gib, commit_stride=1))
    print(f"With every layer committed (commit_stride 1, as until 2026-12-03): total {every:.1f} s")
    timed = sum(s.seconds for s in steps)
    for built in (False, True):
        side, serial = around(gpus, built=built, proof_s=steps[0].seconds)
        label = (
            "later runs: CuPy's kernel cache holds the builds"
            if built
            else "a first run: the GPU kernels built"
        )
        print(f"\nAround the service-timed part, {label} (benchmark_probe.submit; ESTIMATES from sizes):\n")
        print("| side by side, before the challenge | seconds | what |\n|---|---:|---|")
        for s in side:
            print(f"| {s.name} | {s.seconds:.2f} | {s.how} |")
        print("\n| stage | seconds | what |\n|---|---:|---|")
        for s in serial:
            print(f"| {s.name} | {s.seconds:.2f} | {s.how} |")
        rest = sum(s.seconds for s in serial)
        print(
            f"\nWhole probe ({'later runs' if built else 'first run'}): {timed:.1f} + {rest:.1f} = {timed + rest:.1f} s"
        )


if __name__ == "__main__":
    main()
