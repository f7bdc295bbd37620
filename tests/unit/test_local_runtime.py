"""The local runtime's execution environments (gpuproof.local.runtime): functions run concurrently,
each with its own Powertools metrics and log keys, as separate Lambda sandboxes would."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from gpuproof.local.runtime import LocalFunction, isolate, isolate_resolvers
from gpuproof.local.template import FunctionSpec

WAIT_S = 30.0


def _function(logical_id: str, handler: Any) -> LocalFunction:
    spec = FunctionSpec(logical_id, Path("."), "app.lambda_handler", 30, 128, {}, [])
    return LocalFunction(spec=spec, physical_name=f"stack-{logical_id}", handler=handler)


def _run_together(functions: list[LocalFunction]) -> list[Any]:
    results: list[Any] = [None] * len(functions)

    def run(i: int) -> None:
        results[i] = functions[i].invoke({})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(functions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    return results


def test_two_functions_run_at_once_each_with_its_own_metrics_and_log_keys(capsys: Any) -> None:
    isolate()
    stream = io.StringIO()
    logger = Logger(service="runtime-isolation-test", stream=stream)  # one logger, as "gpuproof" is
    metrics = Metrics(namespace="isolation", service="runtime-isolation-test")
    # Both handlers are inside at once: neither waits for the other (each holds the barrier).
    both_inside = threading.Barrier(2)
    added = threading.Barrier(2)

    def handler_for(name: str) -> Any:
        @logger.inject_lambda_context
        @metrics.log_metrics
        def handler(event: Any, context: Any) -> str:
            both_inside.wait(WAIT_S)
            metrics.add_metric(name=f"Metric{name}", unit=MetricUnit.Count, value=1)
            logger.append_keys(owner=name)
            added.wait(WAIT_S)  # the other function has added its metric and key too
            logger.info("inside")
            return name

        return handler

    a, b = _function("FnA", handler_for("A")), _function("FnB", handler_for("B"))
    assert _run_together([a, b]) == ["A", "B"]
    assert a.errors == b.errors == 0

    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    flushed = sorted(
        tuple(sorted(m["Name"] for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]))
        for doc in emf
    )
    assert flushed == [("MetricA",), ("MetricB",)]  # each flush holds its own function's metric only
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert sorted((line["function_name"], line["owner"]) for line in lines) == [
        ("stack-FnA", "A"),
        ("stack-FnB", "B"),
    ]


def test_one_function_runs_one_invocation_at_a_time() -> None:
    """One execution environment per function: its second invocation waits for the first."""
    entered, release = threading.Event(), threading.Event()
    order: list[str] = []

    def handler(event: Any, context: Any) -> None:
        order.append(f"start {event['n']}")
        if event["n"] == 1:
            entered.set()
            release.wait(WAIT_S)
        order.append(f"end {event['n']}")

    fn = _function("Fn", handler)
    first = threading.Thread(target=fn.invoke, args=({"n": 1},))
    first.start()
    assert entered.wait(WAIT_S)
    second = threading.Thread(target=fn.invoke, args=({"n": 2},))
    second.start()
    second.join(0.2)  # given the chance to run, it must still be waiting
    assert fn.busy and order == ["start 1"]
    release.set()
    first.join(WAIT_S)
    second.join(WAIT_S)
    assert order == ["start 1", "end 1", "start 2", "end 2"]


def test_two_requests_of_one_api_function_at_once_each_see_their_own_event() -> None:
    """Behind the HTTP API a function runs invocations side by side: Powertools' Event Handler keeps
    the current event on a class every resolver shares, and the matched route on the app; each
    invocation sees its own."""
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    isolate()
    app = APIGatewayHttpResolver()
    both_inside = threading.Barrier(2)

    @app.get("/items/<item>")
    def item(item: str) -> dict[str, str]:
        both_inside.wait(WAIT_S)  # the other request has been resolved up to here too
        return {"item": item, "path": app.current_event.path}

    isolate_resolvers()  # as load_handler does once a handler module (and its app) is loaded
    fn = _function("Api", lambda event, context: app.resolve(event, context))
    fn.concurrency = 2
    fn.__post_init__()

    def event(item: str) -> dict[str, Any]:
        path = f"/items/{item}"
        return {
            "version": "2.0",
            "routeKey": "GET /items/{item}",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {},
            "requestContext": {"http": {"method": "GET", "path": path}, "stage": "$default"},
            "isBase64Encoded": False,
        }

    results: list[Any] = [None, None]

    def run(i: int, name: str) -> None:
        results[i] = json.loads(fn.invoke(event(name))["body"])

    threads = [threading.Thread(target=run, args=(i, n)) for i, n in enumerate(["one", "two"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert results == [{"item": "one", "path": "/items/one"}, {"item": "two", "path": "/items/two"}]
