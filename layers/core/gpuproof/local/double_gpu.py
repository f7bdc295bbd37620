"""The TEST DOUBLE GPU model: a reference-table row for a GPU that does not exist, registered only
by a local stack started with `--test-double-gpu` (`python -m gpuproof.local --test-double-gpu`,
`LocalStack(test_double_gpu=True)`), in that process, at start-up.

Why: a GPU claim is sized from its model's row and timed on the service's clock, so no CPU can meet
a real GPU's deadline and a CPU-only claim carries no GPU UUIDs. With this row the probe's whole GPU
path (NVML inventory through benchmark_probe.nvml_double, the CuPy backend and the CuPy proof
executor through benchmark_probe.cupy_double) runs end to end against the local stack, GPU UUIDs
included (tests/e2e/test_gpu_path.py). Its figures are tiny: an int8 rate the CUDA double beats by
far on a loaded 2-core host, 128 x 128 proof matrices, 1 GiB, one SM of 128 cores.

What it does NOT prove: anything about a GPU's speed, memory or identity. The doubles' figures are
the model's declared ones (the CUDA double's events run on a modelled clock at this row's BF16 rate
and bandwidth); the proof is timed on the service's clock, but against this row's deadline, which
any host meets. Its capacity phase is the test-size one (`test_size_capacity`: 16 KiB a GPU and
32 KiB of host RAM, `cpu_capacity_params(gpus=...)`), filled by the probe's GPU executor on the
CUDA double: a 1 GiB fill is beyond a CPU in time, and without a capacity record its GPUs would
score as failed ones and be refused (`model_capacity_missing`, docs/scoring.md §2).

Never in AWS: the packaged table (gpuproof/data/gpu_reference.csv) has no such row, no handler's
imports reach this module, and nothing here reads the environment (tests/unit/test_double_gpu.py).
The probe-side doubles hold the same figures (`DOUBLE_MODEL_*`, `DOUBLE_MODEL_CLOCK`); the unit test
checks that they agree with this row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from gpuproof.reference import GpuReference, register_test_double, unregister_test_double

DOUBLE_MODEL = "GPUPROOF TEST DOUBLE GPU"

TEST_DOUBLE_GPU = GpuReference(
    model=DOUBLE_MODEL,
    cuda_cores=128,
    mem_gb=1,
    mem_bw_gbs=10.0,
    fp32_tflops=None,
    bf16_dense_tflops=None,
    large_model_factor=1,
    # The CUDA double's modelled clock (DOUBLE_MODEL_CLOCK): its self-measured BF16 rate is this,
    # below the int8 rate (the service refuses a BF16 figure above 1.5x the int8 rate it timed).
    achieved_bf16_tflops=5e-6,
    achieved_source="the CUDA test double's modelled clock (benchmark_probe.cupy_double)",
    notes="TEST DOUBLE: no such GPU exists; registered only by `python -m gpuproof.local --test-double-gpu`",
    sources="none: a test double (gpuproof.local.double_gpu)",
    # 1.4e-5 TOPS over 128 x 128 x 128 steps, sized by the slow-card margin (setup 5 s: 20 s of
    # pipeline, 10 s of GEMM): 34 chained steps, which the CUDA double runs in well under a second;
    # the deadline (epilogue 1.0, setup 5 s) is about 30 s.
    int8_dense_tops=0.00002,
    int8_source="none: a test double",
    int8_achieved_fraction=0.7,
    epilogue_fraction=1.0,
    setup_s=5.0,
    proof_n=128,
    proof_d=128,
    test_size_capacity=True,
)


def install() -> None:
    """Register the TEST DOUBLE GPU row in this process's reference table."""
    register_test_double(TEST_DOUBLE_GPU)


def uninstall() -> None:
    unregister_test_double(DOUBLE_MODEL)


@contextmanager
def installed() -> Iterator[GpuReference]:
    """The row registered for the duration of the block (a local stack's lifetime)."""
    install()
    try:
        yield TEST_DOUBLE_GPU
    finally:
        uninstall()
