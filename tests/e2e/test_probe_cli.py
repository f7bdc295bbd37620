"""`benchmark-probe submit` against the local stack: the command a machine owner runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from benchmark_probe.cli import app
from benchmark_probe.client import ServiceClient
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.report import SignedReport

from .api_client import OWNER, RawApi

pytestmark = pytest.mark.e2e
runner = CliRunner()


@pytest.mark.parametrize("scheme", ["ed25519", "sr25519"])
def test_submit_registers_proves_and_is_verified(local_stack: Any, tmp_path: Path, scheme: str) -> None:
    """sr25519: a machine already bonded on DBC reuses its node key's scheme end to end."""
    key_path = tmp_path / "machine.key"
    assert runner.invoke(app, ["keygen", "--key", str(key_path), "--scheme", scheme]).exit_code == 0
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
        "--yes",  # the CI host has no GPU: a CPU-only report, on purpose
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
    # the probe ran the capacity phase after the proof (the CPU claim's test-size phase)
    assert checks["capacity"] == "pass" and verification["capacity"]["gpus"][0]["passed"]
    stored = client.request("GET", f"/machines/{key.public_hex}/reports/{out['challenge_id']}")
    signed = SignedReport.model_validate(stored["signed_report"])
    assert signed.verifies() and signed.report.inventory.backend == "cpu"
    assert all(b.verified for b in signed.report.benchmarks) and signed.report.benchmarks


def test_agent_heartbeat_is_stored_on_the_machine(local_stack: Any, tmp_path: Path) -> None:
    key_path = tmp_path / "machine.key"
    runner.invoke(app, ["keygen", "--key", str(key_path)])
    key = SigningKey.load(key_path)
    client = ServiceClient(local_stack.api_url, key)
    from benchmark_probe.submit import register, registration_for
    from gpuproof.protocol.machine import Region

    register(client, registration_for(key, OWNER, Region.europe))
    result = runner.invoke(
        app, ["agent", "--api", local_stack.api_url, "--key", str(key_path), "--once", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert '"accepted": 1' in result.stdout
    machines = boto3.resource("dynamodb").Table(local_stack.table_name("MachinesTable"))
    item = machines.get_item(Key={"machine_id": key.public_hex}, ConsistentRead=True)["Item"]
    beat = json.loads(item["last_heartbeat"])
    assert beat["machine_id"] == key.public_hex and beat["backend"] in {"cpu", "nvml"}
    assert float(item["last_heartbeat_at"]) > 0


def test_heartbeat_rejections(local_stack: Any) -> None:
    api = RawApi(local_stack.api_url)
    stranger = SigningKey.generate()
    beat = {"machine_id": stranger.public_hex, "sent_at": 1, "backend": "cpu", "host": {}}
    path = f"/machines/{stranger.public_hex}/heartbeats"
    reply, _, _ = api.signed(stranger, "POST", path, beat)
    assert reply.status == 404 and reply.body["code"] == "unknown_machine"
    key = SigningKey.generate()
    assert api.register(key).status == 201
    path = f"/machines/{key.public_hex}/heartbeats"
    first, headers, body = api.signed(key, "POST", path, beat | {"machine_id": key.public_hex})
    assert first.status == 200 and first.body["reverify"] is False
    replay = api.send("POST", path, body, headers)
    assert replay.status == 409 and replay.body["code"] == "replayed_nonce"
    other, _, _ = api.signed(key, "POST", path, beat)
    assert other.status == 422 and other.body["code"] == "heartbeat_machine_mismatch"
