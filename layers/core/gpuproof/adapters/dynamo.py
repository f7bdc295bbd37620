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
    LIVENESS_WATCH,
    OUTBOX_OPEN,
    ChallengeModel,
    GpuUuidModel,
    HeartbeatModel,
    MachineModel,
    ReportModel,
    RequestNonceModel,
    VerdictModel,
    bind,
)
from gpuproof.adapters.transactions import REPLAYED, TransactWriteBuilder, commit, consume_nonce, nonce_item
from gpuproof.config import Settings
from gpuproof.errors import Rejection
from gpuproof.logic.records import Attempts, Challenge, ChallengeStatus, Machine, StoredReport, Verdict
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
        scored=item.scored,
        gpu_uuids=[str(u) for u in (item.gpu_uuids or [])],
        last_heartbeat_at=None if item.last_heartbeat_at is None else float(item.last_heartbeat_at),
        liveness_due_at=None if item.liveness_due_at is None else float(item.liveness_due_at),
        offline_since=None if item.offline_since is None else float(item.offline_since),
        claim=item.claim,
        presence=item.presence,
        presence_v=int(item.presence_v or 0),
        live_endpoint=_live_endpoint(item.last_heartbeat),
    )


def _live_endpoint(heartbeat: Any) -> str | None:
    """The heartbeat's live endpoint (validated by the Heartbeat model when it was accepted)."""
    value = heartbeat.get("live_endpoint") if isinstance(heartbeat, dict) else None
    return value if isinstance(value, str) else None


def verdict_item(verdict: Verdict) -> VerdictModel:
    return VerdictModel(
        verdict.verdict_id,
        machine_id=verdict.machine_id,
        round=verdict.round,
        result=verdict.result.value,
        upload_info=verdict.upload_info,
        committee=verdict.committee,
        performance_index=verdict.performance_index,
        evidence_digest=verdict.evidence_digest,
        decided_at=verdict.decided_at,
        publication=None,
        outbox=OUTBOX_OPEN,  # in the Unsettled index until on chain with its machine marked
        outbox_at=verdict.decided_at,
        revocation=verdict.revocation,
    )


def _presence_version(machine: Machine) -> Any:
    if machine.presence_v == 0:
        return MachineModel.presence_v.does_not_exist() | (MachineModel.presence_v == 0)
    return MachineModel.presence_v == machine.presence_v


def _release_uuids(tx: TransactWrite, machine_id: str, uuids: Sequence[str]) -> None:
    """Give back GPU UUIDs this machine holds (conditional: only its own claims are deleted)."""
    for uuid in sorted(set(uuids)):
        tx.delete(GpuUuidModel(uuid), condition=GpuUuidModel.machine_id == machine_id)


