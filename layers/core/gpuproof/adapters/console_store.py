"""The console's reads on DynamoDB: bounded scans for the network overview (no body is read)."""

from __future__ import annotations

from typing import Any

from gpuproof.adapters.tables import MachineModel, ReportModel
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
