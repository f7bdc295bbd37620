"""GPU UUIDs are released when a machine is revoked or exits, so a resold GPU can be registered by
another machine; a re-verification releases the GPUs it no longer lists (DynamoDB on moto)."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from gpuproof.adapters.dynamo import DynamoMachineStore
from gpuproof.adapters.tables import MachineModel, ReportModel
from gpuproof.config import Settings
from gpuproof.errors import Rejection
from gpuproof.logic.records import Attempts, StoredReport
from gpuproof.logic.states import MachineState
from gpuproof.protocol.reasons import Reason
from tests.integration.test_requeue import stuck_report


def gpu() -> str:
    return "GPU-" + str(uuid.uuid4())


def submitted(store: DynamoMachineStore) -> tuple[str, StoredReport]:
    mid, challenge_id = stuck_report(store)
    report = store.get_report(mid, challenge_id)
    assert report is not None
    return mid, report


def verified(store: DynamoMachineStore, report: StoredReport, uuids: list[str], passed: bool = True) -> None:
    machine = store.get_machine(report.machine_id)
    assert machine is not None
    verification: dict[str, Any] = {"passed": passed, "verified_at": time.time(), "reasons": []}
    state = MachineState.auto_verified if passed else MachineState.refused
    store.record_verification(report, verification, state, uuids, Attempts(), held=machine.gpu_uuids)


def resubmitted(store: DynamoMachineStore, machine_id: str) -> StoredReport:
    """The machine answered a fresh challenge: a new report item and the machine `submitted` again
    (written as the intake's transaction leaves them; this test is about what verification writes)."""
    report = StoredReport(machine_id, f"re-{uuid.uuid4().hex}", time.time(), "00" * 32, {})
    ReportModel(
        machine_id, report.challenge_id, received_at=report.received_at, report_sha256="00" * 32, body=b"x"
    ).save()
    MachineModel(machine_id).update(actions=[MachineModel.state.set(MachineState.submitted.value)])
    return report


def test_a_revoked_machines_gpus_can_be_claimed_by_another_machine(moto_server: Any) -> None:
    store = DynamoMachineStore(Settings.from_env())
    shared, own = gpu(), gpu()
    first, report_a = submitted(store)
    verified(store, report_a, [shared, own])
    a = store.get_machine(first)
    assert a is not None and sorted(a.gpu_uuids) == sorted((shared, own))
    assert set(store.gpu_uuid_owners([shared, own]).values()) == {first}

    second, report_b = submitted(store)
    # Held by the first machine: the verify worker's check (gpu_uuid_owners) refuses the claim, and
    # the conditional write would not take it either. (moto 5.2.5 reports that failed condition at
    # the transaction's first item, so the adapter reads it as "already verified" and writes
    # nothing; DynamoDB names the GPU item and the adapter raises gpu_uuid_taken.)
    assert store.gpu_uuid_owners([shared]) == {shared: first}
    with contextlib.suppress(Rejection):
        verified(store, report_b, [shared])
    assert store.gpu_uuid_owners([shared]) == {shared: first}

    store.revoke(a, MachineState.exited, Reason("machine_exited", "test"), None, time.time())
    assert store.gpu_uuid_owners([shared, own]) == {}
    gone = store.get_machine(first)
    assert gone is not None and gone.state == MachineState.exited and gone.gpu_uuids == []

    verified(store, report_b, [shared])  # the resold GPU, registered by the second machine
    assert store.gpu_uuid_owners([shared]) == {shared: second}


def test_a_reverification_releases_the_gpus_it_no_longer_lists(moto_server: Any) -> None:
    store = DynamoMachineStore(Settings.from_env())
    kept, dropped = gpu(), gpu()
    mid, report = submitted(store)
    verified(store, report, [kept, dropped])
    verified(store, resubmitted(store, mid), [kept])
    assert store.gpu_uuid_owners([kept, dropped]) == {kept: mid}
    verified(store, resubmitted(store, mid), [], passed=False)  # refused: every GPU released
    assert store.gpu_uuid_owners([kept]) == {}
    m = store.get_machine(mid)
    assert m is not None and m.state == MachineState.refused and m.gpu_uuids == []
