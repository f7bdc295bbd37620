"""The console's read models (gpuproof.logic.console): figures from stored records only."""

from __future__ import annotations

from typing import Any

from gpuproof.console.app import _duration, static_asset
from gpuproof.logic.console import (
    MachineRow,
    ReportRow,
    calc_point_breakdown,
    guide,
    member_view,
    overview,
    proof_rates,
    telemetry_series,
)

NOW = 1_800_000_000.0


def verification(passed: bool, calc_point: int | None = None, gpus: int = 0) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    if calc_point is not None:
        info = {"machine_id": "m", "calc_point": calc_point, "gpu_num": gpus, "mem_num": 64}
        evidence = {
            "mem_num": "declared by the host (not proven)",
            "gpu_num": "proven by the proof of throughput",
        }
        checks.append({"name": "findings", "details": {"upload_info": info, "evidence": evidence}})
    claim = {"claimed_gpu_model": "H100 SXM5 80GB" if gpus else None, "gpu_count": gpus}
    return {"passed": passed, "verified_at": NOW - 10, "claim": claim, "checks": checks}


def test_overview_counts_states_gpus_calc_point_and_rates() -> None:
    machines = [
        MachineRow("a", "published", NOW, "a1"),
        MachineRow("b", "refused", NOW - 5, "b2"),
        MachineRow("c", "auto_verified", NOW - 9, "c1"),
    ]
    reports = [
        ReportRow("a", "a1", NOW - 20, verification(True, 5000, gpus=8)),
        ReportRow("b", "b1", NOW - 90_000, verification(True, 100)),
        ReportRow("b", "b2", NOW - 30, verification(False)),
        ReportRow("c", "c1", NOW - 40, verification(True, 700, gpus=1)),
    ]
    assert reports[1].verification is not None
    reports[1].verification["verified_at"] = NOW - 90_000  # the day before
    net = overview(machines, reports, NOW)
    assert net["by_state"] == {"auto_verified": 1, "published": 1, "refused": 1}
    assert net["gpus_by_model"] == {"H100 SXM5 80GB": 9}
    # Only committee-confirmed machines count in the total; b's latest report was refused.
    assert net["total_calc_point"] == 5000 and net["calc_point_machines"] == 1
    assert net["refusal_rate"] == 0.25 and net["reverification_rate"] == 1 / 3
    assert net["per_day"]["passed"][-1] == 2 and net["per_day"]["refused"][-1] == 1
    assert net["per_day"]["passed"][-2] == 1
    assert [m["machine_id"] for m in net["recent"]] == ["a", "b", "c"]


def test_an_empty_network_has_no_rates() -> None:
    net = overview([], [], NOW)
    assert net["refusal_rate"] is None and net["reverification_rate"] is None and net["gpus"] == 0


def test_inputs_are_proven_only_where_the_evidence_says_so() -> None:
    rows = {r["input"]: r for r in calc_point_breakdown(verification(True, 900, gpus=1))}
    assert rows["mem_num"]["mark"] == "declared"
    assert rows["gpu_num"]["mark"] == "proven"
    assert rows["calc_point"]["mark"] == "computed"
    assert "machine_id" not in rows
    # A structured evidence item (another shape of the verdict) and one without evidence.
    doc = verification(True, 900)
    findings = doc["checks"][0]["details"]
    findings["evidence"]["gpu_mem"] = {"status": "proven", "detail": "the proof's matrices filled it"}
    findings["upload_info"]["cuda_core"] = 16896
    rows = {r["input"]: r for r in calc_point_breakdown(doc)}
    assert rows["gpu_mem"]["mark"] == "proven" and rows["gpu_mem"]["evidence"].startswith("the proof")
    assert rows["cuda_core"]["mark"] == "unknown"


def test_proof_rates_name_the_reference_of_the_claimed_model() -> None:
    doc = verification(True, 900, gpus=1)
    doc["checks"].append(
        {
            "name": "proof_of_throughput",
            "status": "pass",
            "details": {"gpus": [{"gpu_index": 0, "proven_tops_lower_bound": 1200.0}]},
        }
    )
    rates = proof_rates(doc)
    assert rates["reference"] is not None and rates["reference"]["model"] == "H100 SXM5 80GB"
    assert rates["gpus"][0]["proven_tops"] == 1200.0
    assert proof_rates(verification(True, 900))["reference"] is None


