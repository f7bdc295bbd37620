"""The local stack runs the template's handlers: HTTP front routes, SQS redrive, stream and schedule."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.e2e


def call(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def test_feed_route_reaches_its_handler(local_stack: Any) -> None:
    before = local_stack.function("ScoreFeedFunction").invocations
    status, headers, body = call(local_stack.api_url + "/feed")
    assert status == 200
    doc = json.loads(body)
    assert set(doc) == {"service_key", "batches", "next"}
    assert doc["service_key"].startswith("0x")
    assert headers["content-type"].startswith("application/json")
    assert local_stack.function("ScoreFeedFunction").invocations == before + 1


def test_committee_route_with_path_parameters(local_stack: Any) -> None:
    status, _, body = call(local_stack.api_url + "/rounds/abc/1/commit", "POST", b"{}")
    assert status == 401  # reached the committee handler, which refuses an unsigned POST
    assert json.loads(body)["code"] == "signature_missing"


def test_unknown_route_is_404_json(local_stack: Any) -> None:
    status, _, body = call(local_stack.api_url + "/no/such/route")
    assert status == 404
    assert json.loads(body)["code"] == "route_not_found"
    status, _, _ = call(local_stack.api_url + "/feed", "DELETE")
    assert status == 404


def test_body_over_10_mib_is_413(local_stack: Any) -> None:
    status, _, _ = call(local_stack.api_url + "/members", "POST", b"x" * (10 * 1024 * 1024 + 1))
    assert status == 413


def test_sqs_poller_redrives_a_poison_message_to_the_dlq(local_stack: Any) -> None:
    """A body the verify worker cannot read fails its record; after maxReceiveCount it lands in the DLQ."""
    sqs = __import__("boto3").client("sqs", endpoint_url=local_stack.endpoint_url, region_name="us-east-1")
    marker = f"not json {uuid.uuid4()}"
    worker = local_stack.function("VerifyWorkerFunction")
    before = worker.invocations
    sqs.send_message(QueueUrl=local_stack.queue_url("VerifyQueue"), MessageBody=marker)
    found: list[str] = []

    def in_dlq() -> bool:
        for m in sqs.receive_message(
            QueueUrl=local_stack.queue_url("VerifyDLQ"), MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", []):
            found.append(m["Body"])
        return marker in found

    wait_for(in_dlq, timeout=20)
    assert worker.invocations - before >= 5  # maxReceiveCount deliveries, each one failed
    local_stack.drain()


def test_stream_poller_delivers_verdict_records(local_stack: Any) -> None:
    ddb = __import__("boto3").client(
        "dynamodb", endpoint_url=local_stack.endpoint_url, region_name="us-east-1"
    )
    publisher = local_stack.function("ChainPublisherFunction")
    before, errors_before = publisher.invocations, publisher.errors  # chain tests inject failures
    ddb.put_item(
        TableName=local_stack.table_name("VerdictsTable"),
        Item={"verdict_id": {"S": f"test-{uuid.uuid4()}"}, "outcome": {"S": "confirmed"}},
    )
    wait_for(lambda: publisher.invocations > before)
    local_stack.drain()
    assert publisher.errors == errors_before


def test_schedule_ticks_the_sweeper(local_stack: Any) -> None:
    sweeper = local_stack.function("DeadlineSweeperFunction")
    before = sweeper.invocations
    wait_for(lambda: sweeper.invocations > before, timeout=5)
    assert sweeper.errors == 0


def test_sample_events_run_through_the_handlers(local_stack: Any) -> None:
    from pathlib import Path

    events = Path(__file__).resolve().parents[2] / "events"
    feed = local_stack.invoke(
        "ScoreFeedFunction", json.loads((events / "score_feed_get_feed.json").read_text())
    )
    assert feed["statusCode"] == 200
    swept = local_stack.invoke(
        "DeadlineSweeperFunction", json.loads((events / "deadline_sweeper_schedule.json").read_text())
    )
    assert swept["implemented"] is True
    published = local_stack.invoke(
        "ChainPublisherFunction", json.loads((events / "chain_publisher_stream.json").read_text())
    )
    assert published == {"batchItemFailures": []}
    # The signed sample registration is years old by now: refused before anything is parsed.
    registered = local_stack.invoke(
        "MachineApiFunction", json.loads((events / "machine_api_register_machine.json").read_text())
    )
    assert registered["statusCode"] == 401 and json.loads(registered["body"])["code"] == "timestamp_stale"
