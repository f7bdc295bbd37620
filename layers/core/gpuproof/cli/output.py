"""One convention for every gpuproof CLI (`benchmark-probe`, `committee`, `gpuproof-ops`):
what they print, how they fail, which environment variables they read (docs/cli.md).

- `--json`: stdout holds exactly one JSON document (the answer, or `{"error", "exit_code", ...}`);
  progress, notes and the retry line go to stderr.
- Every failure is one line on stderr (`error: ...`), never a traceback, and one exit code:
  `ExitCode` (0 ok, 1 refused or failed, 2 usage, 3 service unreachable, 4 key problem).
- Times are dates in UTC with a countdown or an age ("2026-12-01 23:40:12 UTC, in 4 min 12 s");
  ids are printed whole (copyable).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, NoReturn

import requests
import typer
from rich.console import Console
from rich.markup import escape

from gpuproof.protocol.client import ServiceError
from gpuproof.protocol.keys import KeyFileError
from gpuproof.protocol.ss58 import Ss58Error

err = Console(stderr=True, soft_wrap=True)

# Environment variables every CLI reads (an option on the command line wins).
ENV_API = "GPUPROOF_API"
ENV_MACHINE_KEY = "GPUPROOF_MACHINE_KEY"
ENV_COMMITTEE_KEY = "GPUPROOF_COMMITTEE_KEY"
ENV_OPERATOR_KEY = "GPUPROOF_OPERATOR_KEY"
# The JSON field naming a key file, in every CLI.
KEY_PATH_FIELD = "key_path"


class ExitCode(IntEnum):
    """The exit status of every gpuproof command (docs/cli.md)."""

    OK = 0
    FAILED = 1  # the service refused, a check failed, the verdict is a refusal
    USAGE = 2  # bad arguments or input (also Typer's own usage errors)
    UNREACHABLE = 3  # the service (or AWS, or the chain) could not be reached
    KEY = 4  # the key file is missing, malformed, readable by others, or not the expected one


def emit(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))


def fail(message: str, as_json: bool, exit_code: int = ExitCode.FAILED, **extra: Any) -> NoReturn:
    """Say what went wrong in one line (a JSON document with `error` and `exit_code` under --json,
    on stdout, so scripts read one document either way) and exit with `exit_code`."""
    if as_json:
        emit({"error": message, "exit_code": int(exit_code), **extra})
    else:
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(int(exit_code))


def network_cause(exc: BaseException) -> str:
    """The root cause of a failed request in a few words (no urllib3 object reprs)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    causes: list[BaseException] = []
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        causes.append(current)
        nested = [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        current = current.__cause__ or current.__context__ or (nested[0] if nested else None)
        reason = getattr(causes[-1], "reason", None)
        if current is None and isinstance(reason, BaseException):
            current = reason
    for c in causes:
        if isinstance(c, ConnectionRefusedError) or "Connection refused" in str(c):
            return "connection refused"
    for c in causes:
        text = str(c)
        if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            return "host name not found"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return "not a valid URL"
    return type(exc).__name__


def unreachable_message(exc: BaseException, url: str | None = None) -> str:
    where = f" at {url}" if url else ""
    return f"service unreachable{where}: {network_cause(exc)}"


def fail_for(exc: BaseException, as_json: bool, url: str | None = None) -> NoReturn:
    """One line and the convention's exit code for the errors every command can meet."""
    if isinstance(exc, ServiceError):
        fail(str(exc), as_json, ExitCode.FAILED, status=exc.status, code=exc.code, reasons=exc.reasons)
    if isinstance(exc, requests.RequestException):
        fail(unreachable_message(exc, url), as_json, ExitCode.UNREACHABLE, code="unreachable")
    if isinstance(exc, KeyFileError):
        fail(str(exc), as_json, ExitCode.KEY, code="key_problem")
    if isinstance(exc, Ss58Error):
        fail(f"not an account: {exc}", as_json, ExitCode.USAGE, code="bad_account")
    raise exc


HANDLED: tuple[type[BaseException], ...] = (ServiceError, requests.RequestException, KeyFileError, Ss58Error)


@contextmanager
def handled(as_json: bool, url: str | None = None) -> Iterator[None]:
    """`with handled(as_json, api):` turns the errors every command can meet into one line."""
    try:
        yield
    except HANDLED as exc:
        fail_for(exc, as_json, url)


# ------------------------------------------------------------------------------------ time
def duration(seconds: float) -> str:
    """4 s, 4 min 12 s, 3 h 05 min, 2 d 4 h."""
    s = round(abs(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(epoch: float, now: float | None = None) -> str:
    """`in 4 min 12 s` for the future, `4 min 12 s ago` for the past."""
    delta = epoch - (time.time() if now is None else now)
    return f"in {duration(delta)}" if delta >= 0 else f"{duration(delta)} ago"


def when(epoch: float | None, now: float | None = None) -> str:
    """A date with its countdown or age; `—` when there is none."""
    if epoch is None:
        return "—"
    return f"{date(epoch)} ({relative(epoch, now)})"


# ------------------------------------------------------------------------------------ --version
def version_callback(name: str, version: str) -> Callable[[bool], None]:
    def show(value: bool) -> None:
        if value:
            typer.echo(f"{name} {version}")
            raise typer.Exit(0)

    return show


def package_version() -> str:
    """The installed gpuproof distribution's version (the source tree's when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("gpuproof")
    except PackageNotFoundError:
        from gpuproof import __version__

        return __version__


# ------------------------------------------------------------------------------------ backoff
def backoff_delay(interval_s: float, consecutive_failures: int, max_s: float = 600.0) -> float:
    """The agents' wait after `consecutive_failures` failed passes in a row: the interval doubled
    per failure, at most `max_s` (and never less than the interval)."""
    if consecutive_failures <= 0:
        return interval_s
    return max(interval_s, min(max_s, interval_s * 2.0 ** min(consecutive_failures, 20)))
