"""Challenge parameters per GPU (v2), sized from the claimed model's fastest exact path: int8 x
int8 -> int32 (entries in [-8, 8] do not fit int4/fp4; docs/protocol.md "Deadline").

expected_s = T * 2*n*d*d / rate * (1 + epilogue_fraction) + setup_s, with rate = the model's dense
int8 datasheet rate x its achieved fraction; deadline_s = expected_s * tolerance + network
allowance. T is the fewest steps whose pipeline time W (GEMM and epilogue) makes a card at
SLOW_SPEED of the model miss the deadline by SLOW_MISS_S with no network latency at all
(`pipeline_floor_s`); an honest card at HONEST_SPEED with the whole allowance of latency meets it
whatever W is, since tolerance > 1 / HONEST_SPEED. The epilogue fraction, setup time and achieved
fraction are per-model parameters (reference table), ESTIMATES until calibrated on a GPU
(docs/measurements.md).
"""

from __future__ import annotations

import math

from gpuproof.protocol.proof.models import ProofParams

GPU_D = 4096  # inner dimension: GEMM efficiency against the verifier's O(d^2) B.x
GPU_N_SMALL = 2**16  # rows on GPUs under LARGE_N_TOPS (fits 12 GB cards)
GPU_N_LARGE = 2**18  # ~7 GB working set: A_{t-1}, A_0 (int8), C (int32), packed rows, one tree
LARGE_N_TOPS = 200.0  # expected int8 rate from which a GPU gets GPU_N_LARGE rows
CPU_N, CPU_D, CPU_STEPS = 128, 128, 8
# A prover that skips a fraction eps of the row products leaves >= eps/c of the transitions wrong,
# c = 2 (a copied row saves its own product and makes the next one shared) or 2 + 1/16 counting the
# 1/17 of entries the row after a copy shares (docs/protocol.md "Soundness"). P(pass) <= (1 - eps/c)**m:
# at eps = 10%, (1 - 0.1/2.0625)**140 = 9.5e-4 and (1 - 0.05)**140 = 7.6e-4, both <= 1e-3.
DEFAULT_CHECKS = 140
# Chosen with tests/unit/test_proof_params.py: honest GPUs within +-10% speed (uniform, per GPU)
# need >= 1/0.9 of the pipeline time minus setup; a GPU 20% slower needs 1.25x and must miss.
DEFAULT_TOLERANCE = 1.14
HONEST_SPEED = 0.90  # the slowest honest card, as a fraction of its model's speed
SLOW_SPEED = 0.80  # a card this slow (or slower) must miss the deadline ...
SLOW_MISS_S = 0.5  # ... by at least this, even with no network latency
# Estimates used where a model has none of its own (reference table columns, data/README.md).
ACHIEVED_FRACTION = 0.70
EPILOGUE_FRACTION = 0.85
SETUP_S = 1.0
NETWORK_ALLOWANCE_S = 1.0  # the commitment is ~100 bytes per GPU: latency, not bandwidth
CPU_RATE_TOPS = 0.02  # numpy float32 on one core does ~20-100 GOPS


def derive_params(
    claimed_rate_tops: float | None,
    *,
    gpu_index: int = 0,
    target_s: float | None = None,
    cpu: bool = False,
    checks: int = DEFAULT_CHECKS,
    tolerance: float = DEFAULT_TOLERANCE,
    network_allowance_s: float = NETWORK_ALLOWANCE_S,
    n: int | None = None,
    d: int | None = None,
    steps: int | None = None,
    epilogue_fraction: float = EPILOGUE_FRACTION,
    setup_s: float = SETUP_S,
) -> ProofParams:
    """Parameters for one GPU.

    `claimed_rate_tops` is the claimed model's EXPECTED dense int8 rate (int32 accumulate), i.e.
    datasheet x achieved fraction (`GpuReference.expected_int8_tops`). Work is 2*n*d*d*T ops; T
    is the fewest steps whose pipeline time reaches `pipeline_floor_s` (the slow-card margin), or,
    given `target_s`, about `target_s` of GEMM at that rate. `cpu=True` gives tiny sizes for tests
    and demos; n, d, steps override the choice.
    """
    if cpu:
        n = n or CPU_N
        d = d or CPU_D
        steps = steps or CPU_STEPS
        rate = claimed_rate_tops or CPU_RATE_TOPS
        setup_s = 0.0
    else:
        if claimed_rate_tops is None or claimed_rate_tops <= 0:
            raise ValueError("a GPU challenge needs the claimed model's int8 rate")
        rate = claimed_rate_tops
        d = d or GPU_D
        n = n or (GPU_N_LARGE if rate >= LARGE_N_TOPS else GPU_N_SMALL)
    step_ops = 2 * n * d * d
    if steps is None and target_s is not None:
        steps = max(1, round(target_s * rate * 1e12 / step_ops))
    elif steps is None:
        floor_s = pipeline_floor_s(setup_s, tolerance=tolerance, network_allowance_s=network_allowance_s)
        steps = max(1, math.ceil(floor_s / (1 + epilogue_fraction) * rate * 1e12 / step_ops))
    gemm_s = steps * step_ops / (rate * 1e12)
    expected_s = gemm_s * (1 + epilogue_fraction) + setup_s
    deadline_s = expected_s * tolerance + network_allowance_s
    return ProofParams(
        gpu_index=gpu_index,
        n=n,
        d=d,
        steps=steps,
        checks=checks,
        expected_s=_round_up(expected_s),
        deadline_s=_round_up(deadline_s),
        claimed_rate_tops=claimed_rate_tops,
    )


def pipeline_floor_s(
    setup_s: float,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    network_allowance_s: float = NETWORK_ALLOWANCE_S,
) -> float:
    """The least pipeline time W (GEMM + epilogue, at the model's expected speed) at which a card
    at SLOW_SPEED misses the deadline by SLOW_MISS_S with no latency:
    W / SLOW_SPEED + S >= tolerance * (W + S) + allowance + SLOW_MISS_S, i.e.
    W >= (SLOW_MISS_S + allowance + (tolerance - 1) * S) / (1 / SLOW_SPEED - tolerance).
    (An H100's S = 1 s: 14.9 s.) docs/protocol.md "Deadline"."""
    gap = 1 / SLOW_SPEED - tolerance
    if gap <= 0 or tolerance * HONEST_SPEED < 1:
        raise ValueError(
            f"tolerance {tolerance} cannot both pass a card at {HONEST_SPEED} and refuse one at {SLOW_SPEED}"
        )
    return (SLOW_MISS_S + network_allowance_s + (tolerance - 1) * setup_s) / gap


def _round_up(seconds: float) -> float:
    """Millisecond resolution, rounded up, so params print and serialise tidily."""
    return math.ceil(seconds * 1000) / 1000
