"""The owner's and the member's commands against the local stack (moto server, the real handlers):
`benchmark-probe submit` / `status` / `agent --once`, `committee register` / `status` /
`verify-draw` / `retire` — readable output (dates, full ids, next steps), the documented exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from benchmark_probe.cli import app as probe_app
from gpuproof.cli.committee import app as committee_app
from gpuproof.cli.operator import OperatorClient
from gpuproof.protocol.keys import SigningKey
from tests.e2e.api_client import wait_for

pytestmark = pytest.mark.integration
runner = CliRunner()
OWNER = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"


def own(stdout: str) -> str:
    """The CLI's own output: the in-process handlers log one-line JSON documents into the same stdout."""
    return "\n".join(line for line in stdout.splitlines() if not line.startswith('{"'))


def doc_of(stdout: str) -> Any:
    """The CLI's one indented JSON document among the handlers' log lines."""
    start = stdout.index("{\n")
    return json.JSONDecoder().raw_decode(stdout[start:])[0]


def test_member_status_verify_draw_and_retire(
    local_stack: Any, operator: OperatorClient, tmp_path: Path
) -> None:
    api = local_stack.api_url
    keys = []
    for i in range(3):
        path = tmp_path / f"member{i}.key"
        made = runner.invoke(committee_app, ["keygen", "--key", str(path), "--json"])
        assert made.exit_code == 0, made.output
        keys.append(path)
        joined = runner.invoke(
            committee_app, ["register", "--key", str(path), "--json"], env={"GPUPROOF_API": api}
        )
        assert joined.exit_code == 0, joined.output
    account = SigningKey.load(keys[0]).public_hex
    before = runner.invoke(committee_app, ["status", "--api", api, "--key", str(keys[0])])
    assert before.exit_code == 0, before.output
    assert "NOT admitted" in before.stdout and "wait for the operator to admit you" in before.stdout
    for path in keys:
        operator.admit(SigningKey.load(path).public_hex)
    try:
        machine_key = tmp_path / "machine.key"
        assert runner.invoke(probe_app, ["keygen", "--key", str(machine_key)]).exit_code == 0
        submitted = runner.invoke(
            probe_app,
            ["submit", "--api", api, "--owner", OWNER, "--region", "europe", "--key", str(machine_key),
             "--quick", "--yes"],
        )  # fmt: skip
        assert submitted.exit_code == 0, submitted.output
        assert "{" not in own(submitted.stdout) and "report        accepted 20" in own(submitted.stdout)
        machine_id = SigningKey.load(machine_key).public_hex

        status = runner.invoke(probe_app, ["status", "--api", api, "--key", str(machine_key)])
        assert status.exit_code == 0, status.output
        assert f"machine  {machine_id}" in status.stdout and "next     " in status.stdout
        assert " UTC (" in status.stdout  # dates with their age, no epoch floats

        wait_for(lambda: requests.get(f"{api}/rounds/{machine_id}/1", timeout=10).ok)
        checked = runner.invoke(committee_app, ["verify-draw", machine_id, "1", "--api", api, "--json"])
        assert checked.exit_code == 0, checked.output
        doc = doc_of(checked.stdout)
        assert doc["ok"] and {c["name"] for c in doc["checks"]} >= {"beacon_value", "pool_digest", "draw"}
        human = runner.invoke(
            committee_app, ["verify-draw", machine_id, "1", "--api", api, "--key", str(keys[0])],
            env={"COLUMNS": "250"},
        )  # fmt: skip
        assert human.exit_code == 0 and "the draw is as published" in human.stdout
        assert f"{account} is in this round's eligible pool" in human.stdout

        drawn = json.loads(requests.get(f"{api}/rounds/{machine_id}/1", timeout=10).text)["members"]
        mine = [p for p in keys if SigningKey.load(p).public_hex in drawn]
        if mine:  # other modules' members share the session's pool; ours are usually drawn
            seen = runner.invoke(committee_app, ["status", "--api", api, "--key", str(mine[0])],
                                 env={"COLUMNS": "250"})  # fmt: skip
            assert seen.exit_code == 0, seen.output
            assert machine_id in seen.stdout  # the full id, copyable
            assert "UTC (in " in seen.stdout or "UTC (" in seen.stdout

        short = runner.invoke(
            probe_app,
            ["status", "--api", api, "--key", str(machine_key), "--wait", "--timeout", "1", "--poll", "1"],
        )
        waited_out = "no verdict within 1 s" in short.stderr
        assert short.exit_code == (1 if waited_out else 0), short.output

        beat = runner.invoke(probe_app, ["agent", "--api", api, "--key", str(machine_key), "--once"])
        assert beat.exit_code == 0, beat.output
        assert "heartbeats: 1 sent, 1 accepted, 0 failed" in beat.stderr
    finally:
        for path in keys:
            gone = runner.invoke(
                committee_app, ["retire", "--api", api, "--key", str(path), "--yes", "--json"]
            )
            assert gone.exit_code == 0, gone.output
            assert doc_of(gone.stdout)["status"] == "retired"
    after = runner.invoke(committee_app, ["status", "--api", api, "--key", str(keys[0]), "--json"])
    assert after.exit_code == 0
    after_doc = doc_of(after.stdout)
    assert after_doc["member"]["status"] == "retired" and after_doc["next_step"].startswith("you are retired")


def test_unknown_member_status_says_register_first(local_stack: Any, tmp_path: Path) -> None:
    path = tmp_path / "new.key"
    SigningKey.generate().save(path)
    result = runner.invoke(
        committee_app, ["status", "--api", local_stack.api_url, "--key", str(path), "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = doc_of(result.stdout)
    assert doc["registered"] is False and doc["next_step"].startswith("register first")
    assert doc["address"].startswith("5")
