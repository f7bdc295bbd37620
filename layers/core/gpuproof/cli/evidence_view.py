"""The per-input evidence breakdown (`verification["evidence"]`, docs/scoring.md) as a Rich table, for
the committee CLI (and any other CLI that shows a verdict)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

_STYLE = {
    "proven": "green",
    "bound": "yellow",
    "reference": "cyan",
    "declared": "yellow",
    "not_proven": "red",
}


def _evidence_text(evidence: dict[str, Any]) -> str:
    parts = []
    for key, value in evidence.items():
        if value is None or value == []:
            continue
        text = str(value)
        if key.endswith("digest") and isinstance(value, str):
            text = value[:16] + "…"
        parts.append(f"{key}={text}")
    return ", ".join(parts)


def evidence_table(breakdown: dict[str, Any]) -> Table:
    """One row per calc_point input: value, status (proven / bound / reference / declared /
    not_proven) and what proved it; the caption gives the scored calc_point and DBC's minimums."""
    point = breakdown.get("calc_point") or {}
    minimums = breakdown.get("minimums") or {}
    caption = f"calc_point {point.get('point', '—')} (chain {point.get('chain_value', '—')})"
    if minimums:
        caption += "; DBC minimums " + ("met" if minimums.get("met") else "NOT met (proven RAM)")
    table = Table("input", "value", "status", "evidence", "note", title="calc_point inputs", caption=caption)
    for row in breakdown.get("inputs") or []:
        status = str(row.get("status"))
        table.add_row(
            str(row.get("input")),
            str(row.get("value")),
            f"[{_STYLE.get(status, 'white')}]{status}[/]",
            _evidence_text(row.get("evidence") or {}),
            str(row.get("note") or ""),
        )
    return table
