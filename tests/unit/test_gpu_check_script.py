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


def gpu_host_inventory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gpus: int) -> Path:
    """`benchmark-probe inventory --json` of a host of `gpus` H100s (the doubles), written where the
    proof stage reads it, with `import cupy` answered by the CUDA double."""
    cp = patch_gpu_host(monkeypatch, gpus)
    result = CliRunner().invoke(app, ["inventory", "--json"])
    assert result.exit_code == 0, result.output
    inventory = tmp_path / "inventory.json"
    inventory.write_text(result.stdout)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    return inventory


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
    inventory = gpu_host_inventory(monkeypatch, tmp_path, 2)
    out = tmp_path / "proof.json"
    load_script().proof(inventory, out, 64, 64, 2)  # the service's H100 parameters, shrunk for the double
    proof = json.loads(out.read_text())
    assert proof["model"] == "H100 SXM5 80GB" and proof["reference_rate_tops"] > 0
    assert proof["verified"] == "accepted"
    assert [g["gpu_index"] for g in proof["per_gpu"]] == [0, 1]
    assert [(p["n"], p["d"], p["steps"]) for p in proof["params"]] == [(64, 64, 2)] * 2
    assert proof["gemm_floor_gpu0"]["seconds"] > 0 and proof["overhead_vs_gemm_floor"] is not None
    assert capsys.readouterr().out.startswith("proof: 2 GPU(s) H100 SXM5 80GB, n=64 d=64 T=2")


def test_proof_stage_beside_a_first_runs_background_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`--beside-host-bytes`: the same proof, timed while the capacity source is built afresh and a
    host buffer is first-touched as the probe does beside it; what the load did is recorded."""
    inventory = gpu_host_inventory(monkeypatch, tmp_path, 1)
    out = tmp_path / "proof_beside.json"
    load_script().proof(inventory, out, 64, 64, 2, beside_host_bytes=64 << 20)
    proof = json.loads(out.read_text())
    assert proof["verified"] == "accepted" and proof["commit_wall_s"] > 0
    beside = proof["beside"]
    assert beside["build_s"] > 0 and "build_error" not in beside
    assert beside["touched_bytes"] >= 64 << 20 and beside["touched_bytes"] % (64 << 20) == 0
    assert "skipped" in proof["gemm_floor_gpu0"]  # the floor is proof.json's, measured alone


def test_capacity_stage_runs_the_gpu_prover_end_to_end_on_the_double(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`capacity --double`: the CuPy prover on the CUDA test double (a fake H100 of 1 MiB), a fill
    of 55% of its free memory (its trees, scratch, kept tree nodes and the openings' stage matrices
    and job buffer take the rest at d = 32: the nodes are 4% of a d = 32 fill, 1.3% of an H100's at
    d = 1024; the matrices, 5d^2 a stage, 8% here, 0.2% of an H100's), four scan rounds,
    four host RAM sample rounds, the bandwidth round, a GPU sample round, the openings, the real
    verifier, within the double's enforced memory. The double's seconds miss the H100's deadlines
    (they are host seconds); every other check passes."""
    out = tmp_path / "capacity.json"
    cap = load_script().capacity(out, None, 32, fraction=0.55, host_bytes=8192, double=True)
    assert json.loads(out.read_text()) == json.loads(json.dumps(cap, default=float))
    assert cap["model"] == "H100 SXM5 80GB" and cap["reference_known"] and cap["double"]
    assert cap["memory"]["fits"] and 0.54 <= cap["fill_fraction_of_free"] <= 0.56
    assert cap["checks"] == "accepted", cap["reasons"]
    assert set(cap["reasons"]) <= {
        "capacity_fill_deadline_missed",
        "capacity_round_deadline_missed",
        "capacity_host_round_deadline_missed",
        "capacity_bandwidth_deadline_missed",
    }
    assert [r["mode"] for r in cap["rounds"]] == ["scan"] * 4 + ["sample"] * 4 + ["bandwidth"]
    bw = cap["bandwidth_round"]  # docs/protocol.md §17.12: P sweeps over the fill, timed
    assert bw["sweeps"] > 1 and bw["seconds"] > 0 and bw["bytes_per_s"] > 0
    assert cap["prepare_s"] >= 0 and "prepare_built" in cap  # the build (or load) before the fill
    assert cap["fill_s"] > 0 and cap["scan"]["bytes_per_s"] > 0 and cap["sample_gpu"]["rows_per_s"] > 0
    assert cap["host_rounds"]["seconds_p50"] > 0 and cap["open_s"] > 0
    parts = cap["fill_parts_s"]  # measured beside the host fill's model with 1 and the plan's lanes
    assert (
        0 < parts["gpu_done"] <= cap["fill_s"]
        and 0 < parts["host_start"] < parts["host_done"] <= cap["fill_s"]
    )
    assert cap["memory"]["beside"] or parts["gpu_done"] <= parts["host_start"]  # after: host waits
    lanes = cap["memory"]["host_lanes"]
    model = cap["host_fill_model_s"]
    assert set(model) == {"1", str(lanes)} and model[str(lanes)] <= model["1"]
    check = cap["host_lanes_check"]  # host RAM's fill alone, one lane, two, two pinned; beside its model
    assert [(c["lanes"], c["pinned"]) for c in check] == [(1, False), (2, False), (2, True)]
    assert all(c["fill_s"] > 0 and c["model_s"] > 0 for c in check)
    assert check[1]["model_s"] <= check[0]["model_s"]  # equal for a one-block host fill (no overlap)
    assert cap["copy_d2d"]["median"] > 0
    tree = cap["tree_rate"]  # one layer's tree timed beside the rate derived from the instructions
    assert tree["rows"] == cap["n_rows"] and tree["d"] == 32
    assert tree["row_bytes_per_s"]["median"] > 0 and tree["derived_row_bytes_per_s"] > 0
    line = capsys.readouterr().out
    assert line.startswith(f"capacity: {cap['n_rows']} rows x 32") and "checks accepted" in line
    assert "2 lanes pinned" in line


def test_capacity_stage_says_so_when_the_fill_does_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "capacity.json"
    cap = load_script().capacity(out, None, 32, fraction=0.99, host_bytes=0, double=True)
    assert not cap["memory"]["fits"] and "fill_s" not in cap
    assert capsys.readouterr().out.startswith("capacity: NOT run: the capacity fill does not fit: device 0")
