"""The deadline sweeper's use case entry: one schedule tick draws committees and closes rounds.

Each tick: (0) publish the beacon's tip if it is not yet (the first tick after deploy), (1) draw
a committee for every machine that passed the automated stage or lost its consensus
(`logic.committee.draw_due_machines`), then (2) tally every round whose windows are over, or
whose votes are all in (`logic.committee.close_due_rounds`), and write the verdict of every
disputed round the operator settled (`logic.committee.settle_resolved_disputes`), then (3)
re-enqueue reports left unverified (`logic.machines.requeue_unverified_reports`). (1) and (2) are
conditional writes, so overlapping ticks cannot draw or close twice; (3) is idempotent downstream.
Then (3b) the liveness watch (`logic.liveness.sweep_liveness`): the presence waves are drawn
ahead (one stored item), and the scored machines due (the ByLivenessDue index, at most 1000 a
tick) are found online, offline (no heartbeat for OfflineAfterSeconds, or a missed presence
check) or revoked (offline for RevokeOfflineAfterSeconds, or PresenceMaxMisses misses among the
last PresenceMissWindow presence checks; a Revoked verdict).
Then (4) the reconciler repairs what the verdicts, the machines and the chain disagree on
(`logic.reconcile.reconcile`: each repair one log line, counted in `ReconciliationRepairs`).
Each step reads only what is due (the ByDue, ByState and Unsettled indexes), never every round.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from gpuproof.adapters.clock import SystemClock
from gpuproof.api.wiring import (
    committee_services,
    liveness_store,
    machine_services,
    reconcile_services,
    wave_store,
)
from gpuproof.config import LivenessPolicy, PresencePolicy
from gpuproof.logic.committee import (
    close_due_rounds,
    draw_due_machines,
    publish_beacon_tip,
    settle_resolved_disputes,
)
from gpuproof.logic.liveness import LivenessOutcome, outcomes_by_kind, sweep_liveness
from gpuproof.logic.machines import requeue_unverified_reports
from gpuproof.logic.reconcile import Reconciliation, reconcile

logger = Logger(child=True)
metrics = Metrics()


def reconcile_tick() -> Reconciliation | None:
    """The reconciler's pass of this tick; its failure is logged and never stops the tick."""
    try:
        done = reconcile(reconcile_services(), SystemClock().now())
    except Exception:
        logger.exception("reconciliation failed", extra={"code": "reconciliation_failed"})
        return None
    for r in done.repairs:
        logger.warning(f"reconciled: {r.line()}", extra={"verdict_id": r.verdict_id, "repair": r.kind})
    for line in done.malformed:
        logger.error(line, extra={"code": "malformed_verdict"})
    metrics.add_metric(name="ReconciliationRepairs", unit=MetricUnit.Count, value=len(done.repairs))
    return done


def liveness_tick() -> list[LivenessOutcome]:
    """This tick's liveness pass; its failure is logged and never stops the tick."""
    try:
        outcomes = sweep_liveness(
            liveness_store(),
            SystemClock(),
            LivenessPolicy.from_env(),
            presence=PresencePolicy.from_env(),
            waves=wave_store(),
        )
    except Exception:
        logger.exception("liveness pass failed", extra={"code": "liveness_failed"})
        return []
    for o in outcomes:
        if o.outcome in ("offline", "revoked") and o.detail:
            logger.warning(f"machine {o.outcome}", extra={"machine_id": o.machine_id, "detail": o.detail})
    counts = outcomes_by_kind(outcomes)
    metrics.add_metric(name="MachinesOffline", unit=MetricUnit.Count, value=counts.get("offline", 0))
    metrics.add_metric(name="MachinesRevoked", unit=MetricUnit.Count, value=counts.get("revoked", 0))
    metrics.add_metric(
        name="PresenceMisses",
        unit=MetricUnit.Count,
        value=counts.get("presence_missed", 0) + counts.get("presence_shadow_missed", 0),
    )
    return outcomes


def sweep(event: dict[str, Any]) -> dict[str, Any]:
    svc = committee_services()
    try:
        publish_beacon_tip(svc)
    except Exception:  # a changed seed: every draw refuses it too; tallies and requeues go on
        logger.exception("beacon tip not published")
    draws = draw_due_machines(svc)
    for d in draws:
        if d.outcome == "drawn":
            logger.info(
                "committee drawn", extra={"machine_id": d.machine_id, "round": d.round, "members": d.members}
            )
        elif d.outcome == "failed":
            logger.error("draw failed", extra={"machine_id": d.machine_id, "detail": d.detail})
        elif d.outcome == "waiting":
            # Once per reason: the machine's state_reasons hold it; a later tick with the same
            # reason changes nothing and says nothing.
            if d.announced:
                code = d.reason["code"] if d.reason else None
                logger.warning(
                    f"draw waiting: {d.detail}",
                    extra={"machine_id": d.machine_id, "code": code, "detail": d.detail},
                )
        elif d.outcome != "skipped":
            logger.info(f"draw {d.outcome}", extra={"machine_id": d.machine_id, "detail": d.detail})
    verdicts = close_due_rounds(svc)
    for v in verdicts:
        logger.info(
            "round tallied",
            extra={"verdict_id": v.verdict_id, "result": v.result.value, "committee": v.committee},
        )
    settled = settle_resolved_disputes(svc)
    for v in settled:
        logger.info("dispute settled", extra={"verdict_id": v.verdict_id, "result": v.result.value})
    announced: list[str] = []
    requeued = requeue_unverified_reports(machine_services(), announced=announced)
    if announced:  # once per stuck machine; later ticks re-enqueue it without a new line
        logger.warning(
            "re-enqueued unverified reports", extra={"machines": announced, "code": "verification_requeued"}
        )
    liveness = liveness_tick()
    reconciled = reconcile_tick()
    counts = Counter(d.outcome for d in draws)
    return {
        "implemented": True,
        "tick": event.get("time"),
        "drawn": counts.get("drawn", 0),
        "waiting": counts.get("waiting", 0),
        "conflicts": counts.get("conflict", 0),
        "failed": counts.get("failed", 0),
        "closed": len(verdicts),
        "settled": len(settled),
        "requeued": len(requeued),
        "liveness": outcomes_by_kind(liveness),
        "repairs": [] if reconciled is None else [r.line() for r in reconciled.repairs],
        "verdicts": {v.verdict_id: v.result.value for v in [*verdicts, *settled]},
    }
