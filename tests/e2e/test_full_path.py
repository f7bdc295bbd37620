# ruff: noqa: F811 - pytest fixtures imported from sibling modules are redefined as parameters
"""The whole mission on the local stack and a real local chain: probe → verification → draw →
three bot members → tally → verdict on chain → the consumer decodes the same calc_point."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gpuproof.api.wiring import verify_services
from gpuproof.chain.adapter import SubstrateChain
from gpuproof.chain.consumer import scan_chain
from gpuproof.local.stack import LocalStack
from gpuproof.protocol.report import Integrity
from tests.e2e.api_client import Bot, submit_host, wait_for
from tests.e2e.test_chain import chain, reader, service_key  # noqa: F401 - fixtures
from tests.e2e.test_chain import pytestmark as chain_marks
from tests.e2e.test_committee_flow import bots, final_state, verdict  # noqa: F401

pytestmark = chain_marks


@pytest.fixture
def integrity_in_shadow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The integrity check recorded but not deciding: the committee must catch the preload."""
    monkeypatch.setenv("SHADOW_CHECKS", "integrity")
    verify_services.cache_clear()
    yield
    monkeypatch.undo()
    verify_services.cache_clear()


def on_chain(reader: SubstrateChain, key: bytes, machine_id: str) -> dict[str, Any]:
    for batch in scan_chain(reader, {key}):
        for v in batch.verdicts:
            if v["upload_info"]["machine_id"] == machine_id.encode():
                assert batch.ok, batch.problems
                return v
    raise AssertionError(f"no verdict for {machine_id} on chain")


def published(local_stack: LocalStack, api_url: str, machine_id: str) -> dict[str, Any]:
    doc = final_state(api_url, machine_id, {"published"})
    v = wait_for(lambda: (x := verdict(local_stack, machine_id, 1)) and x.get("publication") and x)
    assert v["publication"]["status"] == "published"
    return {"machine": doc["machine"], "verdict": v}


def test_probe_to_confirmed_verdict_on_chain(
    local_stack: LocalStack, chain: Any, reader: SubstrateChain, service_key: bytes, bots: list[Bot]
) -> None:
    machine_id, _ = submit_host(local_stack.api_url)
    out = published(local_stack, local_stack.api_url, machine_id)
    assert out["verdict"]["result"] == "confirmed"
    expected = bots[0].client.round(machine_id, 1)["expected_info"]["calc_point"]
    decoded = on_chain(reader, service_key, machine_id)
    assert decoded["result"] == "Confirmed"
    assert (
        decoded["upload_info"]["calc_point"] == int(out["verdict"]["upload_info"]["calc_point"]) == expected
    )
    assert decoded["upload_info"]["is_support"] is True


def test_committee_refusal_verdict_on_chain(
    local_stack: LocalStack,
    chain: Any,
    reader: SubstrateChain,
    service_key: bytes,
    bots: list[Bot],
    integrity_in_shadow: None,
) -> None:
    machine_id, _ = submit_host(local_stack.api_url, Integrity(ld_preload="/opt/fake/libcuda-hook.so"))
    out = published(local_stack, local_stack.api_url, machine_id)
    assert out["verdict"]["result"] == "refused"
    decoded = on_chain(reader, service_key, machine_id)
    assert decoded["result"] == "Refused" and decoded["upload_info"]["is_support"] is False
