"""Loads each function's own lambda_handler from functions/<name>/app.py and invokes it as Lambda would.

One lock serialises invocations: the local stack is one process, and Powertools keeps some state
(metrics) per process, as a Lambda execution environment runs one invocation at a time.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpuproof.local import aws_calls
from gpuproof.local.template import LOCAL_ACCOUNT, LOCAL_REGION, FunctionSpec

log = logging.getLogger("gpuproof_local")

Handler = Callable[[Any, Any], Any]

_INVOKE_LOCK = threading.RLock()


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
    """A template function bound to its imported handler."""

    spec: FunctionSpec
    physical_name: str
    handler: Handler
    invocations: int = 0
    errors: int = 0
    last_error: BaseException | None = field(default=None, repr=False)

    def invoke(self, event: Any) -> Any:
        context = LambdaContext(self.physical_name, self.spec.memory_mb, self.spec.timeout_s)
        with _INVOKE_LOCK:
            self.invocations += 1
            try:
                with aws_calls.running(self.spec.logical_id):
                    return self.handler(event, context)
            except Exception as exc:
                self.errors += 1
                self.last_error = exc
                raise
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                # The execution environment died mid-invocation (a test's injected kill): nothing
                # in the handler cleaned up; the event source sees an error and retries, as on AWS.
                self.errors += 1
                self.last_error = exc
                raise RuntimeError(f"{self.spec.logical_id}: execution environment died ({exc!r})") from exc


def load_handler(spec: FunctionSpec) -> Handler:
    """Import the function's handler module under a name unique to the function."""
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
