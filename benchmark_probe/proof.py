"""The probe's side of the proof of throughput: prove, commit, open the pairs the service drew."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmark_probe.client import ServiceClient
from benchmark_probe.report import Challenge
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import (
    GpuPairs,
    NumpyExecutor,
    ProofExecutor,
    ProofParams,
    Prover,
    SignedCommitment,
    ThroughputProof,
)
from gpuproof.protocol.report import Inventory

ExecutorFactory = Callable[[Inventory], ProofExecutor]


def default_executor(inventory: Inventory) -> ProofExecutor:
    """CuPy on a host whose inventory found NVIDIA GPUs; numpy otherwise."""
    if inventory.gpus:
        from gpuproof.protocol.proof.cupy_executor import CupyExecutor

        return CupyExecutor()
    return NumpyExecutor()


def challenge_params(challenge: Challenge) -> list[ProofParams]:
    return [ProofParams.model_validate(p) for p in challenge.params.get("proof") or []]


def prove(
    client: ServiceClient,
    key: SigningKey,
    challenge: Challenge,
    executor: ProofExecutor,
    on_commitment: Callable[[SignedCommitment], SignedCommitment] = lambda s: s,
) -> ThroughputProof | None:
    """Run the chained GEMMs, send the signed commitment, open what the service asks for.

    The service times the interval from issuing the challenge to receiving the commitment, so
    nothing else may run between the two. `on_commitment` exists for tests that tamper.
    """
    params = challenge_params(challenge)
    if not params:
        return None
    machine_id = key.public_hex
    # All GPUs at once: the service holds a multi-GPU host to its slowest GPU's deadline, not the sum.
    prover = Prover(
        bytes.fromhex(challenge.nonce), machine_id, challenge.challenge_id, params, executor, parallel=True
    )
    commitment = prover.run()
    signed = on_commitment(SignedCommitment.sign(commitment, key))
    receipt: dict[str, Any] = client.submit_commitment(
        machine_id, challenge.challenge_id, signed.model_dump(mode="json")
    )
    pairs = [GpuPairs.model_validate(p) for p in receipt["pairs"]]
    openings = prover.open(pairs)
    return ThroughputProof(
        commitment=signed.commitment, signature=signed.signature, pairs=pairs, openings=openings
    )


class ProofRunner:
    """The submit flow's proof hook: `prepare` before the challenge is taken (the executor, its GPU
    context, libraries and kernels), then called right after it, inside the service-timed window."""

    def __init__(self, key: SigningKey, executor_factory: ExecutorFactory = default_executor) -> None:
        self.key = key
        self.executor_factory = executor_factory
        self.executor: ProofExecutor | None = None

    def prepare(self, inventory: Inventory) -> None:
        self.executor = self.executor_factory(inventory)
        self.executor.prepare([gpu.index for gpu in inventory.gpus] or [0])

    def __call__(
        self, client: ServiceClient, challenge: Challenge, inventory: Inventory
    ) -> dict[str, Any] | None:
        if self.executor is None:
            self.prepare(inventory)
        assert self.executor is not None
        proof = prove(client, self.key, challenge, self.executor)
        return None if proof is None else proof.model_dump(mode="json")
