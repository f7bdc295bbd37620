"""scripts/gpu_check.py, the GPU run's reference and comparison stages, run against the CUDA test
double so that the one run a GPU loan allows is not lost to a bug in the script itself.

torch is made unimportable here: its references must come back as recorded errors, not crash the
run. The figures are host figures of the double and mean nothing; the shapes and ratios are checked.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from benchmark_probe.cli import app
from tests.unit.gpu_host_double import patch_gpu_host

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_and_compare_stages_on_a_one_gpu_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cp = patch_gpu_host(monkeypatch, 1, l2_bytes=1 << 20)
    runs = []
    for k in (1, 2, 3):
        result = CliRunner().invoke(app, ["bench", "--json", "--quick"])
        assert result.exit_code == 0, result.output
        runs.append(tmp_path / f"bench_run{k}.json")
        runs[-1].write_text(result.stdout)

    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    script = load_script()
    reference = tmp_path / "reference.json"
    script.reference(runs[0], reference)
    ref = json.loads(reference.read_text())
    assert (ref["n"], ref["copy_bytes"]) == (256, 4 << 20)  # the probe's own sizes, read from its JSON
    gpu0 = ref["devices"]["gpu0"]
    assert "import of torch halted" in gpu0["torch"]["error"]
    for name in ("gemm_fp32", "gemm_fp16", "copy_d2d"):
        assert gpu0["cupy"][name]["median"] > 0 and gpu0["cupy"][name]["repeats"] == 10, name

    capsys.readouterr()
    comparison = tmp_path / "comparison.json"
    script.compare(runs, reference, comparison)
    table = capsys.readouterr().out.splitlines()
    rows = {r["name"]: r for r in json.loads(comparison.read_text())}
    assert table[0].split()[:3] == ["device", "benchmark", "unit"] and len(table) == 1 + len(rows)
    for name, row in rows.items():
        assert row["runs"] == 3 and row["cv_across_runs"] is not None and row["verified"]
        has_reference = name in ("gemm_fp32", "gemm_fp16", "copy_d2d")
        assert (row["ratio"] is not None) is has_reference, name
        if has_reference:
            assert row["reference_library"] == "cupy"
            assert row["ratio"] == pytest.approx(row["probe"] / row["reference"])


def test_proof_stage_proves_verifies_and_measures_the_gemm_floor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cp = patch_gpu_host(monkeypatch, 2)
    result = CliRunner().invoke(app, ["inventory", "--json"])
    assert result.exit_code == 0, result.output
    inventory = tmp_path / "inventory.json"
    inventory.write_text(result.stdout)

    monkeypatch.setitem(sys.modules, "cupy", cp)
    out = tmp_path / "proof.json"
    load_script().proof(inventory, out, 64, 64, 2)  # the service's H100 parameters, shrunk for the double
    proof = json.loads(out.read_text())
    assert proof["model"] == "H100 SXM5 80GB" and proof["reference_rate_tops"] > 0
    assert proof["verified"] == "accepted"
    assert [g["gpu_index"] for g in proof["per_gpu"]] == [0, 1]
    assert [(p["n"], p["d"], p["steps"]) for p in proof["params"]] == [(64, 64, 2)] * 2
    assert proof["gemm_floor_gpu0"]["seconds"] > 0 and proof["overhead_vs_gemm_floor"] is not None
    assert capsys.readouterr().out.startswith("proof: 2 GPU(s) H100 SXM5 80GB, n=64 d=64 T=2")


def test_capacity_stage_measures_the_fill_stage_scan_and_random_rows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cp = patch_gpu_host(monkeypatch, 1)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    out = tmp_path / "capacity.json"
    load_script().capacity(out, 64 * 1024, 64, 256)  # 1024 rows of 64: the double's size
    cap = json.loads(out.read_text())
    assert (cap["n_rows"], cap["d"], cap["stages"]) == (1024, 64, 10)
    assert cap["stage"]["seconds"] > 0 and cap["fill_estimate_s"] == pytest.approx(
        10 * cap["stage"]["seconds"]
    )
    assert cap["scan"]["bytes_per_s"] > 0 and cap["random_rows"]["rows_per_s"] > 0
    assert cap["copy_d2d"]["median"] > 0
    assert capsys.readouterr().out.startswith("capacity: 1024 rows x 64")
