"""One machine's bad data never stops another machine's draw (issue 10).

A verified report with host.ram_bytes = 10**400 (possible before the wire bounds) made the
findings raise inside the sweeper's draw loop, so every machine after it waited forever.
"""

from __future__ import annotations

import time
from typing import Any

from gpuproof.committee.beacon import HashChainBeacon
from gpuproof.logic.committee import (
    DRAW_FAILED,
    BeaconState,
    CommitteeMember,
    CommitteeRound,
    CommitteeServices,
    close_due_rounds,
    draw_due_machines,
)
from gpuproof.logic.records import Machine, StoredReport
from gpuproof.logic.states import MachineState
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.report import BenchmarkReport, HostInfo, Integrity, Inventory, SignedReport

OWNER = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


class Clock:
    def now(self) -> float:
        return 1_800_000_000.0


class DrawStore:
    """Just what the draw loop reads and writes, in memory."""

    def __init__(self, machines: list[Machine], reports: dict[str, StoredReport]) -> None:
        self.machines, self.reports = machines, reports
        self.members = [CommitteeMember(f"member-{i}", [], 0.0, admitted=True) for i in range(4)]
        self.beacon: BeaconState | None = None
        self.drawn: list[CommitteeRound] = []

    def machines_awaiting_draw(self) -> list[Machine]:
        return list(self.machines)

    def set_state_reasons(self, machine_id: str, state: str, reasons: list[dict[str, str]]) -> bool:
        for m in self.machines:
            if m.machine_id == machine_id and m.state == state and m.state_reasons != reasons:
                m.state_reasons = reasons
                return True
        return False

    def list_members(self) -> list[CommitteeMember]:
        return self.members

    def latest_round(self, machine_id: str) -> CommitteeRound | None:
        return None

    def get_report(self, machine_id: str, challenge_id: str) -> StoredReport | None:
        return self.reports.get(machine_id)

    def beacon_state(self) -> BeaconState | None:
        return self.beacon

    def init_beacon(self, tip: str, length: int, now: float) -> BeaconState:
        self.beacon = BeaconState(tip, length, 1)
        return self.beacon

    def record_draw(self, round_: CommitteeRound, previous_state: MachineState) -> None:
        assert self.beacon is not None
        self.beacon.next_index += 1
        self.drawn.append(round_)


def verified(key: SigningKey, **host_changes: Any) -> StoredReport:
    host = HostInfo(
        cpu_model="cpu",
        cpu_cores=8,
        cpu_mhz=3000,
        ram_bytes=64 << 30,
        sys_disk_bytes=1 << 40,
        data_disk_bytes=0,
        os="Linux",
        kernel="6.1",
    )
    report = BenchmarkReport(
        machine_id=key.public_hex,
        challenge_id="ch",
        challenge_nonce="cd" * 32,
        probe_version="t",
        created_at=int(time.time()),
        inventory=Inventory(backend="cpu", host=host),
        integrity=Integrity(),
    )
    doc = SignedReport.sign(report, key).model_dump(mode="json")
    doc["report"]["inventory"]["host"].update(host_changes)  # as stored before the bounds
    return StoredReport(
        key.public_hex,
        "ch",
        1.0,
        "00" * 32,
        doc,
        verification={"passed": True, "claim": {"claimed_gpu_model": None, "gpu_count": 0}},
    )


def machine(key: SigningKey, updated_at: float) -> Machine:
    return Machine(key.public_hex, OWNER, "europe", MachineState.auto_verified, 0.0, updated_at, "ch")


