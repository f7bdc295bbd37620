"""A report stored but never enqueued (crash between the transaction and the send) is re-sent."""

from __future__ import annotations

import json
import time
from typing import Any

from gpuproof.adapters.clock import SystemClock
from gpuproof.adapters.dynamo import DynamoMachineStore
from gpuproof.adapters.queue import SqsVerifyQueue
from gpuproof.config import Settings
from gpuproof.logic.machines import (
    Services,
    accept_report,
    issue_challenge,
    register_machine,
    requeue_unverified_reports,
)
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


def test_unverified_report_is_requeued(moto_server: Any) -> None:
    settings = Settings.from_env()
    store = DynamoMachineStore(settings)
    sqs = moto_server.client("sqs")
    url = sqs.create_queue(QueueName=f"requeue-{time.time_ns()}")["QueueUrl"]
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

    real = Services(
        store=store,
        queue=SqsVerifyQueue(url, settings.region, client=sqs),
        clock=SystemClock(),
        challenge_ttl_s=900,
    )
    assert mid not in requeue_unverified_reports(real, older_than_s=3600)  # too recent: left alone
    assert mid in requeue_unverified_reports(real, older_than_s=0)
    bodies = [
        json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    ]
    assert {"machine_id": mid, "challenge_id": ch.challenge_id} in bodies
