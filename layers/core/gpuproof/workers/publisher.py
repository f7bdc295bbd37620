"""The chain publisher's stream handling: each verdicts-stream batch → one extrinsic per chunk.

`handle` collects the batch's verdict ids, then Powertools' batch processor runs `record_handler`
per record (partial failures reported). The record handler is idempotent by verdict id; the
first record of a batch that needs work publishes every unpublished verdict of the batch at once
(gpuproof.chain.publisher.publish, exactly once by its own protocol), with backoff while the
chain is unreachable. A malformed verdict fails alone and reaches PublisherDLQ after the
stream's retries; the others are published in the same invocation.
"""

from __future__ import annotations

import functools
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

from gpuproof.adapters.clock import SystemClock
from gpuproof.adapters.dynamo import mark_machine_published
from gpuproof.adapters.tables import VerdictModel
from gpuproof.chain.adapter import ChainSettings, SubstrateChain, load_oracle_secret
from gpuproof.chain.publisher import Outcome, PublishServices, publish_with_retries
from gpuproof.chain.signer import KmsBatchSigner
from gpuproof.chain.store import DynamoVerdictOutbox
from gpuproof.observability import (
    PUBLICATION_FAILURES,
    PUBLICATION_RETRIES,
    VERDICTS_PUBLISHED,
    VERDICTS_REFUSED,
    count,
)

logger = Logger(child=True)
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
_config = IdempotencyConfig(event_key_jmespath="verdict_id", expires_after_seconds=7 * 24 * 3600)
_persistence = DynamoDBPersistenceLayer(table_name=os.environ.get("IDEMPOTENCY_TABLE", "IdempotencyTable"))


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


@functools.lru_cache(maxsize=4)
def publisher_services(settings: ChainSettings) -> PublishServices:
    """Adapters for one configuration (rebuilt if the chain settings change, e.g. in tests)."""
    secret = load_oracle_secret(settings, boto3.client("secretsmanager", region_name=_region()))
    return PublishServices(
        chain=SubstrateChain(settings, secret),
        outbox=DynamoVerdictOutbox(
            os.environ["VERDICTS_TABLE"], os.environ["PUBLISHED_BATCHES_TABLE"], _region()
        ),
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
                # Every verdict of the batch stays unpublished this time; the stream retries the
                # batch, then PublisherDLQ (runbook: docs/operations.md, PublisherDLQDepthAlarm).
                logger.exception(
                    "publication failed; the stream will retry the batch",
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
            logger.error("verdict not published", extra={"verdict_id": verdict_id, "error": str(found.error)})
            raise found.error
        logger.info("verdict published", extra=found.as_dict())
        if (found.publication or {}).get("status") == "published":
            _advance_machine(verdict_id)
        return found.as_dict()


def _advance_machine(verdict_id: str) -> None:
    """The verdict is on chain: its machine (if still in the verdict's state) becomes `published`."""
    machines_table = os.environ.get("MACHINES_TABLE")
    if not machines_table:
        return
    verdict = VerdictModel.get(verdict_id, consistent_read=True)
    if mark_machine_published(machines_table, _region(), verdict.machine_id, verdict.result, time.time()):
        logger.info("machine published", extra={"machine_id": verdict.machine_id, "result": verdict.result})


def _count(outcomes: Any) -> None:
    published = sum(
        1 for o in outcomes if o.error is None and (o.publication or {}).get("status") == "published"
    )
    failed = sum(1 for o in outcomes if o.error is not None)
    metrics.add_metric(name=VERDICTS_PUBLISHED, unit=MetricUnit.Count, value=published)
    metrics.add_metric(name=VERDICTS_REFUSED, unit=MetricUnit.Count, value=failed)
    count(PUBLICATION_FAILURES, failed)


_current: ContextVar[StreamBatch | None] = ContextVar("gpuproof_stream_batch", default=None)


def _verdict_id(record: DynamoDBRecord) -> str | None:
    if record.event_name == DynamoDBRecordEventName.REMOVE or record.dynamodb is None:
        return None
    keys = record.dynamodb.keys or {}
    vid = keys.get("verdict_id")
    return str(vid) if vid is not None else None


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
    result: dict[str, Any] = publish_verdict(request={"verdict_id": vid})
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
