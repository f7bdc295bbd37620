"""The proof's GPU executor run against the CUDA test double: same roots and rows as the numpy
executor, proofs the service accepts, and a GEMM that is not exact refused before committing.

The double runs the executor's real cuBLAS calls (int8 gemmEx, int32 accumulate) and compiles its real
kernels (SHA-256 tree, SHAKE-128 rows, anchor-recentre-and-pack) with g++; it says nothing about GPU
speed.
"""

from __future__ import annotations

import shutil
import threading
from typing import Any

import numpy as np
import pytest

from benchmark_probe.cupy_double import CUDARuntimeError, CupyTestDouble
from benchmark_probe.nvml_double import fake_gpu
from gpuproof.protocol.proof import NumpyExecutor, Prover, derive_params
from gpuproof.protocol.proof.cupy_executor import CupyExecutor
from gpuproof.protocol.proof.matrices import gen_rows, pack_rows, recentre
from tests.unit.test_capacity_cupy_prover import gpu as capacity_gpu
from tests.unit.test_capacity_cupy_prover import params_of
from tests.unit.test_proof_protocol import CHALLENGE, KEY, cpu_params, nonce_of, run, verify

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CUDA double builds kernels with g++")

SEED = bytes(range(32))
B_SEED = bytes(range(32, 64))  # not SEED: an executor that mixed the two up would fail here


