"""What `gpuproof-ops dlq list|redrive` and `gpuproof-ops stuck` do, as plain functions on boto3
clients and the Machines table (the CLI in gpuproof.cli.ops only renders them).

- The verify DLQ holds verify messages that failed 5 times (VerifyDLQDepthAlarm): `redrive` moves
  them back to the verify queue (receive, send to the source, then delete: a message is never
  lost, at worst verified twice, which the verify worker's idempotency absorbs).
- The publisher DLQ holds stream batches the chain publisher gave up on: they are not redriven
  (the stream is gone); `gpuproof-ops republish` publishes the verdicts they name.
- `stuck`: machines in a waiting state (submitted, auto_verified, committee, no_consensus, disputed)
  for longer than a threshold, with the service's `state_reasons` or, without one, why that state
  waits and what moves it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

MAX_BATCH = 10  # SQS ReceiveMessage takes at most 10
PEEK_VISIBILITY_S = 0  # a listed message stays visible: listing moves nothing

WAITING_STATES = {
    "submitted": "the verify worker has not decided yet: check the verify queue and VerifyDLQ (dlq list)",
    "auto_verified": "no committee drawn yet: fewer eligible, admitted members than needed, or the "
    "sweeper has not ticked (admit members: gpuproof-ops admit)",
    "committee": "the round's commit or reveal windows are running; the sweeper tallies after them",
    "no_consensus": "waiting for a redraw with fresh members (enough eligible members?)",
    "disputed": "waiting for the operator: gpuproof-ops resolve MACHINE_ID --accept committee|service",
}


@dataclass(frozen=True)
class DlqMessage:
    message_id: str
    receive_count: int
    sent_at: float | None
    body: str

    def summary(self) -> str:
        try:
            doc = json.loads(self.body)
        except ValueError:
            return self.body[:200]
        if isinstance(doc, dict):
            keys = ("machine_id", "challenge_id", "verdict_id", "eventName")
            found = [f"{k}={doc[k]}" for k in keys if k in doc]
            return " ".join(found) or ", ".join(sorted(doc))[:200]
        return str(doc)[:200]


def depth(sqs: Any, queue_url: str) -> int:
    """Messages in the queue, visible or in flight (a listing leaves them in flight a moment)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attrs.get(n, 0)) for n in names)


def _message(m: dict[str, Any]) -> DlqMessage:
    attrs = m.get("Attributes") or {}
    sent = attrs.get("SentTimestamp")
    return DlqMessage(
        message_id=str(m["MessageId"]),
        receive_count=int(attrs.get("ApproximateReceiveCount", 0)),
        sent_at=None if sent is None else int(sent) / 1000,
        body=str(m.get("Body", "")),
    )


def peek(sqs: Any, queue_url: str, limit: int) -> list[DlqMessage]:
    """Up to `limit` messages, left in the queue and visible (a message seen twice counts once)."""
    seen: dict[str, DlqMessage] = {}
    while len(seen) < limit:
        got = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(MAX_BATCH, limit - len(seen)),
            VisibilityTimeout=PEEK_VISIBILITY_S,
            AttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        fresh = [m for m in got if m["MessageId"] not in seen]
        if not fresh:
            break
        for m in fresh:
            seen[m["MessageId"]] = _message(m)
    return list(seen.values())


def redrive(sqs: Any, dlq_url: str, source_url: str, limit: int) -> list[str]:
    """Move up to `limit` messages from the DLQ back to `source_url`; the ids moved."""
    moved: list[str] = []
    while len(moved) < limit:
        got = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=min(MAX_BATCH, limit - len(moved)),
            VisibilityTimeout=60,
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not got:
            break
        for m in got:
            sqs.send_message(QueueUrl=source_url, MessageBody=m["Body"])
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
            moved.append(str(m["MessageId"]))
    return moved


@dataclass(frozen=True)
class Stuck:
    machine_id: str
    state: str
    since: float
    why: list[str]


def stuck_machines(
    machines_table: str, region: str, older_than_s: float, now: float | None = None
) -> list[Stuck]:
    """Machines waiting in a state longer than `older_than_s`, oldest first, each with why."""
    from gpuproof.adapters.tables import MachineModel, bind

    bind(MachineModel, machines_table, region)
    now = time.time() if now is None else now
    found = []
    for state, generic in WAITING_STATES.items():
        for key in MachineModel.by_state.query(state):
            item = MachineModel.get(key.machine_id, consistent_read=True)
            if item.state != state or now - float(item.updated_at) < older_than_s:
                continue
            reasons = [f"{r.get('code')}: {r.get('message')}" for r in item.state_reasons or []]
            found.append(Stuck(item.machine_id, state, float(item.updated_at), reasons or [generic]))
    return sorted(found, key=lambda s: s.since)
