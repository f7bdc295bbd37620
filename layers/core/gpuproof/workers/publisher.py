"""The chain publisher's stream handling: each verdicts-stream batch → one extrinsic per chunk.

`handle` collects the batch's verdict ids, then Powertools' batch processor runs `record_handler`
per record (partial failures reported). The record handler is idempotent by (verdict id, redrive
count); the first record of a batch that needs work publishes every unpublished verdict of the
batch at once (gpuproof.chain.publisher.publish, exactly once by its own protocol), with backoff
while the chain is unreachable. Then the machine is marked and the verdict leaves the Unsettled
index.

What cannot be published never holds up the others and is never retried in vain:
- a malformed verdict (or one the chain refused) is set aside alone: an ERROR line, the metric
  `VerdictsMalformed` (or `VerdictsRefused`), and ONE message naming it in PublisherDLQ;
- a chain still unreachable after the retry budget defers the batch (ERROR line, metric
  `PublicationsDeferred`); the verdicts stay in the Unsettled index and the reconciler hands them
  back (gpuproof.logic.reconcile).
An idempotency record left "in progress" by an invocation that died expires with that
invocation's timeout (the Lambda context is registered); a retry that finds one before then takes
over with the publisher's own protocol, which never submits twice.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

from gpuproof.adapters.clock import SystemClock
from gpuproof.adapters.dynamo import mark_machine_published, scored_of
from gpuproof.adapters.tables import VerdictModel
from gpuproof.chain.adapter import ChainSettings, ChainUnavailable, SubstrateChain, load_oracle_secret
from gpuproof.chain.publisher import Outcome, PoisonVerdict, PublishServices, faults, publish_with_retries
from gpuproof.chain.signer import KmsBatchSigner
from gpuproof.chain.store import DynamoVerdictOutbox, OutboxConflict
from gpuproof.observability import (
    PUBLICATION_FAILURES,
    PUBLICATION_RETRIES,
    VERDICTS_PUBLISHED,
    count,
)

logger = Logger(child=True)
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
# The key includes the reconciler's redrive count: a hand-back is new work, a duplicate is not.
_config = IdempotencyConfig(event_key_jmespath="[verdict_id, redrive]", expires_after_seconds=7 * 24 * 3600)
_persistence = DynamoDBPersistenceLayer(table_name=os.environ.get("IDEMPOTENCY_TABLE", "IdempotencyTable"))


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def verdict_outbox() -> DynamoVerdictOutbox:
    return DynamoVerdictOutbox(os.environ["VERDICTS_TABLE"], os.environ["PUBLISHED_BATCHES_TABLE"], _region())


@functools.lru_cache(maxsize=4)
def publisher_services(settings: ChainSettings) -> PublishServices:
    """Adapters for one configuration (rebuilt if the chain settings change, e.g. in tests)."""
    secret = load_oracle_secret(settings, boto3.client("secretsmanager", region_name=_region()))
    return PublishServices(
        chain=SubstrateChain(settings, secret),
        outbox=verdict_outbox(),
        signer=KmsBatchSigner(os.environ["SERVICE_KEY_ID"], boto3.client("kms", region_name=_region())),
        clock=SystemClock(),
        inclusion_timeout_s=settings.timeout_s,
    )


class StreamBatch:
    """The verdicts of one invocation; published together on the first record that asks."""

    def __init__(self, settings: ChainSettings, verdict_ids: Sequence[str], budget_s: float) -> None:
        self.settings = settings
        self.verdict_ids = list(dict.fromkeys(verdict_ids))
        self.budget_s = budget_s
        self._outcomes: dict[str, Outcome] | None = None
        self._error: Exception | None = None

    def _retrying(self, error: Exception, delay_s: float) -> None:
        logger.warning(
            "chain publication retried",
            extra={
                "verdict_ids": self.verdict_ids,
                "error": f"{type(error).__name__}: {error}",
                "delay_s": delay_s,
            },
        )
        count(PUBLICATION_RETRIES)

    def outcome(self, verdict_id: str) -> dict[str, Any]:
        if self._outcomes is None and self._error is None:
            try:
                self._outcomes = publish_with_retries(
                    publisher_services(self.settings),
                    self.verdict_ids,
                    self.budget_s,
                    on_retry=self._retrying,
                )
                _count(self._outcomes.values())
            except Exception as exc:
                self._error = exc
                # Every verdict of the batch stays unpublished this time: deferred when the chain
                # is out of reach (record_handler), else the stream retries the batch.
                logger.exception(
                    "publication failed this time",
                    extra={"verdict_ids": self.verdict_ids, "error": f"{type(exc).__name__}: {exc}"},
                )
                count(PUBLICATION_FAILURES, len(self.verdict_ids))
        if self._error is not None:
            raise self._error
        assert self._outcomes is not None
        found = self._outcomes.get(verdict_id)
        if found is None:  # not in this batch's list (cannot happen): publish it alone
            found = publish_with_retries(publisher_services(self.settings), [verdict_id], self.budget_s)[
                verdict_id
            ]
        if found.error is not None:
            raise found.error
        logger.info("verdict published", extra=found.as_dict())
        if (found.publication or {}).get("status") == "published":
            faults.hit("before_mark")
            _advance_machine(verdict_id)
            verdict_outbox().settle(verdict_id)
        return found.as_dict()


def _advance_machine(verdict_id: str) -> None:
    """The verdict is on chain: its machine (if still in the verdict's state) becomes `published`."""
    machines_table = os.environ.get("MACHINES_TABLE")
    if not machines_table:
        return
    verdict = VerdictModel.get(verdict_id, consistent_read=True)
    scored = scored_of(verdict.verdict_id, int(verdict.round), verdict.upload_info)
    if mark_machine_published(
        machines_table, _region(), verdict.machine_id, verdict.result, time.time(), scored
    ):
        logger.info("machine published", extra={"machine_id": verdict.machine_id, "result": verdict.result})


def _dead_letter(doc: dict[str, Any]) -> None:
    url = os.environ.get("PUBLISHER_DLQ_URL")
    if url:
        boto3.client("sqs", region_name=_region()).send_message(QueueUrl=url, MessageBody=json.dumps(doc))


def set_aside(verdict_id: str, poison: PoisonVerdict, record: DynamoDBRecord) -> dict[str, Any]:
    """A verdict that can never be published as stored: reported once (ERROR line, metric, one
    PublisherDLQ message naming it), then left alone; the other verdicts are not held up."""
    outbox = verdict_outbox()
    kind = "malformed_verdict" if poison.malformed else "refused_by_chain"
    first = outbox.set_aside(verdict_id, time.time()) if poison.malformed else outbox.settle(verdict_id)
    logger.error(
        f"verdict set aside ({kind}): {poison}",
        extra={"verdict_id": verdict_id, "code": kind, "reasons": poison.reasons, "first_report": first},
    )
    if first:
        metrics.add_metric(
            name="VerdictsMalformed" if poison.malformed else "VerdictsRefused",
            unit=MetricUnit.Count,
            value=1,
        )
        _dead_letter(
            {
                "kind": kind,
                "verdict_id": verdict_id,
                "reasons": poison.reasons,
                "stream": {
                    "eventID": record.event_id,
                    "sequenceNumber": record.dynamodb.sequence_number if record.dynamodb else None,
                    "eventSourceARN": record.event_source_arn,
                },
            }
        )
    return {"verdict_id": verdict_id, "status": kind, "reasons": poison.reasons}


def defer(verdict_id: str, exc: Exception) -> dict[str, Any]:
    """The chain stayed out of reach for the whole budget: the verdict waits in the Unsettled index
    and the reconciler hands it back later, so the stream moves on and PublisherDLQ stays for what
    can never be published."""
    logger.error(
        f"publication deferred: {exc}", extra={"verdict_id": verdict_id, "code": "publication_deferred"}
    )
    metrics.add_metric(name="PublicationsDeferred", unit=MetricUnit.Count, value=1)
    return {"verdict_id": verdict_id, "status": "deferred", "error": str(exc)}


def _count(outcomes: Any) -> None:
    published = sum(
        1 for o in outcomes if o.error is None and (o.publication or {}).get("status") == "published"
    )
    failed = sum(1 for o in outcomes if o.error is not None)
    metrics.add_metric(name=VERDICTS_PUBLISHED, unit=MetricUnit.Count, value=published)
    count(PUBLICATION_FAILURES, failed)


_current: ContextVar[StreamBatch | None] = ContextVar("gpuproof_stream_batch", default=None)


def _verdict_id(record: DynamoDBRecord) -> str | None:
    if record.event_name == DynamoDBRecordEventName.REMOVE or record.dynamodb is None:
        return None
    keys = record.dynamodb.keys or {}
    vid = keys.get("verdict_id")
    return str(vid) if vid is not None else None


def _redrive(record: DynamoDBRecord) -> int:
    try:
        return int((record.dynamodb.new_image if record.dynamodb else {}).get("redrive") or 0)
    except (TypeError, ValueError):
        return 0


@idempotent_function(  # type: ignore[untyped-decorator]
    data_keyword_argument="request", config=_config, persistence_store=_persistence
)
def publish_verdict(request: dict[str, Any]) -> dict[str, Any]:
    batch = _current.get()
    if batch is None:
        raise RuntimeError("publish_verdict runs inside handle()")
    return batch.outcome(str(request["verdict_id"]))


def record_handler(record: DynamoDBRecord) -> dict[str, Any] | None:
    vid = _verdict_id(record)
    batch = _current.get()
    if vid is None or batch is None:
        return None
    logger.set_correlation_id(vid)  # every line about this verdict, its ERROR included
    if not batch.settings.enabled:
        logger.warning("CHAIN_NODE_URL is empty: verdict left unpublished", extra={"verdict_id": vid})
        return None
    try:
        try:
            result: dict[str, Any] = publish_verdict(request={"verdict_id": vid, "redrive": _redrive(record)})
        except IdempotencyAlreadyInProgressError:
            # One invocation per shard: an "in progress" record here is an invocation that died.
            logger.warning("taking over a publication left in progress", extra={"verdict_id": vid})
            result = batch.outcome(vid)
    except PoisonVerdict as poison:
        return set_aside(vid, poison, record)
    except (ChainUnavailable, OutboxConflict) as exc:
        return defer(vid, exc)
    return result


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The whole stream batch: set up the batch's publication, then per-record processing."""
    _config.register_lambda_context(context)
    records = [DynamoDBRecord(r) for r in event.get("Records", [])]
    ids = [vid for vid in (_verdict_id(r) for r in records) if vid is not None]
    remaining_s = context.get_remaining_time_in_millis() / 1000 if context is not None else 60.0
    budget = min(float(os.environ.get("CHAIN_RETRY_BUDGET_S", "40")), max(remaining_s - 10, 1))
    token = _current.set(StreamBatch(ChainSettings.from_env(), ids, budget))
    try:
        result = process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
        return dict(result)
    finally:
        _current.reset(token)
