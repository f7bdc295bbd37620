"""Issue 10's attacks, through the local stack with PRODUCTION settings (AllowCpuBackend=false,
the template's cooldown): each was accepted before the challenge became the claim.

- a host with no GPU takes the tiny CPU challenge (gpu_count 0);
- a host with no GPU claims 8 x H100, fabricates a commitment and reports 8 H100s;
- a challenge sized for an L4 answered by a report naming an H100 (model swap);
- a commitment abandoned after the pairs were drawn, and a fresh challenge taken at once.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from benchmark_probe.client import ServiceClient, ServiceError
from benchmark_probe.report import Challenge, build_report
from benchmark_probe.submit import register, registration_for
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.machine import Region
from gpuproof.protocol.proof import (
    GpuCommitment,
    GpuPairs,
    ProofParams,
    SignedCommitment,
    ThroughputCommitment,
    ThroughputProof,
)
from gpuproof.protocol.report import Integrity, Inventory
from tests.unit.gpu_host_double import bf16_figures, h100_inventory

from .api_client import OWNER
from .production_stack import ProductionStack, production_stack

pytestmark = pytest.mark.e2e

H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture(scope="module")
def prod() -> Iterator[ProductionStack]:
    with production_stack("CommitteeWindowScale=0.0001") as stack:
        yield stack


def new_machine(stack: ProductionStack) -> tuple[SigningKey, ServiceClient]:
    key = SigningKey.generate()
    client = ServiceClient(stack.api_url, key)
    assert register(client, registration_for(key, OWNER, Region.europe)) == "registered"
    return key, client


def fabricated_commitment(
    client: ServiceClient, key: SigningKey, challenge: dict[str, Any]
) -> tuple[SignedCommitment, list[GpuPairs]]:
    """A random chained value per GPU, signed: accepted on receipt (only the transcript can tell),
    and the service answers with the pairs it will open."""
    params = [ProofParams.model_validate(p) for p in challenge["params"]["proof"]]
    commitment = ThroughputCommitment(
        machine_id=key.public_hex,
        challenge_id=challenge["challenge_id"],
        nonce=challenge["nonce"],
        gpus=[GpuCommitment(gpu_index=p.gpu_index, chain=secrets.token_hex(32)) for p in params],
    )
    signed = SignedCommitment.sign(commitment, key)
    answer = client.submit_commitment(
        key.public_hex, challenge["challenge_id"], signed.model_dump(mode="json")
    )
    return signed, [GpuPairs.model_validate(p) for p in answer["pairs"]]


def forged_report(
    client: ServiceClient, key: SigningKey, challenge: dict[str, Any], inventory: Inventory
) -> dict[str, Any]:
    signed, pairs = fabricated_commitment(client, key, challenge)
    proof = ThroughputProof(
        commitment=signed.commitment, signature=signed.signature, pairs=pairs, openings=[]
    )
    report = build_report(
        key,
        Challenge.from_json(challenge),
        inventory,
        bf16_figures(inventory, 790.0),
        Integrity(),
        proof.model_dump(mode="json"),
    )
    return dict(
        client.submit_report(key.public_hex, challenge["challenge_id"], report.model_dump(mode="json"))
    )


def forged_report_for_committed(client: ServiceClient, key: SigningKey, challenge: dict[str, Any]) -> Any:
    report = build_report(key, Challenge.from_json(challenge), h100_inventory(1), [], Integrity(), None)
    return client.submit_report(key.public_hex, challenge["challenge_id"], report.model_dump(mode="json"))


def decided(client: ServiceClient, machine_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        doc = client.machine(machine_id)
        if doc["machine"]["state"] not in ("submitted", "challenged"):
            return dict(doc["machine"])
        time.sleep(0.2)
    raise AssertionError(f"machine {machine_id} still undecided after {timeout_s} s")


def codes(machine: dict[str, Any]) -> set[str]:
    return {r["code"] for r in machine["state_reasons"]}


def test_a_host_with_no_gpu_cannot_take_the_cpu_challenge(prod: ProductionStack) -> None:
    key, client = new_machine(prod)
    with pytest.raises(ServiceError) as refused:
        client.create_challenge(key.public_hex, {"gpu_count": 0})
    assert refused.value.status == 422 and refused.value.code == "cpu_claim_refused"
    machine = client.machine(key.public_hex)["machine"]
    assert machine["state"] == "registered" and machine["attempts"]["taken"] == 0


def test_a_host_with_no_gpu_claiming_eight_h100_is_refused(prod: ProductionStack) -> None:
    """The proof is sized for 8 H100s: fabricated roots cannot be opened, whatever NVML says."""
    key, client = new_machine(prod)
    challenge = client.create_challenge(key.public_hex, {"claimed_gpu_model": H100, "gpu_count": 8})
    assert challenge["params"]["claimed_gpu_model"] == "H100 SXM5 80GB"
    assert len(challenge["params"]["proof"]) == 8
    forged_report(client, key, challenge, h100_inventory(8))
    machine = decided(client, key.public_hex)
    assert machine["state"] == "refused", machine
    assert any(c.startswith("proof_") for c in codes(machine)), codes(machine)
    assert machine["attempts"]["failed"] == 1


def test_a_challenge_for_an_l4_answered_as_an_h100_is_refused(prod: ProductionStack) -> None:
    key, client = new_machine(prod)
    challenge = client.create_challenge(key.public_hex, {"claimed_gpu_model": "L4", "gpu_count": 1})
    forged_report(client, key, challenge, h100_inventory(1))
    machine = decided(client, key.public_hex)
    assert machine["state"] == "refused"
    assert "gpu_model_mismatch" in codes(machine), codes(machine)
    report = client.request("GET", f"/machines/{key.public_hex}/reports/{challenge['challenge_id']}")
    findings = next(c for c in report["verification"]["checks"] if c["name"] == "findings")
    assert findings["details"]["upload_info"]["gpu_type"] == "L4"  # scored as claimed
    # A refusal is a failed attempt: the next challenge waits out the cooldown.
    with pytest.raises(ServiceError) as waiting:
        client.create_challenge(key.public_hex, {"claimed_gpu_model": H100, "gpu_count": 1})
    assert waiting.value.status == 429 and waiting.value.code == "challenge_cooldown"


def test_an_abandoned_commitment_is_a_failed_attempt(prod: ProductionStack) -> None:
    """Drawn pairs that hit a forged row cannot be thrown away for a fresh challenge."""
    key, client = new_machine(prod)
    first = client.create_challenge(key.public_hex, {"claimed_gpu_model": H100, "gpu_count": 1})
    fabricated_commitment(client, key, first)  # saw the pairs; walks away without a report
    with pytest.raises(ServiceError) as waiting:
        client.create_challenge(key.public_hex, {"claimed_gpu_model": H100, "gpu_count": 1})
    assert waiting.value.status == 429 and waiting.value.code == "challenge_cooldown"
    attempts = client.machine(key.public_hex)["machine"]["attempts"]
    assert (attempts["taken"], attempts["failed"], attempts["consecutive_failed"]) == (1, 1, 1)
    assert attempts["cooldown_until"] > time.time() + 500
    # ... and the abandoned challenge can no longer be answered.
    with pytest.raises(ServiceError) as gone:
        forged_report_for_committed(client, key, first)
    assert gone.value.code == "challenge_used"
    # A challenge abandoned BEFORE its commitment revealed nothing: no failure, no cooldown.
    key2, client2 = new_machine(prod)
    client2.create_challenge(key2.public_hex, {"claimed_gpu_model": H100, "gpu_count": 1})
    client2.create_challenge(key2.public_hex, {"claimed_gpu_model": H100, "gpu_count": 1})
    attempts2 = client2.machine(key2.public_hex)["machine"]["attempts"]
    assert (attempts2["taken"], attempts2["failed"], attempts2["cooldown_until"]) == (2, 0, None)
