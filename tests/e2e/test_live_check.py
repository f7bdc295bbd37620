"""Live checks by committee members on the local stack (issue 13 §1).

A machine is submitted honestly (the service's automated stage passes: its proof of throughput
was answered by the fast CPU prover), its agent serves the live-check endpoint and publishes it in
a signed heartbeat, and members drawn for its round challenge the agent themselves:

- an honest agent: the checking member's live check verifies, it supports, the round confirms
  and its published data records who checked and the figures;
- an agent that answers from a slower prover than the claim (the chain's steps slowed down), or
  that proves at speed but answers late (a relay): the member's own clock misses its own deadline,
  so that member reveals a refusal with `live_deadline_missed`, although the service's stage passed;
- a key not drawn for the round is refused by the agent (signed 403 `live_not_drawn`), and a drawn
  member cannot make the machine run other parameters than the round's claim gets.

The CPU claim's derived deadline is ~1.0 s (mostly the network allowance, + the member's RTT).
The agents run in processes of their own, as on a host (the honest one is the real
`benchmark-probe agent --live-listen`); an honest commitment took 0.17-0.28 s median, 0.76 s at
most, over loopback with agent and member in ONE process on this 2-core container at load
average 8-12 (20 live checks, 2026-12-01), so separate processes leave more room; the
adversaries answer after >= 2.25 s (tests/e2e/live_agents.py LATE_S).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from typer.testing import CliRunner

from benchmark_probe.agent import run_agent as run_machine_agent
from benchmark_probe.client import ServiceClient, ServiceError
from benchmark_probe.submit import registration_for
from benchmark_probe.telemetry import Telemetry
from gpuproof.cli.committee import app as committee_app
from gpuproof.cli.member import (
    ApiError,
    inspect_round,
    upload_info,
)
from gpuproof.cli.operator import OperatorClient
from gpuproof.protocol import live as L
from gpuproof.protocol.dbc_commit import CommitteeUploadInfo
from gpuproof.protocol.httpsig import sign_request
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.machine import Region
from gpuproof.protocol.proof import (
    ProofParams,
    SignedCommitment,
)
from tests.e2e.api_client import OWNER, Bot, committee_bots, submit_host, wait_for
from tests.e2e.live_agents import CPU_PARAMS

pytestmark = pytest.mark.e2e

FLOW_TIMEOUT_S = 90
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bots(
    local_stack: Any, operator: OperatorClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Bot]]:
    """Three admitted members, their bots started by each test (the checker with `live=True`)."""
    base = tmp_path_factory.mktemp("live-members")
    with committee_bots(local_stack.api_url, operator, base, start=False) as out:
        yield out


@dataclass
class LiveMachine:
    key: SigningKey
    process: subprocess.Popen[bytes]
    endpoint: str
    log: Path

    @property
    def machine_id(self) -> str:
        return self.key.public_hex

    def stop(self) -> None:
        self.process.terminate()  # the agent process this test started, by its own handle
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine_item(local_stack: Any, machine_id: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb").Table(local_stack.table_name("MachinesTable"))
    item: dict[str, Any] = (
        table.get_item(Key={"machine_id": machine_id}, ConsistentRead=True).get("Item") or {}
    )
    return item


def start_machine(local_stack: Any, kind: str = "honest") -> LiveMachine:
    """Register; start the machine's agent in a process of its own (the real `benchmark-probe
    agent --live-listen …`, which publishes its endpoint in its heartbeats; or an adversarial one
    from tests/e2e/live_agents.py, whose endpoint one heartbeat of the agent loop publishes); then
    submit honestly: the service's stage sees the fast prover."""
    api_url = local_stack.api_url
    key = SigningKey.generate()
    workdir = Path(tempfile.mkdtemp(prefix="live-agent-"))
    key.save(workdir / "machine.key")
    client = ServiceClient(api_url, key)
    mid = key.public_hex
    client.register(registration_for(key, OWNER, Region.europe).model_dump(mode="json"))
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    if kind == "honest":
        args = ["-m", "benchmark_probe", "agent", "--api", api_url, "--key", str(workdir / "machine.key")]
        args += ["--interval", "1", "--live-listen", f"127.0.0.1:{port}", "--live-endpoint", endpoint]
    else:
        args = ["-m", "tests.e2e.live_agents", kind, str(workdir / "machine.key"), api_url, str(port)]
    log = workdir / "agent.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "core"), str(ROOT)])}
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=sink, stderr=sink)
    machine = LiveMachine(key, process, endpoint, log)

    def listening() -> bool:
        assert process.poll() is None, log.read_text()[-2000:]
        try:
            return requests.post(f"{endpoint}/live/{mid}/ping", data=b"{}", timeout=2).status_code == 401
        except requests.ConnectionError:
            return False

    try:
        wait_for(listening, timeout=60)
        if kind != "honest":
            telemetry = Telemetry()
            stats = run_machine_agent(
                client,
                mid,
                lambda: telemetry.read(mid),
                interval_s=1,
                once=True,
                log=lambda _m: None,
                live_endpoint=endpoint,
            )
            assert stats.accepted == 1, stats
        wait_for(
            lambda: (machine_item(local_stack, mid).get("last_heartbeat") or "").find(endpoint) >= 0,
            FLOW_TIMEOUT_S,
        )
        submit_host(api_url, key=key)  # the service's stage sees the fast prover
    except BaseException:
        machine.stop()
        raise
    return machine


def get(api_url: str, path: str) -> dict[str, Any]:
    r = requests.get(api_url + path, timeout=10)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def closed_round(api_url: str, machine_id: str) -> dict[str, Any]:
    def closed() -> dict[str, Any] | None:
        r = requests.get(f"{api_url}/rounds/{machine_id}/1", timeout=10)
        return r.json() if r.ok and r.json()["status"] != "open" else None

    result: dict[str, Any] = wait_for(closed, FLOW_TIMEOUT_S)
    return result


def round_checked_live(
    local_stack: Any, bots: list[Bot], kind: str = "honest"
) -> tuple[LiveMachine, dict[str, Any]]:
    """A machine of `kind` (start_machine) through its round 1: the first bot checks it live, the
    others vote on the service's evidence alone; the machine (stopped by now) and the closed round."""
    machine = start_machine(local_stack, kind)
    checker, others = bots[0], bots[1:]
    try:
        checker.start(live=True)
        for bot in others:
            bot.start(live=False)
        rnd = closed_round(local_stack.api_url, machine.machine_id)
    finally:
        for bot in bots:
            bot.halt()
        machine.stop()
    return machine, rnd


def service_stage_passed(api_url: str, machine_id: str) -> None:
    """The automated stage verified the proof of throughput the machine answered the service with."""
    machine = get(api_url, f"/machines/{machine_id}")["machine"]
    report = get(api_url, f"/machines/{machine_id}/reports/{machine['last_challenge_id']}")
    (check,) = [c for c in report["verification"]["checks"] if c["name"] == "proof_of_throughput"]
    assert check["status"] == "pass", check


def test_honest_agent_passes_the_members_live_check(local_stack: Any, bots: list[Bot]) -> None:
    """One member checks live (three checking at once fit the 12 s commit window of the test
    session only on an idle host: each also re-verifies the transcript, all in this process)."""
    api = local_stack.api_url
    machine, rnd = round_checked_live(local_stack, bots)
    checker = bots[0]
    assert rnd["result"] == "confirmed", (rnd["reveals"], rnd["tally"])
    account = checker.client.account
    assert set(rnd["live_checks"]) == {account}
    live = rnd["live_checks"][account]
    assert live["verified"] is True and live["reasons"] == [], live
    assert 0 < live["commitment_s"] <= live["deadline_s"], live
    assert live["deadline_s"] <= max(p.deadline_s for p in CPU_PARAMS) + L.MAX_RTT_ALLOWANCE_S
    assert live["endpoint"] == machine.endpoint and live["shadow"] is False
    assert rnd["reveals"][account]["info"]["is_support"] is True
    assert rnd["reveals"][account]["live_check"] == live
    # The transcript names where the live check reached the agent: the heartbeat's endpoint.
    transcript = get(api, f"/rounds/{machine.machine_id}/1/transcript")
    assert transcript["machine"]["live_endpoint"] == machine.endpoint


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("slower", id="slower-prover"),
        pytest.param("late", id="late-answer"),
    ],
)
def test_member_refuses_a_machine_that_misses_its_own_deadline(
    local_stack: Any, bots: list[Bot], kind: str
) -> None:
    api = local_stack.api_url
    machine, rnd = round_checked_live(local_stack, bots, kind)
    checker, others = bots[0], bots[1:]
    service_stage_passed(api, machine.machine_id)
    account = checker.client.account
    assert set(rnd["live_checks"]) == {account}, rnd["live_checks"]
    live = rnd["live_checks"][account]
    assert live["verified"] is False
    assert [r["code"] for r in live["reasons"]] == ["live_deadline_missed"], live
    assert live["commitment_s"] > live["deadline_s"]
    reveal = rnd["reveals"][account]
    assert reveal["info"]["is_support"] is False and reveal["live_check"] == live
    for bot in others:  # members without a live check relied on the service's evidence alone
        assert rnd["reveals"][bot.client.account]["info"]["is_support"] is True
        assert "live_check" not in rnd["reveals"][bot.client.account]


def signed_post(
    key: SigningKey, endpoint: str, path: str, doc: dict[str, Any]
) -> tuple[requests.Response, str]:
    body = json.dumps(doc).encode()
    headers = sign_request(key, "POST", path, body)
    nonce = headers["signature-input"].split('nonce="', 1)[1].split('"', 1)[0]
    return requests.post(endpoint + path, data=body, headers=headers, timeout=30), nonce


def test_agent_answers_only_drawn_members_with_the_rounds_parameters(
    local_stack: Any, bots: list[Bot], tmp_path: Path
) -> None:
    api = local_stack.api_url
    machine = start_machine(local_stack)  # no bot runs: this test votes itself
    mid = machine.machine_id
    try:
        rnd = wait_for(
            lambda: (r := requests.get(f"{api}/rounds/{mid}/1", timeout=10)).ok and r.json(), FLOW_TIMEOUT_S
        )
        assert rnd["status"] == "open"
        drawn = next(b for b in bots if b.client.account in rnd["members"])
        # Votes committed at once, revealed at the end: the round stays open (the agent answers
        # only while it is) and then closes with a result.
        infos = commit_all([b for b in bots if b.client.account in rnd["members"]], mid)

        def challenge(key: SigningKey, params: list[ProofParams]) -> tuple[requests.Response, str]:
            doc = L.LiveChallenge(
                machine_id=mid, round=1, challenge_id="live-" + "ab" * 16, nonce="cd" * 32, params=params
            ).model_dump(mode="json")
            return signed_post(key, machine.endpoint, f"/live/{mid}/challenges", doc)

        path = f"/live/{mid}/challenges"
        for key, params, status, code in [
            (SigningKey.generate(), CPU_PARAMS, 403, "live_not_drawn"),  # not drawn
            (
                drawn.client.key,
                [p.model_copy(update={"steps": 64}) for p in CPU_PARAMS],
                422,
                "live_params_mismatch",
            ),
        ]:
            r, nonce = challenge(key, params)
            assert r.status_code == status and r.json()["code"] == code, r.text
            # the refusal itself is signed by the machine key, for this request
            assert (
                L.response_reasons(
                    "POST",
                    path,
                    dict(r.headers),
                    r.content,
                    machine_id=mid,
                    request_nonce=nonce,
                    now=time.time(),
                )
                == []
            )
        ping, _ = signed_post(
            SigningKey.generate(), machine.endpoint, f"/live/{mid}/ping", {"machine_id": mid, "round": 1}
        )
        assert ping.status_code == 403 and ping.json()["code"] == "live_not_drawn"
        unsigned = requests.post(machine.endpoint + path, data=b"{}", timeout=10)
        assert unsigned.status_code == 401 and unsigned.json()["code"] == "signature_missing"
        # A drawn member with the round's parameters is answered: a commitment to ITS nonce.
        r, nonce = challenge(drawn.client.key, CPU_PARAMS)
        assert r.status_code == 200, r.text
        signed = SignedCommitment.model_validate_json(r.content)
        assert (
            signed.verifies() and signed.commitment.nonce == "cd" * 32 and signed.commitment.machine_id == mid
        )
        # The member's CLI: `committee inspect --live` challenges the agent itself and says why it supports.
        key_file = tmp_path / "member.key"
        drawn.client.key.save(key_file)
        args = ["inspect", mid, "1", "--api", api, "--key", str(key_file), "--allow-cpu-backend"]
        result = CliRunner().invoke(committee_app, [*args, "--live", "--allow-private-endpoint", "--json"])
        assert result.exit_code == 0, result.output
        inspected = cli_json(result.stdout)
        assert inspected["live_check"]["verified"] is True and inspected["supports"] is True, inspected
        (live_row,) = [c for c in inspected["checks"] if c["name"] == "live_check"]
        assert live_row["ok"] is True
        # Without --allow-private-endpoint the member refuses to send requests to a loopback address.
        result = CliRunner().invoke(committee_app, [*args, "--live", "--json"])
        inspected = cli_json(result.stdout)
        assert inspected["supports"] is False
        assert [r["code"] for r in inspected["live_check"]["reasons"]] == ["live_endpoint_private"]
        # Close the round with votes (an all-absent round would leave the machine awaiting a redraw).
        for bot in bots:
            if bot.client.account in infos:
                bot.client.reveal(mid, 1, infos[bot.client.account])
        assert closed_round(api, mid)["result"] == "confirmed"
    finally:
        machine.stop()


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://example.com:8421",
        "https://1.2.3.4:8421",
        "http://1.2.3.4:99999",
        "http://1.2.3.4",
        "http://" + "1" * 70,
    ],
)
def test_heartbeat_refuses_a_live_endpoint_that_is_not_an_ip_and_port(
    local_stack: Any, endpoint: str
) -> None:
    key = SigningKey.generate()
    client = ServiceClient(local_stack.api_url, key)
    client.register(registration_for(key, OWNER, Region.europe).model_dump(mode="json"))
    beat = {**Telemetry().read(key.public_hex), "live_endpoint": endpoint}
    with pytest.raises(ServiceError) as refused:
        client.heartbeat(key.public_hex, beat)
    assert refused.value.status == 422, refused.value


def cli_json(stdout: str) -> dict[str, Any]:
    """The CLI's --json document; the in-process local stack may log a line of its own meanwhile
    (Powertools writes JSON log lines to the same, captured, stdout)."""
    start = stdout.index("{\n")  # emit() indents: its document starts with a lone brace
    doc, _ = json.JSONDecoder().raw_decode(stdout[start:])
    assert isinstance(doc, dict)
    return doc


def commit_all(bots: list[Bot], mid: str) -> dict[str, CommitteeUploadInfo]:
    """Every drawn member commits a supporting vote from its own inspection, at once."""
    infos = {}
    for bot in bots:
        _, inspection = inspect_round(bot.client, mid, 1, allow_cpu_backend=True)
        assert inspection.supports, inspection.problems
        infos[bot.client.account] = info = upload_info(inspection, secrets.token_hex(8))
        bot.client.commit(mid, 1, info.commit_hash_hex())
    return infos


def test_reveal_cannot_support_against_its_own_failed_live_check(local_stack: Any, bots: list[Bot]) -> None:
    api = local_stack.api_url
    machine = start_machine(local_stack)
    mid = machine.machine_id
    try:
        rnd = wait_for(
            lambda: (r := requests.get(f"{api}/rounds/{mid}/1", timeout=10)).ok and r.json(), FLOW_TIMEOUT_S
        )
        drawn = [b for b in bots if b.client.account in rnd["members"]]
        infos = commit_all(drawn, mid)
        first = drawn[0]
        failed = L.LiveCheck(
            verified=False, reasons=[L.LiveReason(code="live_deadline_missed", message="late")]
        ).model_dump(mode="json", exclude_none=True)
        with pytest.raises(ApiError) as refused:
            first.client.reveal(mid, 1, infos[first.client.account], failed)
        assert (refused.value.status, refused.value.code) == (422, "live_check_inconsistent")
        # In shadow mode a failed live check does not decide the vote: the same reveal is taken.
        shadow = {**failed, "shadow": True}
        first.client.reveal(mid, 1, infos[first.client.account], shadow)
        for bot in drawn[1:]:
            bot.client.reveal(mid, 1, infos[bot.client.account])
        closed = closed_round(api, mid)
    finally:
        machine.stop()
    assert closed["result"] == "confirmed"
    assert closed["live_checks"] == {first.client.account: shadow}
