# ruff: noqa: F811 - pytest fixtures imported from sibling modules are redefined as parameters
"""Scores follow the truth, on the local stack and a real local chain: a published machine that
fails its re-verification, whose owner signs an exit, or that goes silent (offline, then offline
past the limit) gets a Revoked verdict through the same outbox; the consumer reads it back from
the chain and folds it into the machine's current score (none)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from benchmark_probe.backends import select_backend
from benchmark_probe.bench import BenchPlan, run_benchmarks
from benchmark_probe.cli import proof_hook
from benchmark_probe.client import ServiceClient, ServiceError
from benchmark_probe.integrity import collect_integrity
from benchmark_probe.inventory import collect_inventory
from benchmark_probe.submit import answer_challenge, submit
from gpuproof.api.wiring import machine_services
from gpuproof.chain.adapter import SubstrateChain
from gpuproof.chain.consumer import current_scores, scan_chain
from gpuproof.local.stack import LocalStack
from gpuproof.protocol import ss58
from gpuproof.protocol.keys import Scheme, SigningKey
from gpuproof.protocol.machine import Region
from gpuproof.protocol.report import Integrity
from tests.e2e.test_chain import chain, reader, service_key  # noqa: F401 - fixtures
from tests.e2e.test_chain import pytestmark as chain_marks
from tests.e2e.test_committee_flow import Bot, bots, verdict, wait_for  # noqa: F401

pytestmark = chain_marks


def machine_state(api_url: str, machine_id: str) -> dict[str, Any]:
    """GET /machines/{id}; patient (60 s): the local stack shares this busy host's CPUs with the
    probe's prover and the committee bots, and a GET can wait behind them."""
    r = requests.get(f"{api_url}/machines/{machine_id}", timeout=60)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def publish(
    api_url: str, local_stack: LocalStack, owner_key: SigningKey | None = None
) -> tuple[SigningKey, str]:
    """A CPU-backed machine through the whole path to a Confirmed verdict on chain (published).

    The CPU claim's proof deadline is 1.004 s (docs/protocol.md §8); on this shared 2-core host a
    commitment sometimes misses it (`proof_deadline_missed`, the machine refused): then a fresh
    machine tries again, at most three times, and the test goes on with the one published."""
    owner = ss58.encode(bytes.fromhex((owner_key or SigningKey.generate(Scheme.sr25519)).public_hex))
    inventory = collect_inventory()
    backend, _ = select_backend(inventory)
    refusals = []
    for _attempt in range(3):
        key = SigningKey.generate()
        submit(
            ServiceClient(api_url, key),
            key,
            owner,
            Region.europe,
            inventory,
            collect_integrity(),
            lambda: run_benchmarks(backend, BenchPlan.quick()),
            proof_hook(key),
        )
        mid = key.public_hex

        def settled(mid: str = mid) -> dict[str, Any] | None:
            d = machine_state(api_url, mid)
            return d if d["machine"]["scored"] or d["machine"]["state"] == "refused" else None

        doc = wait_for(settled, timeout=240)
        codes = {r["code"] for r in doc["machine"]["state_reasons"]}
        if doc["machine"]["state"] == "refused" and codes == {"proof_deadline_missed"}:
            refusals.append(mid)
            continue
        assert doc["machine"]["state"] == "published", doc["machine"]
        assert doc["machine"]["scored"]["verdict_id"] == f"{mid}:1"
        v = verdict(local_stack, mid, 1)
        assert v is not None and v["result"] == "confirmed" and v["publication"]["status"] == "published"
        return key, mid
    raise AssertionError(f"three machines missed the CPU proof deadline on this host: {refusals}")


def revoked_on_chain(reader: SubstrateChain, key: bytes, machine_id: str) -> dict[str, Any]:
    """The machine's Revoked record as the consumer reads it from the chain (signature and Merkle
    root checked), and its folded current score."""

    def found() -> dict[str, Any] | None:
        batches = list(scan_chain(reader, {key}))
        for batch in batches:
            for v in batch.verdicts:
                if v["upload_info"]["machine_id"] == machine_id.encode() and v["result"] == "Revoked":
                    assert batch.ok, batch.problems
                    score = current_scores(batches)[machine_id]
                    return {"record": v, "score": score}
        return None

    result: dict[str, Any] = wait_for(found)
    return result


def revoked_item(local_stack: LocalStack, machine_id: str) -> dict[str, Any]:
    def published() -> dict[str, Any] | None:
        item = verdict_item(local_stack, f"{machine_id}:1:revoked")
        return item if item and (item.get("publication") or {}).get("status") == "published" else None

    result: dict[str, Any] = wait_for(published)
    return result


def verdict_item(local_stack: LocalStack, verdict_id: str) -> dict[str, Any] | None:
    import json

    import boto3

    table = boto3.resource("dynamodb").Table(local_stack.table_name("VerdictsTable"))
    item: dict[str, Any] | None = table.get_item(Key={"verdict_id": verdict_id}, ConsistentRead=True).get(
        "Item"
    )
    if item is not None:
        for name in ("upload_info", "committee", "publication", "revocation"):
            item[name] = json.loads(item[name]) if isinstance(item.get(name), str) else item.get(name)
    return item


