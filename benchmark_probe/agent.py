"""The agent loop: signed heartbeats of live telemetry at a fixed interval, tolerant of a service
that does not serve heartbeats yet (404/501 are logged, the loop goes on).

When the service's answer to a heartbeat says `reverify`, the agent answers a fresh challenge
(proof of throughput, benchmarks, signed report) through the `on_reverify` callback; when it
announces a presence check, the agent answers it through `on_presence`
(benchmark_probe/presence.py), given the offset of the service's clock from its own.
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
    reverified: int = 0
    presence_answered: int = 0
    failures: list[str] = field(default_factory=list)


def beat_once(
    client: ServiceClient, machine_id: str, telemetry: dict[str, Any], log: Callable[[str], None]
) -> dict[str, Any] | None:
    """One heartbeat; the service's answer when accepted, else None. Never raises for service trouble."""
    try:
        ack = client.heartbeat(machine_id, telemetry)
    except ServiceError as exc:
        if exc.status in NOT_SERVED_YET:
            log(f"heartbeat endpoint not served yet (HTTP {exc.status}); continuing")
        else:
            log(f"heartbeat refused: {exc}")
        return None
    except requests.RequestException as exc:
        log(f"heartbeat not delivered: {exc}")
        return None
    return ack if isinstance(ack, dict) else {}


def run_agent(
    client: ServiceClient,
    machine_id: str,
    read_telemetry: Callable[[], dict[str, Any]],
    *,
    interval_s: float,
    once: bool,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    on_reverify: Callable[[], None] | None = None,
    on_presence: Callable[[dict[str, Any], float], Any] | None = None,
) -> AgentStats:
    stats = AgentStats()
    while True:
        started = time.monotonic()
        stats.sent += 1
        sent_at = time.time()
        ack = beat_once(client, machine_id, read_telemetry(), log)
        if ack is not None:
            stats.accepted += 1
            if ack.get("presence") and on_presence is not None:
                # The service's clock minus ours, at the midpoint of the heartbeat's round trip.
                offset = float(ack.get("received_at", sent_at)) - (sent_at + time.time()) / 2
                log(f"presence check {ack['presence'].get('check_id')}: answering at its opening")
                try:
                    on_presence(ack["presence"], offset)
                    stats.presence_answered += 1
                except (ServiceError, requests.RequestException) as exc:
                    log(f"presence check not answered: {exc}")
            if ack.get("reverify") and on_reverify is not None:
                log("the service asks for re-verification: answering a fresh challenge")
                try:
                    on_reverify()
                    stats.reverified += 1
                except (ServiceError, requests.RequestException) as exc:
                    log(f"re-verification failed: {exc}")
        else:
            stats.failures.append(f"beat {stats.sent}")
        if once:
            return stats
        sleep(max(0.0, interval_s - (time.monotonic() - started)))
