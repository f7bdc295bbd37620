"""PynamoDB models of the service's tables; table names come from the environment at bind time."""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model


class ByStateIndex(GlobalSecondaryIndex["MachineModel"]):  # type: ignore[no-untyped-call]
    """MachinesTable's ByState index (keys only): the machines in one state, oldest first."""

    class Meta:
        index_name = "ByState"
        projection = KeysOnlyProjection()

    state = UnicodeAttribute(hash_key=True)
    updated_at = NumberAttribute(range_key=True)


class ByLivenessDueIndex(GlobalSecondaryIndex["MachineModel"]):  # type: ignore[no-untyped-call]
    """MachinesTable's ByLivenessDue index (sparse, keys only): the watched (published or offline)
    machines by when the sweeper looks at their heartbeats next; only they carry `liveness`."""

    class Meta:
        index_name = "ByLivenessDue"
        projection = KeysOnlyProjection()

    liveness = UnicodeAttribute(hash_key=True)
    liveness_due_at = NumberAttribute(range_key=True)


LIVENESS_WATCH = "watch"


class MachineModel(Model):
    class Meta:
        table_name = "MachinesTable"

    machine_id = UnicodeAttribute(hash_key=True)
    by_state = ByStateIndex()
    by_liveness_due = ByLivenessDueIndex()
    owner = UnicodeAttribute()
    region = UnicodeAttribute()
    state = UnicodeAttribute()
    registered_at = NumberAttribute()
    updated_at = NumberAttribute()
    last_challenge_id = UnicodeAttribute(null=True)
    state_reasons = JSONAttribute(null=True)
    last_heartbeat_at = NumberAttribute(null=True)
    last_heartbeat = JSONAttribute(null=True)
    attempts = JSONAttribute(null=True)
    # The published Confirmed verdict's {"verdict_id", "round", "upload_info"} (logic/revocation.py).
    scored = JSONAttribute(null=True)
    gpu_uuids = JSONAttribute(null=True)  # the GpuUuidsTable keys this machine holds
    liveness = UnicodeAttribute(null=True)  # LIVENESS_WATCH while watched (published, offline)
    liveness_due_at = NumberAttribute(null=True)
    offline_since = NumberAttribute(null=True)
    claim = JSONAttribute(null=True)
    presence = JSONAttribute(null=True)
    presence_v = NumberAttribute(null=True)


class ChallengeModel(Model):
    class Meta:
        table_name = "ChallengesTable"

    challenge_id = UnicodeAttribute(hash_key=True)
    machine_id = UnicodeAttribute()
    nonce = UnicodeAttribute()
    issued_at = NumberAttribute()
    expires_at = NumberAttribute()
    # DynamoDB TTL deletes the item some time after this epoch second (a day after expiry).
    expires_ttl = NumberAttribute()
    params = JSONAttribute()
    status = UnicodeAttribute()
    commitment_sha256 = UnicodeAttribute(null=True)
    commitment_received_at = NumberAttribute(null=True)
    pairs = JSONAttribute(null=True)
    pairs_secret = UnicodeAttribute(null=True)
    capacity = JSONAttribute(null=True)
    capacity_step = NumberAttribute(null=True)
    capacity_openings = BinaryAttribute(null=True, legacy_encoding=False)


class ReportModel(Model):
    class Meta:
        table_name = "ReportsTable"

    machine_id = UnicodeAttribute(hash_key=True)
    challenge_id = UnicodeAttribute(range_key=True)
    received_at = NumberAttribute()
    report_sha256 = UnicodeAttribute()
    # zlib-compressed canonical JSON of the SignedReport, byte for byte what the machine signed.
    body = BinaryAttribute(legacy_encoding=False)
    verification = JSONAttribute(null=True)


class HeartbeatModel(Model):
    """One stored heartbeat of a machine (HeartbeatsTable), kept for the retention period
    (template parameter HeartbeatRetentionDays) and then deleted by DynamoDB's TTL."""

    class Meta:
        table_name = "HeartbeatsTable"

    machine_id = UnicodeAttribute(hash_key=True)
    received_at = NumberAttribute(range_key=True)
    telemetry = JSONAttribute()
    expires_ttl = NumberAttribute()


