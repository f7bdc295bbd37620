"""Loads each function's own lambda_handler from functions/<name>/app.py and invokes it as Lambda would.

Concurrency, as Lambda runs it: every invocation has an execution environment of its own, and the
functions run at the same time (a publisher waiting on a hung chain node holds up neither the API
nor the verify worker). A function with HttpApi routes runs up to `API_CONCURRENCY` invocations at
once (Lambda scales out per request); a function fed by an event source runs one at a time, as its
local poller delivers one batch at a time (a stream's shard with ParallelizationFactor 1) and its
adapters (one chain websocket per process) serve one invocation.

All environments share one process, so what Powertools keeps per process is kept per invocation
here (`isolate()`): Metrics' store (class-level dicts shared by every `Metrics()`), the Logger's
keys (one formatter per service: function_name, request id, correlation id), and the Event
Handler's current event, Lambda context (class attributes of BaseRouter, shared by every resolver)
and per-request context (on each app). The environment variables are the stack's merged ones
(template.merged_environment refuses a variable two functions would set differently) and every
function runs with the same local credentials; which function made an AWS call is a ContextVar
(gpuproof.local.aws_calls), so the least-privilege record is per function under concurrency too.
botocore's client creation is not thread-safe (boto/boto3#1592): clients are created one at a time.
Not isolated: cold-start flags (one per process: the first invocation of any function is "cold")
and an Idempotency config's Lambda context (only event-source functions use one; they run one
invocation at a time).
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import botocore.session

from gpuproof.local import aws_calls
from gpuproof.local.template import LOCAL_ACCOUNT, LOCAL_REGION, FunctionSpec

log = logging.getLogger("gpuproof_local")

Handler = Callable[[Any, Any], Any]

# The execution environment (one per invocation) the current thread is running in.
_environment: ContextVar[str | None] = ContextVar("gpuproof_local_environment", default=None)
_stores: weakref.WeakValueDictionary[int, EnvironmentLocal] = weakref.WeakValueDictionary()
_stores_lock = threading.Lock()
API_CONCURRENCY = 16


def current_environment() -> str | None:
    return _environment.get()


def _release(environment: str) -> None:
    """The invocation ended: drop what it kept."""
    with _stores_lock:
        stores = list(_stores.values())
    for store in stores:
        store.release(environment)


class EnvironmentLocal(MutableMapping[str, Any]):
    """A dict per execution environment; outside every environment (a test calling code directly),
    one of its own. An environment's dict starts as a copy of that outside one."""

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self._outside: dict[str, Any] = dict(initial or {})
        self._inside: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        with _stores_lock:
            _stores[id(self)] = self

    def release(self, environment: str) -> None:
        with self._lock:
            self._inside.pop(environment, None)

    def current(self) -> dict[str, Any]:
        env = _environment.get()
        if env is None:
            return self._outside
        found = self._inside.get(env)
        if found is None:
            with self._lock:
                found = self._inside.setdefault(env, dict(self._outside))
        return found

    def replace(self, value: dict[str, Any]) -> None:
        env = _environment.get()
        if env is None:
            self._outside = value
        else:
            with self._lock:
                self._inside[env] = value

    def __getitem__(self, key: str) -> Any:
        return self.current()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.current()[key] = value

    def __delitem__(self, key: str) -> None:
        del self.current()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.current()))

    def __len__(self) -> int:
        return len(self.current())

    def __repr__(self) -> str:
        return f"EnvironmentLocal({self.current()!r})"


_isolated = False
_isolate_lock = threading.Lock()
_METRICS_STORES = ("_metrics", "_dimensions", "_metadata", "_default_dimensions")
# Metrics attribute, provider attribute, class store: the same dict object in each Metrics() built
# with Powertools' own provider.
_METRICS_BINDINGS = (
    ("metric_set", "metric_set", "_metrics"),
    ("dimension_set", "dimension_set", "_dimensions"),
    ("metadata_set", "metadata_set", "_metadata"),
    ("default_dimensions", "default_dimensions", "_default_dimensions"),
)


def isolate() -> None:
    """Keep Powertools' per-process state per execution environment, and create botocore clients
    one at a time (idempotent; the local stack calls it before loading any handler)."""
    global _isolated
    with _isolate_lock:
        if _isolated:
            return
        _isolate_metrics()
        _isolate_logger_keys()
        _isolate_event_handler()
        _serialise_client_creation()
        _isolated = True
        isolate_resolvers()


class _Slot:
    """A class attribute kept per execution environment (set and read on the class)."""

    def __init__(self, initial: Any) -> None:
        self.store = EnvironmentLocal({"value": initial})

    def get(self) -> Any:
        try:
            return self.store["value"]
        except KeyError:
            raise AttributeError("not set in this execution environment") from None

    def set(self, value: Any) -> None:
        self.store["value"] = value


def _isolate_event_handler() -> None:
    """BaseRouter.current_event and .lambda_context are class attributes every resolver shares:
    a metaclass property keeps them per environment, read on the class or through an instance."""
    from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

    slots = {name: _Slot(BaseRouter.__dict__.get(name)) for name in ("current_event", "lambda_context")}

    def class_property(slot: _Slot) -> property:
        return property(lambda cls: slot.get(), lambda cls, value: slot.set(value))

    def instance_property(slot: _Slot) -> property:
        return property(lambda self: slot.get(), lambda self, value: slot.set(value))

    meta = type(BaseRouter)
    per_environment = type(
        "PerEnvironmentRouterMeta", (meta,), {name: class_property(slot) for name, slot in slots.items()}
    )
    for name, slot in slots.items():
        setattr(BaseRouter, name, instance_property(slot))  # before the metaclass takes the name
    BaseRouter.__class__ = per_environment  # type: ignore[method-assign]


