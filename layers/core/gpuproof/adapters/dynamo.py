"""MachineStore on DynamoDB: every state change is one conditional transaction."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from gpuproof.adapters.tables import (
    ChallengeModel,
    GpuUuidModel,
    HeartbeatModel,
    MachineModel,
    ReportModel,
    RequestNonceModel,
    bind,
)
from gpuproof.adapters.transactions import REPLAYED, TransactWriteBuilder, commit, consume_nonce, nonce_item
from gpuproof.config import Settings
from gpuproof.errors import Rejection
from gpuproof.logic.records import Attempts, Challenge, ChallengeStatus, Machine, StoredReport
from gpuproof.logic.states import MachineState, states_before
from gpuproof.protocol.gpu_uuid import normalise_gpu_uuid
from gpuproof.protocol.httpsig import SignedRequest
from gpuproof.protocol.limits import DYNAMODB_MAX_TRANSACTION_ITEMS, VERIFICATION_FIXED_ITEMS
from gpuproof.protocol.reasons import Reason

CHALLENGE_RETENTION_S = 86400


def claimed_uuids(uuids: Sequence[str]) -> list[str]:
    """The GpuUuids keys a verification writes: normalised, sorted, once each, within one transaction."""
    keys = set()
    for raw in uuids:
        uuid = normalise_gpu_uuid(raw)
        if uuid is None:
            raise ValueError(f"{raw!r} is not a GPU UUID; the verify worker refuses it before recording")
        keys.add(uuid)
    if len(keys) + VERIFICATION_FIXED_ITEMS > DYNAMODB_MAX_TRANSACTION_ITEMS:
        raise ValueError(f"{len(keys)} GPU claims do not fit one transaction; intake bounds them")
    return sorted(keys)


def _nonce_key(request: SignedRequest) -> str:
    return nonce_item(request).nonce_key


def _machine(item: MachineModel) -> Machine:
    return Machine(
        machine_id=item.machine_id,
        owner=item.owner,
        region=item.region,
        state=MachineState(item.state),
        registered_at=float(item.registered_at),
        updated_at=float(item.updated_at),
        last_challenge_id=item.last_challenge_id,
        state_reasons=list(item.state_reasons or []),
        attempts=Attempts.from_dict(item.attempts),
        live_endpoint=_live_endpoint(item.last_heartbeat),
    )


def _live_endpoint(heartbeat: Any) -> str | None:
    """The heartbeat's live endpoint (validated by the Heartbeat model when it was accepted)."""
    value = heartbeat.get("live_endpoint") if isinstance(heartbeat, dict) else None
    return value if isinstance(value, str) else None


def _report(item: ReportModel) -> StoredReport:
    return StoredReport(
        machine_id=item.machine_id,
        challenge_id=item.challenge_id,
        received_at=float(item.received_at),
        report_sha256=item.report_sha256,
        signed_report=json.loads(zlib.decompress(item.body)),
        verification=item.verification,
    )


