"""The GPU backend's code run end to end against the CUDA test double (CuPy emulated on the host).

What these prove: the CuPy/cuBLAS calls are well formed (signatures, host-pointer scalars, type
combinations cuBLAS supports, column-major layout, pinned buffers, streams, events, devices), the
results are verified exactly and a wrong result is not reported. What they cannot prove: any
figure's size on a real GPU (docs/measurements.md).
"""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from benchmark_probe.backends import select_backend
from benchmark_probe.backends.cupy import GEMM_SPECS, CupyBackend, CupyCudaInspector
from benchmark_probe.bench import BenchPlan, run_benchmarks
from benchmark_probe.cli import app
from benchmark_probe.cupy_double import D2D, D2H, H2D, CupyTestDouble
from benchmark_probe.inventory import collect_inventory
from benchmark_probe.nvml_double import NvmlTestDouble, fake_gpu, fixed_host
from gpuproof.protocol.report import Inventory
from tests.unit.gpu_host_double import patch_gpu_host

NAMES = [f"gemm_{k}" for k in GEMM_SPECS] + ["copy_d2d", "copy_h2d_pinned", "copy_d2h_pinned"]


def gpu_host(count: int, **double: object) -> tuple[Inventory, CupyTestDouble]:
    nvml = NvmlTestDouble.with_gpus(count)
    cp = CupyTestDouble.for_gpus(nvml.gpus, **double)  # type: ignore[arg-type]
    return collect_inventory(nvml, CupyCudaInspector(cp), fixed_host()), cp


def test_every_gpu_benchmark_runs_and_is_verified_on_two_gpus() -> None:
    inventory, cp = gpu_host(2)
    plan = BenchPlan.quick()
    steps: list[tuple[str, str]] = []
    results = run_benchmarks(CupyBackend(inventory.gpus, cp), plan, lambda d, w: steps.append((d, w)))
    assert [(r.device, r.name) for r in results] == [(f"gpu{i}", n) for i in (0, 1) for n in NAMES]
    for r in results:
        assert r.verified, (r.device, r.name, r.error)
        assert r.repeats == plan.repeats and 0 < r.min <= r.median <= r.max
        assert r.method["timer"] == "cuda_events"
    gemms = [r for r in results if r.name.startswith("gemm_")]
    assert {r.unit for r in gemms} == {"TFLOPS", "TOPS"}
    assert all(r.method["l2_flush_bytes"] == plan.flush_bytes for r in gemms)
    assert sorted(s for _, s in steps) == sorted(NAMES * 2)


def test_gemms_use_the_declared_cublas_types_on_the_timed_stream() -> None:
    inventory, cp = gpu_host(1)
    plan = BenchPlan.quick()
    run_benchmarks(CupyBackend(inventory.gpus, cp), plan)
    gemms = [e for e in cp.log if e[0] == "gemm"]
    per_call = plan.warmups + plan.repeats
    assert len(gemms) == per_call * len(GEMM_SPECS)
    for k, spec in enumerate(GEMM_SPECS.values()):
        calls = gemms[k * per_call : (k + 1) * per_call]
        assert {(c[1], c[2], c[3]) for c in calls} == {(spec.compute, spec.in_type, spec.out_type)}
        assert {(c[4], c[5]) for c in calls} == {(1, 0)}  # TN
    copies = [e for e in cp.log if e[0] == "memcpy"]
    streams = {c[-1] for c in gemms} | {c[-1] for c in copies}
    assert len(streams) == 1 and 0 not in streams  # one non-default stream, the one the events time
    by_kind = {
        kind: {(size, pinned) for _, k, size, pinned, _ in copies if k == kind} for kind in (D2D, H2D, D2H)
    }
    assert by_kind[D2D] == {(plan.copy_bytes, False)}
    assert by_kind[H2D] == by_kind[D2H] == {(plan.host_copy_bytes, True)}  # pinned host memory


def test_a_gpu_that_returns_wrong_products_gets_no_gemm_figures() -> None:
    inventory, cp = gpu_host(1, gemm_fault=lambda c: c + 1)
    results = run_benchmarks(CupyBackend(inventory.gpus, cp), BenchPlan.quick())
    for r in results:
        if r.name.startswith("gemm_"):
            assert not r.verified and r.median == r.min == r.max == 0.0
            assert r.error is not None and r.error.startswith("verification failed: row ")
        else:
            assert r.verified  # the copies are checked on their own


def test_cuda_cross_check_through_cupy_agrees_and_finds_a_swapped_uuid() -> None:
    inventory, _ = gpu_host(2)
    assert all(g.disagreements == [] and g.cuda is not None for g in inventory.gpus)
    assert [g.cuda.uuid for g in inventory.gpus if g.cuda] == [g.uuid for g in inventory.gpus]
    nvml = NvmlTestDouble.with_gpus(2)
    other = [nvml.gpus[0], fake_gpu(1, uuid="GPU-deadbeef-1111-2222-3333-111111111111")]
    checked = collect_inventory(nvml, CupyCudaInspector(CupyTestDouble.for_gpus(other)), fixed_host())
    assert checked.gpus[0].disagreements == []
    assert [d.split(":")[0] for d in checked.gpus[1].disagreements] == ["uuid"]
    assert not any("not cross-checked" in n for n in checked.notes)


def test_a_uuid_cupy_cuts_at_a_zero_byte_is_said_not_silently_skipped() -> None:
    """~6% of GPUs have a 0x00 among their 16 UUID bytes; CuPy's C-string conversion stops there."""
    nvml = NvmlTestDouble(gpus=[fake_gpu(0, uuid="GPU-12340078-1111-2222-3333-444444444444")])
    inventory = collect_inventory(nvml, CupyCudaInspector(CupyTestDouble.for_gpus(nvml.gpus)), fixed_host())
    (gpu,) = inventory.gpus
    assert gpu.cuda is not None and gpu.cuda.uuid == "" and gpu.disagreements == []
    assert [n for n in inventory.notes if "not cross-checked" in n] == [
        f"uuid of {gpu.pci_bus_id} not cross-checked: CUDA's UUID came back cut short "
        "(CuPy reads its 16 raw bytes as a C string, which ends at a 0x00 byte)"
    ]


def test_bench_cli_takes_the_gpu_backend_when_cupy_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_gpu_host(monkeypatch, 2)
    backend, notes = select_backend(collect_inventory(host=fixed_host()))
    assert isinstance(backend, CupyBackend) and notes == []
    result = CliRunner().invoke(app, ["bench", "--json", "--quick"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["backend"] == "cupy"
    assert [(b["device"], b["name"]) for b in out["benchmarks"]] == [
        (f"gpu{i}", n) for i in (0, 1) for n in NAMES
    ]
    assert all(b["verified"] for b in out["benchmarks"])


def test_interactive_bench_and_inventory_render_gpu_results(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_gpu_host(monkeypatch, 2)
    bench = CliRunner().invoke(app, ["bench", "--quick"])
    assert bench.exit_code == 0, bench.output
    for text in ("gpu0", "gpu1", "gemm_int8", "TOPS", "copy_h2d_pinned"):
        assert text in bench.stdout
    inventory = CliRunner().invoke(app, ["inventory"])
    assert inventory.exit_code == 0, inventory.output
    assert "GPUs (NVML, cross-checked with CUDA)" in inventory.stdout and "H100" in inventory.stdout
    assert re.search(r"gpu_num\s*│\s*2\s*│", inventory.stdout), inventory.stdout
    assert "calc_point preview:" in inventory.stdout and "2 x H100" in inventory.stdout
