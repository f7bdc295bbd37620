"""scripts/gpu_check.sh's budget: the stages' own limits add up to more than one device call allows,
so each runs under what is left of the run's budget and a stage with nothing left is skipped, saying
so, while the comparison keeps its reserve. Run with a stand-in for Python that hangs in the first
stage (no GPU, no CuPy: only the shell script's own logic is under test)."""

from __future__ import annotations

import os
import subprocess
import tarfile
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"


def test_a_hanging_stage_spends_the_budget_and_the_rest_are_skipped_but_the_comparison_runs(
    tmp_path: Path,
) -> None:
    fake = tmp_path / "python"
    calls = tmp_path / "calls"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case "$*" in *inventory*) exec sleep 60 ;; esac\n'  # the first stage hangs
        "exit 1\n"
    )
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PYTHON": str(fake),
        "GPU_CHECK_BUDGET_S": "10",
        "GPU_CHECK_RESERVE_S": "3",
        "GPU_CHECK_WHL": str(tmp_path / "no-wheels"),
        "GPU_CHECK_ARCHIVE": str(tmp_path / "gpu_check.tgz"),
    }
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120
    )
    took = time.monotonic() - started
    err = done.stderr
    assert "inventory exit 124" in err, err  # cut at the budget (10 - 3 s), not at its own 60 s
    # every later stage skipped (the inventory too, on a host so loaded that its 7 s were gone first)
    assert err.count("skipped: the run's budget (10 s, 3 s kept for the comparison) is spent") >= 7, err
    for stage in ("bench run 3", "proof exit 124", "capacity exit 124", "reference exit 124", "proof beside"):
        assert stage in err, (stage, err)
    assert "comparison (probe vs reference)" in err
    ran = calls.read_text().splitlines()
    assert ran[-1].startswith("scripts/gpu_check.py compare"), ran  # the comparison still ran, last
    skipped = ("-m benchmark_probe bench", "scripts/gpu_check.py capacity", "scripts/gpu_check.py proof")
    assert not [line for line in ran if line.startswith(skipped)], ran
    assert took < 60, took  # the hanging stage was not allowed its own minute
    # The whole folder in one file (the device tool brings back 8 at most), the last stage's too.
    with tarfile.open(tmp_path / "gpu_check.tgz") as packed:
        names = {Path(n).name for n in packed.getnames()}
    assert {"environment.txt", "inventory.stderr", "capacity.stderr", "comparison.txt"} <= names, names
    assert not (tmp_path / "gpu_check.tgz.part").exists()
