"""The local stack killed with SIGKILL mid-publication, then restarted on the same state.

tests/e2e/test_recovery.py kills the publisher inside the test's own stack (a BaseException);
here the whole stack process dies: moto (`python -m gpuproof.local.moto_process`) and the chain
node (Chopsticks) run in processes of their own, stack A (`python -m gpuproof.local
--moto-endpoint URL --chain-endpoint URL --hang-at POINT`) blocks its publisher at POINT (a test
hook of the local stack process only, gpuproof.local.hooks) and is SIGKILLed as soon as it says so;
stack B starts on the same moto and chain. Nothing in A cleaned up: its idempotency record stays
"in progress", its publication as far as it got. B's stream delivery takes over, and the scenario
ends with the verdict on chain exactly once (read back from the chain), the machine `published`,
the verdict out of the Unsettled index, PublisherDLQ empty and the reconciler finding nothing left.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from gpuproof.adapters.committee_store import _verdict_item
from gpuproof.adapters.tables import MachineModel, VerdictModel
from gpuproof.chain.signer import public_key_from_der
from gpuproof.local.chain import LocalChain, unavailable_reason
from gpuproof.local.hooks import HUNG_MARKER
from gpuproof.local.moto_server import aws_environment
from gpuproof.logic.records import Verdict, VerdictResult
from tests.e2e.production_stack import _KEEP
from tests.e2e.test_recovery import copies_on_chain
from tests.unit.test_chain_payload import INFO as DBC_VECTOR_INFO

pytestmark = pytest.mark.e2e

_REASON = unavailable_reason()
if _REASON is not None:
    warnings.warn(f"LOCAL CHAIN TESTS SKIPPED: {_REASON}", stacklevel=1)
    pytestmark = [pytest.mark.e2e, pytest.mark.skip(reason=f"LOCAL CHAIN UNAVAILABLE: {_REASON}")]

REGION = "us-east-1"
READY = "Ctrl-C stops it."
OPS = "from gpuproof.cli.ops import app; app()"  # gpuproof-ops, with this interpreter


def _child_env() -> dict[str, str]:
    """Only what a Python process needs: none of the session stack's AWS or table variables."""
    env = {k: v for k, v in os.environ.items() if k in _KEEP}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Output:
    """A child's stdout+stderr, line by line, read on a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line.strip())
        self._queue.put(None)

    def until(self, prefix: str, timeout_s: float) -> list[str]:
        """Lines read up to (and with) the first one starting with `prefix`."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._queue.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                tail = "\n".join(self.lines[-40:])
                raise AssertionError(f"no line {prefix!r} in {timeout_s} s (or the process ended):\n{tail}")
            seen.append(line)
            if line.startswith(prefix):
                return seen


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpuproof.local.moto_process"],
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        (*_, line) = Output(proc).until("moto http://", 60)
        yield line.split()[-1]
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def chain(chain_node: LocalChain) -> LocalChain:
    """The session's node (a process of its own), a fresh chain again; each stack funds its oracle
    account on it."""
    return chain_node.reset()


@dataclass
class StackProcess:
    proc: subprocess.Popen[str]
    output: Output
    environment: dict[str, str] = field(default_factory=dict)


