"""The reconciler: finds and repairs any disagreement between the verdicts, the machines and the chain.

It reads only the Unsettled index (verdicts not yet final), so a pass costs what is unsettled,
not what the network ever decided. Per verdict, oldest first:

- on chain (`published`) but its machine still in the verdict's state → the machine is marked
  `published` (`machine_marked`), then the verdict leaves the index (`settled`);
- refused by the chain (`failed`) → leaves the index (`settled`); the publisher reported it;
- `pending` (maybe on chain, never recorded) or never published → handed back to the publisher
  (`redriven`): a new stream record, resolved by the publisher's exactly-once protocol (a pending
  extrinsic by its oracle nonce, never submitted twice); with a backoff that doubles per hand-back;
- malformed (does not read as a verdict) → set aside, reported in one line, never retried.

A full pass (`full=True`, the operator's `gpuproof-ops reconcile --full`) scans every verdict
once, e.g. after deploying the Unsettled index over verdicts written before it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gpuproof.chain.store import Loaded

FINAL_MACHINE_STATES = ("confirmed", "refused")  # the states a published verdict moves on from
MAX_BACKOFF_S = 3600.0


class ReconcileOutbox(Protocol):
    read_units: float

    def unsettled(self, outbox: str = "open", before: float | None = None) -> list[str]: ...

    def load_all(self, verdict_ids: Sequence[str]) -> dict[str, Loaded]: ...

    def scan_all(self) -> Iterator[Loaded]: ...

    def settle(self, verdict_id: str) -> bool: ...

    def set_aside(self, verdict_id: str, now: float) -> bool: ...

    def redrive(self, verdict_id: str, expected: int, now: float) -> bool: ...

    def open_outbox(self, verdict_id: str, at: float) -> None: ...


class ReconcileMachines(Protocol):
    def machine_state(self, machine_id: str) -> str | None: ...

    def latest_round(self, machine_id: str) -> int | None: ...

    def mark_published(
        self, machine_id: str, result: str, now: float, scored: dict[str, Any] | None = None
    ) -> bool: ...


@dataclass(frozen=True)
class ReconcileServices:
    outbox: ReconcileOutbox
    machines: ReconcileMachines
    grace_s: float = 300.0  # leave younger verdicts to the stream (its retries take < 5 min)


@dataclass(frozen=True)
class Repair:
    kind: str  # machine_marked | settled | redriven | indexed | set_aside
    verdict_id: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.kind} {self.verdict_id}" + (f": {self.detail}" if self.detail else "")


@dataclass
class Reconciliation:
    dry_run: bool
    examined: int = 0
    repairs: list[Repair] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)  # one line each
    waiting: list[str] = field(default_factory=list)  # handed back recently: not due again yet
    read_units: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "examined": self.examined,
            "repairs": [
                {"kind": r.kind, "verdict_id": r.verdict_id, "detail": r.detail} for r in self.repairs
            ],
            "malformed": self.malformed,
            "waiting": self.waiting,
        }


def _backoff_s(grace_s: float, redrives: int) -> float:
    return float(min(grace_s * 2 ** min(redrives, 12), MAX_BACKOFF_S))


def reconcile(
    svc: ReconcileServices, now: float, *, dry_run: bool = False, full: bool = False
) -> Reconciliation:
    """One pass over the unsettled verdicts (every verdict with `full`); repairs unless `dry_run`."""
    from gpuproof.chain.store import MalformedVerdict

    out = Reconciliation(dry_run)
    before = svc.outbox.read_units
    ids = _index_everything(svc, now, out) if full else svc.outbox.unsettled("open", now - svc.grace_s)
    loaded = svc.outbox.load_all(ids)
    for vid in ids:
        item = loaded.get(vid)
        if item is None:
            continue  # deleted meanwhile
        out.examined += 1
        if isinstance(item, MalformedVerdict):
            out.malformed.append(item.line())
            if not dry_run:
                svc.outbox.set_aside(vid, now)
            out.repairs.append(Repair("set_aside", vid, "; ".join(item.reasons)))
            continue
        v = item.verdict
        status = (item.publication or {}).get("status")
        if status == "published":
            state = svc.machines.machine_state(v.machine_id)
            latest = svc.machines.latest_round(v.machine_id)
            stale = state == str(v.result) and state in FINAL_MACHINE_STATES and latest in (None, v.round)
            scored = (
                {"verdict_id": v.verdict_id, "round": v.round, "upload_info": dict(v.upload_info)}
                if state == "confirmed"
                else None
            )
            if stale and (dry_run or svc.machines.mark_published(v.machine_id, str(state), now, scored)):
                out.repairs.append(
                    Repair("machine_marked", vid, f"machine {v.machine_id} {state} → published")
                )
            if not dry_run:
                svc.outbox.settle(vid)
            out.repairs.append(Repair("settled", vid, "on chain"))
        elif status == "failed":
            if not dry_run:
                svc.outbox.settle(vid)
            out.repairs.append(Repair("settled", vid, "refused by the chain"))
        else:
            last = item.redriven_at if item.redriven_at is not None else v.decided_at
            if now - last < _backoff_s(svc.grace_s, item.redrive):
                out.waiting.append(vid)
                continue
            what = "pending extrinsic" if status == "pending" else "never published"
            if dry_run or svc.outbox.redrive(vid, item.redrive, now):
                out.repairs.append(Repair("redriven", vid, f"{what}, hand-back {item.redrive + 1}"))
    out.read_units = svc.outbox.read_units - before
    return out


def _index_everything(svc: ReconcileServices, now: float, out: Reconciliation) -> list[str]:
    """Every verdict not final yet, whether or not the Unsettled index holds it (a full pass)."""
    from gpuproof.chain.store import MalformedVerdict

    ids = []
    for item in svc.outbox.scan_all():
        if isinstance(item, MalformedVerdict):
            if item.outbox != "malformed":
                ids.append(item.verdict_id)
            else:
                out.malformed.append(item.line())
            continue
        status = (item.publication or {}).get("status")
        unsettled = status not in ("published", "failed") or item.outbox is not None
        if not unsettled and status == "published":
            state = svc.machines.machine_state(item.verdict.machine_id)
            unsettled = state == str(item.verdict.result) and state in FINAL_MACHINE_STATES
        if not unsettled:
            continue
        if item.outbox != "open":  # never indexed, or set aside and since fixed by hand
            if not out.dry_run:
                svc.outbox.open_outbox(item.verdict.verdict_id, item.verdict.decided_at)
            out.repairs.append(Repair("indexed", item.verdict.verdict_id, "was not in the Unsettled index"))
        if item.verdict.decided_at < now - svc.grace_s:
            ids.append(item.verdict.verdict_id)
    return ids
