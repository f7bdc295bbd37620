"""In-process event sources: SQS queues, DynamoDB streams and schedules, delivered in AWS's shapes.

Each poller is a thread that builds the same event Lambda's event source mapping (or EventBridge)
would, invokes the function's handler and honours `batchItemFailures`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from gpuproof.local.runtime import LocalFunction
from gpuproof.local.template import LOCAL_ACCOUNT, LOCAL_REGION, aws_client

log = logging.getLogger("gpuproof_local")


class Poller:
    """A background loop; `idle` means its last poll found nothing to deliver."""

    kind = "poller"

    def __init__(self, name: str, interval_s: float) -> None:
        self.name = name
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last_work_at = 0.0
        self.last_empty_poll_started_at = 0.0
        self.deliveries = 0
        self.poll_errors = 0

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"gpuproof-{self.kind}-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                did_work = self.poll_once()
            except Exception:
                self.poll_errors += 1
                did_work = False
                log.exception("%s poller %s failed; retrying", self.kind, self.name)
            if did_work:
                self.last_work_at = time.monotonic()
            else:
                self.last_empty_poll_started_at = started
                self._stop.wait(self.interval_s)

    def poll_once(self) -> bool:
        """Deliver what is waiting; True if anything was delivered."""
        raise NotImplementedError

    def quiet_since(self, t: float) -> bool:
        """True once a poll that started after `t` found nothing and no work happened after `t`."""
        return self.last_empty_poll_started_at > t and self.last_work_at <= t


# ---------------------------------------------------------------- SQS


class SqsPoller(Poller):
    kind = "sqs"

    def __init__(
        self,
        function: LocalFunction,
        queue_url: str,
        queue_arn: str,
        *,
        batch_size: int = 10,
        report_batch_item_failures: bool = False,
        endpoint_url: str,
        interval_s: float = 0.2,
        retry_delay_s: int = 0,
    ) -> None:
        super().__init__(f"{function.spec.logical_id}<-{queue_arn.rsplit(':', 1)[-1]}", interval_s)
        self.function = function
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.batch_size = min(batch_size, 10)
        self.partial = report_batch_item_failures
        self.retry_delay_s = retry_delay_s
        self.sqs = aws_client("sqs", endpoint_url)

    def poll_once(self) -> bool:
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return False
        records = [self._record(m) for m in messages]
        failed: set[str]
        try:
            result = self.function.invoke({"Records": records})
            failed = _failed_ids(result) if self.partial else set()
        except Exception:
            log.exception("%s failed on a batch of %d", self.function.spec.logical_id, len(records))
            failed = {m["MessageId"] for m in messages}
        self.deliveries += 1
        done = [m for m in messages if m["MessageId"] not in failed]
        for i in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(done[i : i + 10])
                ],
            )
        for m in messages:
            if m["MessageId"] in failed:
                # Lambda leaves a failed message invisible until VisibilityTimeout; locally we retry
                # sooner so the redrive to the DLQ (maxReceiveCount) shows within seconds.
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=m["ReceiptHandle"],
                    VisibilityTimeout=self.retry_delay_s,
                )
        return True

    def _record(self, m: dict[str, Any]) -> dict[str, Any]:
        attrs = m.get("Attributes", {})
        message_attributes = {
            name: {
                "stringValue": a.get("StringValue"),
                "binaryValue": base64.b64encode(a["BinaryValue"]).decode() if "BinaryValue" in a else None,
                "stringListValues": a.get("StringListValues", []),
                "binaryListValues": [base64.b64encode(b).decode() for b in a.get("BinaryListValues", [])],
                "dataType": a["DataType"],
            }
            for name, a in m.get("MessageAttributes", {}).items()
        }
        return {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": {
                "ApproximateReceiveCount": attrs.get("ApproximateReceiveCount", "1"),
                "SentTimestamp": attrs.get("SentTimestamp", str(int(time.time() * 1000))),
                "SenderId": attrs.get("SenderId", LOCAL_ACCOUNT),
                "ApproximateFirstReceiveTimestamp": attrs.get(
                    "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
                ),
                **{
                    k: v
                    for k, v in attrs.items()
                    if k in ("MessageGroupId", "MessageDeduplicationId", "SequenceNumber")
                },
            },
            "messageAttributes": message_attributes,
            "md5OfBody": m.get("MD5OfBody") or hashlib.md5(m["Body"].encode()).hexdigest(),  # noqa: S324 - SQS's md5
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": LOCAL_REGION,
        }

    def quiet_since(self, t: float) -> bool:
        if not super().quiet_since(t):
            return False
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return all(int(v) == 0 for v in attrs.values())


def _failed_ids(result: Any) -> set[str]:
    if not isinstance(result, dict):
        return set()
    return {str(f["itemIdentifier"]) for f in result.get("batchItemFailures") or []}


# ---------------------------------------------------------------- DynamoDB streams


def _jsonable(value: Any) -> Any:
    """Binary attribute values as the base64 strings the Lambda event carries."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_jsonable(v) for v in value]
    return value


