"""The heartbeat history through the local HTTP front: GET /machines/{id}/heartbeats reads back the
signed heartbeats the service kept (HeartbeatsTable), newest first, bounded by `since` and `limit`;
GET /machines/{id} carries the latest one."""

from __future__ import annotations

from typing import Any

import pytest

from gpuproof.protocol.keys import SigningKey

from .api_client import RawApi

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(local_stack: Any) -> RawApi:
    return RawApi(local_stack.api_url)


def beat(key: SigningKey, n: int) -> dict[str, Any]:
    return {
        "machine_id": key.public_hex,
        "sent_at": 1_790_000_000 + n,
        "backend": "cpu",
        "host": {"cpu_percent": 10.0 * n, "load_average": [float(n)]},
        "note": f"beat {n}",
    }


def test_heartbeats_read_back_newest_first_bounded_by_since_and_limit(api: RawApi) -> None:
    key = SigningKey.generate()
    mid = key.public_hex
    assert api.register(key).status == 201
    status = api.send("GET", f"/machines/{mid}")
    assert status.status == 200 and status.body["latest_heartbeat"] is None, status.body
    empty = api.send("GET", f"/machines/{mid}/heartbeats")
    assert empty.status == 200 and empty.body == {"machine_id": mid, "heartbeats": []}, empty.body

    acks = []
    for n in (1, 2, 3):
        reply, _, _ = api.signed(key, "POST", f"/machines/{mid}/heartbeats", beat(key, n))
        assert reply.status == 200, reply.body
        acks.append(reply.body["received_at"])
    assert acks == sorted(acks) and len(set(acks)) == 3

    every = api.send("GET", f"/machines/{mid}/heartbeats")
    assert every.status == 200, every.body
    beats = every.body["heartbeats"]
    assert [b["note"] for b in beats] == ["beat 3", "beat 2", "beat 1"]
    assert [b["received_at"] for b in beats] == acks[::-1]
    # Each item is the telemetry as signed (the wire model's defaults filled in) and its receipt.
    assert beats[0] == {
        **beat(key, 3),
        "gpus": [],
        "host": {
            "cpu_percent": 30.0,
            "load_average": [3.0],
            "memory_used_bytes": None,
            "memory_total_bytes": None,
        },
        "live_endpoint": None,
        "received_at": acks[2],
    }

    newest_two = api.send("GET", f"/machines/{mid}/heartbeats?limit=2")
    assert [b["note"] for b in newest_two.body["heartbeats"]] == ["beat 3", "beat 2"], newest_two.body
    since_second = api.send("GET", f"/machines/{mid}/heartbeats?since={acks[1]!r}")
    assert [b["note"] for b in since_second.body["heartbeats"]] == ["beat 3", "beat 2"], since_second.body
    both = api.send("GET", f"/machines/{mid}/heartbeats?since={acks[0]!r}&limit=1")
    assert [b["note"] for b in both.body["heartbeats"]] == ["beat 3"], both.body
    later = api.send("GET", f"/machines/{mid}/heartbeats?since={acks[2] + 1}")
    assert later.status == 200 and later.body["heartbeats"] == [], later.body

    status = api.send("GET", f"/machines/{mid}")
    assert status.status == 200 and status.body["latest_heartbeat"] == beats[0], status.body
    assert status.body["machine"]["last_heartbeat_at"] == acks[2]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=501", "limit=ten", "limit=1.5", "since=-1", "since=nan", "since=inf", "since=1e400"],
)
def test_bad_bounds_are_refused_with_a_code(api: RawApi, query: str) -> None:
    key = SigningKey.generate()
    assert api.register(key).status == 201
    reply = api.send("GET", f"/machines/{key.public_hex}/heartbeats?{query}")
    assert reply.status == 422 and reply.body["code"] == "schema_invalid", reply.body
    field = query.split("=")[0]
    assert [r["field"] for r in reply.body["reasons"]] == [f"query.{field}"], reply.body


def test_an_unknown_machine_is_404(api: RawApi) -> None:
    stranger = SigningKey.generate().public_hex
    reply = api.send("GET", f"/machines/{stranger}/heartbeats")
    assert reply.status == 404 and reply.body["code"] == "unknown_machine", reply.body
    malformed = api.send("GET", "/machines/not-a-key/heartbeats")
    assert malformed.status == 422 and malformed.body["code"] == "schema_invalid", malformed.body
