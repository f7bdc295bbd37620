"""The agent loop: signed heartbeats of live telemetry at a fixed interval, tolerant of a service
that does not serve heartbeats yet (404/501 are logged, the loop goes on).

Answering re-verification challenges will hang off the heartbeat response (open point, issue 4).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from benchmark_probe.client import ServiceClient, ServiceError

NOT_SERVED_YET = (404, 405, 501)


@dataclass
class AgentStats:
    sent: int = 0
    accepted: int = 0
    failures: list[str] = field(default_factory=list)


def beat_once(
    client: ServiceClient, machine_id: str, telemetry: dict[str, Any], log: Callable[[str], None]
) -> bool:
    """One heartbeat; True when the service accepted it. Never raises for service or network trouble."""
    try:
        client.heartbeat(machine_id, telemetry)
    except ServiceError as exc:
        if exc.status in NOT_SERVED_YET:
            log(f"heartbeat endpoint not served yet (HTTP {exc.status}); continuing")
        else:
            log(f"heartbeat refused: {exc}")
        return False
    except requests.RequestException as exc:
        log(f"heartbeat not delivered: {exc}")
        return False
    return True


def run_agent(
    client: ServiceClient,
    machine_id: str,
    read_telemetry: Callable[[], dict[str, Any]],
    *,
    interval_s: float,
    once: bool,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> AgentStats:
    stats = AgentStats()
    while True:
        started = time.monotonic()
        stats.sent += 1
        if beat_once(client, machine_id, read_telemetry(), log):
            stats.accepted += 1
        else:
            stats.failures.append(f"beat {stats.sent}")
        if once:
            return stats
        sleep(max(0.0, interval_s - (time.monotonic() - started)))
