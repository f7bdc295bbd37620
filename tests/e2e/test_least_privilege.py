"""Least privilege, measured: the AWS calls every function made in this session against its grants.

tests/conftest.py hooks every botocore client (gpuproof.local.aws_calls) before the first test; the
local runtime attributes each call to the function whose handler made it, `python -m gpuproof.local`
children (tests/e2e/production_stack.py) leave theirs in the session's folder, and a CLI that runs
with a function's role is recorded as that function (`acting_as`). This test runs last and fails on
any call the template does not grant and on any grant no call used (or used only as a narrower
policy template allows). It compares only after every integration and e2e test ran and passed:
with part of the suite the record is partial and the test skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpuproof.local import aws_calls
from gpuproof.local.iam import compare, grants
from gpuproof.local.template import FUNCTION, load_template
from tests.conftest import CALL_RECORD

ROOT = Path(__file__).resolve().parents[2]

# Grants that only a path the tests do not reach needs: (function, grant) -> why it stays.
UNEXERCISED: dict[tuple[str, str], str] = {
    # (The verify worker's GPU UUID claims and the exit's releases are measured: machines of the
    # TEST DOUBLE GPU model hold GPU UUIDs, tests/e2e/test_gpu_path.py.)
    ("DeadlineSweeperFunction", "DynamoDBCrudPolicy GpuUuidsTable"): (
        "a machine revoked for staying offline releases its GPU UUIDs with conditional DeleteItems "
        "(adapters/dynamo.py revoke); the machines the suite lets go offline are CPU-backed and hold none"
    ),
}


def _record() -> set[aws_calls.Call]:
    recorder = aws_calls.Recorder()
    for path in sorted(CALL_RECORD.child_dir.glob("*.json")):
        recorder.load(path)
    return recorder.calls() | aws_calls.recorder.calls()


@pytest.mark.least_privilege
def test_every_call_is_granted_and_every_grant_is_used(request: pytest.FixtureRequest) -> None:
    this = request.node.nodeid
    others = CALL_RECORD.collected - {this}
    expected = {
        str(p.relative_to(ROOT))
        for folder in ("tests/integration", "tests/e2e")
        for p in (ROOT / folder).glob("test_*.py")
    }
    ran = {nodeid.split("::", 1)[0] for nodeid in others}
    if expected - ran or CALL_RECORD.deselected:
        pytest.skip(f"the record needs every integration and e2e test; not run: {sorted(expected - ran)}")
    if CALL_RECORD.not_passed:
        pytest.skip(f"the record is partial: {sorted(CALL_RECORD.not_passed)[:5]} did not pass")
    template = load_template(ROOT / "template.yaml")
    functions = sorted(template.of_type(FUNCTION))
    calls = _record()
    if os.environ.get("GPUPROOF_AWS_CALLS_OUT"):  # to read the record: where to write it
        Path(os.environ["GPUPROOF_AWS_CALLS_OUT"]).write_text(
            "\n".join(f"{c.function} {c.action} {c.resource}" for c in sorted(calls)) + "\n"
        )
    assert {c.function for c in calls} == set(functions), "every function ran and made AWS calls"
    result = compare(template, calls, functions, UNEXERCISED)
    assert not result.findings, "\n".join(result.findings)


def test_the_allow_list_names_real_grants() -> None:
    """An allow-listed grant exists in the template and says why it stays."""
    template = load_template(ROOT / "template.yaml")
    for (function, source), why in UNEXERCISED.items():
        assert source in {g.source for g in grants(template, function)}, (function, source)
        assert len(why) > 20, why


def test_a_grant_never_used_and_a_call_not_granted_are_both_found() -> None:
    """The comparison can fail: a recorded call outside every grant, and a grant with no call."""
    template = load_template(ROOT / "template.yaml")
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/"
    calls = {
        aws_calls.Call("ScoreFeedFunction", "dynamodb:Query", table + "PublishedBatchesTable"),
        aws_calls.Call("ScoreFeedFunction", "dynamodb:PutItem", table + "PublishedBatchesTable"),
    }
    findings = compare(template, calls, ["ScoreFeedFunction"]).findings
    assert any("dynamodb:PutItem" in f and "not granted" in f for f in findings), findings
    assert any("kms:GetPublicKey" in f and "never used" in f for f in findings), findings


def test_crud_where_read_would_do_is_found() -> None:
    template = load_template(ROOT / "template.yaml")
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/"
    calls = {aws_calls.Call("MachineApiFunction", "dynamodb:GetItem", table + "MachinesTable")}
    findings = compare(template, calls, ["MachineApiFunction"]).findings
    assert (
        "MachineApiFunction: DynamoDBCrudPolicy MachinesTable is used only as DynamoDBReadPolicy would allow"
        in findings
    )