@contextmanager
def stack_process(moto: str, chain: LocalChain, *extra: str) -> Iterator[StackProcess]:
    args = [
        sys.executable, "-m", "gpuproof.local",
        "--moto-endpoint", moto,
        "--chain-endpoint", chain.url,
        "--schedule-interval", "1",
        "--log-level", "WARNING",
        *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(
        args, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        stack = StackProcess(proc, Output(proc))
        for line in stack.output.until(READY, 120):
            text = line.removeprefix("export ")
            name, sep, value = text.partition("=")
            if sep and name.isupper() and name.replace("_", "").isalnum():
                stack.environment[name] = value
        yield stack
    finally:
        _stop(proc)


def _clients(moto: str) -> tuple[Any, Any, Any]:
    kw: dict[str, Any] = {
        "endpoint_url": moto,
        "region_name": REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    return boto3.client("dynamodb", **kw), boto3.client("sqs", **kw), boto3.client("kms", **kw)


def _put_confirmed_machine(ddb: Any, env: dict[str, str]) -> Verdict:
    """A machine its committee just confirmed, its verdict written as the sweeper writes it."""
    mid = uuid.uuid4().hex + uuid.uuid4().hex
    now = time.time()
    machine = MachineModel(
        mid, owner="5" + "x" * 47, region="europe", state="confirmed", registered_at=now, updated_at=now
    )
    ddb.put_item(TableName=env["MACHINES_TABLE"], Item=machine.serialize())
    verdict = Verdict(
        verdict_id=Verdict.id_for(mid, 1),
        machine_id=mid,
        round=1,
        result=VerdictResult("confirmed"),
        upload_info={**DBC_VECTOR_INFO, "machine_id": mid, "is_support": True},
        committee=[{"account": f"{n}" * 64, "vote": "agreeing"} for n in (1, 2, 3)],
        performance_index=1.01,
        evidence_digest="ab" * 32,
        decided_at=now,
    )
    ddb.put_item(TableName=env["VERDICTS_TABLE"], Item=_verdict_item(verdict).serialize())
    return verdict


def _state(ddb: Any, env: dict[str, str], verdict: Verdict) -> tuple[VerdictModel, str]:
    item = ddb.get_item(
        TableName=env["VERDICTS_TABLE"], Key={"verdict_id": {"S": verdict.verdict_id}}, ConsistentRead=True
    )["Item"]
    machine = ddb.get_item(
        TableName=env["MACHINES_TABLE"], Key={"machine_id": {"S": verdict.machine_id}}, ConsistentRead=True
    )["Item"]
    return VerdictModel.from_raw_data(item), str(machine["state"]["S"])


def _dlq_bodies(sqs: Any, url: str) -> list[dict[str, Any]]:
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [json.loads(m["Body"]) for m in got.get("Messages", [])]


def _reconcile_dry_run(moto: str, env: dict[str, str]) -> dict[str, Any]:
    """`gpuproof-ops reconcile --grace 0 --dry-run --json` on the stacks' moto, as an operator runs it."""
    child = {**_child_env(), **env, **aws_environment(moto)}
    done = subprocess.run(
        [sys.executable, "-c", OPS, "reconcile", "--grace", "0", "--dry-run", "--json"],
        env=child,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    start = lines.index("{")
    doc: dict[str, Any] = json.loads("\n".join(lines[start : lines.index("}", start) + 1]))
    return doc


# before_submit: reserved ("pending"), nothing sent; after_submit: sent, not waited for;
# before_record: in a block, the publication not recorded (the "after inclusion").
@pytest.mark.parametrize("point", ["before_submit", "after_submit", "before_record"])
def test_stack_sigkilled_mid_publication_converges_after_restart(
    moto_endpoint: str, chain: LocalChain, point: str
) -> None:
    ddb, sqs, kms = _clients(moto_endpoint)
    with stack_process(moto_endpoint, chain, "--hang-at", point) as a:
        env = a.environment
        verdict = _put_confirmed_machine(ddb, env)
        a.output.until(f"{HUNG_MARKER} {point}", 60)
        a.proc.send_signal(signal.SIGKILL)
        assert a.proc.wait(timeout=10) == -signal.SIGKILL
    key = public_key_from_der(bytes(kms.get_public_key(KeyId=env["SERVICE_KEY_ID"])["PublicKey"]))

    # What A left: the publication reserved and never recorded, on chain as far as A got.
    item, machine_state = _state(ddb, env, verdict)
    assert (item.publication or {}).get("status") == "pending", item.publication
    assert machine_state == "confirmed" and item.outbox == "open"
    if point == "before_submit":
        assert copies_on_chain(chain, key, verdict.machine_id) == 0
    else:  # the node accepted it before A died; its block is built just after (Instant mode)
        deadline = time.monotonic() + 20
        while copies_on_chain(chain, key, verdict.machine_id) == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert copies_on_chain(chain, key, verdict.machine_id) == 1

    with stack_process(moto_endpoint, chain) as b:
        assert b.environment["VERDICTS_TABLE"] == env["VERDICTS_TABLE"], "B took over A's resources"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            item, machine_state = _state(ddb, env, verdict)
            if machine_state == "published" and item.outbox is None:
                break
            time.sleep(0.25)
        assert (item.publication or {}).get("status") == "published", (item.publication, b.output.lines[-30:])
        assert machine_state == "published"
        assert item.outbox is None and item.outbox_at is None, "settled: out of the Unsettled index"
        assert copies_on_chain(chain, key, verdict.machine_id) == 1
        assert _dlq_bodies(sqs, env["PUBLISHER_DLQ_URL"]) == []
        if point == "before_record":  # once: the operator's reconciler finds nothing left to repair
            doc = _reconcile_dry_run(moto_endpoint, env)
            assert verdict.verdict_id not in {r["verdict_id"] for r in doc["repairs"]}, doc