def test_a_failed_reverification_revokes_the_score_on_chain(
    local_stack: LocalStack, chain: Any, reader: SubstrateChain, service_key: bytes, bots: list[Bot]
) -> None:
    key, mid = publish(local_stack.api_url, local_stack)
    inventory = collect_inventory()
    backend, _ = select_backend(inventory)
    # The same machine proves itself again, now with a preloaded library: the verify worker refuses.
    answer_challenge(
        ServiceClient(local_stack.api_url, key),
        key,
        inventory,
        Integrity(ld_preload="/opt/fake/libcuda-hook.so"),
        lambda: run_benchmarks(backend, BenchPlan.quick()),
        proof_hook(key),
    )
    doc = wait_for(
        lambda: (d := machine_state(local_stack.api_url, mid)) and d["machine"]["state"] == "refused" and d
    )
    assert doc["machine"]["scored"] is None
    assert "integrity_ld_preload" in {r["code"] for r in doc["machine"]["state_reasons"]}
    item = revoked_item(local_stack, mid)
    assert item["result"] == "revoked" and item["revocation"]["reason"] == "reverification_failed"
    assert item["revocation"]["revokes_verdict_id"] == f"{mid}:1"
    assert "integrity_ld_preload" in item["revocation"]["evidence"]["reasons"]
    out = revoked_on_chain(reader, service_key, mid)
    assert out["record"]["revocation"] == {"reason": "reverification_failed", "revokes_round": 1}
    assert out["record"]["upload_info"]["calc_point"] == 0
    assert out["record"]["upload_info"]["is_support"] is False
    assert out["score"].result == "Revoked" and out["score"].calc_point == 0


def test_only_the_owner_exits_and_the_exit_revokes_the_score(
    local_stack: LocalStack, chain: Any, reader: SubstrateChain, service_key: bytes, bots: list[Bot]
) -> None:
    owner_key = SigningKey.generate(Scheme.sr25519)
    key, mid = publish(local_stack.api_url, local_stack, owner_key)
    with pytest.raises(ServiceError) as refused:  # the machine key cannot exit for its owner
        ServiceClient(local_stack.api_url, key).request("POST", f"/machines/{mid}/exit", {})
    assert refused.value.status == 403 and refused.value.code == "exit_not_owner"
    assert machine_state(local_stack.api_url, mid)["machine"]["state"] == "published"
    out = ServiceClient(local_stack.api_url, owner_key).request("POST", f"/machines/{mid}/exit", {})
    assert out["machine"]["state"] == "exited"
    assert out["revoked_verdict_id"] == f"{mid}:1:revoked"
    assert [r["code"] for r in out["machine"]["state_reasons"]] == ["machine_exited"]
    assert out["machine"]["scored"] is None  # the answer is what was written: the score withdrawn
    with pytest.raises(ServiceError) as again:  # exited: nothing left to exit
        ServiceClient(local_stack.api_url, owner_key).request("POST", f"/machines/{mid}/exit", {})
    assert again.value.status == 409 and again.value.code == "machine_state_conflict"
    item = revoked_item(local_stack, mid)
    assert item["revocation"]["reason"] == "machine_exited"
    assert item["revocation"]["evidence"]["keyid"] == owner_key.public_hex
    chain_out = revoked_on_chain(reader, service_key, mid)
    assert chain_out["record"]["revocation"] == {"reason": "machine_exited", "revokes_round": 1}


@pytest.fixture
def short_liveness(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Offline after 3 s of silence, revoked after 6 s offline (the template's defaults are 900 s
    and a day); the sweeper reads the policy each tick, the machine API at its cold start."""
    monkeypatch.setenv("OFFLINE_AFTER_S", "3")
    monkeypatch.setenv("REVOKE_OFFLINE_AFTER_S", "6")
    machine_services.cache_clear()
    yield
    monkeypatch.undo()
    machine_services.cache_clear()


def beat(api_url: str, key: SigningKey) -> dict[str, Any]:
    telemetry = {
        "machine_id": key.public_hex,
        "sent_at": int(time.time()),
        "backend": "cpu",
        "gpus": [],
        "host": {"load_average": [0.1, 0.1, 0.1]},
    }
    ack: dict[str, Any] = ServiceClient(api_url, key).heartbeat(key.public_hex, telemetry)
    return ack


def test_a_silent_machine_goes_offline_comes_back_and_is_revoked_when_it_stays_away(
    local_stack: LocalStack,
    chain: Any,
    reader: SubstrateChain,
    service_key: bytes,
    bots: list[Bot],
    short_liveness: None,
) -> None:
    api = local_stack.api_url
    key, mid = publish(api, local_stack)
    doc = wait_for(lambda: (d := machine_state(api, mid)) and d["machine"]["state"] == "offline" and d)
    m = doc["machine"]
    assert [r["code"] for r in m["state_reasons"]] == ["heartbeat_missed"]
    assert m["offline_since"] is not None and m["scored"]["round"] == 1  # offline: still scored
    ack = beat(api, key)  # heartbeats resume: online (published) again, the score untouched
    assert ack["state"] == "published"
    m = machine_state(api, mid)["machine"]
    assert m["state"] == "published" and m["state_reasons"] == [] and m["offline_since"] is None
    assert m["last_heartbeat_at"] is not None
    # Silent again: offline, then offline past the limit: revoked, the score withdrawn on chain.
    doc = wait_for(lambda: (d := machine_state(api, mid)) and d["machine"]["state"] == "revoked" and d)
    assert [r["code"] for r in doc["machine"]["state_reasons"]] == ["offline_too_long"]
    assert doc["machine"]["scored"] is None
    item = revoked_item(local_stack, mid)
    assert item["revocation"]["reason"] == "offline_too_long"
    assert item["revocation"]["evidence"]["last_heartbeat_at"] == pytest.approx(m["last_heartbeat_at"])
    out = revoked_on_chain(reader, service_key, mid)
    assert out["record"]["revocation"] == {"reason": "offline_too_long", "revokes_round": 1}
    assert out["score"].result == "Revoked"
    assert beat(api, key)["state"] == "revoked"  # a heartbeat no longer brings it back
