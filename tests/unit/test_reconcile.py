"""The reconciler's rules on in-memory ports, and the tolerant reading of verdict items."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gpuproof.chain.store import Loaded, MalformedVerdict, StoredVerdict, read_item
from gpuproof.logic.committee import next_due_at
from gpuproof.logic.reconcile import ReconcileServices, reconcile
from gpuproof.logic.records import Verdict, VerdictResult

NOW = 10_000.0


def verdict(n: int, decided_at: float = NOW - 1000, result: str = "confirmed") -> Verdict:
    mid = f"{n:064x}"
    return Verdict(Verdict.id_for(mid, 1), mid, 1, VerdictResult(result), {}, [], None, "ab" * 32, decided_at)


@dataclass
class Outbox:
    items: dict[str, Loaded] = field(default_factory=dict)
    open: set[str] = field(default_factory=set)
    set_aside_ids: set[str] = field(default_factory=set)
    redrives: list[str] = field(default_factory=list)
    read_units: float = 0.0

    def unsettled(self, outbox: str = "open", before: float | None = None) -> list[str]:
        return sorted(self.open if outbox == "open" else self.set_aside_ids)

    def load_all(self, verdict_ids: Sequence[str]) -> dict[str, Loaded]:
        return {v: self.items[v] for v in verdict_ids if v in self.items}

    def scan_all(self) -> Iterator[Loaded]:
        yield from self.items.values()

    def settle(self, verdict_id: str) -> bool:
        found = verdict_id in self.open
        self.open.discard(verdict_id)
        return found

    def set_aside(self, verdict_id: str, now: float) -> bool:
        self.open.discard(verdict_id)
        self.set_aside_ids.add(verdict_id)
        return True

    def redrive(self, verdict_id: str, expected: int, now: float) -> bool:
        self.redrives.append(verdict_id)
        return True

    def open_outbox(self, verdict_id: str, at: float) -> None:
        self.open.add(verdict_id)


@dataclass
class Machines:
    states: dict[str, str] = field(default_factory=dict)

    def machine_state(self, machine_id: str) -> str | None:
        return self.states.get(machine_id)

    def latest_round(self, machine_id: str) -> int | None:
        return 1

    def mark_published(
        self, machine_id: str, result: str, now: float, scored: dict[str, Any] | None = None
    ) -> bool:
        if self.states.get(machine_id) != result:
            return False
        self.states[machine_id] = "published"
        return True


def stack(*entries: tuple[Verdict, dict[str, Any] | None, str]) -> tuple[ReconcileServices, Outbox, Machines]:
    outbox, machines = Outbox(), Machines()
    for v, publication, state in entries:
        outbox.items[v.verdict_id] = StoredVerdict(v, publication, outbox="open")
        outbox.open.add(v.verdict_id)
        machines.states[v.machine_id] = state
    return ReconcileServices(outbox, machines, grace_s=300), outbox, machines


def test_a_verdict_on_chain_with_its_machine_left_confirmed_is_repaired() -> None:
    v = verdict(1)
    svc, outbox, machines = stack((v, {"status": "published"}, "confirmed"))
    dry = reconcile(svc, NOW, dry_run=True)
    assert [r.kind for r in dry.repairs] == ["machine_marked", "settled"]
    assert machines.states[v.machine_id] == "confirmed" and v.verdict_id in outbox.open
    done = reconcile(svc, NOW)
    assert [r.kind for r in done.repairs] == ["machine_marked", "settled"]
    assert machines.states[v.machine_id] == "published" and not outbox.open
    assert reconcile(svc, NOW).repairs == []


def test_pending_and_unpublished_verdicts_are_handed_back_with_backoff() -> None:
    pending, fresh, young = verdict(1), verdict(2), verdict(3, decided_at=NOW - 10)
    svc, outbox, _ = stack(
        (pending, {"status": "pending", "extrinsic_hash": "0x1"}, "confirmed"),
        (fresh, None, "confirmed"),
        (young, None, "confirmed"),
    )
    done = reconcile(svc, NOW)
    assert sorted(outbox.redrives) == sorted([pending.verdict_id, fresh.verdict_id])
    assert young.verdict_id in done.waiting  # the stream's, for now
    # handed back once: not again before grace x 2
    outbox.items[fresh.verdict_id] = replace(outbox.items[fresh.verdict_id], redrive=1, redriven_at=NOW)  # type: ignore[arg-type]
    outbox.redrives.clear()
    reconcile(svc, NOW + 500)
    assert fresh.verdict_id not in outbox.redrives
    reconcile(svc, NOW + 601)
    assert fresh.verdict_id in outbox.redrives


def test_a_malformed_verdict_is_set_aside_in_one_line() -> None:
    svc, outbox, _ = stack((verdict(1), None, "confirmed"))
    outbox.items["bad:1"] = MalformedVerdict("bad:1", ["decided_at is missing"], "open")
    outbox.open.add("bad:1")
    done = reconcile(svc, NOW)
    assert done.malformed == ["bad:1: malformed verdict: decided_at is missing"]
    assert "bad:1" in outbox.set_aside_ids and "bad:1" not in outbox.open


def raw(**over: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "verdict_id": {"S": "m:1"},
        "machine_id": {"S": "m"},
        "round": {"N": "1"},
        "result": {"S": "confirmed"},
        "upload_info": {"S": json.dumps({"machine_id": "m"})},
        "committee": {"S": "[]"},
        "evidence_digest": {"S": "ab" * 32},
        "decided_at": {"N": "1"},
    }
    for k, v in over.items():
        if v is None:
            item.pop(k)
        else:
            item[k] = v
    return item


def test_read_item_names_every_structural_fault() -> None:
    bad_json = read_item(raw(upload_info={"S": '{"machine_id": "ab'}, committee={"S": "["}))
    assert isinstance(bad_json, MalformedVerdict)
    assert [r.split(" (")[0] for r in bad_json.reasons] == [
        "upload_info is not valid JSON",
        "committee is not valid JSON",
    ]
    missing = read_item(raw(decided_at=None))
    assert isinstance(missing, MalformedVerdict) and missing.reasons == ["decided_at is missing"]
    unencodable = read_item(raw())  # reads, but upload_info lacks DBC's fields: cannot be published
    assert isinstance(unencodable, MalformedVerdict) and unencodable.reasons
    published = read_item(raw(publication={"S": json.dumps({"status": "published"})}))
    assert isinstance(published, StoredVerdict)  # already on chain: not re-encoded


def test_next_due_at_follows_the_windows() -> None:
    from tests.unit.test_draw_isolation import due_round

    r = due_round("m", {})
    assert next_due_at(r, 0.0) == r.windows.commit_deadline
    assert next_due_at(r, r.windows.commit_deadline) == r.windows.reveal_deadline