class DynamoMachineStore:
    def __init__(self, settings: Settings) -> None:
        bind(MachineModel, settings.machines_table, settings.region)
        bind(ReportModel, settings.reports_table, settings.region)
        # Each function is granted (and given the name of) only the tables it uses.
        if settings.challenges_table:
            bind(ChallengeModel, settings.challenges_table, settings.region)
        if settings.request_nonces_table:
            bind(RequestNonceModel, settings.request_nonces_table, settings.region)
        if settings.gpu_uuids_table:
            bind(GpuUuidModel, settings.gpu_uuids_table, settings.region)
        self._heartbeats = settings.heartbeats_table
        self._heartbeat_retention_s = settings.heartbeat_retention_s
        if settings.heartbeats_table:
            bind(HeartbeatModel, settings.heartbeats_table, settings.region)
        self._connection = Connection(region=settings.region)

    # -- reads -----------------------------------------------------------------------------
    def get_machine(self, machine_id: str) -> Machine | None:
        try:
            return _machine(MachineModel.get(machine_id, consistent_read=True))
        except DoesNotExist:
            return None

    def machines_in_state(self, state: str) -> list[Machine]:
        """The machines in `state` (ByState index, then a consistent read of each)."""
        found = (self.get_machine(k.machine_id) for k in MachineModel.by_state.query(state))
        return [m for m in found if m is not None and m.state == state]

    def nonce_used(self, request: SignedRequest) -> bool:
        try:
            RequestNonceModel.get(_nonce_key(request), consistent_read=True)
        except DoesNotExist:
            return False
        return True

    def get_challenge(self, challenge_id: str) -> Challenge | None:
        try:
            item = ChallengeModel.get(challenge_id, consistent_read=True)
        except DoesNotExist:
            return None
        return Challenge(
            challenge_id=item.challenge_id,
            machine_id=item.machine_id,
            nonce=item.nonce,
            issued_at=float(item.issued_at),
            expires_at=float(item.expires_at),
            params=item.params,
            status=ChallengeStatus(item.status),
            commitment_sha256=item.commitment_sha256,
            commitment_received_at=None
            if item.commitment_received_at is None
            else float(item.commitment_received_at),
            pairs=item.pairs,
            pairs_secret=item.pairs_secret,
            capacity=item.capacity,
            capacity_step=int(item.capacity_step or 0),
            capacity_openings=None if item.capacity_openings is None else bytes(item.capacity_openings),
        )

    def get_report(self, machine_id: str, challenge_id: str) -> StoredReport | None:
        try:
            return _report(ReportModel.get(machine_id, challenge_id, consistent_read=True))
        except DoesNotExist:
            return None

    def set_state_reasons(self, machine_id: str, state: str, reasons: list[dict[str, str]]) -> bool:
        """One conditional update: only while the machine is in `state` and its reasons differ."""
        try:
            MachineModel(machine_id).update(
                actions=[MachineModel.state_reasons.set(reasons)],
                condition=(MachineModel.state == state)
                & (MachineModel.state_reasons.does_not_exist() | (MachineModel.state_reasons != reasons)),
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def heartbeats(self, machine_id: str, since: float, limit: int) -> list[dict[str, Any]]:
        """The stored heartbeats received since `since`, newest `limit` of them, oldest first."""
        if not self._heartbeats:
            return []
        items = HeartbeatModel.query(
            machine_id, HeartbeatModel.received_at >= since, scan_index_forward=False, limit=limit
        )
        beats = [{"received_at": float(i.received_at), "telemetry": i.telemetry} for i in items]
        return beats[::-1]

    def list_reports(self, machine_id: str, limit: int = 10) -> list[StoredReport]:
        items = ReportModel.query(machine_id, scan_index_forward=False, limit=limit)
        return sorted((_report(i) for i in items), key=lambda r: r.received_at, reverse=True)

    # -- conditional transactions ------------------------------------------------------------
    def _commit(self, build: TransactWriteBuilder, reasons_by_item: Sequence[Reason]) -> None:
        commit(self._connection, build, reasons_by_item)

    def register(self, machine: Machine, request: SignedRequest) -> None:
        item = MachineModel(
            machine.machine_id,
            owner=machine.owner,
            region=machine.region,
            state=machine.state.value,
            registered_at=machine.registered_at,
            updated_at=machine.updated_at,
        )

        def build(tx: TransactWrite) -> None:
            tx.save(item, condition=MachineModel.machine_id.does_not_exist())
            consume_nonce(tx, request)

        self._commit(
            build,
            [
                Reason("machine_exists", "this machine is already registered", "machine_id"),
                REPLAYED,
            ],
        )

    def issue_challenge(
        self,
        challenge: Challenge,
        previous: Machine,
        attempts: Attempts,
        request: SignedRequest,
    ) -> None:
        item = ChallengeModel(
            challenge.challenge_id,
            machine_id=challenge.machine_id,
            nonce=challenge.nonce,
            issued_at=challenge.issued_at,
            expires_at=challenge.expires_at,
            expires_ttl=int(challenge.expires_at) + CHALLENGE_RETENTION_S,
            params=challenge.params,
            status=challenge.status.value,
        )
        allowed = [s.value for s in states_before(MachineState.challenged)]
        # Optimistic concurrency: the attempts written were computed from `previous`'s last
        # challenge, so two concurrent requests cannot both count (or skip) the same attempt.
        same_last = (
            MachineModel.last_challenge_id.does_not_exist()
            if previous.last_challenge_id is None
            else MachineModel.last_challenge_id == previous.last_challenge_id
        )

        def build(tx: TransactWrite) -> None:
            tx.save(item, condition=ChallengeModel.challenge_id.does_not_exist())
            tx.update(
                MachineModel(challenge.machine_id),
                actions=[
                    MachineModel.state.set(MachineState.challenged.value),
                    MachineModel.last_challenge_id.set(challenge.challenge_id),
                    MachineModel.updated_at.set(challenge.issued_at),
                    MachineModel.attempts.set(attempts.as_dict()),
                ],
                condition=MachineModel.machine_id.exists() & MachineModel.state.is_in(*allowed) & same_last,
            )
            consume_nonce(tx, request)

        self._commit(
            build,
            [
                Reason("challenge_exists", "challenge id collision; ask again"),
                Reason(
                    "machine_state_conflict",
                    "the machine's state changed; it cannot take a challenge now",
                    "state",
                ),
                REPLAYED,
            ],
        )

    def record_abandoned(self, machine: Machine, challenge_id: str, attempts: Attempts) -> None:
        """The machine asked for a new challenge while `challenge_id` (committed, unanswered) was
        open: that challenge is superseded and counted as failed, atomically, once."""

        def build(tx: TransactWrite) -> None:
            tx.update(
                MachineModel(machine.machine_id),
                actions=[MachineModel.attempts.set(attempts.as_dict())],
                condition=MachineModel.last_challenge_id == challenge_id,
            )
            tx.update(
                ChallengeModel(challenge_id),
                actions=[ChallengeModel.status.set(ChallengeStatus.superseded.value)],
                condition=ChallengeModel.status == ChallengeStatus.issued.value,
            )

        self._commit(
            build,
            [
                Reason("machine_state_conflict", "the machine took another challenge meanwhile", "state"),
                Reason("machine_state_conflict", "the challenge was answered meanwhile", "state"),
            ],
        )

    def record_commitment(
        self,
        challenge: Challenge,
        commitment_sha256: str,
        received_at: float,
        pairs: list[dict[str, Any]],
        pairs_secret: str,
        request: SignedRequest,
    ) -> None:
        def build(tx: TransactWrite) -> None:
            tx.update(
                ChallengeModel(challenge.challenge_id),
                actions=[
                    ChallengeModel.commitment_sha256.set(commitment_sha256),
                    ChallengeModel.commitment_received_at.set(received_at),
                    ChallengeModel.pairs.set(pairs),
                    ChallengeModel.pairs_secret.set(pairs_secret),
                ],
                condition=(ChallengeModel.status == ChallengeStatus.issued.value)
                & ChallengeModel.commitment_sha256.does_not_exist()
                & (ChallengeModel.expires_at >= received_at),
            )
            consume_nonce(tx, request)

        self._commit(
            build,
            [
                Reason(
                    "commitment_exists",
                    "a commitment for this challenge was already received",
                    "challenge_id",
                ),
                REPLAYED,
            ],
        )

    def record_capacity(
        self,
        challenge: Challenge,
        session: dict[str, Any],
        at: float,
        request: SignedRequest,
        openings: bytes | None = None,
    ) -> None:
        step = challenge.capacity_step
        actions: list[Action] = [
            ChallengeModel.capacity.set(session),
            ChallengeModel.capacity_step.set(step + 1),
        ]
        if openings is not None:
            actions.append(ChallengeModel.capacity_openings.set(openings))
        previous = (
            ChallengeModel.capacity_step.does_not_exist()
            if step == 0
            else ChallengeModel.capacity_step == step
        )

        def build(tx: TransactWrite) -> None:
            tx.update(
                ChallengeModel(challenge.challenge_id),
                actions=actions,
                condition=(ChallengeModel.status == ChallengeStatus.issued.value)
                & previous
                & (ChallengeModel.expires_at >= at),
            )
            consume_nonce(tx, request)

        self._commit(
            build,
            [
                Reason(
                    "capacity_state_conflict",
                    "the capacity phase moved on, or the challenge closed, meanwhile",
                    "challenge_id",
                ),
                REPLAYED,
            ],
        )

    def record_heartbeat(
        self, machine_id: str, received_at: float, telemetry: dict[str, Any], request: SignedRequest
    ) -> None:
        def build(tx: TransactWrite) -> None:
            tx.update(
                MachineModel(machine_id),
                actions=[
                    MachineModel.last_heartbeat_at.set(received_at),
                    MachineModel.last_heartbeat.set(telemetry),
                ],
                condition=MachineModel.machine_id.exists(),
            )
            consume_nonce(tx, request)
            if self._heartbeats:
                tx.save(
                    HeartbeatModel(
                        machine_id,
                        received_at,
                        telemetry=telemetry,
                        expires_ttl=int(received_at) + self._heartbeat_retention_s,
                    )
                )

        self._commit(
            build,
            [
                Reason("unknown_machine", "no machine is registered with this machine_id", "machine_id"),
                REPLAYED,
            ],
        )

    def accept_report(self, report: StoredReport, compressed: bytes, request: SignedRequest) -> None:
        item = ReportModel(
            report.machine_id,
            report.challenge_id,
            received_at=report.received_at,
            report_sha256=report.report_sha256,
            body=compressed,
        )

        def build(tx: TransactWrite) -> None:
            tx.save(item, condition=ReportModel.machine_id.does_not_exist())
            tx.update(
                ChallengeModel(report.challenge_id),
                actions=[ChallengeModel.status.set(ChallengeStatus.used.value)],
                condition=(ChallengeModel.status == ChallengeStatus.issued.value)
                & (ChallengeModel.machine_id == report.machine_id)
                & (ChallengeModel.expires_at >= report.received_at),
            )
            tx.update(
                MachineModel(report.machine_id),
                actions=[
                    MachineModel.state.set(MachineState.submitted.value),
                    MachineModel.updated_at.set(report.received_at),
                ],
                condition=(MachineModel.state == MachineState.challenged.value)
                & (MachineModel.last_challenge_id == report.challenge_id),
            )
            consume_nonce(tx, request)

        self._commit(
            build,
            [
                Reason("challenge_used", "a report for this challenge is already stored", "challenge_id"),
                Reason("challenge_used", "the challenge is no longer open", "challenge_id"),
                Reason(
                    "machine_state_conflict",
                    "the machine is not waiting for this challenge's report",
                    "state",
                ),
                REPLAYED,
            ],
        )

    # -- the verify worker's side --------------------------------------------------------------
    def gpu_uuid_owners(self, uuids: list[str]) -> dict[str, str]:
        owners = {}
        for uuid in sorted({normalise_gpu_uuid(u) or u for u in uuids}):
            try:
                owners[uuid] = GpuUuidModel.get(uuid, consistent_read=True).machine_id
            except DoesNotExist:
                continue
        return owners

    def record_verification(
        self,
        report: StoredReport,
        verification: dict[str, Any],
        state: MachineState,
        claim_uuids: list[str],
        attempts: Attempts,
    ) -> bool:
        now = float(verification["verified_at"])
        reasons = verification.get("reasons", [])
        claims = claimed_uuids(claim_uuids)

        def build(tx: TransactWrite) -> None:
            tx.update(
                ReportModel(report.machine_id, report.challenge_id),
                actions=[ReportModel.verification.set(verification)],
                condition=ReportModel.machine_id.exists() & ReportModel.verification.does_not_exist(),
            )
            tx.update(
                MachineModel(report.machine_id),
                actions=[
                    MachineModel.state.set(state.value),
                    MachineModel.updated_at.set(now),
                    MachineModel.state_reasons.set(reasons),
                    MachineModel.attempts.set(attempts.as_dict()),
                ],
                condition=MachineModel.state == MachineState.submitted.value,
            )
            for uuid in claims:
                tx.save(
                    GpuUuidModel(uuid, machine_id=report.machine_id, claimed_at=now),
                    condition=GpuUuidModel.gpu_uuid.does_not_exist()
                    | (GpuUuidModel.machine_id == report.machine_id),
                )

        try:
            self._commit(
                build,
                [
                    Reason("already_verified", "this report already has a verification"),
                    Reason("machine_state_conflict", "the machine is no longer waiting for verification"),
                    *[
                        Reason("gpu_uuid_taken", f"GPU {u} was claimed by another machine meanwhile")
                        for u in claims
                    ],
                ],
            )
        except Rejection as rejection:
            if {r.code for r in rejection.reasons} <= {"already_verified", "machine_state_conflict"}:
                return False
            raise
        return True


def mark_machine_published(
    machines_table: str, region: str, machine_id: str, result: str, now: float
) -> bool:
    """Move a machine from its verdict's state (confirmed or refused) to `published`, once.

    The condition names the verdict's own result, so a verdict of an older round, or one the
    machine has moved on from (a fresh challenge), changes nothing. False when nothing changed.
    """
    if result not in (MachineState.confirmed.value, MachineState.refused.value):
        return False
    bind(MachineModel, machines_table, region)
    try:
        MachineModel(machine_id).update(
            actions=[MachineModel.state.set(MachineState.published.value), MachineModel.updated_at.set(now)],
            condition=MachineModel.state == result,
        )
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
    return True


class DynamoReconcileMachines:
    """The reconciler's view of machines (MachinesTable) and their latest round (RoundsTable)."""

    def __init__(self, machines_table: str, rounds_table: str | None, region: str) -> None:
        from gpuproof.adapters.tables import RoundModel

        self.machines_table = machines_table
        self.region = region
        self._rounds = RoundModel if rounds_table else None
        bind(MachineModel, machines_table, region)
        if rounds_table:
            bind(RoundModel, rounds_table, region)

    def machine_state(self, machine_id: str) -> str | None:
        try:
            return str(MachineModel.get(machine_id, consistent_read=True, attributes_to_get=["state"]).state)
        except DoesNotExist:
            return None

    def latest_round(self, machine_id: str) -> int | None:
        if self._rounds is None:
            return None
        for item in self._rounds.query(machine_id, scan_index_forward=False, limit=1, consistent_read=True):
            return int(item.round)
        return None

    def mark_published(self, machine_id: str, result: str, now: float) -> bool:
        return mark_machine_published(self.machines_table, self.region, machine_id, result, now)
