"""Service settings read from the function's environment (names set in template.yaml)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from gpuproof.protocol import limits
from gpuproof.protocol.delivery import DEFAULT_MAX_BYTES_PER_GPU as DEFAULT_TRANSCRIPT_MAX_BYTES_PER_GPU

DEFAULT_HEARTBEAT_RETENTION_DAYS = 14
MAX_HEARTBEAT_RETENTION_DAYS = 365


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(f"environment variable {name} is not set (see template.yaml)")
    return value


@dataclass(frozen=True)
class Settings:
    machines_table: str
    challenges_table: str | None  # the sweeper is neither told nor granted it
    reports_table: str
    request_nonces_table: str | None
    verify_queue_url: str
    gpu_uuids_table: str | None
    idempotency_table: str | None
    allow_cpu_backend: bool
    shadow_checks: frozenset[str]
    challenge_ttl_s: int
    max_skew_s: int
    cooldown_s: int
    cooldown_max_s: int
    region: str
    max_gpus_per_machine: int = limits.DEFAULT_MAX_GPUS_PER_MACHINE
    transcripts_bucket: str | None = None
    transcript_max_bytes_per_gpu: int = DEFAULT_TRANSCRIPT_MAX_BYTES_PER_GPU
    enforced_checks: frozenset[str] = frozenset()
    # The heartbeat history (HEARTBEATS_TABLE) and how long each heartbeat stays (days in the env).
    heartbeats_table: str | None = None
    heartbeat_retention_s: int = DEFAULT_HEARTBEAT_RETENTION_DAYS * 86400
    # The CPU backend's deadline floor (template CpuProofDeadlineSeconds; 0: the derived one).
    cpu_proof_deadline_s: float = 0.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            machines_table=_env("MACHINES_TABLE"),
            challenges_table=os.environ.get("CHALLENGES_TABLE"),
            reports_table=_env("REPORTS_TABLE"),
            request_nonces_table=os.environ.get("REQUEST_NONCES_TABLE"),
            verify_queue_url=os.environ.get("VERIFY_QUEUE_URL", ""),
            gpu_uuids_table=os.environ.get("GPU_UUIDS_TABLE"),
            idempotency_table=os.environ.get("IDEMPOTENCY_TABLE"),
            allow_cpu_backend=os.environ.get("ALLOW_CPU_BACKEND", "false").lower() == "true",
            shadow_checks=_names("SHADOW_CHECKS"),
            enforced_checks=enforced_checks(),
            challenge_ttl_s=int(_env("CHALLENGE_TTL_S", "900")),
            max_skew_s=int(_env("MAX_SKEW_S", "300")),
            cooldown_s=int(_env("CHALLENGE_COOLDOWN_S", "600")),
            cooldown_max_s=int(_env("CHALLENGE_COOLDOWN_MAX_S", "86400")),
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            max_gpus_per_machine=max_gpus_per_machine(),
            transcripts_bucket=os.environ.get("TRANSCRIPTS_BUCKET") or None,
            transcript_max_bytes_per_gpu=int(
                _env("TRANSCRIPT_MAX_BYTES_PER_GPU", str(DEFAULT_TRANSCRIPT_MAX_BYTES_PER_GPU))
            ),
            heartbeats_table=os.environ.get("HEARTBEATS_TABLE") or None,
            heartbeat_retention_s=heartbeat_retention_days() * 86400,
            cpu_proof_deadline_s=cpu_proof_deadline_s(),
        )


def _names(var: str) -> frozenset[str]:
    return frozenset(c.strip() for c in os.environ.get(var, "").split(",") if c.strip())


def heartbeat_retention_days() -> int:
    """HEARTBEAT_RETENTION_DAYS (template parameter HeartbeatRetentionDays), 1..365."""
    value = int(_env("HEARTBEAT_RETENTION_DAYS", str(DEFAULT_HEARTBEAT_RETENTION_DAYS)))
    if not 1 <= value <= MAX_HEARTBEAT_RETENTION_DAYS:
        raise RuntimeError(f"HEARTBEAT_RETENTION_DAYS={value} is outside 1..{MAX_HEARTBEAT_RETENTION_DAYS}")
    return value


CPU_PROOF_DEADLINE_MAX_S = 600.0


def cpu_proof_deadline_s() -> float:
    """CPU_PROOF_DEADLINE_S (template parameter CpuProofDeadlineSeconds), within 0..600 s."""
    value = float(_env("CPU_PROOF_DEADLINE_S", "0"))
    if not 0.0 <= value <= CPU_PROOF_DEADLINE_MAX_S:
        raise RuntimeError(f"CPU_PROOF_DEADLINE_S={value} is outside 0..{CPU_PROOF_DEADLINE_MAX_S:g}")
    return value


CAPACITY_CHECK = "capacity"  # logic/verification.py's check of the capacity phase


def capacity_enforcement() -> str:
    """CAPACITY_ENFORCEMENT (template parameter CapacityEnforcement): shadow (the default) or enforce."""
    value = os.environ.get("CAPACITY_ENFORCEMENT", "shadow").strip().lower()
    if value not in ("shadow", "enforce"):
        raise RuntimeError(f"CAPACITY_ENFORCEMENT={value!r} is neither shadow nor enforce")
    return value


def enforced_checks() -> frozenset[str]:
    """ENFORCE_CHECKS, plus the capacity check when CAPACITY_ENFORCEMENT=enforce: checks new to
    production (logic/verification.py SHADOW_BY_DEFAULT, the capacity check among them) decide
    only once named here."""
    named = _names("ENFORCE_CHECKS")
    return named | {CAPACITY_CHECK} if capacity_enforcement() == "enforce" else named


def max_gpus_per_machine() -> int:
    """MAX_GPUS_PER_MACHINE (template parameter MaxGpusPerMachine), never above the wire ceiling."""
    value = int(_env("MAX_GPUS_PER_MACHINE", str(limits.DEFAULT_MAX_GPUS_PER_MACHINE)))
    if not 1 <= value <= limits.PROTOCOL_MAX_GPUS:
        raise RuntimeError(f"MAX_GPUS_PER_MACHINE={value} is outside 1..{limits.PROTOCOL_MAX_GPUS}")
    return value


MAX_BODY_BYTES = limits.MAX_BODY_BYTES
