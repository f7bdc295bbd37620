"""The console's reads on DynamoDB: bounded scans for the network overview (no body is read)."""

from __future__ import annotations

from typing import Any

from gpuproof.adapters.tables import OUTBOX_MALFORMED, OUTBOX_OPEN, MachineModel, ReportModel
from gpuproof.logic.console import MachineRow, ReportRow

# The overview reads at most this many items of each table; the page says when it stopped there.
MAX_OVERVIEW_ITEMS = 10_000


class DynamoConsoleReads:
    """MachinesTable and ReportsTable scans; the models are bound by DynamoMachineStore."""

    def __init__(self, max_items: int = MAX_OVERVIEW_ITEMS) -> None:
        self.max_items = max_items

    def machine_rows(self) -> tuple[list[MachineRow], bool]:
        rows: list[MachineRow] = []
        attrs = ["machine_id", "state", "updated_at", "last_challenge_id"]
        for item in MachineModel.scan(attributes_to_get=attrs):
            if len(rows) >= self.max_items:
                return rows, True
            rows.append(
                MachineRow(item.machine_id, item.state, float(item.updated_at), item.last_challenge_id)
            )
        return rows, False

    def report_rows(self) -> tuple[list[ReportRow], bool]:
        rows: list[ReportRow] = []
        attrs = ["machine_id", "challenge_id", "received_at", "verification"]
        for item in ReportModel.scan(attributes_to_get=attrs):
            if len(rows) >= self.max_items:
                return rows, True
            verification: dict[str, Any] | None = item.verification
            rows.append(ReportRow(item.machine_id, item.challenge_id, float(item.received_at), verification))
        return rows, False


class AwsOperatorReads:
    """Queue depths (SQS GetQueueAttributes), verdicts not yet on chain (VerdictsTable's Unsettled
    index) and the stack's alarms (CloudWatch DescribeAlarms by name)."""

    def __init__(
        self,
        queues: dict[str, str],
        verdicts_table: str | None,
        alarm_names: list[str],
        region: str,
    ) -> None:
        import boto3

        from gpuproof.chain.store import DynamoVerdictOutbox

        self.queues = queues
        self.alarm_names = alarm_names
        self._sqs = boto3.client("sqs", region_name=region)
        self._cloudwatch = boto3.client("cloudwatch", region_name=region) if alarm_names else None
        self._outbox = DynamoVerdictOutbox(verdicts_table, None, region) if verdicts_table else None

    def queue_depths(self) -> list[dict[str, Any]]:
        rows = []
        names: list[Any] = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        for name, url in self.queues.items():
            attrs = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
            rows.append(
                {
                    "queue": name,
                    "visible": int(attrs.get("ApproximateNumberOfMessages", 0)),
                    "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
                }
            )
        return rows

    def unsettled_verdicts(self) -> dict[str, list[str]]:
        if self._outbox is None:
            return {}
        return {
            "open": self._outbox.unsettled(OUTBOX_OPEN),
            "malformed": self._outbox.unsettled(OUTBOX_MALFORMED),
        }

    def alarms(self) -> list[dict[str, Any]]:
        if self._cloudwatch is None:
            return []
        found: list[dict[str, Any]] = []
        for start in range(0, len(self.alarm_names), 100):  # DescribeAlarms takes 100 names at most
            pages = self._cloudwatch.get_paginator("describe_alarms").paginate(
                AlarmNames=self.alarm_names[start : start + 100], AlarmTypes=["MetricAlarm"]
            )
            for page in pages:
                for a in page.get("MetricAlarms", []):
                    found.append(
                        {
                            "name": a["AlarmName"],
                            "state": a.get("StateValue"),
                            "reason": a.get("StateReason", ""),
                            "description": a.get("AlarmDescription", ""),
                            "since": a["StateUpdatedTimestamp"].timestamp()
                            if a.get("StateUpdatedTimestamp")
                            else None,
                        }
                    )
        return found
