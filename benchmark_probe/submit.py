"""The submit flow: register the machine, take a challenge, measure, sign the report, send it."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


RunBench = Callable[[], list[BenchmarkResult]]


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


def prepare_side_by_side(
    inventory: Inventory,
    proof_hook: ProofHook | None,
    run_bench: RunBench,
    *others: Callable[[], Any],
) -> tuple[list[BenchmarkResult], list[Any]]:
    """Everything before the challenge at once: the proof hook's preparation on this thread (the
    GPUs' set-up, and its kernel builds, mostly CPU), the micro-benchmarks beside it (their figures
    are claims the service does not score: they need the GPUs, which the preparation barely uses)
    and `others` (a request, file hashing). Returns the benchmarks and the others' results; an
    error of any is raised once all have ended."""
    with ThreadPoolExecutor(1 + len(others), thread_name_prefix="prepare") as pool:
        bench = pool.submit(run_bench)
        started = [pool.submit(task) for task in others]
        try:
            if proof_hook is not None:
                proof_hook.prepare(inventory)
        finally:  # a failed preparation still waits for the others, whose errors come first
            results = [future.result() for future in started]
            benchmarks = bench.result()
    return benchmarks, results


def submit(
    client: ServiceClient,
    key: SigningKey,
    owner: str,
    region: Region,
    inventory: Inventory,
    integrity: Integrity | Callable[[], Integrity],
    run_bench: RunBench,
    proof_hook: ProofHook | None = None,
    on_stage: Callable[[str], None] = lambda _stage: None,
) -> SubmitOutcome:
    """Register, collect the integrity signals (`integrity` may be the collector), prepare the
    proof's GPUs and run the micro-benchmarks, all at once (`prepare_side_by_side`); then take the
    challenge and answer it."""
    on_stage("register + prepare + bench")
    collect = integrity if callable(integrity) else (lambda: integrity)
    benchmarks, (registration, signals) = prepare_side_by_side(
        inventory,
        proof_hook,
        run_bench,
        lambda: register(client, registration_for(key, owner, region)),
        collect,
    )
    return answer_challenge(
        client, key, inventory, signals, run_bench, proof_hook, on_stage, registration, benchmarks=benchmarks
    )


def answer_challenge(
    client: ServiceClient,
    key: SigningKey,
    inventory: Inventory,
    integrity: Integrity,
    run_bench: RunBench,
    proof_hook: ProofHook | None = None,
    on_stage: Callable[[str], None] = lambda _stage: None,
    registration: str = "already registered",
    *,
    benchmarks: list[BenchmarkResult] | None = None,
) -> SubmitOutcome:
    """Take a challenge, prove at once, sign and send the report (also re-verification). Unless
    `benchmarks` come measured already (with the hook prepared beside them), the hook is prepared
    and the micro-benchmarks run side by side first, before the challenge: nothing but the proof
    falls between the challenge and the report."""
    machine_id = key.public_hex
    if benchmarks is None:
        on_stage("prepare + bench")
        benchmarks, _ = prepare_side_by_side(inventory, proof_hook, run_bench)
    on_stage("challenge")
    request = challenge_request_for(inventory).model_dump(mode="json")
    challenge = Challenge.from_json(client.create_challenge(machine_id, request))
    on_stage("proof")
    proof = proof_hook(client, challenge, inventory) if proof_hook is not None else None
    on_stage("report")
    signed = build_report(key, challenge, inventory, benchmarks, integrity, proof)
    response = client.submit_report(machine_id, challenge.challenge_id, signed.model_dump(mode="json"))
    on_stage("state")
    return SubmitOutcome(
        machine_id, registration, challenge.challenge_id, response, client.machine(machine_id)
    )
