"""Shared fixtures: sockets off for unit tests, a moto server and the local stack for the rest.

- tests/unit: every socket (but unix ones) raises; unit tests run first so no server is up then.
- `moto_server` (session): moto on 127.0.0.1 with template.yaml's tables, queues and key, and the
  AWS_* / table / queue variables set in os.environ for the session.
- `local_stack` (session): the LocalStack (HTTP front + pollers) on that same moto server.
- `chain_node` (session): one local chain node (Chopsticks) for every module that needs one; each
  takes it back at genesis (`LocalChain.reset`), as a node of its own would start, without paying a
  node's start (10-40 s on 2 cores) per module. `attached_chain` points the session stack at it.
- The AWS calls every function makes (this process's stacks and `python -m gpuproof.local`
  children) are recorded for tests/e2e/test_least_privilege.py, which runs last.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from pytest_socket import disable_socket, enable_socket

from gpuproof.cli.operator import OperatorClient
from gpuproof.local import aws_calls
from gpuproof.local.chain import LocalChain, oracle_account_from_environment
from gpuproof.local.moto_server import MotoServer, aws_environment
from gpuproof.local.stack import LocalStack
from gpuproof.local.template import LOCAL_REGION, Resources, load_template, provision
from gpuproof.protocol.keys import SigningKey

ROOT = Path(__file__).resolve().parent.parent
UNIT_DIR = ROOT / "tests" / "unit"
COMMITTEE_WINDOW_SCALE = 12 / (36 * 3600)
# Template parameters of the test session, for the moto server's environment and the local stack alike
# (a parameter-fed variable already in os.environ wins over the stack's parameter). No GPU in CI: the
# verifier accepts the probe's CPU backend; committee windows in seconds (36 h → 12 s, 48 h → 16 s:
# a member inspects and commits inside them on a stack the whole session shares; 6 s closed a
# commit window on CI at 93% of the run, 0.5 s of work on an idle host).
# The session's committee operator: its public key is the stack's CommitteeOperatorKey, and the
# `operator` fixture admits members with it the way `gpuproof-ops admit` does.
OPERATOR_KEY = SigningKey.generate()
# No cooldown after a failed attempt (attempts are still counted): tests retry at once; the
# production settings, cooldown included, are tested by tests/e2e/test_attacks.py on a stack of its own.
# The CPU backend's deadline (CpuProofDeadlineSeconds): its proof is ~33 ms of numpy work, timed here
# on 2 cores shared by the stack, moto, up to 100 provers of tests/e2e/test_load.py in this process
# and another suite; a derived 1 s deadline fails honest provers under that load (8.05 s seen).
# GPU deadlines never read it; tests of a missed deadline set the derived one (CPU_PROOF_DEADLINE_S=0).
CPU_PROOF_DEADLINE_S = 120
LOCAL_PARAMETERS = {
    "AllowCpuBackend": "true",
    "CpuProofDeadlineSeconds": str(CPU_PROOF_DEADLINE_S),
    "CommitteeWindowScale": str(COMMITTEE_WINDOW_SCALE),
    "CommitteeOperatorKey": OPERATOR_KEY.public_hex,
    "ChallengeCooldownSeconds": "0",
}


LEAST_PRIVILEGE_MARK = "least_privilege"


def _is_unit(item: pytest.Item) -> bool:
    return UNIT_DIR in Path(str(item.path)).parents


@dataclass
class CallRecord:
    """What the least-privilege test needs to know about the session that recorded the calls."""

    child_dir: Path
    collected: set[str]
    deselected: int = 0
    not_passed: set[str] | None = None


CALL_RECORD = CallRecord(Path(tempfile.mkdtemp(prefix="gpuproof-aws-calls-")), set(), 0, set())


def pytest_configure(config: pytest.Config) -> None:
    # Before any test module makes a botocore client: every client is hooked from here on.
    aws_calls.install()
    os.environ[aws_calls.RECORD_DIR_ENV] = str(CALL_RECORD.child_dir)
    config.addinivalue_line("markers", f"{LEAST_PRIVILEGE_MARK}: compares the recorded AWS calls, runs last")


def pytest_unconfigure(config: pytest.Config) -> None:
    # The recorded calls are read by the least-privilege test during the session; nothing after.
    shutil.rmtree(CALL_RECORD.child_dir, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Unit tests first: once a session server is up its threads need sockets. The least-privilege
    # comparison last: it reads what every other integration and e2e test made the functions call.
    items.sort(
        key=lambda item: 0 if _is_unit(item) else 2 if item.get_closest_marker(LEAST_PRIVILEGE_MARK) else 1
    )
    CALL_RECORD.collected = {item.nodeid for item in items if not _is_unit(item)}


def pytest_deselected(items: list[pytest.Item]) -> None:
    CALL_RECORD.deselected += len(items)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    assert CALL_RECORD.not_passed is not None
    if report.failed or report.skipped:  # in any phase: a skipped fixture means the test never ran
        CALL_RECORD.not_passed.add(report.nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if _is_unit(item):
        disable_socket(allow_unix_socket=True)
    else:
        enable_socket()


@dataclass
class MotoEndpoint:
    endpoint_url: str
    resources: Resources
    env: dict[str, str]

    def table_name(self, logical_id: str) -> str:
        return self.resources.table_name(logical_id)

    def queue_url(self, logical_id: str) -> str:
        return self.resources.queue_url(logical_id)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=LOCAL_REGION)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoEndpoint]:
    server = MotoServer().start()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in aws_environment(server.endpoint_url).items():
            mp.setenv(key, value)
        resources = provision(
            load_template(ROOT / "template.yaml"), server.endpoint_url, parameters=LOCAL_PARAMETERS
        )
        env = resources.merged_environment()
        for key, value in env.items():
            mp.setenv(key, value)
        try:
            yield MotoEndpoint(server.endpoint_url, resources, env)
        finally:
            server.stop()


@pytest.fixture(scope="session")
def local_stack(moto_server: MotoEndpoint) -> Iterator[LocalStack]:
    # No GPU in CI: the verifier accepts the probe's CPU backend here (AllowCpuBackend=true).
    stack = LocalStack(
        ROOT / "template.yaml",
        endpoint_url=moto_server.endpoint_url,
        schedule_interval_s=1.0,
        parameters=LOCAL_PARAMETERS,
    )
    with stack:
        yield stack


@pytest.fixture(scope="session")
def operator_key() -> SigningKey:
    """The local stack's operator key (what `gpuproof-ops --key` holds)."""
    return OPERATOR_KEY


@pytest.fixture(scope="session")
def operator(local_stack: LocalStack) -> OperatorClient:
    """The committee operator of the local stack (admits members, settles disputes)."""
    return OperatorClient(local_stack.api_url, OPERATOR_KEY)


@pytest.fixture(scope="session")
def chain_node() -> Iterator[LocalChain]:
    """The session's local chain node; a module takes it with `chain_node.reset()` (a fresh chain)."""
    with LocalChain() as node:
        yield node


@contextmanager
def attached_chain(stack: LocalStack, node: LocalChain) -> Iterator[LocalChain]:
    """`node` back at genesis with the stack's oracle account funded (what `start_for_stack` starts),
    the stack's publisher pointed at it; detached after, the node left running for the next module."""
    node.reset()
    node.add_funds([oracle_account_from_environment()])
    stack.attach_chain(LocalChain.adopt(node.url))  # adopted: detaching never stops the node
    try:
        yield node
    finally:
        # Publications in flight finish against the live node first: one started just before the
        # detach would otherwise retry the node's URL for its whole budget (~40 s) once the next
        # module resets it, while that module waits on a drain.
        stack.drain(120)
        stack.detach_chain()
