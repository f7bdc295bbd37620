"""The submit flow: register the machine, take a challenge, measure, sign the report, send it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from benchmark_probe.client import ServiceClient, ServiceError
from benchmark_probe.report import Challenge, build_report
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.machine import ChallengeRequest, MachineRegistration, Region, bond_message
from gpuproof.protocol.report import BenchmarkResult, Integrity, Inventory


class ProofHook(Protocol):
    """The proof of throughput: `prepare` pays one-off costs before the challenge is taken; the call
    proves, commits and opens right after it is issued, because the service times it from then."""

    def prepare(self, inventory: Inventory) -> None: ...

    def __call__(
        self, client: ServiceClient, challenge: Challenge, inventory: Inventory
    ) -> dict[str, Any] | None: ...


RunBench = Callable[[Challenge], list[BenchmarkResult]]


@dataclass(frozen=True)
class SubmitOutcome:
    machine_id: str
    registration: str
    challenge_id: str
    report_response: Any
    machine: Any


def registration_for(key: SigningKey, owner: str, region: Region) -> MachineRegistration:
    machine_id = key.public_hex
    signature = key.sign(bond_message(machine_id, owner)).hex()
    return MachineRegistration(machine_id=machine_id, owner=owner, region=region, bond_signature=signature)


def challenge_request_for(inventory: Inventory) -> ChallengeRequest:
    model = inventory.gpus[0].name[:64] if inventory.gpus and inventory.gpus[0].name else None
    ram = inventory.host.ram_bytes
    return ChallengeRequest(
        claimed_gpu_model=model, gpu_count=len(inventory.gpus), claimed_ram_bytes=ram if ram > 0 else None
    )


def register(client: ServiceClient, registration: MachineRegistration) -> str:
    try:
        client.register(registration.model_dump(mode="json"))
    except ServiceError as exc:
        # Only "this machine is registered, to this owner" lets the submission go on; a registration
        # naming another owner (machine_owner_mismatch) or a replayed nonce stops it.
        if exc.status == 409 and exc.code == "machine_exists":
            return "already registered"
        raise
    return "registered"


def submit(
    client: ServiceClient,
    key: SigningKey,
    owner: str,
    region: Region,
    inventory: Inventory,
    integrity: Integrity,
    run_bench: RunBench,
    proof_hook: ProofHook | None = None,
    on_stage: Callable[[str], None] = lambda _stage: None,
) -> SubmitOutcome:
    on_stage("register")
    registration = register(client, registration_for(key, owner, region))
    return answer_challenge(client, key, inventory, integrity, run_bench, proof_hook, on_stage, registration)


def answer_challenge(
    client: ServiceClient,
    key: SigningKey,
    inventory: Inventory,
    integrity: Integrity,
    run_bench: RunBench,
    proof_hook: ProofHook | None = None,
    on_stage: Callable[[str], None] = lambda _stage: None,
    registration: str = "already registered",
) -> SubmitOutcome:
    """Take a challenge, prove at once, measure, sign and send the report (also re-verification)."""
    machine_id = key.public_hex
    if proof_hook is not None:
        on_stage("prepare")
        proof_hook.prepare(inventory)
    on_stage("challenge")
    request = challenge_request_for(inventory).model_dump(mode="json")
    challenge = Challenge.from_json(client.create_challenge(machine_id, request))
    on_stage("proof")
    proof = proof_hook(client, challenge, inventory) if proof_hook is not None else None
    on_stage("bench")
    benchmarks = run_bench(challenge)
    on_stage("report")
    signed = build_report(key, challenge, inventory, benchmarks, integrity, proof)
    response = client.submit_report(machine_id, challenge.challenge_id, signed.model_dump(mode="json"))
    on_stage("state")
    return SubmitOutcome(
        machine_id, registration, challenge.challenge_id, response, client.machine(machine_id)
    )
