"""PynamoDB models of the service's tables; table names come from the environment at bind time."""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.models import Model


class MachineModel(Model):
    class Meta:
        table_name = "MachinesTable"

    machine_id = UnicodeAttribute(hash_key=True)
    owner = UnicodeAttribute()
    region = UnicodeAttribute()
    state = UnicodeAttribute()
    registered_at = NumberAttribute()
    updated_at = NumberAttribute()
    last_challenge_id = UnicodeAttribute(null=True)
    state_reasons: ListAttribute[MapAttribute[str, str]] = ListAttribute(of=MapAttribute, null=True)


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


class VerdictModel(Model):
    """VerdictsTable; its stream is the chain outbox. `publication` is set once, conditionally."""

    class Meta:
        table_name = "VerdictsTable"

    verdict_id = UnicodeAttribute(hash_key=True)
    machine_id = UnicodeAttribute()
    round = NumberAttribute()
    result = UnicodeAttribute()
    upload_info = JSONAttribute()
    committee = JSONAttribute()
    performance_index = NumberAttribute(null=True)
    evidence_digest = UnicodeAttribute()
    decided_at = NumberAttribute()
    publication = JSONAttribute(null=True)
