"""The web console's read models: plain values computed from what the service stores.

Every figure here is derived from stored records (machines, verifications, rounds, heartbeats);
nothing is estimated. What the host declared and what the service proved stay apart, as in the
verdict (a calc_point input is "proven" only where the verification's evidence says so).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from gpuproof.logic.committee import CommitteeServices, assignments
from gpuproof.logic.ports import Clock
from gpuproof.logic.records import Machine, StoredReport
from gpuproof.reference import lookup

DAY_S = 86400
# Verifications per day: the last this many days (UTC), oldest first.
OVERVIEW_DAYS = 14
# Committee-confirmed machines: their calc_point counts in the network's total.
COUNTED_STATES = ("confirmed", "published")
# The overview links this many machines, the most recently updated first.
RECENT_MACHINES = 50


@dataclass(frozen=True)
class MachineRow:
    machine_id: str
    state: str
    updated_at: float
    last_challenge_id: str | None


@dataclass(frozen=True)
class ReportRow:
    machine_id: str
    challenge_id: str
    received_at: float
    verification: dict[str, Any] | None


@dataclass(frozen=True)
class StateGuide:
    meaning: str
    next_step: str


# What each state means for the owner and what to do next (docs/machine-states.md). A state not
# listed here (one added later) is shown with its name and the generic guide below.
STATE_GUIDE: dict[str, StateGuide] = {
    "registered": StateGuide(
        "the machine key is registered; no challenge was taken yet",
        "run `benchmark-probe submit` on the machine",
    ),
    "challenged": StateGuide(
        "a challenge was issued; the service waits for the proof and the signed report",
        "let `benchmark-probe submit` finish; if it stopped, run it again "
        "(a new challenge supersedes this one)",
    ),
    "submitted": StateGuide(
        "the signed report is stored and queued for the automated verification",
        "wait: the verify worker decides within minutes",
    ),
    "auto_verified": StateGuide(
        "the automated checks passed; the machine waits for a committee draw",
        "wait for the draw; the reasons below say if the draw is waiting for something",
    ),
    "refused": StateGuide(
        "the last report was refused; the reasons say which check failed",
        "fix what the reasons name, wait out any cooldown, then run `benchmark-probe submit` again",
    ),
    "committee": StateGuide(
        "a committee was drawn and reviews the evidence (commit, then reveal)",
        "wait: the committee's windows are shown in the verdict history",
    ),
    "confirmed": StateGuide(
        "the committee confirmed the machine; the verdict is on its way to the chain",
        "wait for publication; keep the agent running (`benchmark-probe agent`)",
    ),
    "no_consensus": StateGuide(
        "the committee reached no consensus; the machine is drawn again with fresh members",
        "wait for the next draw",
    ),
    "disputed": StateGuide(
        "the committee's majority differs from the service's findings; the operator settles it",
        "wait for the operator's settlement",
    ),
    "published": StateGuide(
        "the verdict is on chain",
        "keep the agent running; the service asks for a re-verification when one is due",
    ),
}
UNKNOWN_STATE = StateGuide("a state this console has no description for", "see the reasons below, if any")


def guide(state: str) -> StateGuide:
    return STATE_GUIDE.get(state, UNKNOWN_STATE)


def _check(verification: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    for c in (verification or {}).get("checks") or []:
        if isinstance(c, dict) and c.get("name") == name:
            return c
    return None


def findings_of(verification: dict[str, Any] | None) -> dict[str, Any]:
    check = _check(verification, "findings")
    details = (check or {}).get("details")
    return details if isinstance(details, dict) else {}


def calc_point_of(verification: dict[str, Any] | None) -> int | None:
    value = (findings_of(verification).get("upload_info") or {}).get("calc_point")
    return int(value) if isinstance(value, (int, float)) else None


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def overview(
    machines: Sequence[MachineRow],
    reports: Sequence[ReportRow],
    now: float,
    *,
    truncated: bool = False,
) -> dict[str, Any]:
    """Machines by state, GPUs by model, total calc_point, verifications per day, and the
    re-verification and refusal rates, over every stored machine and report."""
    by_machine: dict[str, list[ReportRow]] = {}
    for r in reports:
        by_machine.setdefault(r.machine_id, []).append(r)
    verified = [r for r in reports if r.verification is not None]
    refused = [r for r in verified if not r.verification or not r.verification.get("passed")]
    gpus: Counter[str] = Counter()
    total_calc_point = 0
    counted = 0
    for m in machines:
        latest = next(
            (r for r in by_machine.get(m.machine_id, []) if r.challenge_id == m.last_challenge_id), None
        )
        if latest is None or not (latest.verification or {}).get("passed"):
            continue
        claim = (latest.verification or {}).get("claim") or {}
        if claim.get("gpu_count"):
            gpus[str(claim.get("claimed_gpu_model") or "unknown model")] += int(claim["gpu_count"])
        if m.state in COUNTED_STATES:
            point = calc_point_of(latest.verification)
            if point is not None:
                total_calc_point += point
                counted += 1
    days = [_day(now - DAY_S * i) for i in range(OVERVIEW_DAYS - 1, -1, -1)]
    passed_per_day: Counter[str] = Counter()
    refused_per_day: Counter[str] = Counter()
    for r in verified:
        at = float((r.verification or {}).get("verified_at") or r.received_at)
        (passed_per_day if (r.verification or {}).get("passed") else refused_per_day)[_day(at)] += 1
    with_reports = [mid for mid, rs in by_machine.items() if rs]
    reverified = [mid for mid in with_reports if len(by_machine[mid]) > 1]
    return {
        "machines": len(machines),
        "by_state": dict(sorted(Counter(m.state for m in machines).items())),
        "gpus_by_model": dict(sorted(gpus.items())),
        "gpus": sum(gpus.values()),
        "total_calc_point": total_calc_point,
        "calc_point_machines": counted,
        "verifications": len(verified),
        "refused": len(refused),
        "refusal_rate": len(refused) / len(verified) if verified else None,
        "reverification_rate": len(reverified) / len(with_reports) if with_reports else None,
        "machines_with_reports": len(with_reports),
        "reverified_machines": len(reverified),
        "per_day": {
            "days": days,
            "passed": [passed_per_day.get(d, 0) for d in days],
            "refused": [refused_per_day.get(d, 0) for d in days],
        },
        "recent": [
            {"machine_id": m.machine_id, "state": m.state}
            for m in sorted(machines, key=lambda m: m.updated_at, reverse=True)[:RECENT_MACHINES]
        ],
        "truncated": truncated,
    }


def _mark(evidence: Any) -> str:
    """proven / declared / unknown from one input's evidence (a text, or a dict with a status)."""
    if isinstance(evidence, dict):
        for key in ("status", "mark", "kind", "source"):
            value = evidence.get(key)
            if isinstance(value, str):
                return _mark(value)
        if isinstance(evidence.get("proven"), bool):
            return "proven" if evidence["proven"] else "declared"
        return "unknown"
    if isinstance(evidence, str):
        text = evidence.lower()
        if "not proven" in text or text.startswith("declared"):
            return "declared"
        if "proven" in text or "measured" in text or "checked" in text:
            return "proven"
    return "unknown"


