"""The outbox's DynamoDB side: verdicts' `publication` and the published-batches feed table.

Every change of `publication` is conditional on the value read before it (absent, or the exact
pending record), inside one transaction with the batch row, so a batch is reserved or recorded
for all its verdicts or for none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
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

from gpuproof.adapters.tables import OUTBOX_MALFORMED, OUTBOX_OPEN, VerdictModel, bind
from gpuproof.chain.payload import PayloadError, verdict_record
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
    redrive: int = 0
    redriven_at: float | None = None
    outbox: str | None = None


@dataclass(frozen=True)
class MalformedVerdict:
    """A verdict item that does not read as a verdict (invalid JSON, a missing or non-numeric
    field): it can never be published as stored; every reason is listed."""

    verdict_id: str
    reasons: list[str] = field(default_factory=list)
    outbox: str | None = None

    def line(self) -> str:
        return f"{self.verdict_id}: malformed verdict: " + "; ".join(self.reasons)


Loaded = StoredVerdict | MalformedVerdict


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


_REQUIRED = ("machine_id", "round", "result", "upload_info", "committee", "evidence_digest", "decided_at")
_NUMERIC = ("round", "decided_at")


def _missing_fields(item: VerdictModel) -> list[str]:
    reasons = [f"{name} is missing" for name in _REQUIRED if getattr(item, name, None) is None]
    for name in _NUMERIC:
        value = getattr(item, name, None)
        if value is not None and not math.isfinite(float(value)):
            reasons.append(f"{name} is not a finite number")
    if item.upload_info is not None and not isinstance(item.upload_info, dict):
        reasons.append("upload_info is not a JSON object")
    if item.committee is not None and not isinstance(item.committee, list):
        reasons.append("committee is not a JSON list")
    if item.publication is not None and not isinstance(item.publication, dict):
        reasons.append("publication is not a JSON object")
    return reasons


def read_item(raw: dict[str, Any]) -> Loaded:
    """One raw DynamoDB item → the verdict, or why it is not one (never raises for its content)."""
    vid = str((raw.get("verdict_id") or {}).get("S", "?"))
    outbox = (raw.get("outbox") or {}).get("S")
    reasons: list[str] = []
    for name, value in raw.items():  # each JSON attribute on its own, so every bad one is named
        if name in ("upload_info", "committee", "publication", "revocation") and "S" in value:
            try:
                json.loads(value["S"], strict=False)
            except json.JSONDecodeError as exc:
                reasons.append(f"{name} is not valid JSON ({exc.msg} at {exc.pos})")
    if reasons:
        return MalformedVerdict(vid, reasons, outbox)
    try:
        item = VerdictModel.from_raw_data(raw)
    except Exception as exc:  # an attribute of the wrong DynamoDB type
        return MalformedVerdict(vid, [f"does not read as a verdict: {type(exc).__name__}: {exc}"], outbox)
    reasons = _missing_fields(item)
    if reasons:
        return MalformedVerdict(vid, reasons, outbox)
    v = _verdict(item)
    if item.publication is None:  # not yet reserved: it must encode as a record to be publishable
        try:
            verdict_record(v)
        except PayloadError as exc:
            return MalformedVerdict(vid, exc.reasons, outbox)
    return StoredVerdict(
        v,
        item.publication,
        int(item.redrive or 0),
        None if item.redriven_at is None else float(item.redriven_at),
        item.outbox,
    )


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
        revocation=item.revocation,
    )


def _condition(expected: dict[str, Any] | None) -> Any:
    if expected is None:
        return VerdictModel.publication.does_not_exist()
    return VerdictModel.publication == expected


class DynamoVerdictOutbox:
    """VerdictOutbox port on DynamoDB (VerdictsTable + PublishedBatchesTable)."""

    def __init__(self, verdicts_table: str, batches_table: str | None, region: str) -> None:
        bind(VerdictModel, verdicts_table, region)
        if batches_table:  # the reconciler (the sweeper) reads verdicts only
            bind(PublishedBatchModel, batches_table, region)
        self.region = region
        self.verdicts_table = verdicts_table
        self._client: Any = None
        self.read_units = 0.0  # consumed by this outbox's own reads (the reconciler reports them)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.client("dynamodb", region_name=self.region)
        return self._client

    def _count(self, response: dict[str, Any]) -> None:
        consumed = response.get("ConsumedCapacity")
        for c in consumed if isinstance(consumed, list) else [consumed] if consumed else []:
            self.read_units += float(c.get("CapacityUnits") or 0)

    def load_all(self, verdict_ids: Sequence[str]) -> dict[str, Loaded]:
        """Each verdict as stored, or why it is malformed; items are read raw and decoded one by
        one, so one bad item never hides the others."""
        ids = list(dict.fromkeys(verdict_ids))
        out: dict[str, Loaded] = {}
        for i in range(0, len(ids), 100):
            request: dict[str, Any] = {
                self.verdicts_table: {
                    "Keys": [{"verdict_id": {"S": v}} for v in ids[i : i + 100]],
                    "ConsistentRead": True,
                }
            }
            while request:
                response = self.client.batch_get_item(RequestItems=request, ReturnConsumedCapacity="TOTAL")
                self._count(response)
                for raw in response.get("Responses", {}).get(self.verdicts_table, []):
                    loaded = read_item(raw)
                    out[
                        loaded.verdict_id
                        if isinstance(loaded, MalformedVerdict)
                        else loaded.verdict.verdict_id
                    ] = loaded
                request = response.get("UnprocessedKeys") or {}
        return out

    def load(self, verdict_ids: Sequence[str]) -> dict[str, StoredVerdict]:
        """The well-formed verdicts among `verdict_ids` (the malformed ones: `load_all`)."""
        return {k: v for k, v in self.load_all(verdict_ids).items() if isinstance(v, StoredVerdict)}

    def scan_all(self) -> Iterator[Loaded]:
        """Every verdict item, decoded one by one (an operator's full pass; never on a tick)."""
        kwargs: dict[str, Any] = {"TableName": self.verdicts_table, "ConsistentRead": True}
        while True:
            response = self.client.scan(**kwargs, ReturnConsumedCapacity="TOTAL")
            self._count(response)
            for raw in response.get("Items", []):
                yield read_item(raw)
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def unsettled(self, outbox: str = OUTBOX_OPEN, before: float | None = None) -> list[str]:
        """Verdict ids in the Unsettled index (outbox "open" or "malformed"), oldest first."""
        kwargs: dict[str, Any] = {
            "TableName": self.verdicts_table,
            "IndexName": "Unsettled",
            "KeyConditionExpression": "outbox = :o" + ("" if before is None else " AND outbox_at < :b"),
            "ExpressionAttributeValues": {":o": {"S": outbox}}
            | ({} if before is None else {":b": {"N": repr(float(before))}}),
        }
        found: list[str] = []
        while True:
            response = self.client.query(**kwargs, ReturnConsumedCapacity="TOTAL")
            self._count(response)
            found += [str(i["verdict_id"]["S"]) for i in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                return found
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def unpublished(self, decided_before: float) -> tuple[list[str], list[MalformedVerdict]]:
        """Verdicts decided before `decided_before` that are not on chain yet (no publication, or
        one left `pending`), and every malformed verdict item. An operator's scan, never on a tick."""
        found = []
        malformed = []
        for loaded in self.scan_all():
            if isinstance(loaded, MalformedVerdict):
                malformed.append(loaded)
                continue
            status = (loaded.publication or {}).get("status")
            if status in (None, "pending") and loaded.verdict.decided_at < decided_before:
                found.append((loaded.verdict.decided_at, loaded.verdict.verdict_id))
        return [vid for _, vid in sorted(found)], sorted(malformed, key=lambda m: m.verdict_id)

    # -- the Unsettled index -------------------------------------------------------------------
    def settle(self, verdict_id: str) -> bool:
        """The verdict is final (on chain with its machine marked, or refused by the chain): it
        leaves the Unsettled index. False when it was not in it."""
        try:
            self.client.update_item(
                TableName=self.verdicts_table,
                Key={"verdict_id": {"S": verdict_id}},
                UpdateExpression="REMOVE outbox, outbox_at",
                ConditionExpression="attribute_exists(outbox)",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def set_aside(self, verdict_id: str, now: float) -> bool:
        """A malformed verdict leaves the open outbox for the "malformed" one (listed by the ops
        tools, never re-driven). False when it was already set aside (reported once)."""
        try:
            self.client.update_item(
                TableName=self.verdicts_table,
                Key={"verdict_id": {"S": verdict_id}},
                UpdateExpression="SET outbox = :m, outbox_at = :t",
                ConditionExpression="attribute_exists(verdict_id) AND NOT (outbox = :m)",
                ExpressionAttributeValues={":m": {"S": OUTBOX_MALFORMED}, ":t": {"N": repr(float(now))}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def open_outbox(self, verdict_id: str, at: float) -> None:
        """Put a verdict (back) into the open outbox: a verdict written before the index existed."""
        self.client.update_item(
            TableName=self.verdicts_table,
            Key={"verdict_id": {"S": verdict_id}},
            UpdateExpression="SET outbox = :o, outbox_at = :t",
            ConditionExpression="attribute_exists(verdict_id)",
            ExpressionAttributeValues={":o": {"S": OUTBOX_OPEN}, ":t": {"N": repr(float(at))}},
        )

    def redrive(self, verdict_id: str, expected: int, now: float) -> bool:
        """Hand the verdict back to the publisher: a new stream record with a new idempotency key
        (redrive + 1). Conditional on the count read, so two reconcilers hand it back once."""
        try:
            self.client.update_item(
                TableName=self.verdicts_table,
                Key={"verdict_id": {"S": verdict_id}},
                UpdateExpression="SET redrive = :n, redriven_at = :t",
                ConditionExpression="attribute_exists(verdict_id) AND "
                + ("attribute_not_exists(redrive)" if expected == 0 else "redrive = :e"),
                ExpressionAttributeValues={":n": {"N": str(expected + 1)}, ":t": {"N": repr(float(now))}}
                | ({} if expected == 0 else {":e": {"N": str(expected)}}),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

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
