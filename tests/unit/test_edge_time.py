"""The proof's deadline is timed at the API's edge: queueing inside the service never counts."""

from __future__ import annotations

from typing import Any

from gpuproof.api.signing import edge_time
from gpuproof.logic.machines import received_time


def event(time_epoch: Any) -> dict[str, Any]:
    return {"requestContext": {"timeEpoch": time_epoch}}


def test_edge_time_reads_the_http_api_events_time_in_seconds() -> None:
    assert edge_time(event(1_800_000_000_123)) == 1_800_000_000.123
    for bad in (None, "1800000000123", True, -5, 2**60):
        assert edge_time(event(bad)) is None
    assert edge_time({}) is None


def test_receipt_is_the_edge_arrival_clamped_to_the_challenge_and_the_handler() -> None:
    issued, handled = 1000.0, 1010.0
    assert received_time(issued, handled, 1003.5) == 1003.5  # 6.5 s queued inside: not counted
    assert received_time(issued, handled, None) == handled
    assert received_time(issued, handled, 1011.0) == handled  # edge clock ahead of the function's
    assert received_time(issued, handled, 990.0) == issued  # edge clock behind the challenge's
