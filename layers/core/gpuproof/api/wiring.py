"""Builds the adapters behind the ports once per execution environment (cold start)."""

from __future__ import annotations

import functools

from gpuproof.adapters.clock import SystemClock
from gpuproof.adapters.dynamo import DynamoMachineStore
from gpuproof.adapters.queue import SqsVerifyQueue
from gpuproof.config import Settings
from gpuproof.logic.machines import Services


@functools.cache
def machine_services() -> Services:
    settings = Settings.from_env()
    return Services(
        store=DynamoMachineStore(settings),
        queue=SqsVerifyQueue(settings.verify_queue_url, settings.region),
        clock=SystemClock(),
        challenge_ttl_s=settings.challenge_ttl_s,
    )
