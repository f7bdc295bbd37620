"""Bounded input through the local stack (issue 10): every refusal a 4xx with a stable code, never a 500,
nothing stored. Before: invalid UTF-8 and JSON nested 1000 deep answered 500 on every POST route, a
report with NaN 500, negative figures and 1,000-GPU inventories were accepted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpuproof.local.template import load_template
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.limits import DEFAULT_MAX_GPUS_PER_MACHINE
from gpuproof.protocol.report import GpuInfo, Inventory

from .api_client import RawApi, Tables
from .test_machine_api import challenged, registered, report_for, submission

ROOT_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"

pytestmark = pytest.mark.e2e

MACHINE = "ab" * 32


def post_routes() -> list[str]:
    """Every POST route of the template, its path parameters filled in."""
    fill = {
        "{machine_id}": MACHINE,
        "{account}": MACHINE,
        "{round}": "1",
        "{id}": MACHINE,
        "{check_id}": "c" * 32,
    }
    paths = []
    for spec in load_template(ROOT_TEMPLATE).functions():
        for ev in spec.events:
            if ev.type == "HttpApi" and ev.properties.get("Method", "").upper() == "POST":
                path = ev.properties["Path"]
                for k, v in fill.items():
                    path = path.replace(k, v)
                paths.append(path)
    return sorted(paths)


ROUTES = post_routes()
BAD_BODIES = {
    "body_not_utf8": b'{"machine_id": "\xff\xfe"}',
    "json_too_deep": b"[" * 1000 + b"]" * 1000,
    "json_non_finite": b'{"gpu_count": NaN}',
}


@pytest.fixture(scope="module")
def api(local_stack: Any) -> RawApi:
    return RawApi(local_stack.api_url)


@pytest.fixture(scope="module")
def tables(local_stack: Any) -> Tables:
    return Tables(
        {
            "machines": local_stack.table_name("MachinesTable"),
            "challenges": local_stack.table_name("ChallengesTable"),
            "reports": local_stack.table_name("ReportsTable"),
            "nonces": local_stack.table_name("RequestNoncesTable"),
        }
    )


def test_the_routes_are_found() -> None:
    assert "/machines" in ROUTES and f"/machines/{MACHINE}/reports" in ROUTES and len(ROUTES) >= 9


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("code", sorted(BAD_BODIES))
def test_every_post_route_refuses_unparseable_bodies(api: RawApi, path: str, code: str) -> None:
    key = SigningKey.generate()
    reply, _, _ = api.signed(key, "POST", path, raw=BAD_BODIES[code])
    assert reply.status == 400, (path, reply.status, reply.body)
    assert reply.body["code"] == code


def test_a_report_containing_nan_is_refused(api: RawApi, tables: Tables) -> None:
    key, ch = challenged(api)
    doc = submission(ch, report_for(key, ch))
    doc["signed_report"]["report"]["benchmarks"] = [
        {
            "name": "gemm_bf16",
            "device": "cpu",
            "unit": "TFLOPS",
            "median": float("nan"),
            "min": 0.0,
            "max": 0.0,
            "repeats": 3,
            "verified": True,
        }
    ]
    reply, _, _ = api.signed(key, "POST", f"/machines/{key.public_hex}/reports", raw=json.dumps(doc).encode())
    assert reply.status == 400 and reply.body["code"] == "json_non_finite"
    assert tables.footprint(key.public_hex)["reports"] == []


@pytest.mark.parametrize(
    ("field", "value"), [("cpu_cores", -4), ("ram_bytes", -1), ("ram_bytes", 10**400), ("cpu_mhz", 10**9)]
)
def test_a_report_with_impossible_host_figures_is_refused(
    api: RawApi, tables: Tables, field: str, value: int
) -> None:
    key, ch = challenged(api)
    doc = submission(ch, report_for(key, ch))
    doc["signed_report"]["report"]["inventory"]["host"][field] = value
    reply, _, _ = api.signed(key, "POST", f"/machines/{key.public_hex}/reports", doc)
    assert reply.status == 422 and reply.body["code"] == "schema_invalid", reply.body
    assert any(r["field"].endswith(f"host.{field}") for r in reply.body["reasons"])
    assert tables.footprint(key.public_hex)["reports"] == []


def test_negative_benchmark_repeats_are_refused(api: RawApi) -> None:
    key, ch = challenged(api)
    doc = submission(ch, report_for(key, ch))
    doc["signed_report"]["report"]["benchmarks"] = [
        {
            "name": "g",
            "device": "cpu",
            "unit": "x",
            "median": 1.0,
            "min": 1.0,
            "max": 1.0,
            "repeats": -1,
            "verified": True,
        }
    ]
    reply, _, _ = api.signed(key, "POST", f"/machines/{key.public_hex}/reports", doc)
    assert reply.status == 422 and reply.body["code"] == "schema_invalid"


def _gpus(n: int) -> list[GpuInfo]:
    return [
        GpuInfo(
            index=i % 256,
            name="NVIDIA H100 80GB HBM3",
            uuid=f"GPU-{i:08x}-1111-2222-3333-444444444444",
            pci_bus_id=f"00000000:{i % 256:02x}:00.0",
            memory_total_bytes=80 << 30,
        )
        for i in range(n)
    ]


def test_more_gpus_than_the_limit_in_a_report_is_refused(api: RawApi, tables: Tables) -> None:
    key, ch = challenged(api)
    inventory = Inventory(
        backend="nvml",
        gpus=_gpus(DEFAULT_MAX_GPUS_PER_MACHINE + 1),
        host=report_for(key, ch).report.inventory.host,
    )
    signed = report_for(key, ch, inventory=inventory)
    reply, _, _ = api.signed(key, "POST", f"/machines/{key.public_hex}/reports", submission(ch, signed))
    assert reply.status == 422 and reply.body["code"] == "too_many_gpus", reply.body
    assert tables.footprint(key.public_hex)["reports"] == []


def test_an_inventory_of_1000_gpus_is_refused_at_intake(api: RawApi, tables: Tables) -> None:
    key, ch = challenged(api)
    doc = submission(ch, report_for(key, ch))
    doc["signed_report"]["report"]["inventory"]["gpus"] = [g.model_dump(mode="json") for g in _gpus(16)] * 63
    doc["signed_report"]["report"]["inventory"]["gpus"] += [
        g.model_dump(mode="json") for g in _gpus(1000 - 16 * 63)
    ]
    reply, _, _ = api.signed(key, "POST", f"/machines/{key.public_hex}/reports", doc)
    assert reply.status == 422 and reply.body["code"] == "schema_invalid"
    assert tables.footprint(key.public_hex)["reports"] == []


def test_a_challenge_for_more_gpus_than_the_limit_is_refused(api: RawApi, tables: Tables) -> None:
    key = registered(api)
    reply = api.challenge(key, claimed_gpu_model="H100 SXM5 80GB", gpu_count=DEFAULT_MAX_GPUS_PER_MACHINE + 1)
    assert reply.status == 422 and reply.body["code"] == "too_many_gpus", reply.body
    assert tables.footprint(key.public_hex)["challenges"] == []
    within = api.challenge(key, claimed_gpu_model="H100 SXM5 80GB", gpu_count=DEFAULT_MAX_GPUS_PER_MACHINE)
    assert within.status == 201, within.body


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b'"temperature_c": NaN', 400, "json_non_finite"),
        (b'"temperature_c": 1e400', 400, "json_non_finite"),
        (b'"power_w": 1' + b"0" * 400, 422, "schema_invalid"),
        (b'"utilization_pct": -5', 422, "schema_invalid"),
    ],
)
def test_heartbeats_with_impossible_telemetry_are_refused(
    api: RawApi, raw: bytes, status: int, code: str
) -> None:
    key = registered(api)
    body = (
        b'{"machine_id": "' + key.public_hex.encode() + b'", "sent_at": 1790000000, "backend": "nvml", '
        b'"gpus": [{"index": 0, ' + raw + b'}], "host": {}}'
    )
    reply, _, _ = api.signed(key, "POST", f"/machines/{key.public_hex}/heartbeats", raw=body)
    assert reply.status == status and reply.body["code"] == code, reply.body


HUGE = 10**40


@pytest.mark.parametrize(
    "path",
    [
        f"/rounds/{MACHINE}/{HUGE}",
        f"/rounds/{MACHINE}/{HUGE}/transcript",
        f"/feed?since={HUGE}",
        f"/machines/{MACHINE}/reports/{'c' * 5000}",
        f"/members/{MACHINE}/assignments",
    ],
)
def test_path_and_query_numbers_are_bounded(api: RawApi, path: str) -> None:
    reply = api.send("GET", path)
    expected = 404 if path.endswith("assignments") else 422
    assert reply.status == expected, (path, reply.status, reply.body)


def test_a_signed_commit_for_a_huge_round_is_refused(api: RawApi) -> None:
    key = SigningKey.generate()
    reply, _, _ = api.signed(key, "POST", f"/rounds/{MACHINE}/{HUGE}/commit", {"commit_hash": "00" * 16})
    assert reply.status == 422 and reply.body["code"] == "schema_invalid", reply.body
