"""LocalStack: moto + resources from template.yaml + HTTP front + pollers, in one process.

with LocalStack(schedule_interval_s=1) as stack:
    requests.post(stack.api_url + "/machines", ...)
    stack.drain()          # queues empty, streams read, pollers idle
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from gpuproof.local import aws_calls, double_gpu
from gpuproof.local.chain import LocalChain, oracle_account_from_environment, start_for_stack
from gpuproof.local.front import HttpFront, Route, Router
from gpuproof.local.moto_server import HOST, MotoServer, aws_environment
from gpuproof.local.pollers import Poller, SchedulePoller, SqsPoller, StreamPoller, schedule_period_s
from gpuproof.local.runtime import API_CONCURRENCY, LocalFunction, load_handler
from gpuproof.local.template import (
    DEFAULT_STACK_NAME,
    Resources,
    Template,
    TemplateError,
    load_template,
    provision,
)

log = logging.getLogger("gpuproof_local")


def drop_cached_connections() -> None:
    """Forget every PynamoDB model's cached connection. `tables.bind` keeps a model's connection while
    its table name is the same, and a connection keeps the endpoint it was made with: a process that
    talks to one moto server after another through the models, with the same table names on another
    port (make bench's presence section), calls this once the new one is up. (A second LocalStack in
    one process needs more: the handlers' modules keep their clients; make bench runs that section in
    a process of its own.)"""
    from pynamodb.models import Model

    stack: list[type[Any]] = [Model]
    while stack:
        for sub in stack.pop().__subclasses__():
            sub._connection = None
            stack.append(sub)


class LocalStack:
    """The template's stack, run locally. Sets os.environ for the process while it runs."""

    def __init__(
        self,
        template_path: Path | None = None,
        *,
        endpoint_url: str | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        host: str = HOST,
        port: int = 0,
        poll_interval_s: float = 0.2,
        schedule_interval_s: float | None = None,
        sqs_retry_delay_s: int = 0,
        parameters: dict[str, str] | None = None,
        allow_missing_handlers: bool = False,
        chain: bool | None = None,
        chain_url: str | None = None,
        test_double_gpu: bool = False,
    ) -> None:
        self.template: Template = load_template(template_path)
        self._endpoint_url = endpoint_url
        self.stack_name = stack_name
        self.host = host
        self.port = port
        self.poll_interval_s = poll_interval_s
        env_schedule = os.environ.get("GPUPROOF_LOCAL_SCHEDULE_S")
        self.schedule_interval_s = schedule_interval_s or (float(env_schedule) if env_schedule else None)
        self.sqs_retry_delay_s = sqs_retry_delay_s
        self.parameters = parameters
        self.allow_missing_handlers = allow_missing_handlers
        # A local Chopsticks chain for the publisher: chain=True or GPUPROOF_LOCAL_CHAIN=1.
        self.chain_enabled = chain if chain is not None else os.environ.get("GPUPROOF_LOCAL_CHAIN") == "1"
        # Or a chain node another process runs (the stack funds its oracle account there).
        self.chain_url = chain_url
        self.chain: LocalChain | None = None
        # The TEST DOUBLE GPU model in this process's reference table while the stack runs
        # (gpuproof.local.double_gpu); only an explicit flag registers it, never the environment.
        self.test_double_gpu = test_double_gpu
        self._double_installed = False
        self.moto: MotoServer | None = None
        self.resources: Resources | None = None
        self.functions: dict[str, LocalFunction] = {}
        self.pollers: list[Poller] = []
        self.front: HttpFront | None = None
        self.environment: dict[str, str] = {}
        self._saved_env: dict[str, str | None] = {}
        self._started = False

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalStack:
        if self._started:
            return self
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def _start(self) -> None:
        if self.test_double_gpu:
            double_gpu.install()
            self._double_installed = True
            log.warning("TEST DOUBLE GPU model registered: %s (local stack only)", double_gpu.DOUBLE_MODEL)
        if self._endpoint_url is None:
            self.moto = MotoServer().start()
            self._endpoint_url = self.moto.endpoint_url
        self._set_env(aws_environment(self._endpoint_url))
        self.resources = provision(
            self.template, self._endpoint_url, stack_name=self.stack_name, parameters=self.parameters
        )
        aws_calls.recorder.register_resources(self.resources)
        self.environment = self.resources.merged_environment()
        self._set_env(self.environment)
        if self.chain_url:
            adopted = LocalChain.adopt(self.chain_url)
            adopted.ensure_funded(oracle_account_from_environment())
            self.attach_chain(adopted)
        elif self.chain_enabled:
            self.attach_chain()

        routes: list[Route] = []
        for spec in self.template.functions():
            name = self.resources.physical[spec.logical_id].ref
            try:
                handler = load_handler(spec)
            except FileNotFoundError:
                if not self.allow_missing_handlers:
                    raise
                log.error(
                    "%s: %s missing; its routes and events are not served", spec.logical_id, spec.module_file
                )
                continue
            behind_api = any(event.type == "HttpApi" for event in spec.events)
            fn = LocalFunction(
                spec=spec,
                physical_name=name,
                handler=handler,
                concurrency=API_CONCURRENCY if behind_api else 1,
            )
            self.functions[spec.logical_id] = fn
            for event in spec.events:
                routes.extend(self._bind_event(fn, event.type, event.name, event.properties))

        self.front = HttpFront(Router(routes), self.host, self.port)
        self.front.start()
        for poller in self.pollers:
            poller.start()
        log.info("local stack up: api %s, moto %s", self.api_url, self.endpoint_url)

    def _bind_event(self, fn: LocalFunction, kind: str, name: str, props: dict[str, Any]) -> list[Route]:
        assert self.resources is not None and self._endpoint_url is not None
        resolved = self.resources.resolve(props)
        if kind == "HttpApi":
            return [Route.build(resolved.get("Method", "ANY"), resolved.get("Path", "/{proxy+}"), fn)]
        if kind == "SQS":
            arn = resolved["Queue"]
            self.pollers.append(
                SqsPoller(
                    fn,
                    self._queue_url_for_arn(arn),
                    arn,
                    batch_size=int(resolved.get("BatchSize", 10)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in resolved.get("FunctionResponseTypes", []),
                    endpoint_url=self._endpoint_url,
                    interval_s=self.poll_interval_s,
                    retry_delay_s=self.sqs_retry_delay_s,
                )
            )
        elif kind == "DynamoDB":
            on_failure = resolved.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            self.pollers.append(
                StreamPoller(
                    fn,
                    resolved["Stream"],
                    batch_size=int(resolved.get("BatchSize", 100)),
                    starting_position=resolved.get("StartingPosition", "TRIM_HORIZON"),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in resolved.get("FunctionResponseTypes", []),
                    maximum_retry_attempts=int(resolved.get("MaximumRetryAttempts", -1)),
                    on_failure_queue_url=self._queue_url_for_arn(on_failure) if on_failure else None,
                    endpoint_url=self._endpoint_url,
                    interval_s=self.poll_interval_s,
                )
            )
        elif kind in ("Schedule", "ScheduleV2"):
            expression = resolved.get("Schedule") or resolved.get("ScheduleExpression", "rate(1 minute)")
            period = self.schedule_interval_s or schedule_period_s(expression)
            self.pollers.append(SchedulePoller(fn, f"{self.stack_name}-{fn.spec.logical_id}-{name}", period))
        else:
            raise TemplateError(f"{fn.spec.logical_id}: event type {kind} is not run locally")
        return []

    def _queue_url_for_arn(self, arn: str) -> str:
        assert self.resources is not None
        for phys in self.resources.physical.values():
            if phys.attrs.get("Arn") == arn and "QueueUrl" in phys.attrs:
                return phys.attrs["QueueUrl"]
        raise TemplateError(f"no queue in the template has ARN {arn}")

    def attach_chain(self, chain: LocalChain | None = None) -> LocalChain:
        """Start (or adopt) a local chain funding the oracle key and point CHAIN_NODE_URL at it."""
        self.chain = chain or start_for_stack()
        self._set_env({"CHAIN_NODE_URL": self.chain.url})
        self.environment["CHAIN_NODE_URL"] = self.chain.url
        return self.chain

    def detach_chain(self) -> None:
        if self.chain is not None:
            if not self.chain.adopted:
                self.chain.stop()
            self.chain = None
            self._set_env({"CHAIN_NODE_URL": ""})
            self.environment["CHAIN_NODE_URL"] = ""

    def stop(self) -> None:
        self.detach_chain()
        for poller in self.pollers:
            poller.stop()
        self.pollers = []
        if self.front is not None:
            self.front.stop()
            self.front = None
        if self.moto is not None:
            self.moto.stop()
            self.moto = None
            self._endpoint_url = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        if self._double_installed:
            double_gpu.uninstall()
            self._double_installed = False
        self._started = False

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    # ------------------------------------------------------------ what tests use

    @property
    def api_url(self) -> str:
        if self.front is None:
            raise RuntimeError("local stack is not started")
        return self.front.url

    @property
    def endpoint_url(self) -> str:
        if self._endpoint_url is None:
            raise RuntimeError("local stack is not started")
        return self._endpoint_url

    def _resources(self) -> Resources:
        if self.resources is None:
            raise RuntimeError("local stack is not started")
        return self.resources

    def table_name(self, logical_id: str) -> str:
        return self._resources().table_name(logical_id)

    def queue_url(self, logical_id: str) -> str:
        return self._resources().queue_url(logical_id)

    def function(self, logical_id: str) -> LocalFunction:
        return self.functions[logical_id]

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Call one function's handler directly (e.g. a sample event from events/)."""
        return self.functions[logical_id].invoke(event)

    def drain(self, timeout: float = 90.0) -> None:
        """Wait until every queue is empty, every stream read and every poller idle after the call.
        It returns as soon as that holds; the timeout only bounds a stack that never settles (15 s
        timed out an 8 x H100 transcript's verification under tracemalloc on a loaded host)."""
        deadline = time.monotonic() + timeout
        mark = time.monotonic()
        while True:
            if all(p.quiet_since(mark) for p in self.pollers):
                return
            if any(p.last_work_at > mark for p in self.pollers):
                mark = time.monotonic()  # work happened: wait for empty polls after it
            if time.monotonic() > deadline:
                busy = [p.name for p in self.pollers if not p.quiet_since(mark)]
                raise TimeoutError(f"local stack not idle after {timeout} s: {busy}")
            time.sleep(self.poll_interval_s / 2)

    wait_idle = drain