def double(gpus: int = 2, **kw: object) -> CupyTestDouble:
    return CupyTestDouble.for_gpus([fake_gpu(i) for i in range(gpus)], **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("keep_level", [0, 2, 7])
def test_commit_matches_the_numpy_executor(keep_level: int) -> None:
    params = derive_params(None, cpu=True, gpu_index=1, n=100, d=64, steps=3)
    want = NumpyExecutor().commit(SEED, B_SEED, params, keep_level)
    got = CupyExecutor(cupy=double()).commit(SEED, B_SEED, params, keep_level)
    assert got.roots == want.roots and got.keep_level == want.keep_level
    assert all(np.array_equal(g, w) for g, w in zip(got.kept, want.kept, strict=True))


def test_recompute_matches_the_numpy_executor() -> None:
    params = derive_params(None, cpu=True, gpu_index=0, n=64, d=32, steps=4)
    want_a, want_c = {0: [3], 2: [5, 60], 4: [1]}, {1: [3], 3: [5, 9]}
    want = NumpyExecutor().recompute(SEED, B_SEED, params, want_a, want_c)
    got = CupyExecutor(cupy=double(1)).recompute(SEED, B_SEED, params, want_a, want_c)
    assert got.a.keys() == want.a.keys() and got.c.keys() == want.c.keys()
    assert all(np.array_equal(got.a[k], want.a[k]) and got.a[k].dtype == np.int8 for k in want.a)
    assert all(np.array_equal(got.c[k], want.c[k]) and got.c[k].dtype == np.int32 for k in want.c)


def test_proof_from_the_gpu_executor_is_accepted_on_two_gpus_in_parallel() -> None:
    params = cpu_params(gpus=2, n=64, d=64, steps=3)
    r = run(4, params, CupyExecutor(cupy=double()))  # type: ignore[arg-type]
    assert verify(r) == []
    sequential = Prover(nonce_of(4), KEY.public_hex, CHALLENGE, params, NumpyExecutor(), keep_level=3).run()
    parallel = Prover(
        nonce_of(4),
        KEY.public_hex,
        CHALLENGE,
        params,
        CupyExecutor(cupy=double()),
        keep_level=3,
        parallel=True,
    ).run()
    assert [g.chain for g in parallel.gpus] == [g.chain for g in sequential.gpus]


def test_a_gemm_that_is_not_exact_is_refused_before_anything_is_committed() -> None:
    params = derive_params(None, cpu=True, gpu_index=0, n=32, d=32, steps=2)
    lying = double(1, gemm_fault=lambda c: c + 1)
    with pytest.raises(RuntimeError, match="not exact"):
        CupyExecutor(cupy=lying).commit(SEED, B_SEED, params, 1)
    assert len([e for e in lying.log if e[0] == "gemm"]) == 1  # stopped after the first step


def test_gpu_index_maps_to_the_device_it_names() -> None:
    params = derive_params(None, cpu=True, gpu_index=0, n=16, d=16, steps=1)
    cp = double(2)
    CupyExecutor({0: 1}, cupy=cp).commit(SEED, B_SEED, params, 0)
    assert {e[9] for e in cp.log if e[0] == "gemm"} == {1}
    with pytest.raises(CUDARuntimeError, match="InvalidDevice"):
        CupyExecutor({0: 5}, cupy=cp).commit(SEED, B_SEED, params, 0)


@pytest.mark.parametrize(("tag", "rows", "d"), [(b"A", 300, 168), (b"B", 5, 1000), (b"A", 2, 4097)])
def test_device_row_generation_is_shake128_of_the_spec(tag: bytes, rows: int, d: int) -> None:
    """The kernel against matrices.gen_rows (hashlib): squeeze lengths around the 168-byte rate."""
    executor = CupyExecutor(cupy=double(1))
    module = executor._kernels(0)
    got = executor._seeded(module, SEED, tag, rows, d)
    assert np.array_equal(executor._cp.asnumpy(got), gen_rows(SEED, tag, range(rows), d))


def test_rows_generated_wrong_on_the_device_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    params = derive_params(None, cpu=True, gpu_index=0, n=32, d=32, steps=2)
    executor = CupyExecutor(cupy=double(1))
    honest = executor._seeded

    def off_by_one_row(module: object, seed: bytes, tag: bytes, rows: int, d: int) -> object:
        out = honest(module, seed, tag, rows, d)
        out[rows - 1, 0] += 1  # one byte of the last row (sampled: first, second, middle, last)
        return out

    monkeypatch.setattr(executor, "_seeded", off_by_one_row)
    with pytest.raises(RuntimeError, match="differs from SHAKE-128"):
        executor.commit(SEED, B_SEED, params, 1)


def test_prepare_pays_the_one_off_costs_on_every_gpu_before_any_commit() -> None:
    cp = double(2)
    executor = CupyExecutor(cupy=cp)
    executor.prepare([0, 1])
    assert sorted(executor._modules) == [0, 1]  # kernels built for both devices
    assert sorted({e[9] for e in cp.log if e[0] == "gemm"}) == [0, 1]  # cuBLAS warmed on both


@pytest.mark.parametrize("step", [1, 16, 17, 903])
def test_fused_epilogue_is_anchor_recentre_then_pack(step: int) -> None:
    """The kernel's int8 rows and 5-bit leaf bytes against matrices.recentre / pack_rows, negatives
    included, at the largest |C| of d = 8192."""
    executor = CupyExecutor(cupy=double(1))
    cp = executor._cp
    rng = np.random.default_rng(step)
    c = rng.integers(-(8192 * 64), 8192 * 64 + 1, size=(6, 40)).astype(np.int32)
    a0 = rng.integers(-8, 9, size=(6, 40)).astype(np.int8)
    out = cp.empty((6, 40), dtype=cp.int8)
    packed = executor._epilogue(executor._kernels(0), cp.asarray(c), cp.asarray(a0), step, out)
    want = recentre(c.astype(np.int64) + a0, step)
    assert np.array_equal(cp.asnumpy(out), want)
    assert np.array_equal(cp.asnumpy(packed), pack_rows(want))
    with pytest.raises(ValueError, match="multiple of 8"):
        executor._epilogue(executor._kernels(0), cp.asarray(c[:, :36]), cp.asarray(a0[:, :36]), step, out)


def test_the_gemm_is_int8_in_int32_out() -> None:
    """The exact path the deadline is sized from: gemmEx with CUBLAS_COMPUTE_32I on int8 operands."""
    params = derive_params(None, cpu=True, gpu_index=0, n=16, d=16, steps=2)
    cp = double(1)
    CupyExecutor(cupy=cp).commit(SEED, B_SEED, params, 0)
    gemms = [e for e in cp.log if e[0] == "gemm"]
    assert gemms and all(e[1:4] == (72, 3, 10) for e in gemms)  # COMPUTE_32I, R_8I, R_32I


class HeldBuild:
    """The CUDA double's `build_gate` holding (or failing) the capacity source's build, as NVRTC's
    seconds of one core would hold it on a first run; other sources build at once."""

    def __init__(self, error: Exception | None = None) -> None:
        self.started, self.release, self.error = threading.Event(), threading.Event(), error

    def __call__(self, code: str) -> None:
        if "cap_pairs" not in code:  # the throughput executor's source
            return
        self.started.set()
        if not self.release.wait(30):
            raise TimeoutError("the held capacity build was never released")
        if self.error is not None:
            raise self.error


def _prepared_runner(cp: CupyTestDouble) -> tuple[Any, Any]:
    from benchmark_probe.inventory import collect_inventory
    from benchmark_probe.nvml_double import CudaTestDouble, NvmlTestDouble, fixed_host
    from benchmark_probe.proof import ProofRunner

    nvml = NvmlTestDouble.with_gpus(2)
    inventory = collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), fixed_host())
    runner = ProofRunner(KEY, lambda _inventory: CupyExecutor(cupy=cp))
    runner.prepare(inventory)
    return runner, runner.capacity_prover