def isolate_resolvers() -> None:
    """Each resolver's per-request `context` (the matched route, its arguments, the request) is
    kept per environment; run again after each handler module is loaded (its app is new)."""
    from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

    for obj in gc.get_objects():
        if isinstance(obj, ApiGatewayResolver) and not isinstance(
            obj.__dict__.get("context"), EnvironmentLocal
        ):
            obj.__dict__["context"] = EnvironmentLocal(obj.__dict__.get("context"))


def _isolate_metrics() -> None:
    from aws_lambda_powertools.metrics import Metrics

    originals = {name: getattr(Metrics, name) for name in _METRICS_STORES}
    stores = {name: EnvironmentLocal(originals[name]) for name in _METRICS_STORES}
    for name, store in stores.items():
        setattr(Metrics, name, store)
    # Instances made before (a module imported earlier) hold the class dicts themselves.
    for obj in gc.get_objects():
        if not isinstance(obj, Metrics):
            continue
        provider = getattr(obj, "provider", None)
        for attr, provider_attr, store_name in _METRICS_BINDINGS:
            if getattr(obj, attr, None) is originals[store_name]:
                setattr(obj, attr, stores[store_name])
            if provider is not None and getattr(provider, provider_attr, None) is originals[store_name]:
                setattr(provider, provider_attr, stores[store_name])


def _isolate_logger_keys() -> None:
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    def get(self: LambdaPowertoolsFormatter) -> Any:
        store = self.__dict__.get("_gpuproof_log_format")
        if store is None:
            store = self.__dict__["_gpuproof_log_format"] = EnvironmentLocal(self.__dict__.get("log_format"))
        return store.current()

    def set_(self: LambdaPowertoolsFormatter, value: dict[str, Any]) -> None:
        store = self.__dict__.get("_gpuproof_log_format")
        if store is None:
            self.__dict__["log_format"] = value
        else:
            store.replace(value)

    # A data descriptor wins over the instance's own `log_format` (which stays the outside value).
    LambdaPowertoolsFormatter.log_format = property(get, set_)  # type: ignore[assignment]


def _serialise_client_creation() -> None:
    lock = threading.RLock()
    original = botocore.session.Session.create_client

    def create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]


class LambdaContext:
    """The attributes and method of the Lambda context object that handlers and Powertools read."""

    def __init__(self, function_name: str, memory_mb: int, timeout_s: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LocalFunction:
    """A template function bound to its imported handler, with its one execution environment."""

    spec: FunctionSpec
    physical_name: str
    handler: Handler
    invocations: int = 0
    errors: int = 0
    last_error: BaseException | None = field(default=None, repr=False)
    concurrency: int = 1  # invocations at once (API_CONCURRENCY for a function behind the HTTP API)
    running: int = 0
    # Invocations that ran past the function's Timeout: Lambda would have killed them (the event
    # source sees an error). Locally a thread cannot be killed; it is logged and counted instead.
    timeouts: int = 0
    _slots: threading.Semaphore = field(init=False, repr=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._slots = threading.Semaphore(self.concurrency)

    @property
    def busy(self) -> bool:
        """An invocation is running."""
        return self.running > 0

    def invoke(self, event: Any) -> Any:
        if _environment.get() is not None:
            # Called from inside an invocation (a handler calling another function in-process):
            # a nested call does not wait for an environment, which could deadlock.
            return self._run(event)
        with self._slots:
            return self._run(event)

    def _run(self, event: Any) -> Any:
        # The timeout runs from when an environment takes the event, as Lambda's does.
        context = LambdaContext(self.physical_name, self.spec.memory_mb, self.spec.timeout_s)
        with self._count_lock:
            self.invocations += 1
            self.running += 1
        environment = f"{self.spec.logical_id}/{context.aws_request_id}"
        token = _environment.set(environment)
        try:
            with aws_calls.running(self.spec.logical_id):
                return self.handler(event, context)
        except Exception as exc:
            self._failed(exc)
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            # The execution environment died mid-invocation (a test's injected kill): nothing
            # in the handler cleaned up; the event source sees an error and retries, as on AWS.
            self._failed(exc)
            raise RuntimeError(f"{self.spec.logical_id}: execution environment died ({exc!r})") from exc
        finally:
            _environment.reset(token)
            _release(environment)
            overran = context.get_remaining_time_in_millis() == 0
            with self._count_lock:
                self.running -= 1
                self.timeouts += overran
            if overran:
                log.error(
                    "%s ran past its %d s timeout: Lambda would have killed it",
                    self.spec.logical_id,
                    self.spec.timeout_s,
                )

    def _failed(self, exc: BaseException) -> None:
        with self._count_lock:
            self.errors += 1
            self.last_error = exc


def load_handler(spec: FunctionSpec) -> Handler:
    """Import the function's handler module under a name unique to the function."""
    isolate()
    module_name = f"gpuproof_local_fn_{spec.logical_id}"
    module = sys.modules.get(module_name)
    if module is None:
        path = spec.module_file
        if not path.is_file():
            raise FileNotFoundError(f"{spec.logical_id}: handler module {path} is missing")
        import_spec = importlib.util.spec_from_file_location(module_name, path)
        if import_spec is None or import_spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(import_spec)
        sys.modules[module_name] = module
        try:
            import_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        isolate_resolvers()  # the module's resolver, if it has one, is new
    handler: Handler = getattr(module, spec.handler_name)
    return handler
