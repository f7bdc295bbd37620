"""Challenge parameters per GPU from the claimed rate: ~target_s of exact fp16/bf16 GEMM work."""

from __future__ import annotations

import math

from gpuproof.protocol.proof.models import ProofParams

GPU_D = 4096  # inner dimension: GEMM efficiency, verifier O(d^2), commitment bytes ~ 1/d of flops
GPU_N_SMALL = 2**16  # rows on GPUs under 100 TFLOPS (fits 12 GB cards with room to spare)
GPU_N_LARGE = 2**18  # rows on faster GPUs: ~7 GB working set, fewer and larger steps
CPU_N, CPU_D, CPU_STEPS = 128, 128, 8
DEFAULT_Q = 7
DEFAULT_CHECKS = 48
DEFAULT_TOLERANCE = 1.10
# Estimates until calibrated on each model (docs/protocol.md, "Deadline"): they are slack a
# faster-than-estimated pipeline can spend, so measure them and pass the measured values.
EPILOGUE_FRACTION = 0.25  # recentring (~19% unfused on H100) + hashing (~5%), relative to GEMM time
SETUP_S = 1.0  # generating A_0 and B and moving them to the device
NETWORK_ALLOWANCE_S = 1.0
COMMITMENT_BYTES_PER_STEP = 70  # one hex root in JSON
UPLINK_BYTES_PER_S = 1_000_000  # a conservative 8 Mbit/s uplink for the signed commitment


def derive_params(
    claimed_rate_tflops: float | None,
    *,
    gpu_index: int = 0,
    gpus: int = 1,
    target_s: float = 10.0,
    cpu: bool = False,
    checks: int = DEFAULT_CHECKS,
    q: int = DEFAULT_Q,
    tolerance: float = DEFAULT_TOLERANCE,
    network_allowance_s: float = NETWORK_ALLOWANCE_S,
    uplink_bytes_per_s: float = UPLINK_BYTES_PER_S,
    n: int | None = None,
    d: int | None = None,
    steps: int | None = None,
    epilogue_fraction: float = EPILOGUE_FRACTION,
    setup_s: float = SETUP_S,
) -> ProofParams:
    """Parameters for one GPU.

    `claimed_rate_tflops` is the dense fp16/bf16 (fp32 accumulate) GEMM rate the claimed model
    achieves in practice (reference table: achieved column, else a fraction of the peak). Work
    is 2*n*d*d*T flops; T is chosen so the work takes about `target_s` at that rate.
    expected_s = T * step_time * (1 + epilogue_fraction) + setup_s;
    deadline_s = expected_s * tolerance + network_allowance_s + commitment upload time
    (all `gpus` GPUs' roots at `uplink_bytes_per_s`). `cpu=True` gives tiny sizes for tests
    and demos (prove + verify well under a second); n, d, steps override the choice.
    """
    if cpu:
        n = n or CPU_N
        d = d or CPU_D
        steps = steps or CPU_STEPS
        rate = claimed_rate_tflops or 0.02  # a numpy core does ~20-100 GFLOPS in float32
    else:
        if claimed_rate_tflops is None or claimed_rate_tflops <= 0:
            raise ValueError("a GPU challenge needs the claimed model's rate")
        rate = claimed_rate_tflops
        d = d or GPU_D
        n = n or (GPU_N_LARGE if rate >= 100 else GPU_N_SMALL)
    step_flops = 2 * n * d * d
    if steps is None:
        steps = max(1, round(target_s * rate * 1e12 / step_flops))
    gemm_s = steps * step_flops / (rate * 1e12)
    expected_s = gemm_s * (1 + epilogue_fraction) + (0.0 if cpu else setup_s)
    upload_s = gpus * (steps * COMMITMENT_BYTES_PER_STEP + 256) / uplink_bytes_per_s
    deadline_s = expected_s * tolerance + network_allowance_s + upload_s
    return ProofParams(
        gpu_index=gpu_index,
        n=n,
        d=d,
        steps=steps,
        q=q,
        checks=checks,
        expected_s=_round_up(expected_s),
        deadline_s=_round_up(deadline_s),
        claimed_rate_tflops=claimed_rate_tflops,
    )


def _round_up(seconds: float) -> float:
    """Millisecond resolution, rounded up, so params print and serialise tidily."""
    return math.ceil(seconds * 1000) / 1000
