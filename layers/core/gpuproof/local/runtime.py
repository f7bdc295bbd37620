"""Loads each function's own lambda_handler from functions/<name>/app.py and invokes it as Lambda would.

Concurrency, as Lambda runs it: every function has its own execution environment, and an
environment runs one invocation at a time; different functions run at the same time (a publisher
waiting on a hung chain node never holds up the API or the verify worker). Locally each function has
one environment (like `ReservedConcurrentExecutions: 1`): a second invocation of the same function
waits for the first, since a function's module state (its Event Handler app's `current_event`, its
Idempotency config's Lambda context) belongs to one invocation at a time, as in one Lambda sandbox.

What one process would otherwise share between environments is kept per environment here
(`isolate()`): Powertools' Metrics store (class-level dicts shared by every `Metrics()`) and the
Logger's keys (one formatter for every Logger of the "gpuproof" service), so a function's metrics
and log keys (function_name, request id, correlation id) are its own, as in separate sandboxes.
The environment variables are the stack's merged ones (template.merged_environment refuses a
variable two functions would set differently) and every function runs with the same local
credentials; which function made an AWS call is a ContextVar (gpuproof.local.aws_calls), so the
least-privilege record is per function under concurrency too. botocore's client creation is not
thread-safe (boto/boto3#1592): clients are created one at a time.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import botocore.session

from gpuproof.local import aws_calls
from gpuproof.local.template import LOCAL_ACCOUNT, LOCAL_REGION, FunctionSpec

log = logging.getLogger("gpuproof_local")

Handler = Callable[[Any, Any], Any]

# The execution environment (a function's logical id) the current thread is running in.
_environment: ContextVar[str | None] = ContextVar("gpuproof_local_environment", default=None)


def current_environment() -> str | None:
    return _environment.get()


class EnvironmentLocal(MutableMapping[str, Any]):
    """A dict per execution environment; outside every environment (a test calling code directly),
    one of its own. An environment's dict starts as a copy of that outside one."""

    def __init__(self, initial: dict[str, Any] | None = None) -> None:
        self._outside: dict[str, Any] = dict(initial or {})
        self._inside: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

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
        _serialise_client_creation()
        _isolated = True


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
    # Re-entrant: a handler that invokes its own function in-process (a CLI acting as it) runs on.
    _environment_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def busy(self) -> bool:
        """An invocation is running (or waiting for the environment)."""
        if self._environment_lock.acquire(blocking=False):
            self._environment_lock.release()
            return False
        return True

    def invoke(self, event: Any) -> Any:
        with self._environment_lock:
            # The timeout runs from when the environment takes the event, as Lambda's does.
            context = LambdaContext(self.physical_name, self.spec.memory_mb, self.spec.timeout_s)
            with self._count_lock:
                self.invocations += 1
            token = _environment.set(self.spec.logical_id)
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
    handler: Handler = getattr(module, spec.handler_name)
    return handler
