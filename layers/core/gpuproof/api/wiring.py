"""Builds the adapters behind the ports once per execution environment (cold start)."""

from __future__ import annotations

import functools
import logging
import os

from gpuproof.adapters.clock import SystemClock
from gpuproof.adapters.dynamo import DynamoMachineStore
from gpuproof.adapters.queue import SqsVerifyQueue
from gpuproof.adapters.transcripts import S3TranscriptStore
from gpuproof.adapters.waves import DynamoWaveStore
from gpuproof.config import LivenessPolicy, PresencePolicy, Settings
from gpuproof.logic.attempts import CooldownPolicy
from gpuproof.logic.committee import CommitteeServices
from gpuproof.logic.console import ConsoleServices
from gpuproof.logic.machines import Services
from gpuproof.logic.ports import TranscriptStore
from gpuproof.logic.reconcile import ReconcileServices
from gpuproof.logic.verification import VerifyServices


def transcript_store(settings: Settings) -> TranscriptStore | None:
    """The transcripts bucket where the function is told of one (TRANSCRIPTS_BUCKET)."""
    if not settings.transcripts_bucket:
        return None
    return S3TranscriptStore(settings.transcripts_bucket, settings.region)


def wave_store(cache_s: float = 0.0) -> DynamoWaveStore | None:
    """The presence waves' schedule (RoundsTable's reserved item) where the function is told of
    the table (ROUNDS_TABLE: the sweeper, and the machine API, which may only read it)."""
    table = os.environ.get("ROUNDS_TABLE")
    if not table:
        return None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return DynamoWaveStore(table, region, cache_s)


@functools.cache
def machine_services() -> Services:
    settings = Settings.from_env()
    presence = PresencePolicy.from_env()
    return Services(
        store=DynamoMachineStore(settings),
        queue=SqsVerifyQueue(settings.verify_queue_url, settings.region),
        clock=SystemClock(),
        challenge_ttl_s=settings.challenge_ttl_s,
        allow_cpu_backend=settings.allow_cpu_backend,
        cooldown=CooldownPolicy(settings.cooldown_s, settings.cooldown_max_s),
        max_gpus_per_machine=settings.max_gpus_per_machine,
        transcripts=transcript_store(settings),
        transcript_max_bytes_per_gpu=settings.transcript_max_bytes_per_gpu,
        cpu_proof_deadline_s=settings.cpu_proof_deadline_s,
        liveness=LivenessPolicy.from_env(),
        presence=presence,
        waves=wave_store(presence.cache_s),
    )


@functools.cache
def liveness_store() -> DynamoMachineStore:
    """The sweeper's view of watched machines (MachinesTable, VerdictsTable, GpuUuidsTable)."""
    return DynamoMachineStore(Settings.from_env())


@functools.cache
def verify_services() -> VerifyServices:
    settings = Settings.from_env()
    return VerifyServices(
        store=DynamoMachineStore(settings),
        clock=SystemClock(),
        allow_cpu_backend=settings.allow_cpu_backend,
        shadow_checks=settings.shadow_checks,
        enforced_checks=settings.enforced_checks,
        cooldown=CooldownPolicy(settings.cooldown_s, settings.cooldown_max_s),
        max_gpus_per_machine=settings.max_gpus_per_machine,
        transcripts=transcript_store(settings),
        transcript_max_bytes_per_gpu=settings.transcript_max_bytes_per_gpu,
        cpu_proof_deadline_s=settings.cpu_proof_deadline_s,
    )


# Local development only: the template's BeaconSeed default; a deployment must override it.
LOCAL_BEACON_SEED = "gpuproof-local-beacon-seed-not-secret-override-in-aws"


@functools.cache
def committee_services() -> CommitteeServices:
    """The committee API and the sweeper; the beacon (its seed is a secret) only where it is set."""
    from gpuproof.adapters.committee_store import CommitteeSettings, DynamoCommitteeStore
    from gpuproof.committee.beacon import HashChainBeacon

    settings = Settings.from_env()
    committee = CommitteeSettings.from_env()
    beacon = None
    if committee.beacon_seed:
        if committee.beacon_seed == LOCAL_BEACON_SEED:
            logging.getLogger(__name__).warning(
                "BEACON_SEED is the public local default: draws are predictable"
            )
        beacon = HashChainBeacon(committee.beacon_seed.encode("utf-8"), committee.beacon_length)
    return CommitteeServices(
        store=DynamoCommitteeStore(settings, committee),
        clock=SystemClock(),
        window_scale=committee.window_scale,
        max_in_flight=committee.max_in_flight,
        allow_cpu_backend=settings.allow_cpu_backend,
        beacon=beacon,
        operator_key=committee.operator_key,
        transcripts=transcript_store(settings),
    )


def reconcile_services() -> ReconcileServices:
    """The reconciler (the sweeper's tick and `gpuproof-ops reconcile`); RECONCILE_GRACE_S is read
    at each call (default 300 s: younger verdicts are the stream's)."""
    from gpuproof.adapters.dynamo import DynamoReconcileMachines
    from gpuproof.chain.store import DynamoVerdictOutbox

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return ReconcileServices(
        outbox=DynamoVerdictOutbox(
            os.environ["VERDICTS_TABLE"], os.environ.get("PUBLISHED_BATCHES_TABLE"), region
        ),
        machines=DynamoReconcileMachines(
            os.environ["MACHINES_TABLE"], os.environ.get("ROUNDS_TABLE"), region
        ),
        grace_s=float(os.environ.get("RECONCILE_GRACE_S", "300")),
    )


@functools.cache
def console_services() -> ConsoleServices:
    """The console's reads: machines, reports and heartbeats, the committee's rounds (no beacon
    seed and no key reach it: it is told only table names)."""
    from gpuproof.adapters.console_store import AwsOperatorReads, DynamoConsoleReads

    settings = Settings.from_env()
    queues = {
        name: url
        for name, url in (
            ("VerifyQueue", settings.verify_queue_url),
            ("VerifyDLQ", os.environ.get("VERIFY_DLQ_URL", "")),
            ("PublisherDLQ", os.environ.get("PUBLISHER_DLQ_URL", "")),
        )
        if url
    }
    alarms = [a for a in os.environ.get("ALARM_NAMES", "").split(",") if a]
    return ConsoleServices(
        machines=DynamoMachineStore(settings),
        overview=DynamoConsoleReads(),
        committee=committee_services(),
        clock=SystemClock(),
        heartbeat_window_s=settings.heartbeat_retention_s,
        operator=AwsOperatorReads(queues, os.environ.get("VERDICTS_TABLE"), alarms, settings.region),
    )
