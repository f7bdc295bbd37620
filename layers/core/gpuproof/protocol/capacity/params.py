"""Capacity parameters chosen by the service from the claim (docs/protocol.md "Capacity phase").

Every rate here is an ESTIMATE until calibrated on hardware (scripts/gpu_check.sh); each deadline
is expected time x tolerance + the network allowance, so an honest host is never held to a guess.

The fill's expected time is that of the GPU executor the probe runs (`cupy_prover.py`), term by
term (`fill_seconds`): the stage GEMMs at the claimed model's expected int8 rate; per stage, the
memory-bound kernels beside the GEMM (the pair operand gather reads 1 and writes 1 byte per fill
byte, one operand row per pair; the epilogue reads the 4-byte int32 product and writes 1: 7 bytes
of traffic per fill byte, an upper bound: lone rows are not gathered)
at BANDWIDTH_FRACTION of the datasheet bandwidth; per stage, the layer's SHA-256 on the device;
and, for host RAM, the out-of-core passes' PCIe traffic (every byte crosses 3 times: pass 1 down,
pass 2 up and down) at HOST_LINK_BYTES_PER_S per GPU. The kernels run one after another on one
stream, so the terms add; + FILL_OVERHEAD for launches and self-checks.
"""

from __future__ import annotations

import math

from gpuproof.protocol import limits as L
from gpuproof.protocol.capacity.fill import committed_stages
from gpuproof.protocol.capacity.models import HOST_TARGET, CapacityParams, CapacityTargetParams
from gpuproof.protocol.capacity.sweep import sweep_seconds

FILL_FRACTION = 0.90  # of the claimed model's VRAM (or the claimed RAM), in information bytes
GPU_D = 1024  # fill row width on a GPU: K = 2d = 2048 per stage GEMM
HOST_D = 512  # host rows are cheaper to fill (GPUs fill host RAM on top of their own)
CPU_D = 32
GPU_CHUNK_ROWS = 16
GPU_SPOTS, GPU_WALKS = 12, 32  # a walk opens every stage, L down to 1 (§17.7, Bound 3)
HOST_SAMPLES = 2**22
ROUNDS = 4
TOLERANCE = 1.14
FILL_OVERHEAD = 0.1  # kernel launches, the executor's self-checks, Python between them (estimate)
STAGE_TRAFFIC = 7  # bytes moved per fill byte per stage by the pair operand gather (2) and epilogue (5)
BANDWIDTH_FRACTION = 0.8  # of the datasheet memory bandwidth those kernels reach (estimate)
HOST_FILL_CROSSINGS = 3  # the host fill's bytes cross PCIe 3 times (two passes, cupy_prover.py)
HOST_LINK_BYTES_PER_S = 10e9  # per GPU, pageable host memory <-> device through the driver (estimate)
COMMIT_STRIDE = 3  # every third layer committed (§17.3): a third of the hashing, the walks as strong
GPU_HASH_BYTES_PER_S = 256e9  # SHA-256 on the device, 4 G compressions/s (the pessimistic §12 figure)
HOST_ROWS_PER_S = 2e7  # random 512-byte reads from DRAM, all cores (estimate; calibrate: gpu_check.sh)
HOST_HASH_BYTES_PER_S = 8e9  # SHA-256 of those rows, all cores (estimate)
NETWORK_ALLOWANCE_S = 0.5  # one small request/answer round trip at the API edge
FILL_ALLOWANCE_S = 1.0
LOG2_Q = math.log2(251)
# The bandwidth round (§17.12): sweeps enough for ~1.5 s at the claimed model's bandwidth, long
# beside the network allowance, so the round's deadline bounds the read rate to ~1.4x.
SWEEP_S = 1.5
SWEEP_SPOTS = 24


def rows_for(claimed_bytes: int, d: int, fraction: float = FILL_FRACTION) -> int:
    """Rows whose information (d entries of log2 251 bits each) is >= fraction x claimed bytes."""
    return max(2, math.ceil(fraction * claimed_bytes * 8 / (d * LOG2_Q)))


def fill_ops(n_rows: int, d: int) -> int:
    """Two row products v . B (2 d^2 ops each) per row per stage."""
    stages = max(1, (n_rows - 1).bit_length())
    return n_rows * stages * 2 * 2 * d * d


