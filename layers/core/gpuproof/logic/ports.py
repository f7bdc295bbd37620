"""Ports: what the use cases need from the outside world. Adapters implement them."""

from __future__ import annotations

from typing import Any, Protocol

from gpuproof.logic.records import Attempts, Challenge, Machine, StoredReport, Verdict
from gpuproof.logic.states import MachineState
from gpuproof.protocol.delivery import TranscriptRef, TranscriptUpload
from gpuproof.protocol.httpsig import SignedRequest
from gpuproof.protocol.reasons import Reason


class Clock(Protocol):
    def now(self) -> float: ...


class MachineStore(Protocol):
    """Machines, challenges, reports and used request nonces; every write is conditional."""

    def get_machine(self, machine_id: str) -> Machine | None: ...

    def machines_in_state(self, state: str) -> list[Machine]: ...

    def nonce_used(self, request: SignedRequest) -> bool: ...

    def register(self, machine: Machine, request: SignedRequest) -> None:
        """Store a new machine and consume the request nonce, atomically.

        Raises Rejection (machine_exists / replayed_nonce) when a condition fails."""

    def issue_challenge(
        self, challenge: Challenge, previous: Machine, attempts: Attempts, request: SignedRequest
    ) -> None:
        """Store the challenge, move the machine to challenged and write its attempts, atomically,
        provided the machine's last challenge is still `previous`'s (else machine_state_conflict)."""

    def get_challenge(self, challenge_id: str) -> Challenge | None: ...

    def record_abandoned(self, machine: Machine, challenge_id: str, attempts: Attempts) -> None:
        """Supersede the open, committed `challenge_id` and store `attempts` (it counted as failed),
        atomically, provided it is still the machine's last challenge."""

    def record_commitment(
        self,
        challenge: Challenge,
        commitment_sha256: str,
        received_at: float,
        pairs: list[dict[str, Any]],
        pairs_secret: str,
        request: SignedRequest,
    ) -> None:
        """Record the commitment's receipt and the drawn pairs once, while the challenge is open."""

    def record_capacity(
        self,
        challenge: Challenge,
        session: dict[str, Any],
        at: float,
        request: SignedRequest,
        openings: bytes | None = None,
    ) -> None:
        """Write the capacity session (and the openings, once) as step capacity_step + 1, provided
        the stored step is still `challenge.capacity_step` and the challenge is open at `at`
        (else capacity_state_conflict); consume the request nonce, atomically."""

    def accept_report(self, report: StoredReport, compressed: bytes, request: SignedRequest) -> None:
        """Store the report, mark the challenge used, move the machine to submitted, atomically."""

    def record_heartbeat(
        self,
        machine_id: str,
        received_at: float,
        telemetry: dict[str, Any],
        request: SignedRequest,
        back_online: bool = False,
        liveness_due_at: float | None = None,
    ) -> None:
        """Keep the latest heartbeat on the machine (which must exist) and consume the nonce; with
        `back_online` an offline machine is published (online) again, re-armed at `liveness_due_at`."""

    def update_presence(
        self, machine: Machine, presence: dict[str, Any], request: SignedRequest | None = None
    ) -> None:
        """Write the machine's presence document, conditional on its version as read."""

    def revoke(
        self,
        machine: Machine,
        state: MachineState,
        reason: Reason,
        verdict: Verdict | None,
        now: float,
        request: SignedRequest | None = None,
    ) -> None:
        """Move the machine (from its state as read) to `state` with `reason`, drop its score,
        write the Revoked `verdict` and release its GPU UUIDs, atomically."""

    def get_report(self, machine_id: str, challenge_id: str) -> StoredReport | None: ...

    def set_state_reasons(self, machine_id: str, state: str, reasons: list[dict[str, str]]) -> bool:
        """Store why a machine in `state` waits or is stuck, provided it is still in `state` and its
        reasons differ (never its state or `updated_at`); True when they changed."""

    def list_reports(self, machine_id: str, limit: int = 10) -> list[StoredReport]: ...

    def heartbeats(self, machine_id: str, since: float, limit: int) -> list[dict[str, Any]]:
        """The stored heartbeats ({"received_at", "telemetry"}) received at or after `since`, the
        newest `limit` of them, oldest first (the console's read, logic/console.py MachineReads)."""


class VerifyQueue(Protocol):
    def enqueue(self, machine_id: str, challenge_id: str) -> None: ...


class TranscriptStore(Protocol):
    """Proof transcripts, one object per challenge, uploaded by the probe out of band."""

    def upload_target(
        self,
        machine_id: str,
        challenge_id: str,
        max_bytes: int,
        expires_at: float,
        now: float,
        suffix: str = "",
    ) -> TranscriptUpload:
        """A presigned upload for this challenge's key (+ `suffix`: another object of the same
        challenge, e.g. the capacity openings) only, at most `max_bytes`, until `expires_at`."""

    def size(self, machine_id: str, challenge_id: str, suffix: str = "") -> int | None:
        """The uploaded object's size in bytes; None when nothing was uploaded."""

    def read(
        self, machine_id: str, challenge_id: str, ref: TranscriptRef, max_bytes: int, suffix: str = ""
    ) -> tuple[bytearray | None, list[Reason]]:
        """The object's bytes, streamed and checked against `ref` (size, SHA-256) and `max_bytes`;
        else why not (absent, too large, mismatched). Transient storage errors raise."""

    def download_url(self, machine_id: str, challenge_id: str, expires_in_s: int, suffix: str = "") -> str:
        """A presigned GET of the object (+ `suffix`: the capacity openings), for a committee member."""
