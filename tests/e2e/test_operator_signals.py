"""What an operator sees (issue 14 §4): the metrics and ERROR lines the functions emit on the local
stack, read from the process's own stdout as CloudWatch would (EMF records and Powertools JSON).

- a refused API request counts `Refusals` with its reason code as the dimension;
- a chain that cannot be reached makes the publisher back off (`PublicationRetries`, a WARNING
  per retry), then give up with ERROR lines whose correlation id is the verdict's id, count
  `PublicationFailures`, and defer the verdict (unpublished, for the reconciler; not PublisherDLQ).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests

from gpuproof import observability
from gpuproof.local.stack import LocalStack
from tests.e2e.test_chain import publication, write_verdict

pytestmark = pytest.mark.e2e


def records(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def metric_values(recs: list[dict[str, Any]], name: str, **dims: str) -> list[float]:
    """Values of EMF metric `name` whose record carries these dimensions."""
    found: list[float] = []
    for r in recs:
        directives = r.get("_aws", {}).get("CloudWatchMetrics", [])
        if not any(m["Name"] == name for d in directives for m in d["Metrics"]):
            continue
        if all(r.get(k) == v for k, v in dims.items()):
            value = r[name]
            found.extend(value if isinstance(value, list) else [value])
    return found


def test_a_refused_request_counts_its_reason(
    local_stack: LocalStack, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    answer = requests.post(f"{local_stack.api_url}/machines", data=b"{}", timeout=30)  # unsigned
    assert answer.status_code in (400, 401)
    code = answer.json()["code"]
    recs = records(capfd.readouterr().out)
    assert metric_values(recs, observability.REFUSALS, reason=code, service="gpuproof") == [1.0]


class JsonLines(logging.Handler):
    """The service logger's lines as CloudWatch gets them: Powertools' JSON, formatted when emitted
    (the correlation id is the invocation's at that moment)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        service = logging.getLogger("gpuproof")
        self.json = next(h.formatter for h in service.handlers if h.formatter is not None)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.json.format(record)))


@pytest.fixture
def service_log(local_stack: LocalStack) -> Iterator[JsonLines]:
    handler = JsonLines()
    service = logging.getLogger("gpuproof")
    service.addHandler(handler)
    try:
        yield handler
    finally:
        service.removeHandler(handler)


def _empty(sqs: Any, url: str) -> int:
    """Receive and delete every message; how many there were."""
    n = 0
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        n += len(messages)
    return n


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_chain_is_logged_counted_and_deferred(
    local_stack: LocalStack,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    service_log: JsonLines,
) -> None:
    sqs = boto3.client("sqs", endpoint_url=local_stack.endpoint_url, region_name="us-east-1")
    dlq = local_stack.queue_url("PublisherDLQ")
    _empty(sqs, dlq)  # not PurgeQueue: one purge a minute per queue, and test_chain purges too
    monkeypatch.setenv("CHAIN_NODE_URL", f"ws://127.0.0.1:{_dead_port()}")
    monkeypatch.setenv("CHAIN_RETRY_BUDGET_S", "2")
    capfd.readouterr()
    vid = write_verdict(local_stack)
    local_stack.drain(120)
    recs = records(capfd.readouterr().out)  # EMF: printed
    lines = service_log.lines

    assert sum(metric_values(recs, observability.PUBLICATION_RETRIES, service="gpuproof")) >= 1
    assert sum(metric_values(recs, observability.PUBLICATION_FAILURES, service="gpuproof")) >= 1
    retried = [r for r in lines if r.get("message") == "chain publication retried"]
    assert retried and all(r["level"] == "WARNING" and vid in r["verdict_ids"] for r in retried)
    errors = [r for r in lines if r.get("level") == "ERROR" and r.get("correlation_id") == vid]
    assert any(r["message"].startswith("publication failed") for r in errors), lines[-5:]
    # Deferred, not sent to PublisherDLQ: the verdict waits unpublished for the reconciler.
    assert any(r["message"].startswith("publication deferred") for r in errors), lines[-5:]
    assert not publication(vid)
    _empty(sqs, dlq)
