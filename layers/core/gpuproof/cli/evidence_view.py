"""The per-input evidence breakdown (`verification["evidence"]`, docs/scoring.md) and the member's
capacity re-check (`CapacityComparison.as_dict()`) as Rich tables, for the committee CLI (and any
other CLI that shows a verdict)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

_STYLE = {
    "proven": "green",
    "reference": "cyan",
    "declared": "yellow",
    "not_proven": "red",
}


def _evidence_text(evidence: dict[str, Any]) -> str:
    parts = []
    for key, value in evidence.items():
        if value is None or value == [] or key == "least_reading":  # the caption says it
            continue
        text = str(value)
        if key.endswith("digest") and isinstance(value, str):
            text = value[:16] + "…"
        parts.append(f"{key}={text}")
    return ", ".join(parts)


def evidence_table(breakdown: dict[str, Any]) -> Table:
    """One row per calc_point input: value, status (proven / reference / declared / not_proven)
    and what proved it; the caption gives the scored calc_point and DBC's minimums."""
    point = breakdown.get("calc_point") or {}
    minimums = breakdown.get("minimums") or {}
    caption = f"calc_point {point.get('point', '—')} (chain {point.get('chain_value', '—')})"
    if minimums:
        caption += "; DBC minimums " + ("met" if minimums.get("met") else "NOT met (proven RAM)")
    least = next(
        (
            (row.get("evidence") or {}).get("least_reading")
            for row in breakdown.get("inputs") or []
            if row.get("input") == "gpu_num"
        ),
        None,
    )
    if least:
        hardware = " + ".join(f"{d.get('count')} x {d.get('model')}" for d in least.get("devices") or [])
        caption += (
            f"\n[yellow]least reading: {hardware} meets the machine's totals and would score "
            f"{least.get('calc_point')} declared honestly (recorded, not scored; docs/scoring.md §3.6)[/]"
        )
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


def _view(side: dict[str, Any] | None) -> str:
    if side is None:
        return "—"
    text = f"{'passed' if side.get('passed') else 'not proven'}, {side.get('proven_bytes', 0)} B"
    reasons = side.get("reasons")
    return text + (f" ({', '.join(reasons)})" if reasons else "")


def capacity_table(comparison: dict[str, Any]) -> Table:
    """One row per capacity target: the service's record, its breakdown, this member's own result,
    agreement; the caption says what rests on the service's clock."""
    agreed = comparison.get("agreed")
    verdict = "[green]agreed[/]" if agreed else f"[red]{comparison.get('reason')}[/]"
    signed = comparison.get("commitment_signed")
    caption = (
        f"{verdict} ({comparison.get('basis')}); commitment signed by the machine key: "
        f"{'—' if signed is None else 'yes' if signed else 'NO'}"
    )
    if comparison.get("timing_reasons"):
        caption += f"; timing (service clock): {', '.join(comparison['timing_reasons'])}"
    if comparison.get("data_reasons"):
        caption += f"; data (your checks): {', '.join(comparison['data_reasons'])}"
    for difference in comparison.get("differences") or []:
        caption += f"\n[red]{difference}[/]"
    caption += f"\n{comparison.get('note', '')}"
    table = Table(
        "target",
        "service record",
        "service breakdown",
        "your re-check",
        "agree",
        title="capacity phase re-checked by you",
        caption=caption,
    )
    for row in comparison.get("targets") or []:
        ok = row.get("agreed")
        mark = "[green]yes[/]" if ok else "[red]NO[/] " + "; ".join(row.get("differences") or [])
        table.add_row(
            str(row.get("target")),
            _view(row.get("service")),
            _view(row.get("breakdown")),
            _view(row.get("member")),
            mark,
        )
    return table
