"""Builds the adapters behind the ports once per execution environment (cold start)."""

from __future__ import annotations

import functools

from gpuproof.adapters.clock import SystemClock
from gpuproof.adapters.dynamo import DynamoMachineStore
from gpuproof.adapters.queue import SqsVerifyQueue
from gpuproof.config import Settings
from gpuproof.logic.machines import Services
from gpuproof.logic.verification import VerifyServices


@functools.cache
def machine_services() -> Services:
    settings = Settings.from_env()
    return Services(
        store=DynamoMachineStore(settings),
        queue=SqsVerifyQueue(settings.verify_queue_url, settings.region),
        clock=SystemClock(),
        challenge_ttl_s=settings.challenge_ttl_s,
    )


@functools.cache
def verify_services() -> VerifyServices:
    settings = Settings.from_env()
    return VerifyServices(
        store=DynamoMachineStore(settings),
        clock=SystemClock(),
        allow_cpu_backend=settings.allow_cpu_backend,
        shadow_checks=settings.shadow_checks,
    )
