"""One convention for `benchmark-probe`, `committee` and `gpuproof-ops` (docs/cli.md): one-line
errors with the documented exit codes (a JSON error object under --json), GPUPROOF_API, --version,
dates and countdowns, SS58 and BIP-39 keys, backoff with a summary line in both agents.

The dead-URL cases run the CLIs as subprocesses (a real process, a real refused connection on
127.0.0.1:1: the unit tests' socket guard covers this process only); the rest through CliRunner."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

import benchmark_probe.inventory as inventory_module
from benchmark_probe.agent import run_agent
from benchmark_probe.cli import app as probe_app
from benchmark_probe.client import ServiceClient
from benchmark_probe.nvml_double import CudaTestDouble, NvmlTestDouble
from benchmark_probe.render import _reference_cell
from gpuproof.cli.committee import app as committee_app
from gpuproof.cli.output import backoff_delay, duration, when
from gpuproof.committee.beacon import HashChainBeacon
from gpuproof.committee.draw import Member, draw_committee, pool_digest
from gpuproof.committee.recompute import recompute_draw
from gpuproof.protocol.keys import SigningKey, verify
from gpuproof.protocol.report import BenchmarkResult
from gpuproof.reference import lookup
from tests.unit.probe_service_double import FakeService

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
DEAD = "http://127.0.0.1:1"
DEV_PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
ALICE_PUBLIC = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
OWNER = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"


# The child runs `python -m MODULE` with the signed client's retries still made (each counted in the
# summary) but without the backoff's waits between them (4-7 s per dead-URL command: four jittered waits of
# 0.25-0.5, 0.5-1, 1-2 and 2-4 s); the delays themselves are tested in tests/unit/test_probe_retries.py.
NO_BACKOFF = (
    "import runpy, sys; from gpuproof.protocol import client; "
    "client.RetryPolicy.delay = lambda self, attempt, retry_after=None: 0.0; "
    "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"
)


def run_cli(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'core'}:{ROOT}", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", NO_BACKOFF, module, *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        inventory_module, "_load_pynvml", lambda: (NvmlTestDouble(library_missing=True), None)
    )


@pytest.fixture
def eight_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = NvmlTestDouble.with_gpus(8)
    monkeypatch.setattr(inventory_module, "_load_pynvml", lambda: (nvml, None))
    monkeypatch.setattr(inventory_module, "_default_cuda", lambda: CudaTestDouble.agreeing_with(nvml))


def member_key(tmp_path: Path) -> Path:
    path = tmp_path / "committee.key"
    SigningKey.generate().save(path)
    return path


# ------------------------------------------------------------------------------------ one-line errors
def test_committee_assignments_on_a_dead_url_is_one_line_and_exit_3(tmp_path: Path) -> None:
    key = member_key(tmp_path)
    human = run_cli("gpuproof.cli.committee", "assignments", "--api", DEAD, "--key", str(key))
    assert human.returncode == 3, human.stderr
    assert human.stderr.strip().splitlines() == [f"error: service unreachable at {DEAD}: connection refused"]
    assert "Traceback" not in human.stderr and human.stdout == ""
    as_json = run_cli("gpuproof.cli.committee", "assignments", "--api", DEAD, "--key", str(key), "--json")
    assert as_json.returncode == 3 and "Traceback" not in as_json.stderr
    assert json.loads(as_json.stdout) == {
        "error": f"service unreachable at {DEAD}: connection refused",
        "exit_code": 3,
        "code": "unreachable",
    }


def test_committee_api_comes_from_GPUPROOF_API_and_a_missing_key_is_exit_4(tmp_path: Path) -> None:
    missing = tmp_path / "none.key"
    result = run_cli("gpuproof.cli.committee", "status", "--key", str(missing), env={"GPUPROOF_API": DEAD})
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [
        f"error: no key file at {missing} (create one with: committee keygen --key {missing})"
    ]


def test_probe_agent_once_on_a_dead_url_exits_3_with_a_summary_line(tmp_path: Path) -> None:
    key = tmp_path / "machine.key"
    SigningKey.generate().save(key)
    result = run_cli("benchmark_probe", "agent", "--once", "--key", str(key), env={"GPUPROOF_API": DEAD})
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("heartbeats: 1 sent, 0 accepted, 1 failed (last error: heartbeat not")
    assert "connection refused" in lines[-1]
    assert "urllib3" not in result.stderr and "HTTPConnectionPool" not in result.stderr


def test_committee_agent_once_on_a_dead_url_exits_3_with_a_summary_line(tmp_path: Path) -> None:
    key = member_key(tmp_path)
    result = run_cli(
        "gpuproof.cli.committee", "agent", "--once", "--api", DEAD, "--key", str(key),
        "--state", str(tmp_path / "state.json"),
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("1 pass(es), 1 without the service") and "connection refused" in last
    assert "urllib3" not in result.stderr


def test_version_on_every_cli() -> None:
    from gpuproof.cli.ops import app as ops_app

    for app, name in (
        (probe_app, "benchmark-probe"),
        (committee_app, "committee"),
        (ops_app, "gpuproof-ops"),
    ):
        result = runner.invoke(app, ["--version"])
        assert result.exit_code == 0 and result.stdout.startswith(f"{name} 0."), result.output


def test_help_renders_flags_and_types_not_angle_brackets() -> None:
    result = runner.invoke(probe_app, ["agent", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout and "<str>" not in result.stdout
    assert "GPUPROOF_API" in result.stdout and "GPUPROOF_MACHINE_KEY" in result.stdout


# ------------------------------------------------------------------------------------ time
def test_dates_and_countdowns() -> None:
    assert duration(4) == "4 s" and duration(252) == "4 min 12 s" and duration(3 * 3600 + 300) == "3 h 05 min"
    assert duration(2 * 86400 + 4 * 3600) == "2 d 4 h"
    assert when(1_800_000_252, now=1_800_000_000) == "2027-01-15 08:04:12 UTC (in 4 min 12 s)"
    assert when(1_800_000_000, now=1_800_000_060) == "2027-01-15 08:00:00 UTC (1 min 00 s ago)"
    assert when(None) == "—"


def test_backoff_doubles_per_failure_up_to_ten_minutes() -> None:
    assert [backoff_delay(5, n) for n in range(5)] == [5, 10, 20, 40, 80]
    assert backoff_delay(5, 30) == 600 and backoff_delay(900, 3) == 900


def test_probe_agent_backs_off_while_the_service_is_unreachable() -> None:
    class Dead:
        def request(self, *_a: object, **_k: object) -> object:
            raise requests.ConnectionError("Connection refused")

    client = ServiceClient(DEAD, SigningKey.generate(), transport=Dead())
    client.sleep = lambda _s: None  # the client's own retries
    sleeps: list[float] = []

    class Stop(Exception):
        pass

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 4:
            raise Stop

    logs: list[str] = []
    with pytest.raises(Stop):
        run_agent(client, "ab" * 32, dict, interval_s=2, once=False, log=logs.append, sleep=sleep)
    assert [round(s) for s in sleeps] == [4, 8, 16, 32]
    assert logs[0] == f"heartbeat not delivered to {DEAD}: connection refused"
    assert logs[1] == "next heartbeat in 4 s (1 failed in a row)"


# ------------------------------------------------------------------------------------ keys
def test_keygen_shows_an_ss58_address_and_a_mnemonic_that_restores_the_key(tmp_path: Path) -> None:
    first = tmp_path / "a.key"
    made = runner.invoke(committee_app, ["keygen", "--key", str(first), "--show-mnemonic", "--json"])
    assert made.exit_code == 0, made.output
    doc = json.loads(made.stdout)
    assert doc["mnemonic_shown"] and doc["key_path"] == str(first) and doc["address"].startswith("5")
    rows = [line.split() for line in made.stderr.splitlines()]
    phrase = " ".join(next(r for r in rows if len(r) == 12 and all(w.isalpha() and w.islower() for w in r)))
    assert len(phrase.split()) == 12, made.stderr
    assert phrase not in made.stdout  # the phrase goes to stderr only, never the JSON document
    again = tmp_path / "b.key"
    restored = runner.invoke(
        committee_app,
        ["keygen", "--key", str(again), "--import-mnemonic", "--expect-account", doc["address"], "--json"],
        input=phrase + "\n",
    )
    assert restored.exit_code == 0, restored.output
    assert json.loads(restored.stdout)["account"] == doc["account"]
    assert SigningKey.load(again).public_hex == SigningKey.load(first).public_hex
    assert stat.S_IMODE(again.stat().st_mode) == 0o600


def test_a_derived_sr25519_account_is_imported_and_checked_by_its_ss58_address(tmp_path: Path) -> None:
    """`--expect-account 5Grw…` (SS58, mixed case) was lower-cased and refused; now compared as a key."""
    path = tmp_path / "alice.key"
    args = ["keygen", "--key", str(path), "--scheme", "sr25519", "--import-mnemonic", "--json"]
    result = runner.invoke(committee_app, [*args, "--expect-account", ALICE], input=DEV_PHRASE + "//Alice\n")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["account"], doc["address"], doc["source"]) == (ALICE_PUBLIC, ALICE, "mnemonic")
    assert DEV_PHRASE not in result.output
    key = SigningKey.load(path)  # a derived key: its file holds the 64-byte sr25519 secret
    assert key.public_hex == ALICE_PUBLIC and verify(ALICE_PUBLIC, b"m", key.sign(b"m"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("scheme", "phrase", "expect", "code", "error"),
    [
        ("sr25519", DEV_PHRASE.replace("walk", "fit"), None, 2, "not a valid BIP-39 mnemonic"),
        ("ed25519", DEV_PHRASE + "//Alice", None, 2, "ed25519 keys have no derivation paths"),
        ("sr25519", DEV_PHRASE + "//Bob", ALICE, 4, "nothing written"),
        ("sr25519", DEV_PHRASE, "5Grw-not-an-address", 2, "neither an SS58 address"),
    ],
)
def test_bad_mnemonics_and_wrong_accounts_write_nothing(
    tmp_path: Path, scheme: str, phrase: str, expect: str | None, code: int, error: str
) -> None:
    path = tmp_path / "k.key"
    args = ["keygen", "--key", str(path), "--scheme", scheme, "--import-mnemonic", "--json"]
    result = runner.invoke(
        probe_app, [*args, *(["--expect-machine-id", expect] if expect else [])], input=phrase
    )
    assert result.exit_code == code, result.output
    assert error in json.loads(result.stdout)["error"] and not path.exists()
    assert DEV_PHRASE not in result.output


# ------------------------------------------------------------------------------------ owner CLI
def test_submit_without_a_gpu_needs_yes_and_sends_nothing(
    no_gpu: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmark_probe.cli as cli

    service = FakeService()
    monkeypatch.setattr(cli, "ServiceClient", lambda api, k: ServiceClient(api, k, transport=service))
    key = tmp_path / "machine.key"
    SigningKey.generate().save(key)
    args = ["submit", "--owner", OWNER, "--region", "europe", "--key", str(key), "--quick", "--json"]
    result = runner.invoke(probe_app, args, env={"GPUPROOF_API": "https://api.example"})
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["code"] == "no_gpu" and "--yes" in doc["error"] and service.paths == []


def test_submit_summary_is_for_people(no_gpu: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmark_probe.cli as cli

    service = FakeService()
    monkeypatch.setattr(cli, "ServiceClient", lambda api, k: ServiceClient(api, k, transport=service))
    key = tmp_path / "machine.key"
    SigningKey.generate().save(key)
    args = ["submit", "--api", "https://api.example", "--owner", OWNER, "--region", "europe",
            "--key", str(key), "--quick", "--yes"]  # fmt: skip
    result = runner.invoke(probe_app, args)
    assert result.exit_code == 0, result.output
    assert "{" not in result.stdout and "'" not in result.stdout  # no raw dict
    assert "registration  registered" in result.stdout and "challenge     ch-9" in result.stdout
    assert "next " in result.stdout


def test_inventory_previews_calc_point_from_the_reference_table(eight_gpus: None) -> None:
    from gpuproof.protocol.machine import Region
    from gpuproof.scoring import calc_point_for_model

    result = runner.invoke(probe_app, ["inventory", "--region", "europe", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    gpus = doc["inventory"]["gpus"]
    ref = lookup(gpus[0]["name"])
    assert ref is not None
    expected = calc_point_for_model(
        ref, gpu_num=len(gpus), ram_gb=doc["dbc_upload_info"]["mem_num"], region=Region.europe
    )
    assert doc["calc_point_preview"][0].startswith(f"calc_point preview: {expected.decimal} (8 x {ref.model}")
    human = runner.invoke(probe_app, ["inventory"], env={"COLUMNS": "200"})
    assert "CommitteeUploadInfo" in human.stdout and "calc_point preview" in human.stdout
    assert "{'" not in human.stdout


def test_inventory_without_a_gpu_says_no_calc_point(no_gpu: None) -> None:
    doc = json.loads(runner.invoke(probe_app, ["inventory", "--json"]).stdout)
    assert "no GPU found" in doc["calc_point_preview"][0]


def test_bench_figures_beside_the_reference_envelope() -> None:
    ref = lookup("H100 SXM5 80GB")
    assert ref is not None and ref.expected_bf16_tflops is not None

    def bf16(median: float) -> BenchmarkResult:
        return BenchmarkResult(name="gemm_bf16", device="gpu0", unit="TFLOPS", median=median, min=median,
                               max=median, repeats=5, verified=True, method={}, error=None)  # fmt: skip

    low, high = 0.70 * ref.expected_bf16_tflops, 1.15 * ref.expected_bf16_tflops
    assert _reference_cell(ref, bf16(700.0)) == f"{low:.1f}–{high:.1f} ([green]inside[/])"
    assert "outside" in _reference_cell(ref, bf16(300.0))
    assert _reference_cell(None, bf16(700.0)) == ""


# ------------------------------------------------------------------------------------ verify-draw
def _round(beacon: HashChainBeacon, index: int, pool: list[str], owner: str) -> dict[str, object]:
    machine_id = "cd" * 32
    value = beacon.value(index)
    members = draw_committee(
        value, machine_id, 1, [Member(a) for a in pool], owner=owner, in_flight={}, cap=1
    )
    return {
        "machine_id": machine_id, "round": 1, "owner": owner, "beacon_index": index,
        "beacon_value": value.hex(), "beacon_tip": beacon.commitment().hex(), "pool": pool,
        "pool_size": len(pool), "pool_digest": pool_digest(pool), "members": members,
    }  # fmt: skip


def test_recompute_draw_accepts_the_published_draw_and_catches_each_change() -> None:
    beacon = HashChainBeacon(b"\x07" * 32, 64)
    tip = {"tip": beacon.commitment().hex(), "length": 64, "next_index": 3}
    pool = sorted(SigningKey.generate().public_hex for _ in range(6))
    rnd = _round(beacon, 2, pool, OWNER)
    checks = recompute_draw(rnd, tip, account=pool[0])
    assert all(c.ok for c in checks), checks
    assert [c.name for c in checks] == [
        "beacon_tip", "beacon_value", "pool_sorted", "pool_digest", "draw", "your_account",
    ]  # fmt: skip
    members = list(rnd["members"])  # type: ignore[call-overload]
    swapped = {**rnd, "members": [next(a for a in pool if a not in members), *members[1:]]}
    assert {c.name for c in recompute_draw(swapped, tip) if not c.ok} == {"draw"}
    wrong_value = {**rnd, "beacon_value": beacon.value(3).hex()}
    assert "beacon_value" in {c.name for c in recompute_draw(wrong_value, tip) if not c.ok}
    padded = {**rnd, "pool": [*pool[:-1]], "pool_size": len(pool) - 1}
    assert {"pool_digest"} <= {c.name for c in recompute_draw(padded, tip) if not c.ok}
    hidden = {**rnd, "pool": None}
    assert [c.name for c in recompute_draw(hidden, tip) if not c.ok] == ["pool"]


# ------------------------------------------------------------------------------------ install
BLOCK_SERVICE = (
    "import sys\n"
    "for m in ('boto3', 'botocore', 'pynamodb', 'aws_lambda_powertools'): sys.modules[m] = None\n"
    "from gpuproof.cli.ops import app\n"
    "app()\n"
)


def test_ops_without_the_service_extra_says_which_extra_in_one_line(tmp_path: Path) -> None:
    """`pip install .` (no extra): key and signed-API commands work; AWS ones name the extra."""
    environ = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'core'}:{ROOT}"}

    def ops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", BLOCK_SERVICE, *args], capture_output=True, text=True,
                              env=environ, timeout=120)  # fmt: skip

    assert ops("--version").returncode == 0
    made = ops("keygen", "--key", str(tmp_path / "op.key"), "--json")
    assert made.returncode == 0 and json.loads(made.stdout)["key_path"] == str(tmp_path / "op.key")
    stuck = ops("stuck", "--json")
    assert stuck.returncode == 2, stuck.stderr
    env_missing = json.loads(stuck.stdout)
    assert env_missing["code"] in ("not_configured", "extra_missing")
    redrive = subprocess.run(
        [sys.executable, "-c", BLOCK_SERVICE, "dlq", "list"], capture_output=True, text=True, timeout=120,
        env={**environ, "VERIFY_DLQ_URL": "http://x", "AWS_REGION": "us-east-1"},
    )  # fmt: skip
    assert redrive.returncode == 2 and "pip install '.[ops]'" in redrive.stderr
    assert "Traceback" not in redrive.stderr + stuck.stderr


def test_the_development_phrase_gives_subkeys_accounts() -> None:
    """Known vectors (`subkey inspect` of Substrate's development phrase): the phrase's mini secret
    is the seed for both schemes; `//Alice` is the well-known 5Grw… account."""
    from gpuproof.protocol.keys import Scheme
    from gpuproof.protocol.mnemonic import key_from_uri

    sr = key_from_uri(DEV_PHRASE, Scheme.sr25519)
    assert sr.public_hex == "46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a"
    ed = key_from_uri(DEV_PHRASE, Scheme.ed25519)
    assert ed.public_hex == "345071da55e5dccefaaa440339415ef9f2663338a38f7da0df21be5ab4e055ef"
    assert key_from_uri(f"  {DEV_PHRASE}//Alice\n", Scheme.sr25519).public_hex == ALICE_PUBLIC


def test_the_committee_agent_announces_each_new_draw_once(tmp_path: Path) -> None:
    from gpuproof.cli.member import CommitteeClient, MemberState, agent_tick

    now = time.time()
    booked = [{"machine_id": "ef" * 32, "round": 2, "status": "open", "phase": "reveal", "committed": False,
               "revealed": False, "commit_deadline": now + 60, "reveal_deadline": now + 120}]  # fmt: skip

    class Drawn(CommitteeClient):  # SERVICE TEST DOUBLE: the assignments the API would answer
        def assignments(self) -> list[dict[str, object]]:
            return booked

    client = Drawn(DEAD, SigningKey.generate())
    logs: list[str] = []
    announced: set[str] = set()
    state = MemberState(tmp_path / "votes.json")
    for _ in range(2):
        agent_tick(client, state, log=logs.append, announced=announced)
    assert len(logs) == 1 and logs[0].startswith(f"drawn for machine {'ef' * 32} round 2: commit by 20")
    assert "(in 1 min 00 s)" in logs[0] or "(in 59 s)" in logs[0]


def test_status_of_an_unknown_machine_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmark_probe.cli as cli
    from tests.unit.probe_service_double import FakeResponse

    class Unknown(FakeService):  # SERVICE TEST DOUBLE: the machine API's 404 for an unknown id
        def route(self, method: str, path: str, body: object, keyid: str) -> FakeResponse:
            return FakeResponse(404, {"code": "unknown_machine", "message": "no machine", "reasons": []})

    monkeypatch.setattr(cli, "ServiceClient", lambda api, k: ServiceClient(api, k, transport=Unknown()))
    key = tmp_path / "machine.key"
    SigningKey.generate().save(key)
    result = runner.invoke(probe_app, ["status", "--api", "https://api.example", "--key", str(key)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: machine {SigningKey.load(key).public_hex} is not registered; register it and send a "
        "report: benchmark-probe submit --owner SS58 --region REGION"
    ]