class RequestNonceModel(Model):
    class Meta:
        table_name = "RequestNoncesTable"

    nonce_key = UnicodeAttribute(hash_key=True)
    created_at = NumberAttribute()
    expires_ttl = NumberAttribute()


def bind(model: type[Model], table_name: str, region: str) -> None:
    """Point a model at its table (resolved from the environment) and drop any cached connection."""
    meta: Any = model.Meta
    if getattr(meta, "table_name", None) != table_name or getattr(meta, "region", None) != region:
        meta.table_name = table_name
        meta.region = region
        model._connection = None


class GpuUuidModel(Model):
    """Which machine a GPU (by NVML UUID) belongs to; a GPU belongs to one machine at a time."""

    class Meta:
        table_name = "GpuUuidsTable"

    gpu_uuid = UnicodeAttribute(hash_key=True)
    machine_id = UnicodeAttribute()
    claimed_at = NumberAttribute()


class UnsettledIndex(GlobalSecondaryIndex["VerdictModel"]):  # type: ignore[no-untyped-call]
    """VerdictsTable's Unsettled index (sparse, keys only): verdicts whose publication or machine
    is not final yet (outbox = "open"), or that the publisher set aside as malformed."""

    class Meta:
        index_name = "Unsettled"
        projection = KeysOnlyProjection()

    outbox = UnicodeAttribute(hash_key=True)
    outbox_at = NumberAttribute(range_key=True)


OUTBOX_OPEN = "open"
OUTBOX_MALFORMED = "malformed"


class VerdictModel(Model):
    """VerdictsTable; its stream is the chain outbox. `publication` is set once, conditionally.

    `outbox`/`outbox_at` keep a verdict in the Unsettled index until it is on chain and its
    machine is marked (then both are removed); `redrive` counts the reconciler's hand-backs to
    the publisher (each one a new stream record and a new idempotency key)."""

    class Meta:
        table_name = "VerdictsTable"

    verdict_id = UnicodeAttribute(hash_key=True)
    unsettled = UnsettledIndex()
    outbox = UnicodeAttribute(null=True)
    outbox_at = NumberAttribute(null=True)
    redrive = NumberAttribute(null=True)
    redriven_at = NumberAttribute(null=True)
    machine_id = UnicodeAttribute()
    round = NumberAttribute()
    result = UnicodeAttribute()
    upload_info = JSONAttribute()
    committee = JSONAttribute()
    performance_index = NumberAttribute(null=True)
    evidence_digest = UnicodeAttribute()
    decided_at = NumberAttribute()
    publication = JSONAttribute(null=True)
    revocation = JSONAttribute(null=True)  # a Revoked verdict's document (logic/revocation.py)


class MemberModel(Model):
    """MembersTable: a committee member (account = Ed25519 public key hex) and its in-flight load."""

    class Meta:
        table_name = "MembersTable"

    account = UnicodeAttribute(hash_key=True)
    linked_accounts = JSONAttribute()
    registered_at = NumberAttribute()
    status = UnicodeAttribute()
    in_flight = NumberAttribute()
    admitted = BooleanAttribute(null=True)  # absent: registered, never admitted (never drawn)
    admitted_at = NumberAttribute(null=True)
    admitted_by = UnicodeAttribute(null=True)  # the operator key that admitted it


class ByStatusIndex(GlobalSecondaryIndex["RoundModel"]):  # type: ignore[no-untyped-call]
    """RoundsTable's ByStatus index (keys only): the open rounds, oldest first."""

    class Meta:
        index_name = "ByStatus"
        projection = KeysOnlyProjection()

    status = UnicodeAttribute(hash_key=True)
    booked_at = NumberAttribute(range_key=True)


class ByDueIndex(GlobalSecondaryIndex["RoundModel"]):  # type: ignore[no-untyped-call]
    """RoundsTable's ByDue index (sparse, keys only): open rounds by the time they may be due."""

    class Meta:
        index_name = "ByDue"
        projection = KeysOnlyProjection()

    status = UnicodeAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


