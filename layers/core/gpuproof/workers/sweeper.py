"""The deadline sweeper's use case entry; commit/reveal windows and expiry land with issue 5."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

logger = Logger(child=True)


def sweep(event: dict[str, Any]) -> dict[str, Any]:
    """One scheduled tick. Not implemented yet: says so in the log and does nothing."""
    logger.warning("deadline sweep not implemented; lands with issue 5", extra={"tick": event.get("time")})
    return {"swept": 0, "implemented": False}
