"""The TEST DOUBLE GPU model (gpuproof.local.double_gpu): it exists only in a local stack process
started with `--test-double-gpu`; the table AWS runs does not have it and no deployed code path can
load it; the NVML and CUDA test doubles present exactly its figures."""

from __future__ import annotations

import ast
import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmark_probe.backends.cupy import CUBLAS_COMPUTE_32F, CUDA_R_32F, CupyCudaInspector
from benchmark_probe.cupy_double import DOUBLE_MODEL_CLOCK, H2D, CupyTestDouble, ModelledClock
from benchmark_probe.inventory import collect_inventory
from benchmark_probe.nvml_double import (
    DOUBLE_MODEL_CUDA_CORES,
    DOUBLE_MODEL_MEMORY_BYTES,
    DOUBLE_MODEL_NAME,
    NvmlTestDouble,
    cuda_view_of,
    double_model_gpu,
    fake_gpu,
    fixed_host,
)
from gpuproof import reference
from gpuproof.claim import ClaimError, challenge_params, make_claim, proof_params_for
from gpuproof.local import double_gpu
from gpuproof.local.__main__ import arguments, stack_for
from gpuproof.protocol.proof.params import GPU_D
from gpuproof.reference import (
    Confidence,
    identify,
    lookup,
    packaged_table,
    parse_table,
    reference_table,
    register_test_double,
)
from tests.unit.test_architecture import ROOT, imports, modules

MODULE = "gpuproof.local.double_gpu"


def test_the_packaged_table_has_no_test_double_and_a_deployed_function_refuses_its_claim() -> None:
    text = resources.files("gpuproof").joinpath("data/gpu_reference.csv").read_text(encoding="utf-8")
    assert "TEST DOUBLE" not in text.upper()
    assert all(reference.TEST_DOUBLE_MARK not in r.model.upper() for r in parse_table(text))
    assert reference_table() == packaged_table()  # nothing registered in this process
    assert lookup(DOUBLE_MODEL_NAME) is None
    with pytest.raises(ClaimError) as refused:
        make_claim(DOUBLE_MODEL_NAME, 1, allow_cpu_backend=False)
    assert [r.code for r in refused.value.reasons] == ["unknown_gpu_model"]


