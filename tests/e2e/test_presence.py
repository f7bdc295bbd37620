# ruff: noqa: F811 - pytest fixtures imported from sibling modules are redefined as parameters
"""Presence checks on the local stack and a real local chain: a scored machine is re-challenged at
Poisson times, learns of each check from its heartbeat answers, and must prove its claimed
throughput again within the window, timed by the service. An honest agent passes; one that never
answers is offline and, after PresenceMaxMisses misses, revoked; one whose prover is slower than
the claim's deadline is revoked at its first check. Each revocation is read back from the chain."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from benchmark_probe.agent import run_agent
from benchmark_probe.client import ServiceClient
from benchmark_probe.presence import PresenceResponder
from gpuproof.api.wiring import machine_services
from gpuproof.chain.adapter import SubstrateChain
from gpuproof.local.stack import LocalStack
from gpuproof.protocol.keys import SigningKey
from tests.e2e.test_chain import chain, reader, service_key  # noqa: F401 - fixtures
from tests.e2e.test_chain import pytestmark as chain_marks
from tests.e2e.test_committee_flow import Bot, bots  # noqa: F401
from tests.e2e.test_revocation import machine_state, publish, revoked_item, revoked_on_chain

pytestmark = chain_marks

FETCH_ALLOWANCE_S = 5.0


@pytest.fixture
def frequent_presence(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A check every ~3 s (Poisson), announced 2 s ahead, 2 misses revoke (production: 6 a day,
    announced 180 s ahead, 3 misses)."""
    for name, value in {
        "PRESENCE_CHECKS_PER_DAY": "28800",
        "PRESENCE_LEAD_S": "2",
        "PRESENCE_FETCH_ALLOWANCE_S": str(FETCH_ALLOWANCE_S),
        "PRESENCE_PROOF_ALLOWANCE_S": "10",
        "PRESENCE_MAX_MISSES": "2",
        "PRESENCE_ENFORCE": "true",
    }.items():
        monkeypatch.setenv(name, value)
    machine_services.cache_clear()
    yield
    monkeypatch.undo()
    machine_services.cache_clear()


def telemetry(key: SigningKey) -> Callable[[], dict[str, Any]]:
    return lambda: {
        "machine_id": key.public_hex,
        "sent_at": int(time.time()),
        "backend": "cpu",
        "gpus": [],
        "host": {"load_average": [0.1, 0.1, 0.1]},
    }


def agent_until(
    api: str, key: SigningKey, done: Callable[[dict[str, Any]], bool], on_presence: Any, timeout: float = 90.0
) -> dict[str, Any]:
    """The agent's loop (one beat per turn, every 0.5 s) until `done(GET /machines/{id})`."""
    client = ServiceClient(api, key)
    deadline = time.monotonic() + timeout
    while True:
        run_agent(
            client,
            key.public_hex,
            telemetry(key),
            interval_s=0.5,
            once=True,
            log=lambda _m: None,
            on_presence=on_presence,
        )
        doc: dict[str, Any] = machine_state(api, key.public_hex)
        if done(doc["machine"]):
            return doc
        assert time.monotonic() < deadline, f"not reached: {doc['machine']}"
        time.sleep(0.5)


def test_an_honest_agent_passes_its_presence_checks(
    local_stack: LocalStack, chain: Any, bots: list[Bot], frequent_presence: None
) -> None:
    api = local_stack.api_url
    key, _ = publish(api, local_stack)
    responder = PresenceResponder(ServiceClient(api, key), key)
    doc = agent_until(api, key, lambda m: (m.get("presence") or {}).get("passed", 0) >= 2, responder)
    m = doc["machine"]
    assert m["state"] == "published" and m["scored"]["round"] == 1
    assert m["presence"]["consecutive_misses"] == 0 and m["presence"]["last"]["result"] == "passed"
    assert all(r["result"] == "passed" for r in responder.answered)
    # Timed by the service from the opening: within the fetch allowance + the CPU claim's deadline.
    assert 0 <= m["presence"]["last"]["elapsed_s"] <= FETCH_ALLOWANCE_S + 1.004


def test_a_machine_that_misses_its_presence_checks_is_revoked_on_chain(
    local_stack: LocalStack,
    chain: Any,
    reader: SubstrateChain,
    service_key: bytes,
    bots: list[Bot],
    frequent_presence: None,
) -> None:
    api = local_stack.api_url
    key, mid = publish(api, local_stack)
    # Heartbeats go on, but the agent never answers a check: each miss is offline (presence_missed).
    seen: list[dict[str, Any]] = []

    def record(m: dict[str, Any]) -> bool:
        seen.append(m)
        return bool(m["state"] == "revoked")

    doc = agent_until(api, key, record, on_presence=None)
    assert any(
        m["state"] == "offline" and [r["code"] for r in m["state_reasons"]] == ["presence_missed"]
        for m in seen
    ) or any((m.get("presence") or {}).get("missed", 0) >= 1 for m in seen)
    assert [r["code"] for r in doc["machine"]["state_reasons"]] == ["presence_missed"]
    assert doc["machine"]["scored"] is None
    item = revoked_item(local_stack, mid)
    assert item["revocation"]["reason"] == "presence_missed"
    assert item["revocation"]["evidence"]["presence"]["misses"] == 2
    out = revoked_on_chain(reader, service_key, mid)
    assert out["record"]["revocation"] == {"reason": "presence_missed", "revokes_round": 1}
    assert out["score"].result == "Revoked" and out["score"].calc_point == 0


def test_a_slower_prover_fails_its_first_presence_check_and_is_revoked(
    local_stack: LocalStack,
    chain: Any,
    reader: SubstrateChain,
    service_key: bytes,
    bots: list[Bot],
    frequent_presence: None,
) -> None:
    api = local_stack.api_url
    key, mid = publish(api, local_stack)
    # The proof takes longer than the claim allows (another identity's work on the same GPU, or a
    # slower GPU): the commitment reaches the edge after opens_at + allowance + deadline_s.
    slow = PresenceResponder(
        ServiceClient(api, key), key, before_commit=lambda: time.sleep(FETCH_ALLOWANCE_S + 2)
    )
    doc = agent_until(api, key, lambda m: m["state"] == "revoked", slow)
    assert [r["code"] for r in doc["machine"]["state_reasons"]] == ["presence_failed"]
    item = revoked_item(local_stack, mid)
    assert item["revocation"]["reason"] == "presence_failed"
    evidence = item["revocation"]["evidence"]
    assert evidence["received_at"] - evidence["opens_at"] > evidence["limit_s"]
    out = revoked_on_chain(reader, service_key, mid)
    assert out["record"]["revocation"] == {"reason": "presence_failed", "revokes_round": 1}
