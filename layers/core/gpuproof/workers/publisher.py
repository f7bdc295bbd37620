"""The chain publisher's record handler: one verdicts-stream record = one verdict to publish.

Publishing lands with issue 6; until then each record is logged as not published.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

logger = Logger(child=True)
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def record_handler(record: DynamoDBRecord) -> None:
    keys = record.dynamodb.keys if record.dynamodb else None
    logger.warning(
        "chain publishing not implemented; lands with issue 6",
        extra={"event_name": str(record.event_name), "keys": keys},
    )