def test_the_capacity_build_runs_beside_the_throughput_proof_and_is_waited_for_before_the_phase() -> None:
    """The proof hook's `prepare` (before the challenge) returns once the throughput executor is
    ready; the capacity kernels' build (held here, as a first run's NVRTC seconds would hold it)
    goes on beside it and beside a whole throughput proof, and `warmed` (which the capacity phase's
    `prepare` calls before the phase is opened) waits for it: every lane the phase may use then has
    its stream, kernels and warmed cuBLAS handle, on every GPU."""
    from benchmark_probe.capacity import CupyCapacityFactory
    from gpuproof.protocol.capacity.cupy_prover import HOST_LANES

    held = HeldBuild()
    cp = double(2, build_gate=held)
    runner, factory = _prepared_runner(cp)
    assert isinstance(factory, CupyCapacityFactory)
    assert held.started.wait(10)  # the build began and is held: prepare returned all the same
    assert not factory.runtime._gpus  # no capacity lane is ready yet
    params = cpu_params(gpus=2, n=64, d=64, steps=3)
    assert verify(run(4, params, runner.executor)) == []  # a whole throughput proof meanwhile
    waiter = threading.Thread(target=factory.warmed)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # warmed waits while the build is held
    held.release.set()
    waiter.join(30)
    assert not waiter.is_alive()
    lanes = {(device, lane) for device in (0, 1) for lane in range(1 + HOST_LANES)}
    assert set(factory.runtime._gpus) == lanes  # a stream, kernels and a warmed cuBLAS handle each
    gemm_streams = {(e[9], e[10]) for e in cp.log if e[0] == "gemm"}
    assert len(gemm_streams) >= len(lanes)  # the throughput executor's and every capacity lane's


def test_a_failed_capacity_build_is_raised_where_the_capacity_phase_is_prepared() -> None:
    """An error of the build left running is not lost: the capacity phase's `prepare` (before it
    opens the phase) raises it, and only once."""
    held = HeldBuild(RuntimeError("kernel source does not compile"))
    held.release.set()
    _runner, factory = _prepared_runner(double(2, build_gate=held))
    with pytest.raises(RuntimeError, match="does not compile"):
        factory.prepare(params_of(capacity_gpu(0, 1 << 20)))
    factory.warmed()  # raised once; nothing left to wait for