def test_telemetry_series_chart_each_measure_per_gpu_and_list_other_signals() -> None:
    beats = [
        {
            "received_at": NOW + i,
            "telemetry": {
                "backend": "nvml",
                "gpus": [
                    {"index": 0, "utilization_pct": 10 * i, "memory_used_bytes": 2**30, "ecc_errors": 0}
                ],
                "host": {"cpu_percent": 5.0},
            },
        }
        for i in range(3)
    ]
    t = telemetry_series(beats)
    charts = {c["id"]: c for c in t["charts"]}
    assert charts["gpu-utilization_pct"]["lines"][0]["values"] == [0, 10, 20]
    assert charts["gpu-memory_used_bytes"]["lines"][0]["values"] == [1.0, 1.0, 1.0]
    assert "gpu-power_w" not in charts  # no figure, no chart
    assert t["other_signals"] == [{"gpu": 0, "signal": "ecc_errors", "value": 0}]
    assert telemetry_series([])["count"] == 0


def test_a_member_view_counts_down_to_the_next_deadline() -> None:
    booked = [
        {
            "machine_id": "m",
            "round": 1,
            "status": "open",
            "slots": [[NOW - 10, NOW + 100]],
            "booked_at": NOW - 10,
            "commit_deadline": NOW + 500,
            "reveal_deadline": NOW + 900,
            "committed": True,
            "revealed": False,
        },
        {
            "machine_id": "n",
            "round": 1,
            "status": "closed",
            "slots": [],
            "booked_at": NOW - 99,
            "commit_deadline": NOW - 50,
            "reveal_deadline": NOW - 20,
            "committed": True,
            "revealed": True,
        },
    ]
    v = member_view("acct", booked, [], NOW)
    assert v["open"] == 1
    assert v["assignments"][0]["due"] == ("reveal", NOW + 900)
    assert v["assignments"][1]["due"] is None


def test_every_state_has_a_next_step_and_a_new_one_is_shown_generically() -> None:
    assert "benchmark-probe submit" in guide("refused").next_step
    assert guide("revoked").meaning.startswith("a state this console has no description")


def test_static_assets_are_served_by_plain_name_only() -> None:
    assert static_asset("console.css") is not None
    for name in ("../app.py", ".hidden.js", "app.py", "templates/base.html", "x" * 80 + ".js"):
        assert static_asset(name) is None, name


def test_durations_read_as_a_person_says_them() -> None:
    assert _duration(129_600) == "1 d 12 h"
    assert _duration(3_725) == "1 h 2 min"
    assert _duration(65) == "1 min 5 s"


class OperatorDouble:
    """What the operator page reads, as values (the AWS adapter is exercised by the browser test)."""

    def __init__(self) -> None:
        self.alarm_names = ["stack-VerifyDLQDepthAlarm", "stack-MachineApiErrorsAlarm"]

    def queue_depths(self) -> list[dict[str, Any]]:
        return [
            {"queue": "VerifyQueue", "visible": 3, "in_flight": 1},
            {"queue": "VerifyDLQ", "visible": 2, "in_flight": 0},
        ]

    def unsettled_verdicts(self) -> dict[str, list[str]]:
        return {"open": ["m:1"], "malformed": []}

    def alarms(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "stack-VerifyDLQDepthAlarm",
                "state": "ALARM",
                "reason": "",
                "description": "",
                "since": NOW,
            }
        ]


def test_the_operator_page_counts_dead_letters_and_names_missing_alarms() -> None:
    from gpuproof.logic.console import ConsoleServices, operator_page

    svc = ConsoleServices(None, None, None, None, 0, OperatorDouble())  # type: ignore[arg-type]
    v = operator_page(svc)
    assert v["dead_letters"] == 2 and v["unsettled"] == ["m:1"] and v["in_alarm"] == 1
    assert v["alarms_missing"] == ["stack-MachineApiErrorsAlarm"]
    assert operator_page(ConsoleServices(None, None, None, None, 0))["available"] is False  # type: ignore[arg-type]
