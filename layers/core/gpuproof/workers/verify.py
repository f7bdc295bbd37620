"""The verify worker's record handler: one SQS message = one stored report to verify."""

from __future__ import annotations

import json
import os
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from gpuproof.api.wiring import verify_services
from gpuproof.logic.verification import verify_report
from gpuproof.observability import count_refusals

logger = Logger(child=True)
processor = BatchProcessor(event_type=EventType.SQS)
_config = IdempotencyConfig(event_key_jmespath="[machine_id, challenge_id]", expires_after_seconds=24 * 3600)
_persistence = DynamoDBPersistenceLayer(table_name=os.environ.get("IDEMPOTENCY_TABLE", "IdempotencyTable"))


@idempotent_function(  # type: ignore[untyped-decorator]
    data_keyword_argument="message", config=_config, persistence_store=_persistence
)
def verify_message(message: dict[str, Any]) -> dict[str, Any]:
    result = verify_report(verify_services(), str(message["machine_id"]), str(message["challenge_id"]))
    passed = None if result is None else result["passed"]
    logger.info("report verified", extra={"machine_id": message["machine_id"], "passed": passed})
    if result is not None and not passed:  # counted once: a replay returns the stored result
        count_refusals(str(r.get("code")) for r in result.get("reasons", []))
    return {"passed": passed}


def record_handler(record: SQSRecord) -> dict[str, Any]:
    logger.set_correlation_id(record.message_id)  # until the body names the report
    try:
        message = json.loads(record.body)
        # The report's ids are the correlation id of every line about it, the ERROR below included.
        logger.set_correlation_id(f"{message['machine_id']}/{message['challenge_id']}")
        result: dict[str, Any] = verify_message(message=message)
    except Exception:
        # The batch reports the record failed and SQS redelivers it (VerifyDLQ after 5): say why.
        logger.exception(
            "verification failed; the message will be retried", extra={"message_id": record.message_id}
        )
        raise
    return result


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One SQS batch: each record verified on its own; failures reported per record."""
    _config.register_lambda_context(context)  # idempotency records expire with the invocation
    return dict(
        process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    )
