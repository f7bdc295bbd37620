"""A chain node that hangs (issue 14, "Done when"): it accepts connections and never answers, for
longer than the publisher's function timeout. The publisher gives up within its timeout (the
websocket's own timeout, then the retry budget: the verdict is deferred, not dead-lettered, with
its ERROR line and PublicationsDeferred), and once a node answers again the reconciler hands the
verdict back and it lands on chain exactly once, the machine `published`."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from gpuproof.adapters.tables import MachineModel, VerdictModel
from gpuproof.local.chain import LocalChain
from gpuproof.local.stack import LocalStack
from tests.e2e.test_recovery import (  # noqa: F401 (fixtures)
    assert_converged,
    chain,
    confirmed_machine,
    dlq,
    dlq_messages,
    pytestmark,
    service_key,
)


class HungNode:
    """Listens on loopback, accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.sock.getsockname()[1]}"

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)  # held open, never answered

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for c in self.accepted:
            c.close()
        self.sock.close()


@pytest.fixture
def hung_node() -> Iterator[HungNode]:
    node = HungNode()
    try:
        yield node
    finally:
        node.close()


def test_a_hung_node_the_publisher_gives_up_in_time_and_the_verdict_lands_later_once(
    local_stack: LocalStack,
    chain: LocalChain,  # noqa: F811
    service_key: bytes,  # noqa: F811
    dlq: str,  # noqa: F811
    hung_node: HungNode,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publisher = local_stack.function("ChainPublisherFunction")
    before, timeouts = publisher.invocations, publisher.timeouts
    monkeypatch.setenv("CHAIN_RETRY_BUDGET_S", "2")
    monkeypatch.setenv("CHAIN_NODE_URL", hung_node.url)
    verdict = confirmed_machine(local_stack)
    local_stack.drain(120)
    assert publisher.invocations > before and hung_node.accepted, "the publisher tried the hung node"
    assert publisher.timeouts == timeouts, "the publisher ran past its function timeout"
    item = VerdictModel.get(verdict.verdict_id, consistent_read=True)
    assert item.publication is None and item.outbox == "open", "deferred for the reconciler"
    assert MachineModel.get(verdict.machine_id, consistent_read=True).state == "confirmed"
    assert dlq_messages(local_stack, dlq) == [], "deferred, not dead-lettered: it can be published"

    monkeypatch.setenv("CHAIN_NODE_URL", chain.url)  # a node that answers again
    monkeypatch.setenv("RECONCILE_GRACE_S", "0")  # the sweeper's next tick hands it back
    deadline = time.monotonic() + 120
    while MachineModel.get(verdict.machine_id, consistent_read=True).state != "published":
        assert time.monotonic() < deadline, "the verdict was never handed back and published"
        local_stack.drain(60)
        time.sleep(0.5)
    assert_converged(local_stack, chain, service_key, verdict)
    assert publisher.timeouts == timeouts
    assert dlq_messages(local_stack, dlq) == []
