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
    # Where a revocation's verdict is written (the functions that revoke are granted it).
    verdicts_table: str | None = None

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
            verdicts_table=os.environ.get("VERDICTS_TABLE") or None,
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


@dataclass(frozen=True)
class LivenessPolicy:
    """When a watched machine is offline, and when offline costs its score (docs/machine-states.md)."""

    offline_after_s: int  # no heartbeat this long: offline (template OfflineAfterSeconds)
    revoke_offline_after_s: int  # offline this long: revoked (template RevokeOfflineAfterSeconds)

    @classmethod
    def from_env(cls) -> LivenessPolicy:
        offline = int(_env("OFFLINE_AFTER_S", "1800"))
        revoke = int(_env("REVOKE_OFFLINE_AFTER_S", "86400"))
        if not 1 <= offline <= 7 * 86400 or not 0 <= revoke <= 30 * 86400:
            raise RuntimeError(
                f"OFFLINE_AFTER_S={offline} or REVOKE_OFFLINE_AFTER_S={revoke} is out of bounds"
            )
        return cls(offline, revoke)


@dataclass(frozen=True)
class PresencePolicy:
    """Presence checks (docs/protocol.md §19): scored machines re-challenged at network-wide waves."""

    checks_per_day: float  # λ: waves per day (template PresenceChecksPerDay); 0 turns them off
    max_misses: int  # misses among the last `miss_window` checks that revoke (PresenceMaxMisses)
    lead_s: int  # a check is announced (heartbeat answers) this long before it opens
    fetch_allowance_s: float  # its nonce must be fetched within this of opening
    proof_allowance_s: float  # the openings must arrive within this after the commitment's deadline
    # False (the template's default, PresenceEnforce): shadow mode, a miss or failure is recorded
    # on the machine and logged but takes nothing (no offline, no revocation).
    enforce: bool = False
    miss_window: int = 10  # the last checks misses are counted over (template PresenceMissWindow)
    # p: each machine is in a wave with this probability, drawn per wave and machine by the
    # wave's secret (template PresenceWaveFraction; 1: every scored machine in every wave).
    wave_fraction: float = 1.0
    # A machine's check opens within this of its wave's instant (an offset from the wave's secret):
    # spreads the fetches of a large fleet, and stays below 2·W − D for every model in §8's table,
    # so two identities on one GPU still cannot both answer (docs/protocol.md §19).
    spread_s: float = 5.0
    # The longest proof deadline a claim may carry (§8's table: 26.9 s, L40S): sizes the minimum gap
    # between waves, so one machine's check is over before its next one is announced.
    deadline_bound_s: float = 60.0

    @property
    def enabled(self) -> bool:
        return self.checks_per_day > 0

    @property
    def mean_gap_s(self) -> float:
        return 86400.0 / self.checks_per_day

    @property
    def min_gap_s(self) -> float:
        """Waves are at least this far apart: a check's whole window (spread, fetch allowance,
        deadline, openings) plus the next one's announcement lead."""
        return (
            self.lead_s
            + self.spread_s
            + self.fetch_allowance_s
            + self.deadline_bound_s
            + self.proof_allowance_s
        )

    @property
    def cache_s(self) -> float:
        """How long the machine API may keep the schedule it read (a third of the lead)."""
        return self.lead_s / 3.0

    @property
    def horizon_s(self) -> float:
        """The sweeper keeps waves drawn this far ahead: every wave is stored, and in any cache,
        before its checks are announced."""
        return 2.0 * self.lead_s + 120.0

    @classmethod
    def from_env(cls) -> PresencePolicy:
        policy = cls(
            checks_per_day=float(_env("PRESENCE_CHECKS_PER_DAY", "6")),
            max_misses=int(_env("PRESENCE_MAX_MISSES", "3")),
            lead_s=int(_env("PRESENCE_LEAD_S", "180")),
            fetch_allowance_s=float(_env("PRESENCE_FETCH_ALLOWANCE_S", "5")),
            proof_allowance_s=float(_env("PRESENCE_PROOF_ALLOWANCE_S", "120")),
            enforce=_env("PRESENCE_ENFORCE", "false").lower() == "true",
            miss_window=int(_env("PRESENCE_MISS_WINDOW", "10")),
            wave_fraction=float(_env("PRESENCE_WAVE_FRACTION", "1")),
            spread_s=float(_env("PRESENCE_WAVE_SPREAD_S", "5")),
            deadline_bound_s=float(_env("PRESENCE_DEADLINE_BOUND_S", "60")),
        )
        problems = policy.problems()
        if problems:
            raise RuntimeError(f"presence settings out of bounds ({'; '.join(problems)}): {policy}")
        return policy

    def problems(self) -> list[str]:
        """What is out of bounds in these settings (empty: none)."""
        out = []
        if not 0 <= self.checks_per_day <= 86400:
            out.append("checks_per_day outside 0..86400")
        if not 1 <= self.max_misses <= 100:
            out.append("max_misses outside 1..100")
        if not self.max_misses <= self.miss_window <= 100:
            out.append("miss_window outside max_misses..100 (PresenceMissWindow >= PresenceMaxMisses)")
        if not 0 < self.wave_fraction <= 1:
            out.append("wave_fraction outside (0, 1]")
        if not 0 <= self.lead_s <= 3600:
            out.append("lead_s outside 0..3600")
        if not 0 < self.fetch_allowance_s <= 60:
            out.append("fetch_allowance_s outside (0, 60]")
        if not 0 < self.proof_allowance_s <= 900:
            out.append("proof_allowance_s outside (0, 900]")
        if not 0 <= self.spread_s <= 60:
            out.append("spread_s outside 0..60")
        if not 0 < self.deadline_bound_s <= 600:
            out.append("deadline_bound_s outside (0, 600]")
        # Each gap is the minimum gap plus an exponential (the unpredictable part), whose mean is
        # at least a quarter of the minimum gap (6 a day: 14,030 s random above 370 s).
        if self.enabled and self.mean_gap_s < 1.25 * self.min_gap_s:
            out.append(
                f"{self.checks_per_day:g} waves a day (mean gap {self.mean_gap_s:.0f} s) leave too little "
                f"of the gap random above the minimum gap of {self.min_gap_s:.0f} s (at least a quarter)"
            )
        return out
