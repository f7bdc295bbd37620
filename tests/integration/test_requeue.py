"""A report stored but never enqueued (crash between the transaction and the send) is re-sent."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3

from gpuproof.adapters.clock import SystemClock
from gpuproof.adapters.dynamo import DynamoMachineStore
from gpuproof.adapters.queue import SqsVerifyQueue
from gpuproof.config import Settings
from gpuproof.local.stack import LocalStack
from gpuproof.logic.machines import (
    REQUEUE_AFTER_S,
    Services,
    accept_report,
    issue_challenge,
    register_machine,
    requeue_unverified_reports,
)
from gpuproof.logic.states import MachineState
from gpuproof.protocol.httpsig import SignedRequest
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.machine import ChallengeRequest, MachineRegistration, Region, bond_message
from gpuproof.protocol.report import BenchmarkReport, HostInfo, Integrity, Inventory, SignedReport

OWNER = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


class LosingQueue:
    """The crash: the transaction committed, the SQS send never happened."""

    def enqueue(self, machine_id: str, challenge_id: str) -> None:
        return None


def signed(key: SigningKey, n: int) -> SignedRequest:
    return SignedRequest(keyid=key.public_hex, created=int(time.time()), nonce=f"requeue-test-nonce-{n:04d}")


def stuck_report(store: DynamoMachineStore) -> tuple[str, str]:
    """A report stored whose SQS send was lost: the machine stays `submitted`."""
    lossy = Services(
        store=store, queue=LosingQueue(), clock=SystemClock(), challenge_ttl_s=900, allow_cpu_backend=True
    )
    key = SigningKey.generate()
    mid = key.public_hex
    bond = key.sign(bond_message(mid, OWNER)).hex()
    register_machine(
        lossy,
        signed(key, 1),
        MachineRegistration(machine_id=mid, owner=OWNER, region=Region.europe, bond_signature=bond),
    )
    ch = issue_challenge(lossy, signed(key, 2), mid, ChallengeRequest(gpu_count=0))
    host = HostInfo(
        cpu_model="c",
        cpu_cores=1,
        cpu_mhz=1,
        ram_bytes=1,
        sys_disk_bytes=1,
        data_disk_bytes=0,
        os="o",
        kernel="k",
    )
    report = BenchmarkReport(
        machine_id=mid,
        challenge_id=ch.challenge_id,
        challenge_nonce=ch.nonce,
        probe_version="t",
        created_at=int(time.time()),
        inventory=Inventory(backend="cpu", host=host),
        integrity=Integrity(),
    )
    accept_report(lossy, signed(key, 3), mid, ch.challenge_id, SignedReport.sign(report, key))
    return mid, ch.challenge_id


def test_unverified_report_is_requeued(moto_server: Any) -> None:
    settings = Settings.from_env()
    store = DynamoMachineStore(settings)
    sqs = moto_server.client("sqs")
    url = sqs.create_queue(QueueName=f"requeue-{time.time_ns()}")["QueueUrl"]
    mid, challenge_id = stuck_report(store)

    real = Services(
        store=store,
        queue=SqsVerifyQueue(url, settings.region, client=sqs),
        clock=SystemClock(),
        challenge_ttl_s=900,
    )
    assert mid not in requeue_unverified_reports(real, older_than_s=3600)  # too recent: left alone
    announced: list[str] = []
    assert mid in requeue_unverified_reports(real, older_than_s=0, announced=announced)
    assert announced == [mid]  # the first time: the sweeper logs it
    machine = store.get_machine(mid)
    assert machine is not None and machine.state == MachineState.submitted
    (reason,) = machine.state_reasons
    assert reason["code"] == "verification_requeued" and "VerifyDLQ" in reason["next_step"]
    again: list[str] = []
    assert mid in requeue_unverified_reports(real, older_than_s=0, announced=again)
    assert again == []  # the same reason: re-enqueued, not logged again
    bodies = [
        json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    ]
    assert {"machine_id": mid, "challenge_id": challenge_id} in bodies


def test_the_sweeper_requeues_a_stuck_report_and_the_worker_decides_it(local_stack: LocalStack) -> None:
    """Through the functions: the sweeper's tick sends the message (its VerifyQueue grant), the
    verify worker takes the machine out of `submitted`."""
    store = DynamoMachineStore(Settings.from_env())
    mid, _ = stuck_report(store)
    local_stack.drain()
    assert (machine := store.get_machine(mid)) is not None and machine.state == MachineState.submitted
    boto3.client("dynamodb", endpoint_url=local_stack.endpoint_url).update_item(
        TableName=local_stack.table_name("MachinesTable"),
        Key={"machine_id": {"S": mid}},
        UpdateExpression="SET updated_at = :t",
        ExpressionAttributeValues={":t": {"N": str(time.time() - REQUEUE_AFTER_S - 60)}},
    )
    deadline = time.monotonic() + 60  # the sweeper ticks every second here
    while (machine := store.get_machine(mid)) is not None and machine.state == MachineState.submitted:
        assert time.monotonic() < deadline, "the sweeper never re-enqueued the stuck report"
        time.sleep(0.5)
    assert machine is not None and machine.state in (MachineState.refused, MachineState.auto_verified)