def _closure(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        for dep in graph.get(name, set()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_no_handler_can_reach_the_registration() -> None:
    mods = modules()
    known = set(mods)
    graph = {name: {m for m in imports(path, known) if m in mods} for name, path in mods.items()}
    handlers = sorted((ROOT / "functions").glob("*/app.py"))
    assert len(handlers) >= 7
    for app in handlers:
        reached = set()
        for dep in {m for m in imports(app, known) if m in mods}:
            reached |= {dep, *_closure(dep, graph)}
        assert MODULE not in reached, f"{app} reaches {MODULE}"
        assert not {m for m in reached if m.startswith("gpuproof.local")}, app
    # Only the local composition root registers a test double, and it reads no environment.
    callers = set()
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            called = node.func if isinstance(node, ast.Call) else None
            label = getattr(called, "id", None) or getattr(called, "attr", None)
            if label == "register_test_double":
                callers.add(name)
    assert callers == {MODULE}
    tree = ast.parse(Path(mods[MODULE]).read_text())
    names = {getattr(n, "id", None) or getattr(n, "attr", None) for n in ast.walk(tree)}
    assert {"environ", "getenv", "argv"}.isdisjoint(names)
    assert {"os", "sys"}.isdisjoint(imports(Path(mods[MODULE])))


def test_installed_the_model_is_claimable_with_tiny_proof_parameters_and_gone_after() -> None:
    with double_gpu.installed() as row:
        assert lookup(DOUBLE_MODEL_NAME) is row and reference_table()[-1] is row
        claim = make_claim(DOUBLE_MODEL_NAME, 2, allow_cpu_backend=False)
        params = proof_params_for(claim)
        assert [(p.gpu_index, p.n, p.d, p.steps) for p in params] == [(0, 128, 128, 34), (1, 128, 128, 34)]
        assert params[0].claimed_rate_tops == pytest.approx(1.4e-5)
        assert params[0].deadline_s == pytest.approx(29.925)
        # The capacity phase at test size, one target per GPU (a 1 GiB fill is beyond a CPU in time;
        # without a record the GPUs would score as failed ones), and host RAM's test-size target.
        capacity = challenge_params(claim, None)["capacity"]
        assert [t["target"] for t in capacity["targets"]][:2] == [0, 1]
        assert [t["claimed_bytes"] for t in capacity["targets"]] == [16 * 1024, 16 * 1024, 32 * 1024]
    assert lookup(DOUBLE_MODEL_NAME) is None and reference_table() == packaged_table()


def test_packaged_models_keep_their_proof_shape_and_rates() -> None:
    for row in packaged_table():
        assert row.proof_n is None and row.proof_d is None and not row.test_size_capacity
        if row.int8_dense_tops is not None and row.int8_achieved_fraction is not None:
            assert row.expected_int8_tops == round(row.int8_dense_tops * row.int8_achieved_fraction, 3)
            if row.epilogue_fraction is not None:
                (params,) = proof_params_for(make_claim(row.model, 1, allow_cpu_backend=False))
                assert params.d == GPU_D


def test_a_sub_tops_rate_keeps_its_digits_and_a_zero_rate_is_no_rate() -> None:
    h100 = lookup("H100 SXM5 80GB")
    assert h100 is not None
    tiny = dataclasses.replace(h100, int8_dense_tops=0.00002, int8_achieved_fraction=0.7)
    assert tiny.expected_int8_tops == 1.4e-05  # round(..., 3) would make it 0
    assert dataclasses.replace(h100, int8_dense_tops=0.0).expected_int8_tops is None


@pytest.mark.parametrize("name", ["H100 SXM5 80GB", "FAST GPU", "GPUPROOF DOUBLE"])
def test_only_a_row_named_as_a_test_double_is_registered(name: str) -> None:
    h100 = lookup("H100 SXM5 80GB")
    assert h100 is not None
    with pytest.raises(ValueError, match="test double"):
        register_test_double(dataclasses.replace(h100, model=name))
    assert reference_table() == packaged_table()


def test_the_doubles_present_the_models_figures() -> None:
    gpus = [double_model_gpu(0), double_model_gpu(1)]
    nvml = NvmlTestDouble(gpus=gpus)
    cp = CupyTestDouble.for_gpus(gpus, clock=DOUBLE_MODEL_CLOCK)
    inventory = collect_inventory(nvml, CupyCudaInspector(cp), fixed_host())
    assert [g.disagreements for g in inventory.gpus] == [[], []] and inventory.notes == []
    assert len({g.uuid for g in inventory.gpus} | {fake_gpu(0).uuid, fake_gpu(1).uuid}) == 4
    row = double_gpu.TEST_DOUBLE_GPU
    assert row.model == DOUBLE_MODEL_NAME == double_gpu.DOUBLE_MODEL
    assert (row.mem_gb << 30, row.cuda_cores) == (DOUBLE_MODEL_MEMORY_BYTES, DOUBLE_MODEL_CUDA_CORES)
    assert (row.achieved_bf16_tflops, row.mem_bw_gbs) == (
        DOUBLE_MODEL_CLOCK.gemm_tops,
        DOUBLE_MODEL_CLOCK.copy_gbs,
    )
    gpu = inventory.gpus[0]
    with double_gpu.installed():
        found = identify(gpu.name, gpu.memory_total_bytes / 2**30, DOUBLE_MODEL_CLOCK.gemm_tops)
        assert (found.model, found.confidence, found.reasons) == (DOUBLE_MODEL_NAME, Confidence.high, ())


def test_a_small_cards_cuda_view_agrees_and_an_h100s_is_unchanged() -> None:
    small = cuda_view_of(double_model_gpu(0))
    assert DOUBLE_MODEL_MEMORY_BYTES - small.memory_total_bytes == DOUBLE_MODEL_MEMORY_BYTES // 64
    big = fake_gpu(0)
    assert big.memory_total_bytes - cuda_view_of(big).memory_total_bytes == 500 << 20


def _timed(cp: CupyTestDouble, work: Any) -> float:
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    work()
    end.record()
    return float(cp.cuda.get_elapsed_time(start, end))


def test_a_modelled_clock_times_the_work_asked_of_the_device_not_the_host() -> None:
    clock = ModelledClock(gemm_tops=1e-6, copy_gbs=2.0)
    cp = CupyTestDouble.for_gpus([double_model_gpu(0)], clock=clock)
    n = 16
    a, c = cp.ones((n, n), dtype=np.float32), cp.empty((n, n), dtype=np.float32)
    one, zero = np.array(1, dtype=np.float32), np.array(0, dtype=np.float32)

    def gemm() -> None:
        cp.cuda.cublas.gemmEx(
            cp.cuda.device.get_cublas_handle(), 1, 0, n, n, n, one.ctypes.data, a.data.ptr, CUDA_R_32F, n,
            a.data.ptr, CUDA_R_32F, n, zero.ctypes.data, c.data.ptr, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, -1,
        )  # fmt: skip

    assert _timed(cp, gemm) == pytest.approx(2 * n**3 / 1e6 * 1e3)  # ms
    host = np.zeros(1 << 20, dtype=np.uint8)
    dev = cp.empty(1 << 20, dtype=np.uint8)
    copy = _timed(cp, lambda: cp.cuda.runtime.memcpyAsync(dev.data.ptr, host.ctypes.data, 1 << 20, H2D, 0))
    assert copy == pytest.approx((1 << 20) / 2e9 * 1e3)
    assert _timed(cp, lambda: sum(range(100_000))) == 0.0  # host work is not device time
    with pytest.raises(ValueError, match="positive"):
        ModelledClock(gemm_tops=0, copy_gbs=1)


def test_the_flag_and_only_the_flag_asks_the_local_stack_for_the_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPUPROOF_TEST_DOUBLE_GPU", "1")  # no variable turns it on
    plain = stack_for(arguments().parse_args([]))
    flagged = stack_for(arguments().parse_args(["--test-double-gpu"]))
    assert (plain.test_double_gpu, flagged.test_double_gpu) == (False, True)
