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
        self.members = [CommitteeMember(f"member-{i}", [], 0.0) for i in range(4)]
        self.beacon: BeaconState | None = None
        self.drawn: list[CommitteeRound] = []

    def machines_awaiting_draw(self) -> list[Machine]:
        return list(self.machines)

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
