"""scripts/probe_estimate.py, the whole-probe ESTIMATE docs/protocol.md §17.9 quotes: its steps come
from the parameters the service issues and the executor's recompute model, and the table in the
docs is the script's output (a changed parameter or model changes both, or this fails)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def estimate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("probe_estimate", ROOT / "scripts" / "probe_estimate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["probe_estimate"] = module
    spec.loader.exec_module(module)
    return module


def test_the_docs_table_is_the_scripts_output(estimate: ModuleType) -> None:
    steps = estimate.estimate()
    doc = (ROOT / "docs" / "protocol.md").read_text()
    for step in steps:
        assert f"| {step.name} | {step.seconds:.1f} |" in doc, step.name
    assert f"| **total** | **{sum(s.seconds for s in steps):.1f}** |" in doc
    likely = estimate.estimate(hash_bytes_per_s=estimate.LIKELY_HASH_BYTES_PER_S)
    assert f"the same model gives **{sum(s.seconds for s in likely):.1f} s**" in doc
    assert sum(s.seconds for s in likely) < sum(s.seconds for s in steps)


def test_the_recompute_is_cheaper_than_the_fill_and_grows_with_host_ram(estimate: ModuleType) -> None:
    small = {s.name: s.seconds for s in estimate.estimate(gpus=8, host_gib=256)}
    large = {s.name: s.seconds for s in estimate.estimate(gpus=8, host_gib=1024)}
    assert small["openings recompute"] < 0.5 * small["capacity fill"]
    assert large["openings recompute"] > small["openings recompute"]
    assert large["capacity fill"] > small["capacity fill"]
    none = {s.name: s.seconds for s in estimate.estimate(gpus=8, host_gib=0)}
    assert none["capacity fill"] < small["capacity fill"]
