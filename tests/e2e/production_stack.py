"""The local stack with PRODUCTION settings, in a process of its own (`python -m gpuproof.local`).

The session's stack (tests/conftest.py) accepts the CPU backend and has no cooldown, so that a
machine without a GPU can take the whole path; attacks must be tried against what a deployment
runs. Template defaults (AllowCpuBackend=false, the 600 s cooldown, ...) apply here; only the
committee windows are scaled to seconds. Its own process: the stack sets os.environ, and the
session's variables (table names, ALLOW_CPU_BACKEND=true) must not leak into it.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

from gpuproof.local.aws_calls import RECORD_DIR_ENV

# Only what a Python process needs; nothing of the session's AWS or stack variables.
# (and where the session collects the child's AWS calls for tests/e2e/test_least_privilege.py).
_KEEP = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "SYSTEMROOT",
    RECORD_DIR_ENV,
)


@dataclass
class ProductionStack:
    api_url: str
    environment: dict[str, str]
    log: list[str] = field(default_factory=list)

    def table(self, env_name: str) -> Any:
        """One of the stack's DynamoDB tables (by its environment variable, e.g. MACHINES_TABLE)."""
        ddb = boto3.resource(
            "dynamodb",
            endpoint_url=self.environment["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        return ddb.Table(self.environment[env_name])


@contextmanager
def production_stack(
    *parameters: str, timeout_s: float = 120.0, flags: Sequence[str] = ()
) -> Iterator[ProductionStack]:
    """Start the stack with `NAME=VALUE` overrides on top of the template's defaults; `flags` are
    more arguments of `python -m gpuproof.local` (e.g. --test-double-gpu, --chain-endpoint URL)."""
    env = {k: v for k, v in os.environ.items() if k in _KEEP}
    env["PYTHONUNBUFFERED"] = "1"
    args = [sys.executable, "-m", "gpuproof.local", "--schedule-interval", "1", "--log-level", "WARNING"]
    args += list(flags)
    for p in parameters:
        args += ["--parameter", p]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line.rstrip("\n"))
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    api_url = None
    environment: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            text = line.strip()
            if text.startswith("gpuproof local stack: API"):
                api_url = text.split()[-1]
            elif "=" in text and text.removeprefix("export ").split("=", 1)[0].isupper():
                name, value = text.removeprefix("export ").split("=", 1)
                environment[name] = value
            if text.startswith("Ctrl-C stops it."):
                break
        if api_url is None:
            raise RuntimeError("the production-settings stack did not start:\n" + "\n".join(log[-40:]))
        yield ProductionStack(api_url, environment, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