class StreamPoller(Poller):
    """One DynamoDB stream → one function, per shard, with Lambda's retry and on-failure rules."""

    kind = "stream"

    def __init__(
        self,
        function: LocalFunction,
        stream_arn: str,
        *,
        batch_size: int = 100,
        starting_position: str = "TRIM_HORIZON",
        report_batch_item_failures: bool = False,
        maximum_retry_attempts: int = -1,
        on_failure_queue_url: str | None = None,
        endpoint_url: str,
        interval_s: float = 0.2,
    ) -> None:
        super().__init__(f"{function.spec.logical_id}<-{stream_arn.split('/')[1]}", interval_s)
        self.function = function
        self.stream_arn = stream_arn
        self.batch_size = batch_size
        self.starting_position = starting_position
        self.partial = report_batch_item_failures
        self.maximum_retry_attempts = maximum_retry_attempts
        self.on_failure_queue_url = on_failure_queue_url
        self.streams = aws_client("dynamodbstreams", endpoint_url)
        self.sqs = aws_client("sqs", endpoint_url)
        # shard id -> (iterator type, sequence number) to read from next; absent = starting position
        self.positions: dict[str, tuple[str, str]] = {}
        self.attempts: dict[str, int] = {}  # shard id -> failed attempts at its current position

    def _iterator(self, shard_id: str) -> str:
        position = self.positions.get(shard_id)
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
        if position is None:
            kwargs["ShardIteratorType"] = self.starting_position
        else:
            kwargs["ShardIteratorType"], kwargs["SequenceNumber"] = position
        iterator: str = self.streams.get_shard_iterator(**kwargs)["ShardIterator"]
        return iterator

    def poll_once(self) -> bool:
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        did_work = False
        for shard in shards:
            shard_id = shard["ShardId"]
            records = self.streams.get_records(ShardIterator=self._iterator(shard_id), Limit=self.batch_size)[
                "Records"
            ]
            if not records:
                continue
            did_work = True
            self._deliver(shard_id, records)
        return did_work

    def _deliver(self, shard_id: str, records: list[dict[str, Any]]) -> None:
        event_records = []
        for r in records:
            rec = _jsonable(dict(r))
            ddb = dict(rec["dynamodb"])
            created = r["dynamodb"].get("ApproximateCreationDateTime")
            if isinstance(created, datetime):
                ddb["ApproximateCreationDateTime"] = int(created.timestamp())
            rec["dynamodb"] = ddb
            rec["eventSourceARN"] = self.stream_arn
            rec.setdefault("awsRegion", LOCAL_REGION)
            event_records.append(rec)
        seqs = [str(r["dynamodb"]["SequenceNumber"]) for r in records]
        failed_from: str | None
        try:
            result = self.function.invoke({"Records": event_records})
            failed = _failed_ids(result) if self.partial else set()
            failed_from = min(failed, key=int) if failed else None
        except Exception:
            log.exception("%s failed on %d stream records", self.function.spec.logical_id, len(records))
            failed_from = seqs[0]
        self.deliveries += 1
        if failed_from is None:
            self.positions[shard_id] = ("AFTER_SEQUENCE_NUMBER", seqs[-1])
            self.attempts.pop(shard_id, None)
            return
        attempts = self.attempts.get(shard_id, 0) + 1
        if 0 <= self.maximum_retry_attempts < attempts:
            # Retries exhausted: send the batch's description to the on-failure destination and move on.
            self._on_failure(shard_id, records, failed_from, attempts)
            self.positions[shard_id] = ("AFTER_SEQUENCE_NUMBER", seqs[-1])
            self.attempts.pop(shard_id, None)
        else:
            self.positions[shard_id] = ("AT_SEQUENCE_NUMBER", failed_from)
            self.attempts[shard_id] = attempts

    def _on_failure(
        self, shard_id: str, records: list[dict[str, Any]], failed_from: str, attempts: int
    ) -> None:
        fn_arn = f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{self.function.physical_name}"
        failing = [r for r in records if int(r["dynamodb"]["SequenceNumber"]) >= int(failed_from)]
        log.warning(
            "%s: giving up on %d stream records after %d attempts",
            self.function.spec.logical_id,
            len(failing),
            attempts,
        )
        if not self.on_failure_queue_url:
            return
        doc = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": fn_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": failing[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": failing[-1]["dynamodb"]["SequenceNumber"],
                "batchSize": len(failing),
                "streamArn": self.stream_arn,
            },
        }
        self.sqs.send_message(QueueUrl=self.on_failure_queue_url, MessageBody=json.dumps(doc))


# ---------------------------------------------------------------- schedules

_RATE = re.compile(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}


def schedule_period_s(expression: str) -> float:
    """Seconds between ticks of a rate() expression (cron schedules fall back to one minute)."""
    m = _RATE.fullmatch(expression.strip())
    if not m:
        return 60.0
    return float(int(m.group(1)) * _UNIT_S[m.group(2).rstrip("s")])


class SchedulePoller(Poller):
    """Calls the function every period with an EventBridge "Scheduled Event"."""

    kind = "schedule"

    def __init__(self, function: LocalFunction, rule_name: str, period_s: float) -> None:
        super().__init__(f"{function.spec.logical_id}<-{rule_name}", period_s)
        self.function = function
        self.rule_arn = f"arn:aws:events:{LOCAL_REGION}:{LOCAL_ACCOUNT}:rule/{rule_name}"
        self.ticks = 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:
                self.poll_errors += 1
                log.exception("scheduled call of %s failed", self.function.spec.logical_id)

    def tick(self) -> Any:
        self.ticks += 1
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": LOCAL_ACCOUNT,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": LOCAL_REGION,
            "resources": [self.rule_arn],
            "detail": {},
        }
        return self.function.invoke(event)

    def quiet_since(self, t: float) -> bool:
        return True  # a clock never drains; what its ticks produce shows up in the queues and streams
