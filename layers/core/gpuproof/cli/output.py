"""What every gpuproof CLI prints: JSON documents for scripts (--json), errors on stderr otherwise."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer
from rich.console import Console

err = Console(stderr=True)


def emit(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))


def fail(message: str, as_json: bool, exit_code: int = 1, **extra: Any) -> NoReturn:
    """Say what went wrong (a JSON document with `error` under --json) and exit with `exit_code`."""
    if as_json:
        emit({"error": message, **extra})
    else:
        err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(exit_code)
