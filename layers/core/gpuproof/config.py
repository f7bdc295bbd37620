"""Service settings read from the function's environment (names set in template.yaml)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from gpuproof.protocol import limits
from gpuproof.protocol.delivery import DEFAULT_MAX_BYTES_PER_GPU as DEFAULT_TRANSCRIPT_MAX_BYTES_PER_GPU


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
            shadow_checks=shadow_checks(),
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
        )


CAPACITY_CHECK = "capacity"  # logic/verification.py's check of the capacity phase


def shadow_checks() -> frozenset[str]:
    """SHADOW_CHECKS, plus the capacity check unless CAPACITY_ENFORCEMENT=enforce (template
    parameter CapacityEnforcement, default shadow: a check new to production starts in shadow)."""
    named = {c.strip() for c in os.environ.get("SHADOW_CHECKS", "").split(",") if c.strip()}
    enforcement = os.environ.get("CAPACITY_ENFORCEMENT", "shadow").strip().lower()
    if enforcement not in ("shadow", "enforce"):
        raise RuntimeError(f"CAPACITY_ENFORCEMENT={enforcement!r} is neither shadow nor enforce")
    if enforcement == "shadow":
        named.add(CAPACITY_CHECK)
    return frozenset(named)


def max_gpus_per_machine() -> int:
    """MAX_GPUS_PER_MACHINE (template parameter MaxGpusPerMachine), never above the wire ceiling."""
    value = int(_env("MAX_GPUS_PER_MACHINE", str(limits.DEFAULT_MAX_GPUS_PER_MACHINE)))
    if not 1 <= value <= limits.PROTOCOL_MAX_GPUS:
        raise RuntimeError(f"MAX_GPUS_PER_MACHINE={value} is outside 1..{limits.PROTOCOL_MAX_GPUS}")
    return value


MAX_BODY_BYTES = limits.MAX_BODY_BYTES
