"""`benchmark-probe submit` against the local stack: the command a machine owner runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.report import SignedReport
from typer.testing import CliRunner

from benchmark_probe.cli import app
from benchmark_probe.client import ServiceClient

from .api_client import OWNER

pytestmark = pytest.mark.e2e
runner = CliRunner()


def test_submit_registers_proves_and_is_verified(local_stack: Any, tmp_path: Path) -> None:
    key_path = tmp_path / "machine.key"
    assert runner.invoke(app, ["keygen", "--key", str(key_path)]).exit_code == 0
    args = [
        "submit",
        "--api",
        local_stack.api_url,
        "--owner",
        OWNER,
        "--region",
        "europe",
        "--key",
        str(key_path),
        "--quick",
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # The service's handlers log JSON lines into the same stdout (one process); the CLI's
    # own output is the one indented document.
    start = result.stdout.index("{\n")
    out, _ = json.JSONDecoder().raw_decode(result.stdout[start:])
    assert out["registration"] == "registered"
    local_stack.drain()
    key = SigningKey.load(key_path)
    client = ServiceClient(local_stack.api_url, key)
    status = client.machine(key.public_hex)
    verification = status["reports"][0]["verification"]
    assert verification["passed"] is True, verification["reasons"]
    checks = {c["name"]: c["status"] for c in verification["checks"]}
    assert checks["proof_of_throughput"] == "pass" and checks["benchmarks"] == "pass"
    stored = client.request("GET", f"/machines/{key.public_hex}/reports/{out['challenge_id']}")
    signed = SignedReport.model_validate(stored["signed_report"])
    assert signed.verifies() and signed.report.inventory.backend == "cpu"
    assert all(b.verified for b in signed.report.benchmarks) and signed.report.benchmarks
