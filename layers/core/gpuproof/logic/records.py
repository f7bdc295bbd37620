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


@dataclass(frozen=True)
class Attempts:
    """A machine's challenges: taken, failed (refused, or abandoned after the commitment), the
    current run of consecutive failures, and until when it must wait (logic/attempts.py)."""

    taken: int = 0
    failed: int = 0
    consecutive_failed: int = 0
    last_failed_at: float | None = None
    cooldown_until: float | None = None
    # The last challenge whose outcome is counted, so no challenge is counted twice.
    counted_challenge_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "taken": self.taken,
            "failed": self.failed,
            "consecutive_failed": self.consecutive_failed,
            "last_failed_at": self.last_failed_at,
            "cooldown_until": self.cooldown_until,
            "counted_challenge_id": self.counted_challenge_id,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> Attempts:
        if not doc:
            return cls()
        return cls(
            taken=int(doc.get("taken", 0)),
            failed=int(doc.get("failed", 0)),
            consecutive_failed=int(doc.get("consecutive_failed", 0)),
            last_failed_at=None if doc.get("last_failed_at") is None else float(doc["last_failed_at"]),
            cooldown_until=None if doc.get("cooldown_until") is None else float(doc["cooldown_until"]),
            counted_challenge_id=doc.get("counted_challenge_id"),
        )


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
    attempts: Attempts = field(default_factory=Attempts)
    # The Confirmed verdict whose score is on chain ({"verdict_id", "round", "upload_info"}), set
    # when it is published; a revocation withdraws exactly this one.
    scored: dict[str, Any] | None = None
    # The GPU UUIDs this machine holds in GpuUuidsTable (released when it is revoked or exits).
    gpu_uuids: list[str] = field(default_factory=list)
    last_heartbeat_at: float | None = None
    # When a watched (published/offline) machine's liveness is looked at next (ByLivenessDue).
    liveness_due_at: float | None = None
    offline_since: float | None = None
    # The claim its last passing verification held it to ({"claimed_gpu_model", "gpu_count"}):
    # presence checks are sized from it. `presence` is the schedule and open check
    # (logic/presence.py); `presence_v` its version, every write of it conditional on it.
    claim: dict[str, Any] | None = None
    presence: dict[str, Any] | None = None
    presence_v: int = 0
    # The agent's live-check address from its latest signed heartbeat (a claim; None if none).
    live_endpoint: str | None = None


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
    # The capacity phase's session (logic/capacity.py, docs/protocol.md §17): the service's own
    # records (opened_at, the signed commitment and its receipt, every round's nonce and times,
    # the draw secret); `capacity_step` counts its writes (each conditional on the previous);
    # `capacity_openings` is the host's openings sent inline: their binary transcript
    # (protocol/capacity/wire.py, at most 256 KiB; larger ones are uploaded: `openings_ref`).
    capacity: dict[str, Any] | None = None
    capacity_step: int = 0
    capacity_openings: bytes | None = None


@dataclass
class StoredReport:
    machine_id: str
    challenge_id: str
    received_at: float
    report_sha256: str
    signed_report: dict[str, Any]
    verification: dict[str, Any] | None = None


class VerdictResult(StrEnum):
    """DBC's three outcomes of a committee round, and the service's withdrawal of a published
    score (`revoked`: the machine failed re-verification, went offline too long, or exited)."""

    confirmed = "confirmed"
    refused = "refused"
    no_consensus = "no_consensus"
    revoked = "revoked"


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
    # A Revoked verdict only: {"reason", "detail", "revokes_verdict_id", "evidence"}; its
    # evidence_digest is the SHA-256 of this document's canonical JSON.
    revocation: dict[str, Any] | None = None

    @staticmethod
    def id_for(machine_id: str, round_: int) -> str:
        return f"{machine_id}:{round_}"

    @staticmethod
    def revocation_id_for(machine_id: str, round_: int) -> str:
        return f"{machine_id}:{round_}:revoked"
