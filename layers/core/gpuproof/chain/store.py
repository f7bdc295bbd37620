"""The outbox's DynamoDB side: verdicts' `publication` and the published-batches feed table.

Every change of `publication` is conditional on the value read before it (absent, or the exact
pending record), inside one transaction with the batch row, so a batch is reserved or recorded
for all its verdicts or for none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from gpuproof.adapters.tables import VerdictModel, bind
from gpuproof.logic.records import Verdict, VerdictResult

FEED_PARTITION = "verdicts"
POSITION_STRIDE = 100_000  # position = block_number * stride + extrinsic_index


class PublishedBatchModel(Model):
    """PublishedBatchesTable: one row per batch included on chain, ordered by chain position."""

    class Meta:
        table_name = "PublishedBatchesTable"

    feed = UnicodeAttribute(hash_key=True)
    position = NumberAttribute(range_key=True)
    batch_id = UnicodeAttribute()
    payload = BinaryAttribute(legacy_encoding=False)
    extrinsic_hash = UnicodeAttribute()
    block_hash = UnicodeAttribute()
    block_number = NumberAttribute()
    extrinsic_index = NumberAttribute()
    call = UnicodeAttribute()
    account = UnicodeAttribute()
    verdict_ids = ListAttribute(of=UnicodeAttribute)
    published_at = NumberAttribute()
    inclusion = JSONAttribute(null=True)


class OutboxConflict(Exception):
    """A verdict's publication changed since it was read (another publisher got there first)."""


@dataclass(frozen=True)
class StoredVerdict:
    verdict: Verdict
    publication: dict[str, Any] | None


@dataclass(frozen=True)
class PublishedBatch:
    position: int
    batch_id: str
    payload: bytes
    extrinsic_hash: str
    block_hash: str
    block_number: int
    extrinsic_index: int
    call: str
    account: str
    verdict_ids: list[str]
    published_at: float


def position_of(block_number: int, extrinsic_index: int) -> int:
    return block_number * POSITION_STRIDE + extrinsic_index


def _verdict(item: VerdictModel) -> Verdict:
    try:
        result: VerdictResult | str = VerdictResult(item.result)
    except ValueError:
        result = item.result  # kept as read: the payload encoder lists it as a reason
    return Verdict(
        verdict_id=item.verdict_id,
        machine_id=item.machine_id,
        round=int(item.round),
        result=result,  # type: ignore[arg-type]
        upload_info=item.upload_info,
        committee=item.committee,
        performance_index=None if item.performance_index is None else float(item.performance_index),
        evidence_digest=item.evidence_digest,
        decided_at=float(item.decided_at),
        publication=item.publication,
    )


def _condition(expected: dict[str, Any] | None) -> Any:
    if expected is None:
        return VerdictModel.publication.does_not_exist()
    return VerdictModel.publication == expected


class DynamoVerdictOutbox:
    """VerdictOutbox port on DynamoDB (VerdictsTable + PublishedBatchesTable)."""

    def __init__(self, verdicts_table: str, batches_table: str, region: str) -> None:
        bind(VerdictModel, verdicts_table, region)
        bind(PublishedBatchModel, batches_table, region)
        self.region = region

    def load(self, verdict_ids: Sequence[str]) -> dict[str, StoredVerdict]:
        out: dict[str, StoredVerdict] = {}
        for item in VerdictModel.batch_get(list(dict.fromkeys(verdict_ids)), consistent_read=True):
            v = _verdict(item)
            out[v.verdict_id] = StoredVerdict(v, item.publication)
        return out

    def unpublished(self, decided_before: float) -> list[str]:
        """Verdicts decided before `decided_before` that are not on chain yet: no publication, or one
        left `pending`. An operator's scan (after PublisherDLQ), never on a request path."""
        found = []
        for item in VerdictModel.scan(VerdictModel.decided_at < decided_before, consistent_read=True):
            status = (item.publication or {}).get("status")
            if status in (None, "pending"):
                found.append((float(item.decided_at), item.verdict_id))
        return [vid for _, vid in sorted(found)]

    def _transact(self, build: Any) -> None:
        try:
            with TransactWrite(connection=Connection(region=self.region)) as tx:
                build(tx)
        except TransactWriteError as exc:
            reasons = [r.code for r in (exc.cancellation_reasons or []) if r is not None]
            if "ConditionalCheckFailed" in reasons:
                raise OutboxConflict(str(exc)) from exc
            raise

    def set_publication(
        self,
        changes: Sequence[tuple[str, dict[str, Any] | None, dict[str, Any]]],
        batch: PublishedBatch | None = None,
    ) -> None:
        """Atomically: for each (verdict_id, expected, new) set publication = new if it still is
        `expected`; and put the batch row (idempotent: same position, same content)."""

        def build(tx: TransactWrite) -> None:
            for verdict_id, expected, new in changes:
                tx.update(
                    VerdictModel(verdict_id),
                    actions=[VerdictModel.publication.set(new)],
                    condition=_condition(expected) & VerdictModel.verdict_id.exists(),
                )
            if batch is not None:
                tx.save(
                    PublishedBatchModel(
                        FEED_PARTITION,
                        batch.position,
                        batch_id=batch.batch_id,
                        payload=batch.payload,
                        extrinsic_hash=batch.extrinsic_hash,
                        block_hash=batch.block_hash,
                        block_number=batch.block_number,
                        extrinsic_index=batch.extrinsic_index,
                        call=batch.call,
                        account=batch.account,
                        verdict_ids=batch.verdict_ids,
                        published_at=batch.published_at,
                    )
                )

        self._transact(build)

    def batches_since(self, since: int | None, limit: int) -> list[PublishedBatch]:
        return published_batches_since(since, limit)


class PublishedBatchFeed:
    """What the score feed reads: PublishedBatchesTable only (it is granted nothing else)."""

    def __init__(self, batches_table: str, region: str) -> None:
        bind(PublishedBatchModel, batches_table, region)

    def batches_since(self, since: int | None, limit: int) -> list[PublishedBatch]:
        return published_batches_since(since, limit)


def published_batches_since(since: int | None, limit: int) -> list[PublishedBatch]:
    condition = None if since is None else PublishedBatchModel.position > since
    items = PublishedBatchModel.query(FEED_PARTITION, condition, limit=limit, scan_index_forward=True)
    return [
        PublishedBatch(
            position=int(i.position),
            batch_id=i.batch_id,
            payload=bytes(i.payload),
            extrinsic_hash=i.extrinsic_hash,
            block_hash=i.block_hash,
            block_number=int(i.block_number),
            extrinsic_index=int(i.extrinsic_index),
            call=i.call,
            account=i.account,
            verdict_ids=[str(v) for v in i.verdict_ids],
            published_at=float(i.published_at),
        )
        for i in items
    ]


def canonical(value: dict[str, Any]) -> dict[str, Any]:
    """A publication as it reads back from JSONAttribute (what a condition compares against)."""
    loaded: dict[str, Any] = json.loads(json.dumps(value))
    return loaded
