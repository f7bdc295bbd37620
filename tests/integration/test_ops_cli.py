"""`gpuproof-ops` against a moto server of its own (template.yaml's tables and queues): the
deployed stack's outputs read by `--stack-name` (CloudFormation DescribeStacks: a moto
cloudformation stack whose Outputs name the provisioned resources, the shape `sam deploy` leaves),
`dlq list`, `dlq redrive`, `stuck`, and one-line errors when the environment is missing.

The CLI runs as an operator runs it, in a process of its own (the environment a deployed stack's
outputs give it stays there), on resources of its own names: moto's servers in one process share
one backend, and the session's stack (its functions in this process) must neither see this test's
machines and DLQ messages nor have its own left here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from gpuproof.adapters.tables import MachineModel
from gpuproof.cli.stack import STACK_ENV
from gpuproof.local.moto_server import MotoServer, aws_environment
from gpuproof.local.template import LOCAL_REGION, Resources, load_template, provision

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STACK = "gpuproof-ops-test"
# Only what a Python process needs (nothing of the session's table or queue variables).
_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
_ENDPOINT: list[str] = []


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_ops(*args: str) -> Result:
    """`gpuproof-ops ARGS` in its own process, with only the local endpoint's credentials."""
    env = {k: v for k, v in os.environ.items() if k in _KEEP}
    env.update(aws_environment(_ENDPOINT[-1]))
    env["COLUMNS"] = "200"
    done = subprocess.run(
        [sys.executable, "-c", "from gpuproof.cli.ops import app; app()", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def aws() -> Iterator[tuple[str, Resources]]:
    server = MotoServer().start()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in aws_environment(server.endpoint_url).items():
            mp.setenv(key, value)
        for variable in STACK_ENV.values():  # nothing but the stack tells the CLI where things are
            assert variable not in _KEEP
        resources = provision(
            load_template(ROOT / "template.yaml"), server.endpoint_url, stack_name="gpuproof-opscli"
        )
        outputs = {
            "VerifyQueueUrl": resources.queue_url("VerifyQueue"),
            "VerifyDLQUrl": resources.queue_url("VerifyDLQ"),
            "PublisherDLQUrl": resources.queue_url("PublisherDLQ"),
            "MachinesTableName": resources.table_name("MachinesTable"),
            "VerdictsTableName": resources.table_name("VerdictsTable"),
        }
        body = {
            "Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
        cfn = boto3.client("cloudformation", region_name=LOCAL_REGION, endpoint_url=server.endpoint_url)
        cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(body))
        _ENDPOINT.append(server.endpoint_url)
        try:
            yield server.endpoint_url, resources
        finally:
            _ENDPOINT.pop()
            server.stop()


def ops(*args: str) -> Any:
    return run_ops("--stack-name", STACK, "--region", LOCAL_REGION, *args)


def sqs(endpoint: str) -> Any:
    return boto3.client("sqs", region_name=LOCAL_REGION, endpoint_url=endpoint)


def test_without_the_stack_a_missing_table_is_one_line(aws: tuple[str, Resources]) -> None:
    result = run_ops("stuck", "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["code"] == "not_configured" and "MACHINES_TABLE not set" in doc["error"]
    human = run_ops("dlq", "list")
    assert human.exit_code == 2 and len(human.stderr.strip().splitlines()) == 1


def test_an_unknown_stack_is_one_line(aws: tuple[str, Resources]) -> None:
    result = run_ops("--stack-name", "no-such-stack", "--region", LOCAL_REGION, "stuck")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: stack 'no-such-stack': ValidationError: Stack with id no-such-stack does not exist"
    ]


def test_dlq_list_and_redrive_through_the_stack_outputs(aws: tuple[str, Resources]) -> None:
    endpoint, resources = aws
    client = sqs(endpoint)
    dlq, source = resources.queue_url("VerifyDLQ"), resources.queue_url("VerifyQueue")
    bodies = [json.dumps({"machine_id": f"{i:02d}" * 32, "challenge_id": f"ch-{i}"}) for i in range(3)]
    for body in bodies:
        client.send_message(QueueUrl=dlq, MessageBody=body)
    listed = ops("dlq", "list", "--json")
    assert listed.exit_code == 0, listed.output
    doc = json.loads(listed.stdout)
    assert doc["depth"] == 3 and sorted(m["body"] for m in doc["messages"]) == sorted(bodies)
    human = ops("dlq", "list")
    assert "verify DLQ: 3 message(s)" in human.stdout and "challenge_id=ch-1" in human.stdout
    assert "gpuproof-ops dlq redrive" in human.stdout
    dry = ops("dlq", "redrive", "--dry-run", "--json")
    assert json.loads(dry.stdout)["count"] == 3
    moved = ops("dlq", "redrive", "--json")
    assert moved.exit_code == 0, moved.output
    assert len(json.loads(moved.stdout)["moved"]) == 3
    received = client.receive_message(QueueUrl=source, MaxNumberOfMessages=10).get("Messages", [])
    assert sorted(m["Body"] for m in received) == sorted(bodies)
    attrs = client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_stuck_lists_waiting_machines_with_why(aws: tuple[str, Resources]) -> None:
    _endpoint, resources = aws
    # Written with the low-level client: binding the model to this table would move the session
    # stack's functions (this process) onto it too.
    ddb = boto3.client("dynamodb", region_name=LOCAL_REGION, endpoint_url=_endpoint)
    table = resources.table_name("MachinesTable")
    now = time.time()
    rows = {
        "aa" * 32: ("disputed", now - 7200, [{"code": "committee_disputed", "message": "gpu_mem: 80 vs 40"}]),
        "bb" * 32: ("auto_verified", now - 3600, None),
        "cc" * 32: ("auto_verified", now - 5, None),  # too recent
        "dd" * 32: ("refused", now - 9000, None),  # not waiting: a verdict
    }
    for machine_id, (state, updated, reasons) in rows.items():
        item = MachineModel(
            machine_id, owner="o", region="europe", state=state, registered_at=updated, updated_at=updated,
            state_reasons=reasons,
        ).serialize()  # fmt: skip
        ddb.put_item(TableName=table, Item=item)
    result = ops("stuck", "--older-than", "600", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["stuck"]
    assert [(s["machine_id"], s["state"]) for s in found] == [
        ("aa" * 32, "disputed"),
        ("bb" * 32, "auto_verified"),
    ]
    assert found[0]["why"] == ["committee_disputed: gpu_mem: 80 vs 40"]
    assert "fewer eligible, admitted members" in found[1]["why"][0]
    human = ops("stuck")
    assert "2 machine(s) waiting longer than 10 min 00 s" in human.stdout
    assert f"{'aa' * 32}  disputed since " in human.stdout and "UTC" in human.stdout
