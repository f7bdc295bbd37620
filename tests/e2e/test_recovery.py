"""Faults around publication, through the local stack, a real local chain and the real handlers.

Each scenario ends with every verdict on chain exactly once (read back from the chain), every
machine's state agreeing with it, the verdict out of the Unsettled index, and PublisherDLQ holding
only what can never be published:

- the publisher killed (a BaseException: nothing cleans up, the idempotency record stays "in
  progress", as after SIGKILL) before submitting, after submitting, after inclusion (before the
  publication is recorded) and after recording (before the machine is marked); the stream's
  retry takes over at once;
- killed on every delivery, so the stream gives up: the reconciler (`gpuproof-ops reconcile`,
  and the sweeper's tick) repairs it;
- poison verdicts of each malformed kind in one stream batch with good ones;
- the chain down from the start: publication deferred (no DLQ), then handed back and published.

The kills here are in process (the test's own stack survives them). The real process kill is
tests/e2e/test_process_kill.py: the whole `python -m gpuproof.local` process SIGKILLed before
submitting, after submitting and after inclusion, a second stack started on the same moto and
chain node (each in a process of its own), with the same end conditions.
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from gpuproof.adapters.committee_store import _verdict_item
from gpuproof.adapters.tables import MachineModel, VerdictModel, bind
from gpuproof.chain.adapter import ChainSettings, SubstrateChain
from gpuproof.chain.consumer import scan_chain
from gpuproof.chain.publisher import faults
from gpuproof.chain.signer import public_key_from_der
from gpuproof.cli import ops
from gpuproof.local.chain import LocalChain, unavailable_reason
from gpuproof.local.stack import LocalStack
from gpuproof.logic.records import Verdict, VerdictResult
from tests.conftest import attached_chain
from tests.unit.test_chain_payload import INFO as DBC_VECTOR_INFO

pytestmark = pytest.mark.e2e

_REASON = unavailable_reason()
if _REASON is not None:
    warnings.warn(f"LOCAL CHAIN TESTS SKIPPED: {_REASON}", stacklevel=1)
    pytestmark = [pytest.mark.e2e, pytest.mark.skip(reason=f"LOCAL CHAIN UNAVAILABLE: {_REASON}")]

REGION = "us-east-1"


@pytest.fixture(scope="module")
def chain(local_stack: LocalStack, chain_node: LocalChain) -> Iterator[LocalChain]:
    """The session's node, a fresh chain again, the session stack publishing to it."""
    with attached_chain(local_stack, chain_node) as node:
        try:
            yield node
        finally:
            faults.disarm()


@pytest.fixture(scope="module")
def service_key(local_stack: LocalStack) -> bytes:
    kms = boto3.client("kms", endpoint_url=local_stack.endpoint_url, region_name=REGION)
    return public_key_from_der(
        bytes(kms.get_public_key(KeyId=local_stack.environment["SERVICE_KEY_ID"])["PublicKey"])
    )


@pytest.fixture()
def dlq(local_stack: LocalStack) -> Iterator[str]:
    url = local_stack.queue_url("PublisherDLQ")
    sqs = boto3.client("sqs", endpoint_url=local_stack.endpoint_url, region_name=REGION)
    local_stack.drain(60)
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in got:  # emptied by hand: PurgeQueue is allowed once a minute
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    yield url


