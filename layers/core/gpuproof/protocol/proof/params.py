"""Challenge parameters per GPU (v2), sized from the claimed model's fastest exact path: int8 x
int8 -> int32 (entries in [-8, 8] do not fit int4/fp4; docs/protocol.md "Deadline").

expected_s = T * 2*n*d*d / rate * (1 + epilogue_fraction) + setup_s, with rate = the model's dense
int8 datasheet rate x its achieved fraction; deadline_s = expected_s * tolerance + network
allowance. The epilogue fraction, setup time and achieved fraction are per-model parameters
(reference table), ESTIMATES until calibrated on a GPU (docs/measurements.md).
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
TARGET_S = 10.0  # seconds of int8 GEMM on the claimed model
# Chosen with tests/unit/test_proof_params.py: honest GPUs within +-10% speed (uniform, per GPU)
# need >= 1/0.9 of the pipeline time minus setup; a GPU 20% slower needs 1.25x and must miss.
DEFAULT_TOLERANCE = 1.14
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
    target_s: float = TARGET_S,
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
    is chosen so that the GEMMs take about `target_s` at that rate. `cpu=True` gives tiny sizes
    for tests and demos; n, d, steps override the choice.
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
    if steps is None:
        steps = max(1, round(target_s * rate * 1e12 / step_ops))
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


def _round_up(seconds: float) -> float:
    """Millisecond resolution, rounded up, so params print and serialise tidily."""
    return math.ceil(seconds * 1000) / 1000