class RoundModel(Model):
    """RoundsTable: one committee round of a machine (the draw's published data, commits, reveals,
    result). The reserved item machine_id="#beacon", round=0 is the beacon's counter (BeaconModel);
    ("#presence-waves", 0) the presence waves' schedule (PresenceWavesModel)."""

    class Meta:
        table_name = "RoundsTable"

    machine_id = UnicodeAttribute(hash_key=True)
    round = NumberAttribute(range_key=True)
    status = UnicodeAttribute()
    by_status = ByStatusIndex()
    by_due = ByDueIndex()
    # When the sweeper must look at this open round next: its commit deadline, then its reveal
    # deadline, or the time of a reveal (which may complete it). Removed when the round closes.
    due_at = NumberAttribute(null=True)
    owner = UnicodeAttribute()
    region = UnicodeAttribute()
    challenge_id = UnicodeAttribute()
    evidence_digest = UnicodeAttribute()
    members: ListAttribute[str] = ListAttribute()
    excluded: ListAttribute[str] = ListAttribute()
    booked_at = NumberAttribute()
    scale = NumberAttribute()
    commit_deadline = NumberAttribute()
    reveal_deadline = NumberAttribute()
    beacon_index = NumberAttribute()
    beacon_value = UnicodeAttribute()
    beacon_tip = UnicodeAttribute()
    pool_digest = UnicodeAttribute()
    pool_size = NumberAttribute()
    pool = JSONAttribute(null=True)
    cap = NumberAttribute()
    expected_info = JSONAttribute(null=True)
    expected_problems = JSONAttribute()
    performance_index = NumberAttribute(null=True)
    # account -> {"commit_hash", "at"} and account -> {"info", "at"}; hashes listed for the
    # duplicate-hash condition.
    commits: MapAttribute[str, Any] = MapAttribute()  # type: ignore[no-untyped-call]
    reveals: MapAttribute[str, Any] = MapAttribute()  # type: ignore[no-untyped-call]
    commit_hashes: ListAttribute[str] = ListAttribute()
    commit_count = NumberAttribute()
    reveal_count = NumberAttribute()
    result = UnicodeAttribute(null=True)
    tally = JSONAttribute(null=True)
    closed_at = NumberAttribute(null=True)
    resolution = JSONAttribute(null=True)  # a disputed round's settlement by the operator


class AssignmentModel(Model):
    """A member's place in a round, kept in RoundsTable under the reserved key ("#member#" + account,
    the draw's beacon index), written in the draw's transaction: a member's rounds are one query,
    not a scan. It has no status, so it stays out of the ByStatus index."""

    class Meta:
        table_name = "RoundsTable"

    machine_id = UnicodeAttribute(hash_key=True)  # "#member#" + account
    round = NumberAttribute(range_key=True)  # the beacon index the draw consumed: one per draw
    round_machine_id = UnicodeAttribute()
    round_number = NumberAttribute()
    booked_at = NumberAttribute()


def assignment_key(account: str) -> str:
    return f"#member#{account}"


class PresenceWavesModel(Model):
    """The presence waves' schedule (logic/waves.py), kept in RoundsTable under the reserved key
    ("#presence-waves", 0): written by the sweeper, read by it and the machine API, shown by no
    route (a wave's time is secret until its checks are announced)."""

    class Meta:
        table_name = "RoundsTable"

    machine_id = UnicodeAttribute(hash_key=True)
    round = NumberAttribute(range_key=True)
    waves = JSONAttribute()
    drawn_for = UnicodeAttribute()
    version = NumberAttribute()


class BeaconModel(Model):
    """The beacon's counter, kept in RoundsTable under the reserved key ("#beacon", 0)."""

    class Meta:
        table_name = "RoundsTable"

    machine_id = UnicodeAttribute(hash_key=True)
    round = NumberAttribute(range_key=True)
    tip = UnicodeAttribute()
    length = NumberAttribute()
    next_index = NumberAttribute()
    created_at = NumberAttribute()