def test_a_machine_whose_findings_raise_does_not_block_the_next_draw() -> None:
    bad, good = SigningKey.generate(), SigningKey.generate()
    store = DrawStore(
        [machine(bad, 1.0), machine(good, 2.0)],
        {bad.public_hex: verified(bad, ram_bytes=10**400), good.public_hex: verified(good)},
    )
    svc = CommitteeServices(
        store=store,  # type: ignore[arg-type]
        clock=Clock(),
        allow_cpu_backend=True,
        beacon=HashChainBeacon(b"s" * 32, 10),
    )
    outcomes = {o.machine_id: o for o in draw_due_machines(svc)}
    assert outcomes[bad.public_hex].outcome == "failed"
    assert outcomes[bad.public_hex].detail.startswith(DRAW_FAILED)
    assert outcomes[good.public_hex].outcome == "drawn"
    assert [r.machine_id for r in store.drawn] == [good.public_hex]
    assert store.beacon is not None and store.beacon.next_index == 2  # the failed draw used no value


class TallyStore(DrawStore):
    """Open rounds and the verdicts written, in memory."""

    def __init__(self, rounds: list[CommitteeRound]) -> None:
        super().__init__([], {})
        self.rounds = rounds
        self.closed: list[str] = []

    def open_rounds(self) -> list[CommitteeRound]:
        return list(self.rounds)

    def due_rounds(self, now: float) -> list[CommitteeRound]:
        return [r for r in self.rounds if r.due_at is None or r.due_at <= now]

    def reschedule(self, round_: CommitteeRound, due_at: float) -> bool:
        return True

    def close_round(self, round_: CommitteeRound, verdict: Any, machine_state: Any, reasons: Any) -> bool:
        self.closed.append(round_.machine_id)
        return True


def due_round(machine_id: str, reveals: dict[str, dict[str, Any]]) -> CommitteeRound:
    members = ["a", "b", "c"]
    return CommitteeRound(
        machine_id=machine_id,
        round=1,
        status="open",
        owner=OWNER,
        region="europe",
        challenge_id="ch",
        evidence_digest="00" * 32,
        members=members,
        excluded=[],
        booked_at=0.0,
        scale=1e-6,
        commit_deadline=1.0,
        reveal_deadline=2.0,
        beacon_index=1,
        beacon_value="00" * 32,
        beacon_tip="00" * 32,
        pool_digest="00" * 32,
        pool_size=3,
        pool=members,
        cap=10,
        expected_info=None,
        expected_problems=[],
        performance_index=None,
        commits={m: {"commit_hash": "00", "at": 0.5} for m in members if m in reveals},
        reveals=reveals,
    )


def test_a_round_whose_tally_raises_does_not_block_the_next_verdict() -> None:
    """A stored reveal that no longer parses (written before today's bounds) fails alone."""
    broken = due_round("bad", {"a": {"info": {"machine_id": "not an upload info"}, "at": 1.5}})
    fine = due_round("good", {})
    store = TallyStore([broken, fine])
    svc = CommitteeServices(store=store, clock=Clock())  # type: ignore[arg-type]
    verdicts = close_due_rounds(svc)
    assert [v.machine_id for v in verdicts] == ["good"]
    assert store.closed == ["good"]


def test_a_machine_waiting_for_members_is_told_why_once() -> None:
    """Fewer eligible members than a committee needs: the reason, with the next step, lands in
    state_reasons on the first tick (announced: logged) and the next ticks change nothing."""
    key = SigningKey.generate()
    store = DrawStore([machine(key, 1.0)], {key.public_hex: verified(key)})
    store.members = store.members[:2]
    svc = CommitteeServices(
        store=store,  # type: ignore[arg-type]
        clock=Clock(),
        allow_cpu_backend=True,
        beacon=HashChainBeacon(b"s" * 32, 10),
    )
    (first,) = draw_due_machines(svc)
    assert first.outcome == "waiting" and first.announced
    (reason,) = store.machines[0].state_reasons
    assert reason["code"] == "committee_pool_too_small"
    assert reason["message"] == "2 eligible committee members, 3 needed for a draw"
    assert "gpuproof-ops admit" in reason["next_step"]
    for _ in range(3):
        (again,) = draw_due_machines(svc)
        assert again.outcome == "waiting" and not again.announced
    store.members.append(CommitteeMember("member-9", [], 0.0, admitted=True))
    (drawn,) = draw_due_machines(svc)
    assert drawn.outcome == "drawn"