def fill_seconds(
    n_rows: int,
    d: int,
    *,
    rate_tops: float,
    bandwidth_gbs: float | None,
    hash_bytes_per_s: float | None,
    link_bytes_per_s: float | None = None,
    commit_stride: int = 1,
) -> float:
    """Expected seconds of one fill on the GPU executor (module docstring), the rates being the sum
    over the GPUs that compute it. A rate of None leaves its term out (test-size phases whose
    modelled devices charge the GEMMs only). Only the committed layers are hashed."""
    fill = n_rows * d
    stages = max(1, (n_rows - 1).bit_length())
    seconds = fill_ops(n_rows, d) / (rate_tops * 1e12)
    if bandwidth_gbs is not None:
        seconds += stages * STAGE_TRAFFIC * fill / (BANDWIDTH_FRACTION * bandwidth_gbs * 1e9)
    if hash_bytes_per_s is not None:
        seconds += len(committed_stages(stages, commit_stride)) * fill / hash_bytes_per_s
    if link_bytes_per_s is not None:
        seconds += HOST_FILL_CROSSINGS * fill / link_bytes_per_s
    return seconds * (1 + FILL_OVERHEAD)


def _up(seconds: float) -> float:
    return math.ceil(seconds * 1e6) / 1e6


def sweep_fields(
    n_rows: int,
    d: int,
    chunk_rows: int,
    *,
    bandwidth_bytes_per_s: float,
    hash_bytes_per_s: float,
    sweep_s: float,
    sweep_spots: int,
    tolerance: float,
    network_allowance_s: float,
) -> tuple[int, int, float, float]:
    """The bandwidth round's (sweeps, sweep_spots, sweep_expected_s, sweep_deadline_s) of a GPU
    target; all 0 when sweep_s is 0 (no bandwidth round)."""
    if sweep_s <= 0:
        return 0, 0, 0.0, 0.0
    items = -(-n_rows // chunk_rows)
    per = sweep_seconds(n_rows * d, items, chunk_rows, bandwidth_bytes_per_s, hash_bytes_per_s)
    sweeps = min(L.MAX_CAPACITY_SWEEPS, max(1, math.ceil(sweep_s / per)), L.MAX_CAPACITY_ROWS // items)
    expected = sweeps * per
    return sweeps, sweep_spots, _up(expected), _up(expected * tolerance + network_allowance_s)


def gpu_target(
    index: int,
    claimed_bytes: int,
    *,
    rate_tops: float,
    bandwidth_gbs: float,
    d: int = GPU_D,
    chunk_rows: int = GPU_CHUNK_ROWS,
    spots: int = GPU_SPOTS,
    walks: int = GPU_WALKS,
    hash_bytes_per_s: float = GPU_HASH_BYTES_PER_S,
    network_allowance_s: float = NETWORK_ALLOWANCE_S,
    tolerance: float = TOLERANCE,
    sweep_s: float = SWEEP_S,
    sweep_spots: int = SWEEP_SPOTS,
    commit_stride: int = 1,
) -> CapacityTargetParams:
    n_rows = rows_for(claimed_bytes, d)
    fill_bytes = n_rows * d
    expected = fill_bytes / (bandwidth_gbs * 1e9) + fill_bytes / hash_bytes_per_s
    stages = max(1, (n_rows - 1).bit_length())
    sweeps, spots_swept, sweep_expected, sweep_deadline = sweep_fields(
        n_rows,
        d,
        chunk_rows,
        bandwidth_bytes_per_s=bandwidth_gbs * 1e9,
        hash_bytes_per_s=hash_bytes_per_s,
        sweep_s=sweep_s,
        sweep_spots=sweep_spots,
        tolerance=tolerance,
        network_allowance_s=network_allowance_s,
    )
    return CapacityTargetParams(
        target=index,
        claimed_bytes=claimed_bytes,
        d=d,
        n_rows=n_rows,
        mode="scan",
        chunk_rows=chunk_rows,
        samples=0,
        spots=spots,
        walks=walks,
        walk_stages=stages,
        round_expected_s=_up(expected),
        round_deadline_s=_up(expected * tolerance + network_allowance_s),
        fill_expected_s=_up(
            fill_seconds(
                n_rows,
                d,
                rate_tops=rate_tops,
                bandwidth_gbs=bandwidth_gbs,
                hash_bytes_per_s=hash_bytes_per_s,
                commit_stride=commit_stride,
            )
        ),
        commit_stride=commit_stride,
        sweeps=sweeps,
        sweep_spots=spots_swept,
        sweep_expected_s=sweep_expected,
        sweep_deadline_s=sweep_deadline,
    )


def host_target(
    claimed_bytes: int,
    *,
    fill_rate_tops: float,
    d: int = HOST_D,
    samples: int = HOST_SAMPLES,
    spots: int = GPU_SPOTS,
    walks: int = GPU_WALKS,
    rows_per_s: float = HOST_ROWS_PER_S,
    hash_bytes_per_s: float = HOST_HASH_BYTES_PER_S,
    network_allowance_s: float = NETWORK_ALLOWANCE_S,
    tolerance: float = TOLERANCE,
    fill_bandwidth_gbs: float | None = None,
    fill_hash_bytes_per_s: float | None = None,
    link_bytes_per_s: float | None = None,
    commit_stride: int = 1,
) -> CapacityTargetParams:
    """Host RAM: filled by the GPUs (all of them: `fill_rate_tops`, `fill_bandwidth_gbs`,
    `fill_hash_bytes_per_s` and `link_bytes_per_s` are their sums; None leaves a term out,
    `fill_seconds`), read in rounds of `samples` random rows."""
    n_rows = rows_for(claimed_bytes, d)
    expected = samples / rows_per_s + samples * d / hash_bytes_per_s
    stages = max(1, (n_rows - 1).bit_length())
    return CapacityTargetParams(
        target=HOST_TARGET,
        claimed_bytes=claimed_bytes,
        d=d,
        n_rows=n_rows,
        mode="sample",
        chunk_rows=1,
        samples=samples,
        spots=spots,
        walks=walks,
        walk_stages=stages,
        round_expected_s=_up(expected),
        round_deadline_s=_up(expected * tolerance + network_allowance_s),
        fill_expected_s=_up(
            fill_seconds(
                n_rows,
                d,
                rate_tops=fill_rate_tops,
                bandwidth_gbs=fill_bandwidth_gbs,
                hash_bytes_per_s=fill_hash_bytes_per_s,
                link_bytes_per_s=link_bytes_per_s,
                commit_stride=commit_stride,
            )
        ),
        commit_stride=commit_stride,
    )


def phase(
    targets: list[CapacityTargetParams],
    *,
    rounds: int = ROUNDS,
    tolerance: float = TOLERANCE,
    fill_allowance_s: float = FILL_ALLOWANCE_S,
    network_allowance_s: float = NETWORK_ALLOWANCE_S,
) -> CapacityParams:
    """GPU fills run at once, then the host fill on all GPUs: the fill deadline is the slowest GPU
    fill plus the host fill, x tolerance, + allowance."""
    gpu = max((t.fill_expected_s for t in targets if not t.is_host), default=0.0)
    host = sum(t.fill_expected_s for t in targets if t.is_host)
    return CapacityParams(
        targets=targets,
        rounds=rounds,
        fill_deadline_s=_up((gpu + host) * tolerance + fill_allowance_s),
        network_allowance_s=network_allowance_s,
    )


def derive_capacity_params(
    *,
    gpu_count: int,
    mem_gb: int,
    rate_tops: float,
    bandwidth_gbs: float,
    host_ram_bytes: int | None,
    rounds: int = ROUNDS,
    hash_bytes_per_s: float = GPU_HASH_BYTES_PER_S,
    host_hash_bytes_per_s: float | None = None,
    commit_stride: int = COMMIT_STRIDE,
) -> CapacityParams:
    """The GPU-size phase for `gpu_count` GPUs of one model (mem_gb GiB each) and the claimed RAM
    (`hash_bytes_per_s`: device SHA-256 per GPU, over the GPU fills' rows; `host_hash_bytes_per_s`
    over host RAM's shorter rows, None: the same; other figures only for what-if estimates;
    `commit_stride`: COMMIT_STRIDE, every other layer committed, §17.3)."""
    targets = [
        gpu_target(
            i,
            mem_gb * 2**30,
            rate_tops=rate_tops,
            bandwidth_gbs=bandwidth_gbs,
            hash_bytes_per_s=hash_bytes_per_s,
            commit_stride=commit_stride,
        )
        for i in range(gpu_count)
    ]
    if host_ram_bytes:
        gpus = max(1, gpu_count)
        targets.append(
            host_target(
                host_ram_bytes,
                fill_rate_tops=rate_tops * gpus,
                fill_bandwidth_gbs=bandwidth_gbs * gpus,
                fill_hash_bytes_per_s=(host_hash_bytes_per_s or hash_bytes_per_s) * gpus,
                link_bytes_per_s=HOST_LINK_BYTES_PER_S * gpus,
                commit_stride=commit_stride,
            )
        )
    return phase(targets, rounds=rounds)


# -- the CPU claim's phase (ALLOW_CPU_BACKEND: the local stack and tests only) ---------------------
# A CPU-only claim has no VRAM to prove; it gets a fixed TEST-SIZE phase so the wiring (routes, the
# probe's numpy prover, the verify worker's record) runs end to end: one target 0 of 16 KiB (the
# numpy executor's memory) and host RAM of 32 KiB, whatever RAM is claimed. Its rates are modelled
# ones (the unit tests' test GPU, tests/unit/capacity_adversaries.py); its network allowance is the
# local stack's, not the API edge's: the stack runs every function in one Python process on a
# shared machine, so a round trip there can take seconds. Nothing a CPU phase proves is GPU memory.
CPU_VRAM_BYTES = 16 * 1024
CPU_RAM_BYTES = 32 * 1024
CPU_RATE_OPS = 1.0e6  # modelled int8 ops/s (fill deadline ~ 100 s: generous on a loaded machine)
CPU_SCAN_BYTES_PER_S = 1.0e6
CPU_HOST_ROW_S = 1e-5
CPU_SPOTS, CPU_WALKS, CPU_CHUNK_ROWS, CPU_SAMPLES = 8, 8, 4, 1024
CPU_NETWORK_ALLOWANCE_S = 10.0
CPU_FILL_ALLOWANCE_S = 30.0


def cpu_capacity_params(
    *, gpus: int = 1, network_allowance_s: float = CPU_NETWORK_ALLOWANCE_S
) -> CapacityParams:
    """The test-size phase a CPU-only claim gets (see above; one target 0), or a claim of `gpus`
    TEST DOUBLE GPUs (one test-size target per GPU: `GpuReference.test_size_capacity`); one target
    and host RAM: at most 167,916 bytes of openings (`wire.max_size`, walks v2 to stage 1), inline."""
    targets = [
        gpu_target(
            i,
            CPU_VRAM_BYTES,
            rate_tops=CPU_RATE_OPS / 1e12,
            bandwidth_gbs=CPU_SCAN_BYTES_PER_S / 1e9,
            d=CPU_D,
            chunk_rows=CPU_CHUNK_ROWS,
            spots=CPU_SPOTS,
            walks=CPU_WALKS,
            hash_bytes_per_s=CPU_SCAN_BYTES_PER_S,
            network_allowance_s=network_allowance_s,
            commit_stride=COMMIT_STRIDE,
        )
        for i in range(gpus)
    ]
    host = host_target(
        CPU_RAM_BYTES,
        fill_rate_tops=CPU_RATE_OPS / 1e12,
        d=CPU_D,
        samples=CPU_SAMPLES,
        spots=CPU_SPOTS,
        walks=CPU_WALKS,
        rows_per_s=1 / CPU_HOST_ROW_S,
        hash_bytes_per_s=CPU_SCAN_BYTES_PER_S,
        network_allowance_s=network_allowance_s,
        commit_stride=COMMIT_STRIDE,
    )
    return phase(
        [*targets, host],
        network_allowance_s=network_allowance_s,
        fill_allowance_s=CPU_FILL_ALLOWANCE_S,
    )
