"""The service says why (issue 15 §2): a machine waiting for its committee draw carries the
reason and the next step in state_reasons, and the sweeper logs that reason once, not every tick.

A stack of its own with no admitted committee member: this host's probe (CPU backend) passes the
automated stage, then every sweeper tick finds 0 eligible members of the 3 a draw needs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from .api_client import OWNER
from .production_stack import production_stack

pytestmark = pytest.mark.e2e


def test_a_machine_waiting_for_members_says_why_and_the_log_says_it_once() -> None:
    # No cooldown: on a loaded machine the CPU backend may miss the proof's deadline (sized for a
    # GPU) and submit again at once, as the owner's next step says.
    params = ("AllowCpuBackend=true", "ChallengeCooldownSeconds=0")
    with production_stack(*params) as stack, tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "machine.key"

        def probe(*args: str) -> subprocess.CompletedProcess[str]:
            cmd = [sys.executable, "-m", "benchmark_probe", *args]
            return subprocess.run(cmd, capture_output=True, text=True, check=False)

        assert probe("keygen", "--key", str(key), "--json").returncode == 0
        args = ["--api", stack.api_url, "--owner", OWNER, "--region", "europe", "--key", str(key)]
        machine: dict = {}
        for _ in range(4):
            run = probe("submit", *args, "--quick", "--yes", "--json")  # a CPU-only host goes on
            assert run.returncode == 0, run.stdout + run.stderr
            machine_id = json.loads(run.stdout)["machine_id"]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                machine = requests.get(f"{stack.api_url}/machines/{machine_id}", timeout=30).json()["machine"]
                if machine["state_reasons"]:
                    break
                time.sleep(0.5)
            if [r["code"] for r in machine["state_reasons"]] != ["proof_deadline_missed"]:
                break
        assert machine["state"] == "auto_verified", machine
        (reason,) = machine["state_reasons"]
        assert reason["code"] == "committee_pool_too_small"
        assert reason["message"] == "0 eligible committee members, 3 needed for a draw"
        assert "gpuproof-ops admit" in reason["next_step"]
        time.sleep(6)  # several more sweeper ticks (one a second), each finding the same pool
        lines = [line for line in stack.log if "committee_pool_too_small" in line and machine_id in line]
        assert len(lines) == 1, lines
        again = requests.get(f"{stack.api_url}/machines/{machine_id}", timeout=30).json()["machine"]
        assert again["state_reasons"] == machine["state_reasons"]
        assert again["updated_at"] == machine["updated_at"]  # the reason is no state change
