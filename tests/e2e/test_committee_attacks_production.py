"""Issue 10's committee attacks through the local stack with PRODUCTION settings.

With AllowCpuBackend=false no machine in CI can pass the automated stage (it has no GPU), so the
machine under review is planted in the stack's own tables exactly as the verify worker writes a
passed one: an 1 x H100 claim, its signed report, `verification.passed` with the claim. Everything
after that (registration, admission, the sweeper's draw, the published round) is the stack's.

- fresh keys registered as members are never drawn until the operator admits them, and a member
  cannot admit itself;
- the owner's own key registered as a member (hex, where the machine names it in SS58) is never in
  the pool for its machine;
- a planted report with ram_bytes = 10**400 (stored before the bounds) stops no other draw.

First, before any of that: the beacon's tip is published by the sweeper's first tick on a fresh
stack with no member and no machine (issue 14 §7), so it is public before any draw is possible.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from benchmark_probe.inventory import collect_inventory
from benchmark_probe.nvml_double import CudaTestDouble, NvmlTestDouble, fixed_host
from gpuproof.cli.member import ApiError, CommitteeClient
from gpuproof.cli.operator import OperatorClient
from gpuproof.committee.beacon import HashChainBeacon
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.keys import Scheme, SigningKey
from gpuproof.protocol.report import BenchmarkReport, BenchmarkResult, Integrity, SignedReport

from .api_client import OWNER
from .production_stack import ProductionStack, production_stack

pytestmark = pytest.mark.e2e

OPERATOR = SigningKey.generate()
# subkey's //Alice: the sr25519 key behind OWNER (5GrwvaEF…), d43593c7… in hex.
ALICE = SigningKey.from_seed(
    bytes.fromhex("e5be9a5092b81bca64be81d212e7f2f9eba183bb7a90954f7b76361f6edb5c0a"), Scheme.sr25519
)
H100_CLAIM = {"claimed_gpu_model": "H100 SXM5 80GB", "gpu_count": 1}


@pytest.fixture(scope="module")
def prod() -> Iterator[ProductionStack]:
    with production_stack("CommitteeWindowScale=0.0001", f"CommitteeOperatorKey={OPERATOR.public_hex}") as s:
        yield s


@pytest.fixture
def operator(prod: ProductionStack) -> OperatorClient:
    return OperatorClient(prod.api_url, OPERATOR)


@pytest.fixture
def members(prod: ProductionStack) -> Iterator[list[CommitteeClient]]:
    """Members registered with fresh keys (not admitted); retired afterwards."""
    made: list[CommitteeClient] = []

    def make(n: int, key: SigningKey | None = None) -> list[CommitteeClient]:
        out = [CommitteeClient(prod.api_url, key or SigningKey.generate()) for _ in range(n)]
        for c in out:
            c.register([])
        made.extend(out)
        return out

    yield make  # type: ignore[misc]
    for c in made:
        c.retire()


def plant_verified_machine(prod: ProductionStack, *, updated_at: float, **host: Any) -> str:
    """A machine as the verify worker leaves one that passed: auto_verified, its report stored."""
    key = SigningKey.generate()
    mid = key.public_hex
    nvml = NvmlTestDouble.with_gpus(1)
    inventory = collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), fixed_host())
    report = BenchmarkReport(
        machine_id=mid,
        challenge_id="planted",
        challenge_nonce="cd" * 32,
        probe_version="t",
        created_at=int(time.time()),
        inventory=inventory,
        benchmarks=[
            BenchmarkResult(
                name="gemm_bf16",
                device="gpu0",
                unit="TFLOPS",
                median=790.0,
                min=780.0,
                max=800.0,
                repeats=5,
                verified=True,
            )
        ],
        integrity=Integrity(),
    )
    doc = SignedReport.sign(report, key).model_dump(mode="json")
    doc["report"]["inventory"]["host"].update(host)  # as stored before the bounds, when given
    verification = {
        "passed": True,
        "claim": H100_CLAIM,
        "verified_at": updated_at,
        "reasons": [],
        "checks": [],
    }
    prod.table("REPORTS_TABLE").put_item(
        Item={
            "machine_id": mid,
            "challenge_id": "planted",
            "received_at": Decimal(str(updated_at)),
            "report_sha256": "00" * 32,
            "body": zlib.compress(canonical_bytes(doc)),
            "verification": json.dumps(verification),
        }
    )
    prod.table("MACHINES_TABLE").put_item(
        Item={
            "machine_id": mid,
            "owner": OWNER,
            "region": "europe",
            "state": "auto_verified",
            "registered_at": Decimal(str(updated_at)),
            "updated_at": Decimal(str(updated_at)),
            "last_challenge_id": "planted",
        }
    )
    return mid


def round_of(prod: ProductionStack, machine_id: str, timeout_s: float = 20.0) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = requests.get(f"{prod.api_url}/rounds/{machine_id}/1", timeout=10)
        if r.status_code == 200:
            return dict(r.json())
        time.sleep(0.3)
    return None


def retire_machine(prod: ProductionStack, machine_id: str) -> None:
    """Take a planted machine out of the draw once its test is done."""
    prod.table("MACHINES_TABLE").update_item(
        Key={"machine_id": machine_id},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":s": "refused"},
    )


def test_the_beacon_tip_is_public_from_the_first_tick_before_any_draw(prod: ProductionStack) -> None:
    """First in the module: nobody registered, nothing to draw; the tip is there all the same."""
    seed = prod.environment["BEACON_SEED"].encode()
    expected = HashChainBeacon(seed, int(prod.environment["BEACON_LENGTH"])).tip.hex()
    deadline = time.monotonic() + 30  # ticks every second; a generous wait, not a timing claim
    answer = requests.get(f"{prod.api_url}/beacon", timeout=10)
    while answer.status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.5)
        answer = requests.get(f"{prod.api_url}/beacon", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "tip": expected,
        "length": int(prod.environment["BEACON_LENGTH"]),
        "next_index": 1,
    }


def test_fresh_keys_form_no_committee_until_admitted(
    prod: ProductionStack, operator: OperatorClient, members: Any
) -> None:
    fresh = members(3)
    mid = plant_verified_machine(prod, updated_at=time.time())
    try:
        assert round_of(prod, mid, timeout_s=4.0) is None  # several sweeper ticks: nobody drawn
        me = fresh[0]
        with pytest.raises(ApiError) as refused:
            me.request("POST", f"/members/{me.account}/admission", {"admitted": True})
        assert (refused.value.status, refused.value.code) == (403, "not_operator")
        for c in fresh:
            operator.admit(c.account)
        rnd = round_of(prod, mid)
        assert rnd is not None and sorted(rnd["members"]) == sorted(c.account for c in fresh)
    finally:
        retire_machine(prod, mid)


def test_the_owners_own_key_never_reviews_its_machine(
    prod: ProductionStack, operator: OperatorClient, members: Any
) -> None:
    """OWNER is //Alice in SS58; her key joins as a member in hex and is admitted."""
    others = members(3)
    (alice,) = members(1, ALICE)
    assert alice.account == ALICE.public_hex != OWNER
    for c in [*others, alice]:
        operator.admit(c.account)
    mid = plant_verified_machine(prod, updated_at=time.time())
    try:
        rnd = round_of(prod, mid)
        assert rnd is not None
        assert ALICE.public_hex not in rnd["members"]
        assert rnd["pool"] is not None and ALICE.public_hex not in rnd["pool"]
    finally:
        retire_machine(prod, mid)


def test_a_poisoned_report_stops_no_other_draw(
    prod: ProductionStack, operator: OperatorClient, members: Any
) -> None:
    for c in members(3):
        operator.admit(c.account)
    poisoned = plant_verified_machine(prod, updated_at=1.0, ram_bytes=10**400)  # oldest: drawn first
    honest = plant_verified_machine(prod, updated_at=time.time())
    try:
        rnd = round_of(prod, honest)
        assert rnd is not None and len(rnd["members"]) == 3
        assert round_of(prod, poisoned, timeout_s=1.5) is None
    finally:
        retire_machine(prod, poisoned)
        retire_machine(prod, honest)
