"""`committee keygen`: a new member key (0600, never overwritten) or an existing DBC account imported
from its secret seed on stdin, checked against the account it must be (no network)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from typer.testing import CliRunner

from gpuproof.cli.committee import app
from gpuproof.protocol.keys import SigningKey

runner = CliRunner()
ALICE_SEED = "0xe5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a"  # subkey's //Alice
ALICE_ACCOUNT = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"


def test_keygen_writes_a_0600_member_key_once(tmp_path: Path) -> None:
    path = tmp_path / "committee.key"
    first = runner.invoke(app, ["keygen", "--key", str(path), "--json"])
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert doc["imported"] is False and SigningKey.load(path).public_hex == doc["account"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = runner.invoke(app, ["keygen", "--key", str(path), "--json"])
    assert again.exit_code == 4 and "refusing to overwrite" in json.loads(again.stdout)["error"]


def test_keygen_imports_a_dbc_account_and_checks_it(tmp_path: Path) -> None:
    path = tmp_path / "committee.key"
    args = ["keygen", "--key", str(path), "--scheme", "sr25519", "--import-seed", "--json"]
    wrong = runner.invoke(app, [*args, "--expect-account", "00" * 32], input=ALICE_SEED)
    assert wrong.exit_code == 4 and not path.exists()
    assert f"account is {ALICE_ACCOUNT}" in json.loads(wrong.stdout)["error"]
    ok = runner.invoke(app, [*args, "--expect-account", ALICE_ACCOUNT], input=ALICE_SEED + "\n")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["account"] == ALICE_ACCOUNT
    assert ALICE_SEED[2:] not in ok.output + wrong.output
    key = SigningKey.load(path)
    assert key.scheme.value == "sr25519" and key.public_hex == ALICE_ACCOUNT