def dlq_messages(stack: LocalStack, url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", endpoint_url=stack.endpoint_url, region_name=REGION)
    found: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get(
            "Messages", []
        )
        if not got:
            return found
        found += [json.loads(m["Body"]) for m in got]
        for m in got:  # read is consumed: a message left invisible would reappear in a later test
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def confirmed_machine(stack: LocalStack, result: str = "confirmed") -> Verdict:
    """A machine its committee just decided on, with its verdict written as the sweeper writes it."""
    bind(MachineModel, stack.table_name("MachinesTable"), REGION)
    bind(VerdictModel, stack.table_name("VerdictsTable"), REGION)
    mid = uuid.uuid4().hex + uuid.uuid4().hex
    now = time.time()
    MachineModel(
        mid, owner="5" + "x" * 47, region="europe", state=result, registered_at=now, updated_at=now
    ).save()
    verdict = Verdict(
        verdict_id=Verdict.id_for(mid, 1),
        machine_id=mid,
        round=1,
        result=VerdictResult(result),
        upload_info={**DBC_VECTOR_INFO, "machine_id": mid, "is_support": result == "confirmed"},
        committee=[{"account": f"{n}" * 64, "vote": "agreeing"} for n in (1, 2, 3)],
        performance_index=1.01,
        evidence_digest="ab" * 32,
        decided_at=now,
    )
    _verdict_item(verdict).save()
    return verdict


def copies_on_chain(chain: LocalChain, key: bytes, machine_id: str) -> int:
    reader = SubstrateChain(ChainSettings(node_url=chain.url), "//reader")
    try:
        batches = list(scan_chain(reader, {key}))
    finally:
        reader.close()
    assert all(b.ok for b in batches), [b.problems for b in batches if not b.ok]
    return sum(
        1 for b in batches for v in b.verdicts if v["upload_info"]["machine_id"] == machine_id.encode()
    )


def assert_converged(stack: LocalStack, chain: LocalChain, key: bytes, verdict: Verdict) -> None:
    item = VerdictModel.get(verdict.verdict_id, consistent_read=True)
    assert (item.publication or {}).get("status") == "published", item.publication
    assert copies_on_chain(chain, key, verdict.machine_id) == 1
    assert MachineModel.get(verdict.machine_id, consistent_read=True).state == "published"
    assert item.outbox is None and item.outbox_at is None, "settled: out of the Unsettled index"


def cli_json(output: str) -> Any:
    """The command's JSON document (the stack's own log lines can share the captured stdout)."""
    lines = output.splitlines()
    start = lines.index("{")
    return json.loads("\n".join(lines[start : lines.index("}", start) + 1]))


@pytest.mark.parametrize("point", ["before_submit", "after_submit", "before_record", "before_mark"])
def test_killed_mid_publication_the_retry_takes_over(
    local_stack: LocalStack, chain: LocalChain, service_key: bytes, dlq: str, point: str
) -> None:
    publisher = local_stack.function("ChainPublisherFunction")
    before, errors = publisher.invocations, publisher.errors
    faults.arm(point, kill=True)
    verdict = confirmed_machine(local_stack)
    local_stack.drain(90)
    assert publisher.invocations - before >= 2, "the killed invocation and its retry"
    assert repr(publisher.last_error) == f"InjectedKill({point!r})"
    assert publisher.errors - errors == 1, "only the killed invocation failed: the retry took over"
    assert_converged(local_stack, chain, service_key, verdict)
    assert dlq_messages(local_stack, dlq) == []


def test_killed_on_every_delivery_the_reconciler_repairs(
    local_stack: LocalStack, chain: LocalChain, service_key: bytes, dlq: str
) -> None:
    """The stream gives up (6 deliveries, each killed after recording): the verdict is on chain,
    its machine still `confirmed` — the issue's stranded machine. The reconciler marks it."""
    faults.arm("before_mark", times=6, kill=True)
    verdict = confirmed_machine(local_stack)
    local_stack.drain(90)
    faults.disarm()
    assert (VerdictModel.get(verdict.verdict_id).publication or {}).get("status") == "published"
    assert MachineModel.get(verdict.machine_id, consistent_read=True).state == "confirmed"
    (gave_up,) = dlq_messages(local_stack, dlq)  # Lambda's on-failure record of the stream batch
    assert gave_up["requestContext"]["condition"] == "RetryAttemptsExhausted"

    runner = CliRunner()  # --grace 0 here; the stack's own sweeper keeps its 300 s meanwhile
    dry = runner.invoke(ops.app, ["reconcile", "--grace", "0", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    planned = {(r["kind"], r["verdict_id"]) for r in cli_json(dry.stdout)["repairs"]}
    assert ("machine_marked", verdict.verdict_id) in planned
    assert MachineModel.get(verdict.machine_id, consistent_read=True).state == "confirmed"  # dry: no change

    done = runner.invoke(ops.app, ["reconcile", "--grace", "0", "--json"])
    assert done.exit_code == 0, done.output
    assert ("machine_marked", verdict.verdict_id) in {
        (r["kind"], r["verdict_id"]) for r in cli_json(done.stdout)["repairs"]
    }
    local_stack.drain(60)
    assert_converged(local_stack, chain, service_key, verdict)
    again = cli_json(runner.invoke(ops.app, ["reconcile", "--grace", "0", "--dry-run", "--json"]).stdout)
    assert verdict.verdict_id not in {r["verdict_id"] for r in again["repairs"]}


def _poison(stack: LocalStack, **raw: dict[str, str]) -> str:
    """A verdict item as a hand edit or an older writer could leave it (raw DynamoDB attributes)."""
    vid = f"{uuid.uuid4().hex * 2}:1"
    item = {
        "verdict_id": {"S": vid},
        "machine_id": {"S": vid.split(":")[0]},
        "round": {"N": "1"},
        "result": {"S": "confirmed"},
        "upload_info": {"S": json.dumps({"machine_id": vid.split(":")[0]})},
        "committee": {"S": "[]"},
        "evidence_digest": {"S": "ab" * 32},
        "decided_at": {"N": str(time.time())},
        "outbox": {"S": "open"},
        "outbox_at": {"N": str(time.time())},
    }
    for name, value in raw.items():
        if value:
            item[name] = value
        else:
            item.pop(name)
    ddb = boto3.client("dynamodb", endpoint_url=stack.endpoint_url, region_name=REGION)
    ddb.put_item(TableName=stack.table_name("VerdictsTable"), Item=item)
    return vid


def test_poison_verdicts_fail_alone_and_never_break_the_tools(
    local_stack: LocalStack, chain: LocalChain, service_key: bytes, dlq: str
) -> None:
    good = [confirmed_machine(local_stack) for _ in range(2)]
    poison = {
        "invalid JSON in upload_info": _poison(local_stack, upload_info={"S": '{"machine_id": "ab'}),
        "missing decided_at": _poison(local_stack, decided_at={}),
        "not encodable": _poison(local_stack, evidence_digest={"S": "zz"}),
    }
    good += [confirmed_machine(local_stack) for _ in range(2)]
    local_stack.drain(90)
    for v in good:
        assert_converged(local_stack, chain, service_key, v)

    messages = dlq_messages(local_stack, dlq)
    assert sorted(m["verdict_id"] for m in messages) == sorted(poison.values()), "one each, nothing else"
    assert {m["kind"] for m in messages} == {"malformed_verdict"}
    by_id = {m["verdict_id"]: m for m in messages}
    assert "upload_info is not valid JSON" in " ".join(
        by_id[poison["invalid JSON in upload_info"]]["reasons"]
    )
    assert "decided_at is missing" in by_id[poison["missing decided_at"]]["reasons"]
    for vid in poison.values():
        assert VerdictModel.get(vid, attributes_to_get=["outbox"]).outbox == "malformed"

    runner = CliRunner()
    for args in (["republish", "--older-than", "0", "--dry-run"], ["reconcile", "--grace", "0", "--dry-run"]):
        result = runner.invoke(ops.app, [*args, "--json"])
        assert result.exit_code == 0 and result.exception is None, result.output
        doc = cli_json(result.stdout)
        lines = doc["malformed"] if args[0] == "republish" else doc["set_aside"]
        for vid in poison.values():
            (line,) = [line for line in lines if line.startswith(vid)]
            assert "\n" not in line and "malformed verdict" in line
    plain = runner.invoke(ops.app, ["republish", "--older-than", "0", "--dry-run"])
    assert plain.exit_code == 0 and "Traceback" not in plain.output, plain.output


def test_chain_down_at_start_publication_is_deferred_then_handed_back(
    local_stack: LocalStack, chain: LocalChain, service_key: bytes, dlq: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Last in the module: the node comes back as a fresh chain from genesis (same port)."""
    monkeypatch.setenv("CHAIN_RETRY_BUDGET_S", "2")
    chain.stop()
    verdicts = [confirmed_machine(local_stack) for _ in range(3)]
    local_stack.drain(60)
    for v in verdicts:
        item = VerdictModel.get(v.verdict_id, consistent_read=True)
        assert item.publication is None and item.outbox == "open"
        assert MachineModel.get(v.machine_id, consistent_read=True).state == "confirmed"
    assert dlq_messages(local_stack, dlq) == [], "deferred, not dead-lettered: it can be published"

    chain.start()
    monkeypatch.setenv("RECONCILE_GRACE_S", "0")  # the sweeper's next tick hands them back
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        local_stack.drain(60)
        states = {MachineModel.get(v.machine_id, consistent_read=True).state for v in verdicts}
        if states == {"published"}:
            break
        time.sleep(0.5)
    for v in verdicts:
        assert_converged(local_stack, chain, service_key, v)
    assert dlq_messages(local_stack, dlq) == []
