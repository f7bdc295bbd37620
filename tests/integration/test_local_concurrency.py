"""The local stack under load behaves like Lambda behind API Gateway (issue 14 §3).

- Functions run concurrently: a publisher invocation held inside its handler (a hung chain node)
  holds up neither the API nor the verify worker (events and barriers, no timing thresholds).
- A burst of 50 simultaneous connections is served (the front's listen backlog).
- A method outside the API (TRACE, CONNECT, ...) and a request that does not parse get the API's
  JSON error, never http.server's HTML page.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from gpuproof.local.front import HttpFront
from gpuproof.protocol.keys import SigningKey
from tests.e2e.api_client import RawApi

pytestmark = pytest.mark.e2e

EVENTS = Path(__file__).resolve().parents[2] / "events"
WAIT_S = 60.0  # how long a test waits for an event that must come (a failure, not a threshold)
CONNECT_WAIT_S = 20.0


def _host_port(url: str) -> tuple[str, int]:
    split = urlsplit(url)
    assert split.hostname is not None and split.port is not None
    return split.hostname, split.port


@pytest.fixture
def held_publisher(local_stack: Any) -> Iterator[tuple[threading.Event, threading.Event]]:
    """The publisher's handler, entered and then held until `release` is set (a chain node that
    hangs); yields (entered, release). The real handler runs once released."""
    fn = local_stack.function("ChainPublisherFunction")
    real = fn.handler
    entered, release = threading.Event(), threading.Event()

    def hanging(event: Any, context: Any) -> Any:
        entered.set()
        release.wait(WAIT_S)
        return real(event, context)

    fn.handler = hanging
    try:
        yield entered, release
    finally:
        release.set()
        fn.handler = real


def test_a_held_publisher_blocks_neither_the_api_nor_the_verify_worker(
    local_stack: Any, held_publisher: tuple[threading.Event, threading.Event]
) -> None:
    entered, release = held_publisher
    publisher = local_stack.function("ChainPublisherFunction")
    worker = local_stack.function("VerifyWorkerFunction")
    result: dict[str, Any] = {}

    sample = json.loads((EVENTS / "chain_publisher_stream.json").read_text())

    def publish() -> None:
        result["published"] = local_stack.invoke("ChainPublisherFunction", sample)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    assert entered.wait(WAIT_S), "the publisher was never invoked"

    # While the publisher is held: a signed registration (machine API) and a feed read are served...
    api = RawApi(local_stack.api_url)
    key = SigningKey.generate()
    assert api.register(key).status == 201
    assert api.send("GET", f"/machines/{key.public_hex}").status == 200
    assert api.send("GET", "/feed").status == 200
    # ... and the verify worker takes a record off its queue (a poison one: it fails, is retried).
    before = worker.invocations
    sqs = boto3.client("sqs", endpoint_url=local_stack.endpoint_url, region_name="us-east-1")
    sqs.send_message(QueueUrl=local_stack.queue_url("VerifyQueue"), MessageBody=f"not json {uuid.uuid4()}")
    deadline = time.monotonic() + WAIT_S
    while worker.invocations == before:
        assert time.monotonic() < deadline, "the verify worker was not invoked while the publisher was held"
        time.sleep(0.05)
    # All of it while the publisher's invocation was still inside its handler.
    assert publisher.busy and not release.is_set() and "published" not in result

    release.set()
    thread.join(WAIT_S)
    assert result["published"] == {"batchItemFailures": []}
    local_stack.drain(timeout=60)


def test_fifty_connections_at_once_wait_in_the_backlog_and_are_all_served(local_stack: Any) -> None:
    """50 machines connecting at once, before the front has accepted any: the kernel completes
    every handshake into the listen backlog (a backlog of 5 leaves the 7th connect hanging), and
    once the front runs each one is answered by the machine API's handler."""
    count = 50
    front = HttpFront(local_stack.front._server.router)  # listening, not yet accepting
    host, port = _host_port(front.url)
    conns: list[socket.socket] = []
    try:
        for _ in range(count):
            # Completes at once into the backlog; a full backlog drops the SYN and this times out.
            conns.append(socket.create_connection((host, port), timeout=CONNECT_WAIT_S))
            conns[-1].settimeout(WAIT_S)
        front.start()
        request = f"GET /machines/{'ab' * 32} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
        for c in conns:
            c.sendall(request.encode())
        replies = []
        for c in conns:
            raw = b""
            while chunk := c.recv(65536):
                raw += chunk
            head, _, body = raw.partition(b"\r\n\r\n")
            replies.append((head.split(b" ", 2)[1], json.loads(body)["code"]))
    finally:
        for c in conns:
            c.close()
        front.stop()
    assert replies == [(b"404", "unknown_machine")] * count


def test_fifty_simultaneous_requests_are_all_served(local_stack: Any) -> None:
    host, port = _host_port(local_stack.api_url)
    count = 50
    barrier = threading.Barrier(count)
    replies: list[tuple[int, str]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            barrier.wait(WAIT_S)
            conn = http.client.HTTPConnection(host, port, timeout=WAIT_S)
            conn.request("GET", f"/machines/{'ab' * 32}")  # through the machine API's handler
            resp = conn.getresponse()
            doc = json.loads(resp.read())
            conn.close()
            with lock:
                replies.append((resp.status, doc["code"]))
        except BaseException as exc:  # a reset connection, a timeout: the test's finding
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S * 2)
    assert failures == []
    assert replies == [(404, "unknown_machine")] * count


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "BREW"])
def test_a_method_outside_the_api_gets_the_api_json_404(local_stack: Any, method: str) -> None:
    host, port = _host_port(local_stack.api_url)
    conn = http.client.HTTPConnection(host, port, timeout=WAIT_S)
    conn.request(method, "/feed")
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 404  # HTTP API: no route has this method and path
    assert resp.getheader("content-type", "").startswith("application/json")
    doc = json.loads(body)
    assert doc["code"] == "route_not_found"
    assert [r["code"] for r in doc["reasons"]] == ["route_not_found"]


def test_a_request_that_does_not_parse_gets_a_json_400(local_stack: Any) -> None:
    host, port = _host_port(local_stack.api_url)
    with socket.create_connection((host, port), timeout=WAIT_S) as s:
        s.sendall(b"GET /feed HTTP/1.1 extra\r\nhost: x\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["code"] == "request_malformed"


def test_the_stack_log_keeps_its_own_lines_and_drops_only_powertools_duplicates() -> None:
    """`python -m gpuproof.local`'s root handler: Powertools' SuppressFilter("gpuproof") (added to
    root handlers by every Logger) drops "gpuproof_local" by a substring test; the handler keeps the
    stack's own lines and drops only the records of the "gpuproof" logger tree."""
    import io
    import logging

    from aws_lambda_powertools.logging.filters import SuppressFilter

    from gpuproof.local.__main__ import StackLogHandler

    stream = io.StringIO()
    handler = StackLogHandler(stream)
    handler.addFilter(SuppressFilter("gpuproof"))
    for name in ("gpuproof_local", "gpuproof", "gpuproof.workers.publisher", "werkzeug"):
        record = logging.LogRecord(name, logging.ERROR, __file__, 1, f"line of {name}", None, None)
        if handler.filter(record):
            handler.emit(record)
    assert stream.getvalue().splitlines() == ["line of gpuproof_local", "line of werkzeug"]
