"""VerifyQueue on SQS: one message per stored report, deduplicated downstream by idempotency."""

from __future__ import annotations

import json
from typing import Any

import boto3


class SqsVerifyQueue:
    def __init__(self, queue_url: str, region: str, client: Any = None) -> None:
        self._url = queue_url
        self._sqs = client or boto3.client("sqs", region_name=region)

    def enqueue(self, machine_id: str, challenge_id: str) -> None:
        body = json.dumps({"machine_id": machine_id, "challenge_id": challenge_id}, sort_keys=True)
        self._sqs.send_message(QueueUrl=self._url, MessageBody=body)