def _evidence_text(evidence: Any) -> str:
    if isinstance(evidence, str):
        return evidence
    if isinstance(evidence, dict):
        for key in ("detail", "message", "how", "note"):
            if isinstance(evidence.get(key), str):
                return str(evidence[key])
        return "; ".join(f"{k}: {v}" for k, v in evidence.items() if not isinstance(v, (dict, list)))
    return "no evidence recorded for this input"


def _scored_breakdown(breakdown: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the per-input breakdown (`verification.evidence`, docs/scoring.md): the mark is the
    input's status (proven, reference, declared, not_proven), never upgraded."""
    rows = []
    for item in breakdown.get("inputs") or []:
        if not isinstance(item, dict):
            continue
        status = item.get("status")
        mark = status if status in ("proven", "reference", "declared", "not_proven") else "unknown"
        detail = _evidence_text(item.get("evidence") or {})
        note = item.get("note") if isinstance(item.get("note"), str) else ""
        rows.append(
            {
                "input": str(item.get("input")),
                "value": item.get("value"),
                "mark": mark,
                "evidence": f"{note} ({detail})" if detail and note else note or detail,
            }
        )
    point = breakdown.get("calc_point")
    if isinstance(point, dict):
        rows.append(
            {
                "input": "calc_point",
                "value": point.get("chain_value"),
                "mark": "computed",
                "evidence": "DBC's formula of the inputs above (x 100)",
            }
        )
    return rows


def calc_point_breakdown(verification: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every input of the calc_point with its value and how it is known: the verification's
    per-input breakdown (`evidence`) where it has one, else the `findings` evidence of older
    verifications; an input without evidence is marked "unknown", never "proven"."""
    breakdown = (verification or {}).get("evidence")
    if isinstance(breakdown, dict) and isinstance(breakdown.get("inputs"), list):
        return _scored_breakdown(breakdown)
    findings = findings_of(verification)
    info = findings.get("upload_info") or {}
    evidence = findings.get("evidence") or {}
    rows = []
    for name, value in info.items():
        if name == "machine_id":
            continue
        ev = evidence.get(name)
        if name == "calc_point" and ev is None:
            rows.append(
                {"input": name, "value": value, "mark": "computed", "evidence": "DBC's formula of the inputs"}
            )
            continue
        rows.append(
            {
                "input": name,
                "value": value,
                "mark": _mark(ev),
                "evidence": _evidence_text(ev) if ev is not None else "no evidence recorded for this input",
            }
        )
    for name, ev in evidence.items():
        if name not in info:
            rows.append({"input": name, "value": None, "mark": _mark(ev), "evidence": _evidence_text(ev)})
    return rows


def proof_rates(verification: dict[str, Any] | None) -> dict[str, Any]:
    """The proven int8 rate per GPU beside the claimed model's reference (gpuproof.reference)."""
    claim = (verification or {}).get("claim") or {}
    model = claim.get("claimed_gpu_model")
    ref = lookup(model) if isinstance(model, str) and model else None
    check = _check(verification, "proof_of_throughput") or {}
    gpus = (check.get("details") or {}).get("gpus") or []
    rows = [
        {
            "gpu_index": g.get("gpu_index"),
            "proven_tops": g.get("proven_tops_lower_bound"),
            "claimed_tops": g.get("claimed_rate_tops"),
            "deadline_s": g.get("deadline_s"),
        }
        for g in gpus
        if isinstance(g, dict)
    ]
    return {
        "model": model,
        "status": check.get("status"),
        "gpus": rows,
        "reference": None
        if ref is None
        else {
            "model": ref.model,
            "expected_int8_tops": ref.expected_int8_tops,
            "int8_dense_tops": ref.int8_dense_tops,
            "source": ref.int8_source,
        },
    }


# Telemetry series the console charts, per GPU and of the host: (key, label, unit, scale).
GPU_SERIES: tuple[tuple[str, str, str, float], ...] = (
    ("utilization_pct", "GPU utilisation", "%", 1.0),
    ("memory_used_bytes", "GPU memory used", "GiB", 1 / 2**30),
    ("temperature_c", "temperature", "°C", 1.0),
    ("power_w", "power", "W", 1.0),
    ("sm_clock_mhz", "SM clock", "MHz", 1.0),
    ("mem_clock_mhz", "memory clock", "MHz", 1.0),
    ("ecc_corrected", "ECC errors corrected", "count", 1.0),
    ("ecc_uncorrected", "ECC errors uncorrected", "count", 1.0),
)
# Health signals shown per GPU from the latest heartbeat (label by key), beside the charts.
HEALTH_SIGNALS: tuple[tuple[str, str], ...] = (
    ("retired_pages_single_bit", "retired pages (single-bit ECC)"),
    ("retired_pages_double_bit", "retired pages (double-bit ECC)"),
    ("retired_pages_pending", "page retirement pending"),
    ("remapped_rows_correctable", "remapped rows (correctable)"),
    ("remapped_rows_uncorrectable", "remapped rows (uncorrectable)"),
    ("remapped_rows_pending", "row remapping pending"),
    ("remapping_failed", "row remapping failed"),
    ("throttle_reasons", "throttle reasons"),
)
HOST_SERIES: tuple[tuple[str, str, str, float], ...] = (
    ("cpu_percent", "host CPU", "%", 1.0),
    ("memory_used_bytes", "host memory used", "GiB", 1 / 2**30),
)


def _num(value: Any, scale: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return round(float(value) * scale, 3)


def telemetry_series(beats: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The heartbeat history as chart series: one chart per measure, one line per GPU; besides
    the charted measures, every other number a heartbeat carried per GPU is listed with its
    latest value (health counters an agent adds show up without a console change)."""
    times = [float(b["received_at"]) for b in beats]
    indices = sorted(
        {int(g["index"]) for b in beats for g in b["telemetry"].get("gpus") or [] if "index" in g}
    )
    charts = []
    for key, label, unit, scale in GPU_SERIES:
        lines = []
        for i in indices:
            values = []
            for b in beats:
                gpu: dict[str, Any] = next(
                    (g for g in b["telemetry"].get("gpus") or [] if g.get("index") == i), {}
                )
                values.append(_num(gpu.get(key), scale))
            if any(v is not None for v in values):
                lines.append({"label": f"GPU {i}", "values": values})
        if lines:
            charts.append({"id": f"gpu-{key}", "title": label, "unit": unit, "lines": lines})
    for key, label, unit, scale in HOST_SERIES:
        values = [_num((b["telemetry"].get("host") or {}).get(key), scale) for b in beats]
        if any(v is not None for v in values):
            charts.append(
                {
                    "id": f"host-{key}",
                    "title": label,
                    "unit": unit,
                    "lines": [{"label": "host", "values": values}],
                }
            )
    charted = {k for k, *_ in GPU_SERIES} | {k for k, _ in HEALTH_SIGNALS}
    charted |= {"index", "uuid", "processes", "error", "xid_events"}
    latest = beats[-1]["telemetry"] if beats else {}
    latest_gpus = list(latest.get("gpus") or [])
    health = {
        "gpus": [g.get("index") for g in latest_gpus],
        "rows": [
            {"key": k, "label": label, "values": [_health_value(g.get(k)) for g in latest_gpus]}
            for k, label in HEALTH_SIGNALS
        ]
        if latest_gpus
        else [],
    }
    xids = [
        {"at": b["received_at"], "gpu": g.get("index"), "xid": xid}
        for b in beats
        for g in b["telemetry"].get("gpus") or []
        for xid in g.get("xid_events") or []
    ]
    other: list[dict[str, Any]] = []
    for g in latest.get("gpus") or []:
        for k, v in sorted(g.items()):
            if k not in charted:
                other.append({"gpu": g.get("index"), "signal": k, "value": v})
        if g.get("error"):
            other.append({"gpu": g.get("index"), "signal": "error", "value": g["error"]})
    return {
        "times": times,
        "charts": charts,
        "count": len(beats),
        "first_at": times[0] if times else None,
        "last_at": times[-1] if times else None,
        "backend": latest.get("backend"),
        "note": latest.get("note"),
        "other_signals": other,
        "health": health,
        "xid_events": xids[-MAX_LISTED_XIDS:],
        "xid_total": len(xids),
    }


# The machine page lists the newest this many XID events of the heartbeat history.
MAX_LISTED_XIDS = 100


def _health_value(value: Any) -> str:
    """A health signal as a person reads it; "not reported" where the GPU or driver cannot tell."""
    if value is None:
        return "not reported"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


BENCHMARK_FIELDS = ("name", "device", "median", "min", "max", "unit", "verified", "error")


def benchmark_rows(report: StoredReport) -> list[dict[str, Any]]:
    body = report.signed_report.get("report") or {}
    rows = []
    for b in body.get("benchmarks") or []:
        if isinstance(b, dict):
            rows.append({k: b.get(k) for k in BENCHMARK_FIELDS})
    return rows


def inventory_summary(report: StoredReport) -> dict[str, Any]:
    inv = (report.signed_report.get("report") or {}).get("inventory") or {}
    return {
        "backend": inv.get("backend"),
        "gpus": [g.get("name") for g in inv.get("gpus") or [] if isinstance(g, dict)],
        "host": inv.get("host") or {},
        "notes": inv.get("notes") or [],
    }


def verdict_history(
    reports: Sequence[StoredReport], rounds: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The automated verifications and the committee rounds, newest first."""
    rows: list[dict[str, Any]] = []
    for r in reports:
        v = r.verification
        rows.append(
            {
                "at": float((v or {}).get("verified_at") or r.received_at),
                "kind": "automated verification",
                "ref": r.challenge_id,
                "outcome": "pending" if v is None else ("passed" if v.get("passed") else "refused"),
                "reasons": list((v or {}).get("reasons") or []),
            }
        )
    for rd in rounds:
        tally = rd.get("tally") or {}
        rows.append(
            {
                "at": float(rd.get("closed_at") or rd.get("booked_at") or 0),
                "kind": f"committee round {rd.get('round')}",
                "ref": f"{rd.get('machine_id')}/{rd.get('round')}",
                "outcome": rd.get("result") or rd.get("status") or "open",
                "reasons": [{"code": "tally", "message": str(tally["reason"])}]
                if tally.get("reason")
                else [],
                "commit_deadline": rd.get("commit_deadline"),
                "reveal_deadline": rd.get("reveal_deadline"),
            }
        )
    return sorted(rows, key=lambda row: row["at"], reverse=True)


def machine_view(
    machine: Machine,
    reports: Sequence[StoredReport],
    rounds: Sequence[dict[str, Any]],
    beats: Sequence[dict[str, Any]],
    now: float,
) -> dict[str, Any]:
    latest = next((r for r in reports if r.challenge_id == machine.last_challenge_id), None)
    if latest is None and reports:
        latest = reports[0]
    g = guide(machine.state.value)
    attempts = machine.attempts
    return {
        "machine": machine,
        "state": machine.state.value,
        "meaning": g.meaning,
        "next_step": g.next_step,
        "reasons": machine.state_reasons,
        "cooldown_until": attempts.cooldown_until
        if attempts.cooldown_until and attempts.cooldown_until > now
        else None,
        "latest": latest,
        "latest_passed": bool(latest and (latest.verification or {}).get("passed")),
        "calc_point": None if latest is None else calc_point_of(latest.verification),
        "breakdown": [] if latest is None else calc_point_breakdown(latest.verification),
        "benchmarks": [] if latest is None else benchmark_rows(latest),
        "inventory": None if latest is None else inventory_summary(latest),
        "checks": [] if latest is None else list((latest.verification or {}).get("checks") or []),
        "proof": proof_rates(None if latest is None else latest.verification),
        "history": verdict_history(reports, rounds),
        "telemetry": telemetry_series(beats),
    }


def member_view(
    account: str, booked: Sequence[dict[str, Any]], rounds: Sequence[dict[str, Any]], now: float
) -> dict[str, Any]:
    """A member's assignments, open ones first, each with its next deadline, and the draw data
    of each round (beacon value and index, pool size and digest, the drawn members)."""
    items = []
    by_key = {(r["machine_id"], r["round"]): r for r in rounds}
    for a in booked:
        slots = [s for s in a.get("slots") or [] if len(s) == 2]
        next_slot = next(((float(s[0]), float(s[1])) for s in slots if float(s[1]) > now), None)
        if a.get("status") != "open":
            due = None
        elif not a.get("committed"):
            due = ("commit", float(a["commit_deadline"]))
        elif not a.get("revealed"):
            due = ("reveal", float(a["reveal_deadline"]))
        else:
            due = None
        doc = by_key.get((a["machine_id"], a["round"]))
        items.append({**a, "next_slot": next_slot, "due": due, "round_doc": doc})
    items.sort(key=lambda i: (i["status"] != "open", -float(i.get("booked_at") or 0)))
    return {"account": account, "assignments": items, "open": sum(1 for i in items if i["status"] == "open")}


class OverviewReads(Protocol):
    def machine_rows(self) -> tuple[list[MachineRow], bool]: ...

    def report_rows(self) -> tuple[list[ReportRow], bool]: ...


class MachineReads(Protocol):
    def get_machine(self, machine_id: str) -> Machine | None: ...

    def list_reports(self, machine_id: str, limit: int = 10) -> list[StoredReport]: ...

    def heartbeats(self, machine_id: str, since: float, limit: int) -> list[dict[str, Any]]: ...


class OperatorReads(Protocol):
    alarm_names: list[str]

    def queue_depths(self) -> list[dict[str, Any]]: ...

    def unsettled_verdicts(self) -> dict[str, list[str]]: ...

    def alarms(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class ConsoleServices:
    machines: MachineReads
    overview: OverviewReads
    committee: CommitteeServices
    clock: Clock
    heartbeat_window_s: int
    operator: OperatorReads | None = None


# The machine page charts at most this many heartbeats (the newest), over the retention period.
MAX_CHARTED_HEARTBEATS = 720


def network(svc: ConsoleServices) -> dict[str, Any]:
    machines, more_machines = svc.overview.machine_rows()
    reports, more_reports = svc.overview.report_rows()
    return overview(machines, reports, svc.clock.now(), truncated=more_machines or more_reports)


def machine_page(svc: ConsoleServices, machine_id: str) -> dict[str, Any] | None:
    """None when no machine has this id."""
    machine = svc.machines.get_machine(machine_id)
    if machine is None:
        return None
    now = svc.clock.now()
    reports = svc.machines.list_reports(machine_id)
    rounds = [r.published(now) for r in svc.committee.store.rounds_of_machine(machine_id)]
    beats = svc.machines.heartbeats(machine_id, now - svc.heartbeat_window_s, MAX_CHARTED_HEARTBEATS)
    return machine_view(machine, reports, rounds, beats, now)


def member_page(svc: ConsoleServices, account: str) -> dict[str, Any] | None:
    """None when no member has this account."""
    member = svc.committee.store.get_member(account)
    if member is None:
        return None
    now = svc.clock.now()
    items = assignments(svc.committee, account)
    rounds = [r.published(now) for r in svc.committee.store.rounds_of_member(account)]
    view = member_view(account, items, rounds, now)
    view["member"] = member
    return view


# Queues whose depth is trouble (a message there waits for an operator), by the console's names.
DEAD_LETTER_QUEUES = frozenset({"VerifyDLQ", "PublisherDLQ"})


def operator_page(svc: ConsoleServices) -> dict[str, Any]:
    """Queue and DLQ depths, verdicts not yet on chain, and the stack's alarms as CloudWatch has
    them; where CloudWatch knows none of the named alarms (the local stack creates none), the
    page says so instead of showing a state."""
    reads = svc.operator
    if reads is None:
        return {"available": False}
    queues = reads.queue_depths()
    for q in queues:
        q["dead_letter"] = q["queue"] in DEAD_LETTER_QUEUES
    unsettled = reads.unsettled_verdicts()
    alarms = reads.alarms()
    return {
        "available": True,
        "queues": queues,
        "dead_letters": sum(q["visible"] for q in queues if q["dead_letter"]),
        "unsettled": unsettled.get("open", []),
        "malformed": unsettled.get("malformed", []),
        "alarms": sorted(alarms, key=lambda a: (a["state"] != "ALARM", a["name"])),
        "alarm_names": list(reads.alarm_names),
        "alarms_missing": sorted(set(reads.alarm_names) - {a["name"] for a in alarms}),
        "in_alarm": sum(1 for a in alarms if a["state"] == "ALARM"),
    }
