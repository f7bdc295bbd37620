"""What the service stores, as plain values (the adapters map them to tables)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gpuproof.logic.states import MachineState


class ChallengeStatus(StrEnum):
    issued = "issued"
    used = "used"
    superseded = "superseded"


@dataclass
class Machine:
    machine_id: str
    owner: str
    region: str
    state: MachineState
    registered_at: float
    updated_at: float
    last_challenge_id: str | None = None
    state_reasons: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Challenge:
    challenge_id: str
    machine_id: str
    nonce: str
    issued_at: float
    expires_at: float
    params: dict[str, Any]
    status: ChallengeStatus = ChallengeStatus.issued


@dataclass
class StoredReport:
    machine_id: str
    challenge_id: str
    received_at: float
    report_sha256: str
    signed_report: dict[str, Any]
    verification: dict[str, Any] | None = None
