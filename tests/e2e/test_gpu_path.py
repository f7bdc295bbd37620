"""The probe's GPU path end to end, through the hardware doubles, and a revoked machine's GPUs
registered by another machine (issue 13), on a stack of its own with PRODUCTION settings
(AllowCpuBackend=false) started with `--test-double-gpu` and publishing to a real local chain.

`benchmark-probe submit` runs in this process with the NVML and CUDA test doubles answering the
probe's own loaders (tests/unit/gpu_host_double.py): NVML inventory cross-checked with CUDA's view,
the CuPy backend's benchmarks (cuBLAS gemmEx, device and pinned copies; the CUDA double's events on
the TEST DOUBLE GPU model's modelled clock), the CuPy proof executor (gemmEx int8, the SHA-256,
SHAKE-128 and epilogue kernels built from their CUDA source with g++). The claim is the TEST DOUBLE
GPU model (gpuproof.local.double_gpu), the only one a CPU can prove on the service's clock.

(a) machine A, two test-double GPUs, proves, is confirmed by three committee members and published
on chain; its GPU UUIDs are registered to it. (b) machine B presenting one of A's UUIDs is refused
with gpu_uuid_taken. (c) A's owner signs its exit: the Revoked verdict is read back from the chain
and A's GPUs are released. (d) machine C presenting both UUIDs passes and holds them.

What this does not prove: anything about a GPU (docs/decisions.md "The TEST DOUBLE GPU model").
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from typer.testing import CliRunner

from benchmark_probe.cli import app as probe_app
from benchmark_probe.client import ServiceClient
from benchmark_probe.cupy_double import DOUBLE_MODEL_CLOCK
from benchmark_probe.nvml_double import DOUBLE_MODEL_NAME, FakeGpu, double_model_gpu
from gpuproof.chain.adapter import ChainSettings, SubstrateChain
from gpuproof.chain.consumer import current_scores, scan_chain
from gpuproof.chain.signer import public_key_from_der
from gpuproof.cli.member import CommitteeClient, MemberState, run_agent
from gpuproof.cli.operator import OperatorClient
from gpuproof.local import double_gpu
from gpuproof.local.chain import LocalChain, unavailable_reason
from gpuproof.protocol import ss58
from gpuproof.protocol.keys import Scheme, SigningKey
from tests.unit.gpu_host_double import patch_gpu_host

from .production_stack import ProductionStack, production_stack

pytestmark = pytest.mark.e2e

_REASON = unavailable_reason()
if _REASON is not None:
    warnings.warn(f"LOCAL CHAIN TESTS SKIPPED: {_REASON}", stacklevel=1)
    pytestmark = [pytest.mark.e2e, pytest.mark.skip(reason=f"LOCAL CHAIN UNAVAILABLE: {_REASON}")]

OPERATOR = SigningKey.generate()
TIMEOUT_S = 90.0


@dataclass
class Stack:
    prod: ProductionStack
    chain: LocalChain
    service_key: bytes

    @property
    def api(self) -> str:
        return self.prod.api_url


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with (
        LocalChain() as chain,
        production_stack(
            "CommitteeWindowScale=0.0005",  # commits close after 65 s; all three commit in seconds
            f"CommitteeOperatorKey={OPERATOR.public_hex}",
            flags=("--test-double-gpu", "--chain-endpoint", chain.url),
        ) as prod,
    ):
        env = prod.environment
        kms = boto3.client(
            "kms",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        der = bytes(kms.get_public_key(KeyId=env["SERVICE_KEY_ID"])["PublicKey"])
        yield Stack(prod, chain, public_key_from_der(der))


@pytest.fixture(scope="module")
def members(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Three admitted members' agents. They run here, so this process's table holds the TEST DOUBLE
    row too (a member holds a claim to its model's row; one without it refuses the claim)."""
    base = tmp_path_factory.mktemp("gpu-members")
    stop = threading.Event()
    operator = OperatorClient(stack.api, OPERATOR)
    threads = []
    with double_gpu.installed():
        for i in range(3):
            member = CommitteeClient(stack.api, SigningKey.generate())
            member.register([])
            operator.admit(member.account)
            state = MemberState(Path(base) / f"member{i}.json")
            kwargs = {"interval_s": 0.3, "allow_cpu_backend": False, "stop": stop}
            thread = threading.Thread(target=run_agent, args=(member, state), kwargs=kwargs, daemon=True)
            thread.start()
            threads.append(thread)
        yield
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


