"""The agent loop: signed heartbeats of live telemetry at a fixed interval, tolerant of a service
that does not serve heartbeats yet (404/501 are logged, the loop goes on). While heartbeats
fail the loop backs off (the interval doubled per failure in a row, at most 10 min:
`gpuproof.cli.output.backoff_delay`), each failure one line; `AgentStats.summary` ends the run.

When the service's answer to a heartbeat says `reverify`, the agent answers a fresh challenge
(proof of throughput, benchmarks, signed report) through the `on_reverify` callback; when it
announces a presence check, the agent answers it through `on_presence`
(benchmark_probe/presence.py), given the offset of the service's clock from its own.

With `live_endpoint`, every heartbeat publishes where committee members reach the agent's live
check (benchmark_probe/live.py, served alongside this loop by `benchmark-probe agent --live-listen`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from benchmark_probe.client import ServiceClient, ServiceError
from gpuproof.cli.output import backoff_delay, duration, network_cause

NOT_SERVED_YET = (404, 405, 501)


@dataclass
class AgentStats:
    sent: int = 0
    accepted: int = 0
    reverified: int = 0
    presence_answered: int = 0
    failures: list[str] = field(default_factory=list)
    consecutive_failed: int = 0
    last_error: str = ""
    last_unreachable: bool = False  # the last failure was the network's, not a refusal
    last_not_served: bool = False  # the service has no heartbeat route yet: no backoff for that

    def summary(self) -> str:
        line = f"heartbeats: {self.sent} sent, {self.accepted} accepted, {self.sent - self.accepted} failed"
        if self.reverified:
            line += f", {self.reverified} re-verification(s)"
        return line + (f" (last error: {self.last_error})" if self.sent > self.accepted else "")


def beat_once(
    client: ServiceClient,
    machine_id: str,
    telemetry: dict[str, Any],
    log: Callable[[str], None],
    stats: AgentStats | None = None,
) -> dict[str, Any] | None:
    """One heartbeat; the service's answer when accepted, else None. Never raises for service trouble."""
    stats = stats if stats is not None else AgentStats()
    try:
        ack = client.heartbeat(machine_id, telemetry)
    except ServiceError as exc:
        stats.last_not_served = exc.status in NOT_SERVED_YET
        if stats.last_not_served:
            stats.last_error = f"heartbeat endpoint not served yet (HTTP {exc.status}); continuing"
        else:
            stats.last_error = f"heartbeat refused: {exc}"
        stats.last_unreachable = False
        log(stats.last_error)
        return None
    except requests.RequestException as exc:
        stats.last_error = f"heartbeat not delivered to {client.api_url}: {network_cause(exc)}"
        stats.last_unreachable, stats.last_not_served = True, False
        log(stats.last_error)
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
    stats: AgentStats | None = None,
    live_endpoint: str | None = None,
    on_presence: Callable[[dict[str, Any], float], Any] | None = None,
) -> AgentStats:
    stats = stats if stats is not None else AgentStats()
    while True:
        started = time.monotonic()
        stats.sent += 1
        telemetry = read_telemetry()
        if live_endpoint is not None:
            telemetry = {**telemetry, "live_endpoint": live_endpoint}
        sent_at = time.time()
        ack = beat_once(client, machine_id, telemetry, log, stats)
        if ack is not None:
            stats.accepted += 1
            stats.consecutive_failed = 0
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
            stats.consecutive_failed = 0 if stats.last_not_served else stats.consecutive_failed + 1
        if once:
            return stats
        wait = backoff_delay(interval_s, stats.consecutive_failed)
        if stats.consecutive_failed:
            log(f"next heartbeat in {duration(wait)} ({stats.consecutive_failed} failed in a row)")
        sleep(max(0.0, wait - (time.monotonic() - started)))
