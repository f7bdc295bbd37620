"""Poison records on the VerifyQueue (issue 14, "Done when"): each malformed kind (not JSON, a field
missing, a machine nobody registered) fails alone, with an ERROR line naming its message, and ends
in VerifyDLQ after maxReceiveCount deliveries (the DLQ-depth alarm's signal); a good report in the
same batch is verified at once (Powertools Batch partial failure)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from benchmark_probe.integrity import collect_integrity
from benchmark_probe.proof import prove
from benchmark_probe.report import build_report
from gpuproof.local.stack import LocalStack
from gpuproof.protocol.proof import NumpyExecutor
from tests.e2e.test_operator_signals import JsonLines
from tests.e2e.test_proof_flow import new_machine, take_challenge

pytestmark = pytest.mark.e2e

WAIT_S = 120.0


@pytest.fixture
def service_log(local_stack: LocalStack) -> Iterator[JsonLines]:
    handler = JsonLines()
    service = logging.getLogger("gpuproof")
    service.addHandler(handler)
    try:
        yield handler
    finally:
        service.removeHandler(handler)


def _wait(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_poison_verify_records_fail_alone_and_end_in_the_dlq(
    local_stack: LocalStack, service_log: JsonLines
) -> None:
    sqs = boto3.client("sqs", endpoint_url=local_stack.endpoint_url, region_name="us-east-1")
    queue, dlq = local_stack.queue_url("VerifyQueue"), local_stack.queue_url("VerifyDLQ")
    local_stack.drain(WAIT_S)
    tag = uuid.uuid4().hex
    poison = {
        "not_json": f"not json {tag}",
        "field_missing": json.dumps({"machine_id": "ab" * 32, "tag": tag}),
        "unknown_machine": json.dumps({"machine_id": "cd" * 32, "challenge_id": tag}),
    }
    worker = local_stack.function("VerifyWorkerFunction")
    real = worker.handler
    batches: list[list[str]] = []
    entered, release = threading.Event(), threading.Event()

    def watched(event: Any, context: Any) -> Any:
        bodies = [r["body"] for r in event["Records"]]
        batches.append(bodies)
        if not entered.is_set():
            entered.set()  # the first batch holds the worker until the rest is queued
            release.wait(WAIT_S)
        return real(event, context)

    worker.handler = watched
    try:
        sqs.send_message(QueueUrl=queue, MessageBody=poison["not_json"])
        assert entered.wait(WAIT_S)
        # While the worker is held: an honest report (its message queued by the API) and the
        # other poison records wait in the queue together.
        key, client, inventory = new_machine(local_stack)
        challenge = take_challenge(client, key, inventory)
        proof = prove(client, key, challenge, NumpyExecutor())
        assert proof is not None
        signed = build_report(
            key, challenge, inventory, [], collect_integrity(), proof.model_dump(mode="json")
        )
        client.submit_report(key.public_hex, challenge.challenge_id, signed.model_dump(mode="json"))
        for kind in ("field_missing", "unknown_machine"):
            sqs.send_message(QueueUrl=queue, MessageBody=poison[kind])
        release.set()

        def good_in_a_batch_with_poison() -> bool:
            return any(
                any(challenge.challenge_id in b for b in batch) and any(p in batch for p in poison.values())
                for batch in batches
            )

        _wait(good_in_a_batch_with_poison, "the honest report never shared a batch with a poison record")
        dead: list[str] = []

        def all_dead() -> bool:
            got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
            for m in got:
                dead.append(m["Body"])
                sqs.delete_message(QueueUrl=dlq, ReceiptHandle=m["ReceiptHandle"])
            return sorted(b for b in dead if tag in b) == sorted(poison.values())

        _wait(all_dead, "the poison records did not all reach VerifyDLQ")
    finally:
        release.set()
        worker.handler = real
    local_stack.drain(WAIT_S)

    # The good report was verified in the batch it shared with poison (one verification, passed).
    status = client.machine(key.public_hex)
    (report,) = status["reports"]
    assert report["verification"]["passed"] is True
    # Nothing else of this test is in the DLQ (each poison record once), nor left in the queue.
    assert sorted(b for b in dead if tag in b) == sorted(poison.values())
    # An ERROR line for every failed delivery of every poison record, with its message id.
    errors = [line for line in service_log.lines if line["level"] == "ERROR"]
    failed_ids = {line.get("message_id") for line in errors if "verification failed" in line["message"]}
    assert len(failed_ids) >= len(poison), errors