def wait_for(what: str, predicate: Callable[[], Any], timeout_s: float = TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def machine(api: str, machine_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = requests.get(f"{api}/machines/{machine_id}", timeout=30).json()
    return doc


def in_state(api: str, machine_id: str, *states: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        doc = machine(api, machine_id)
        return doc if doc["machine"]["state"] in states else None

    doc: dict[str, Any] = wait_for(f"{machine_id[:12]} in {states}", reached)
    return doc


def submit(monkeypatch: pytest.MonkeyPatch, api: str, key_file: Path, owner: str, gpus: list[FakeGpu]) -> str:
    """`benchmark-probe submit` on a host whose NVML and CUDA are the test doubles of `gpus`."""
    patch_gpu_host(monkeypatch, gpus, clock=DOUBLE_MODEL_CLOCK)
    key_file.unlink(missing_ok=True)
    SigningKey.generate().save(key_file)
    args = ["--api", api, "--owner", owner, "--region", "europe", "--key", str(key_file)]
    run = CliRunner().invoke(probe_app, ["submit", *args, "--quick", "--json"])
    assert run.exit_code == 0, run.output
    # CliRunner captures this process's whole stdout: the session stack's functions, when one runs
    # in this process, print their one-line EMF metrics there too; the CLI's document is the rest.
    own = "\n".join(line for line in run.stdout.splitlines() if not line.startswith('{"_aws":'))
    return str(json.loads(own)["machine_id"])


def uuid_owners(stack: Stack, uuids: list[str]) -> dict[str, str]:
    table = stack.prod.table("GPU_UUIDS_TABLE")
    items = (table.get_item(Key={"gpu_uuid": u}, ConsistentRead=True).get("Item") for u in uuids)
    return {i["gpu_uuid"]: i["machine_id"] for i in items if i is not None}


def check(doc: dict[str, Any], name: str) -> dict[str, Any]:
    report = doc["reports"][0]
    found: dict[str, Any] = next(c for c in report["verification"]["checks"] if c["name"] == name)
    return found


def revoked_on_chain(stack: Stack, machine_id: str) -> dict[str, Any]:
    reader = SubstrateChain(ChainSettings(node_url=stack.chain.url), "//reader")
    try:

        def found() -> dict[str, Any] | None:
            batches = list(scan_chain(reader, {stack.service_key}))
            for batch in batches:
                for v in batch.verdicts:
                    if v["upload_info"]["machine_id"] == machine_id.encode() and v["result"] == "Revoked":
                        assert batch.ok, batch.problems
                        return {"record": v, "score": current_scores(batches)[machine_id]}
            return None

        result: dict[str, Any] = wait_for("the Revoked verdict on chain", found)
        return result
    finally:
        reader.close()


def test_a_revoked_machines_gpus_are_registered_by_another_machine(
    stack: Stack, members: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    api = stack.api
    owner_key = SigningKey.generate(Scheme.sr25519)
    owner = ss58.encode(bytes.fromhex(owner_key.public_hex))
    gpus = [double_model_gpu(0), double_model_gpu(1)]
    uuids = sorted(g.uuid for g in gpus)

    # (a) A proves on its two test-double GPUs; the service holds them to the model's claim.
    a = submit(monkeypatch, api, tmp_path / "a.key", owner, gpus)
    doc = in_state(api, a, "auto_verified", "committee", "confirmed", "published", "refused")
    assert doc["machine"]["state"] != "refused", doc["machine"]["state_reasons"]
    assert sorted(doc["machine"]["gpu_uuids"]) == uuids
    assert uuid_owners(stack, uuids) == dict.fromkeys(uuids, a)
    claim = doc["reports"][0]["verification"]["claim"]
    assert claim == {"claimed_gpu_model": DOUBLE_MODEL_NAME, "gpu_count": 2}
    proof = check(doc, "proof_of_throughput")
    assert proof["status"] == "pass", proof
    assert check(doc, "benchmarks")["status"] == "pass"
    assert check(doc, "gpu_uuids")["status"] == "pass"
    # Its test-size capacity phase, filled by the GPU executor on the CUDA double, proves both GPUs:
    # the count is the capacity record's (without one nothing would be counted).
    assert check(doc, "capacity")["status"] == "pass", check(doc, "capacity")
    inputs = {i["input"]: i for i in doc["reports"][0]["verification"]["evidence"]["inputs"]}
    assert inputs["gpu_num"]["status"] == "proven" and inputs["gpu_num"]["value"] == 2

    # (b) B presents A's second GPU: refused, the UUID still A's.
    b = submit(monkeypatch, api, tmp_path / "b.key", owner, [double_model_gpu(0, uuid=gpus[1].uuid)])
    doc_b = in_state(api, b, "refused", "auto_verified")
    assert doc_b["machine"]["state"] == "refused"
    assert "gpu_uuid_taken" in {r["code"] for r in doc_b["machine"]["state_reasons"]}
    assert doc_b["machine"]["gpu_uuids"] == []

    # A's committee confirms it and the publisher puts its score on chain.
    doc = in_state(api, a, "published", "refused", "no_consensus", "disputed")
    assert doc["machine"]["state"] == "published", doc["machine"]
    assert doc["machine"]["scored"]["verdict_id"] == f"{a}:1"

    # (c) The owner signs A's exit: the Revoked verdict goes on chain, A's GPUs are released.
    out = ServiceClient(api, owner_key).request("POST", f"/machines/{a}/exit", {})
    assert out["machine"]["state"] == "exited" and out["revoked_verdict_id"] == f"{a}:1:revoked"
    assert out["machine"]["gpu_uuids"] == []
    assert uuid_owners(stack, uuids) == {}
    on_chain = revoked_on_chain(stack, a)
    assert on_chain["record"]["revocation"] == {"reason": "machine_exited", "revokes_round": 1}
    assert on_chain["record"]["upload_info"]["calc_point"] == 0
    assert on_chain["score"].result == "Revoked"

    # (d) C presents both of A's GPUs (resold): it passes and holds them.
    c = submit(monkeypatch, api, tmp_path / "c.key", owner, gpus)
    doc_c = in_state(api, c, "auto_verified", "committee", "confirmed", "published", "refused")
    assert doc_c["machine"]["state"] != "refused", doc_c["machine"]["state_reasons"]
    assert sorted(doc_c["machine"]["gpu_uuids"]) == uuids
    assert uuid_owners(stack, uuids) == dict.fromkeys(uuids, c)