def _withdraw(tx: TransactWrite, verdict: Verdict | None) -> None:
    """Write the Revoked verdict (once: its id names the revoked round)."""
    if verdict is not None:
        tx.save(verdict_item(verdict), condition=VerdictModel.verdict_id.does_not_exist())


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
        if settings.verdicts_table:
            bind(VerdictModel, settings.verdicts_table, settings.region)
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
        self,
        machine_id: str,
        received_at: float,
        telemetry: dict[str, Any],
        request: SignedRequest,
        back_online: bool = False,
        liveness_due_at: float | None = None,
    ) -> None:
        """Keep the heartbeat; with `back_online`, an offline machine is published (online) again,
        conditional on it still being offline."""
        actions: list[Any] = [
            MachineModel.last_heartbeat_at.set(received_at),
            MachineModel.last_heartbeat.set(telemetry),
        ]
        condition = MachineModel.machine_id.exists()
        if back_online:
            actions += [
                MachineModel.state.set(MachineState.published.value),
                MachineModel.updated_at.set(received_at),
                MachineModel.state_reasons.set([]),
                MachineModel.offline_since.remove(),
            ]
            if liveness_due_at is not None:
                actions.append(MachineModel.liveness_due_at.set(liveness_due_at))
            condition = condition & (MachineModel.state == MachineState.offline.value)

        def build(tx: TransactWrite) -> None:
            tx.update(MachineModel(machine_id), actions=actions, condition=condition)
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
                Reason(
                    "machine_state_conflict" if back_online else "unknown_machine",
                    "the machine's state changed meanwhile; send the heartbeat again"
                    if back_online
                    else "no machine is registered with this machine_id",
                    "machine_id",
                ),
                REPLAYED,
            ],
        )

    # -- liveness and revocation ---------------------------------------------------------------
    def liveness_due(self, now: float, limit: int) -> list[str]:
        """At most `limit` watched machines whose liveness is due by `now`, most overdue first."""
        keys = MachineModel.by_liveness_due.query(
            LIVENESS_WATCH, MachineModel.liveness_due_at <= now, limit=limit
        )
        return [k.machine_id for k in keys][:limit]

    def set_liveness(
        self,
        machine: Machine,
        *,
        due_at: float | None,
        offline: Reason | None = None,
        now: float | None = None,
        presence: dict[str, Any] | None = None,
    ) -> bool:
        """Re-arm (or with due_at None, end) the machine's watch; with `offline`, move it from
        published to offline with that reason; with `presence`, write the presence schedule (its
        version bumped). Conditional on the state and presence version read; False on a race."""
        actions: list[Any] = (
            [MachineModel.liveness_due_at.set(due_at)]
            if due_at is not None
            else [MachineModel.liveness.remove(), MachineModel.liveness_due_at.remove()]
        )
        if offline is not None:
            assert now is not None
            actions += [
                MachineModel.state.set(MachineState.offline.value),
                MachineModel.updated_at.set(now),
                MachineModel.state_reasons.set([offline.as_dict()]),
                MachineModel.offline_since.set(now),
            ]
        condition = MachineModel.state == machine.state.value
        if presence is not None:
            actions += [
                MachineModel.presence.set(presence),
                MachineModel.presence_v.set(machine.presence_v + 1),
            ]
            condition = condition & _presence_version(machine)
        try:
            MachineModel(machine.machine_id).update(actions=actions, condition=condition)
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def update_presence(
        self, machine: Machine, presence: dict[str, Any], request: SignedRequest | None = None
    ) -> None:
        """Write the presence schedule/open check the machine API advanced (fetch, commitment,
        pass), conditional on the version read and on the machine still being watched."""

        def build(tx: TransactWrite) -> None:
            tx.update(
                MachineModel(machine.machine_id),
                actions=[
                    MachineModel.presence.set(presence),
                    MachineModel.presence_v.set(machine.presence_v + 1),
                ],
                condition=_presence_version(machine) & (MachineModel.state == machine.state.value),
            )
            if request is not None:
                consume_nonce(tx, request)

        self._commit(
            build,
            [
                Reason("machine_state_conflict", "the presence check changed meanwhile; ask again", "state"),
                *([REPLAYED] if request is not None else []),
            ],
        )

    def revoke(
        self,
        machine: Machine,
        state: MachineState,
        reason: Reason,
        verdict: Verdict | None,
        now: float,
        request: SignedRequest | None = None,
    ) -> None:
        """One transaction: the machine leaves its state (as read) for `state` with `reason`, its
        score and watch are dropped, the Revoked verdict (if it had a score) is written, and its
        GPU UUIDs are released."""

        def build(tx: TransactWrite) -> None:
            tx.update(
                MachineModel(machine.machine_id),
                actions=[
                    MachineModel.state.set(state.value),
                    MachineModel.updated_at.set(now),
                    MachineModel.state_reasons.set([reason.as_dict()]),
                    MachineModel.scored.remove(),
                    MachineModel.gpu_uuids.remove(),
                    MachineModel.liveness.remove(),
                    MachineModel.liveness_due_at.remove(),
                    MachineModel.offline_since.remove(),
                    MachineModel.presence.remove(),
                ],
                condition=MachineModel.state == machine.state.value,
            )
            _withdraw(tx, verdict)
            _release_uuids(tx, machine.machine_id, machine.gpu_uuids)
            if request is not None:
                consume_nonce(tx, request)

        self._commit(
            build,
            [
                Reason("machine_state_conflict", "the machine's state changed meanwhile", "state"),
                *([Reason("verdict_exists", "this score is already revoked")] if verdict else []),
                *[
                    Reason("machine_state_conflict", f"GPU {u} is no longer this machine's")
                    for u in sorted(set(machine.gpu_uuids))
                ],
                *([REPLAYED] if request is not None else []),
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
        held: Sequence[str] = (),
        revocation: Verdict | None = None,
    ) -> bool:
        """Write the verification, move the machine, claim a passing report's GPU UUIDs, and
        release the ones it `held` that it no longer claims (all of them when refused); with
        `revocation` (a scored machine refused) drop its score and write the Revoked verdict."""
        now = float(verification["verified_at"])
        reasons = verification.get("reasons", [])
        claims = claimed_uuids(claim_uuids)
        released = sorted(set(held) - set(claims))
        if len(claims) + len(released) + VERIFICATION_FIXED_ITEMS + 1 > DYNAMODB_MAX_TRANSACTION_ITEMS:
            raise ValueError(
                f"{len(claims)} GPU claims and {len(released)} releases do not fit one transaction"
            )
        machine_actions: list[Any] = [
            MachineModel.state.set(state.value),
            MachineModel.updated_at.set(now),
            MachineModel.state_reasons.set(reasons),
            MachineModel.attempts.set(attempts.as_dict()),
            MachineModel.gpu_uuids.set(claims) if claims else MachineModel.gpu_uuids.remove(),
        ]
        if verification.get("passed") and verification.get("claim") is not None:
            machine_actions.append(MachineModel.claim.set(verification["claim"]))
        if revocation is not None:
            machine_actions += [
                MachineModel.scored.remove(),
                MachineModel.liveness.remove(),
                MachineModel.liveness_due_at.remove(),
                MachineModel.offline_since.remove(),
                MachineModel.presence.remove(),
            ]

        def build(tx: TransactWrite) -> None:
            tx.update(
                ReportModel(report.machine_id, report.challenge_id),
                actions=[ReportModel.verification.set(verification)],
                condition=ReportModel.machine_id.exists() & ReportModel.verification.does_not_exist(),
            )
            tx.update(
                MachineModel(report.machine_id),
                actions=machine_actions,
                condition=MachineModel.state == MachineState.submitted.value,
            )
            _withdraw(tx, revocation)
            _release_uuids(tx, report.machine_id, released)
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
                    *([Reason("already_verified", "this score is already revoked")] if revocation else []),
                    *[
                        Reason("machine_state_conflict", f"GPU {u} is no longer this machine's")
                        for u in released
                    ],
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


def scored_of(verdict_id: str, round_: int, upload_info: dict[str, Any]) -> dict[str, Any]:
    """What a machine keeps of its published Confirmed verdict (Machine.scored)."""
    return {"verdict_id": verdict_id, "round": int(round_), "upload_info": dict(upload_info)}


def mark_machine_published(
    machines_table: str,
    region: str,
    machine_id: str,
    result: str,
    now: float,
    scored: dict[str, Any] | None = None,
) -> bool:
    """Move a machine from its verdict's state (confirmed or refused) to `published`, once.

    The condition names the verdict's own result, so a verdict of an older round, or one the
    machine has moved on from (a fresh challenge), changes nothing. False when nothing changed.
    A Confirmed verdict's `scored` is kept on the machine (what a revocation withdraws) and the
    machine enters the liveness watch (ByLivenessDue, due now: the sweeper arms it).
    """
    if result not in (MachineState.confirmed.value, MachineState.refused.value):
        return False
    bind(MachineModel, machines_table, region)
    actions: list[Any] = [
        MachineModel.state.set(MachineState.published.value),
        MachineModel.updated_at.set(now),
    ]
    if result == MachineState.confirmed.value and scored is not None:
        actions += [
            MachineModel.scored.set(scored),
            MachineModel.liveness.set(LIVENESS_WATCH),
            MachineModel.liveness_due_at.set(now),
            MachineModel.offline_since.remove(),
            MachineModel.presence.remove(),  # a fresh score: a fresh presence schedule
        ]
    try:
        MachineModel(machine_id).update(actions=actions, condition=MachineModel.state == result)
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

    def mark_published(
        self, machine_id: str, result: str, now: float, scored: dict[str, Any] | None = None
    ) -> bool:
        return mark_machine_published(self.machines_table, self.region, machine_id, result, now, scored)
