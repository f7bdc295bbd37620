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
    # Set once when the proof-of-throughput commitment arrives (service clock), with the pairs
    # the service then drew and the secret it drew them with (revealed to committee members).
    commitment_sha256: str | None = None
    commitment_received_at: float | None = None
    pairs: list[dict[str, Any]] | None = None
    pairs_secret: str | None = None


@dataclass
class StoredReport:
    machine_id: str
    challenge_id: str
    received_at: float
    report_sha256: str
    signed_report: dict[str, Any]
    verification: dict[str, Any] | None = None


class VerdictResult(StrEnum):
    """DBC's three outcomes of a committee round."""

    confirmed = "confirmed"
    refused = "refused"
    no_consensus = "no_consensus"


class Vote(StrEnum):
    agreeing = "agreeing"
    dissenting = "dissenting"
    absent = "absent"


@dataclass
class Verdict:
    """A final decision on one committee round; written exactly once, published from the stream.

    `upload_info` holds DBC's CommitteeUploadInfo fields as decided (calc_point included, rand_str
    excluded); `committee` lists {"account", "vote"} for every booked member; `evidence_digest`
    is the sha256 hex of the stored signed report (the transcript members inspected).
    """

    verdict_id: str
    machine_id: str
    round: int
    result: VerdictResult
    upload_info: dict[str, Any]
    committee: list[dict[str, str]]
    performance_index: float | None
    evidence_digest: str
    decided_at: float
    publication: dict[str, Any] | None = None

    @staticmethod
    def id_for(machine_id: str, round_: int) -> str:
        return f"{machine_id}:{round_}"
