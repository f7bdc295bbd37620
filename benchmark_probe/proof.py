"""The probe's side of the proof of throughput: prove, commit, open the pairs the service drew."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmark_probe.capacity import (
    CapacityOutcome,
    CupyCapacityFactory,
    Delivery,
    ProverFactory,
    capacity_params,
    default_prover,
    run_capacity,
)
from benchmark_probe.client import ServiceClient, upload_transcript
from benchmark_probe.report import Challenge
from gpuproof.protocol.delivery import MEDIA_TYPES, encode_binary
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
    """CuPy on a host whose inventory found NVIDIA GPUs; numpy otherwise. CuPy comes from the
    backend's loader (`backends.cupy.load_cupy`), as the benchmarks' does: CUDA_DEVICE_ORDER is
    PCI_BUS_ID before CUDA starts (the executor's device ordinals are NVML's indices), and a test
    that answers the import with the CUDA test double reaches the proof too."""
    if inventory.gpus:
        from benchmark_probe.backends.cupy import load_cupy
        from gpuproof.protocol.proof.cupy_executor import CupyExecutor

        return CupyExecutor(cupy=load_cupy())
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
    answered = prove_and_receipt(client, key, challenge, executor, on_commitment)
    return None if answered is None else answered[0]


def prove_and_receipt(
    client: ServiceClient,
    key: SigningKey,
    challenge: Challenge,
    executor: ProofExecutor,
    on_commitment: Callable[[SignedCommitment], SignedCommitment] = lambda s: s,
) -> tuple[ThroughputProof, dict[str, Any]] | None:
    """`prove`, with the service's answer to the commitment (its pairs and transcript upload)."""
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
    proof = ThroughputProof(
        commitment=signed.commitment, signature=signed.signature, pairs=pairs, openings=openings
    )
    return proof, receipt


def deliver(proof: ThroughputProof, receipt: dict[str, Any], params: list[ProofParams]) -> dict[str, Any]:
    """What the report's `proof` carries: a reference to the binary transcript uploaded where the
    commitment's answer says (the service's size bound and checksum apply; the reference carries
    the commitment and pairs), else (a service without uploads) the proof inline."""
    upload = receipt.get("transcript_upload")
    if not upload:
        inline: dict[str, Any] = proof.model_dump(mode="json")
        return inline
    data, ref = encode_binary(proof, params)
    upload_transcript(upload, data, MEDIA_TYPES[2])
    doc: dict[str, Any] = ref.model_dump(mode="json")
    return doc


class ProofRunner:
    """The submit flow's proof hook: `prepare` before the challenge is taken (the executor, its GPU
    context, libraries and kernels), then called right after it, inside the service-timed window."""

    def __init__(
        self,
        key: SigningKey,
        executor_factory: ExecutorFactory = default_executor,
        capacity_prover: ProverFactory | None = None,
        capacity_delivery: Delivery = "auto",
    ) -> None:
        self.key = key
        self.executor_factory = executor_factory
        self.executor: ProofExecutor | None = None
        self.capacity_prover = capacity_prover
        self.capacity_delivery: Delivery = capacity_delivery
        self.capacity: CapacityOutcome | None = None

    def prepare(self, inventory: Inventory) -> None:
        """The throughput executor prepared (its contexts and kernels: they must be ready when the
        challenge is taken), the capacity phase's GPUs warmed beside it and after it (its kernels
        built and cuBLAS warmed on every lane it may use, `CupyCapacityFactory.warm_beside`): that
        build goes on through the throughput proof and is waited for before the capacity phase is
        opened, so it is in neither service-timed window and off the whole probe's path."""
        self.executor = self.executor_factory(inventory)
        if self.capacity_prover is None:
            self.capacity_prover = default_prover(self.executor)
        gpus = [gpu.index for gpu in inventory.gpus] or [0]
        prepare_gpus(self.executor, self.capacity_prover, gpus, wait=False)

    def __call__(
        self, client: ServiceClient, challenge: Challenge, inventory: Inventory
    ) -> dict[str, Any] | None:
        if self.executor is None:
            self.prepare(inventory)
        assert self.executor is not None
        if self.capacity_prover is None:
            self.capacity_prover = default_prover(self.executor)
        factory = self.capacity_prover if isinstance(self.capacity_prover, CupyCapacityFactory) else None
        phase = capacity_params(challenge)
        if factory is not None and phase is not None:
            factory.reserve(phase)  # host RAM's pages touched beside the throughput proof
        try:
            answered = prove_and_receipt(client, self.key, challenge, self.executor)
            if answered is None:
                return None
            doc = deliver(*answered, challenge_params(challenge))
            # The capacity phase after the throughput proof is opened and delivered (its memory
            # freed): on the proof's backend (CuPy on GPU hosts, numpy on the CPU backend).
            self.capacity = run_capacity(
                client, self.key, challenge, self.capacity_prover, delivery=self.capacity_delivery
            )
        finally:
            if factory is not None:  # a reservation the phase did not take (it failed or was skipped)
                factory.release()
        return doc


def prepare_gpus(
    executor: ProofExecutor, capacity_prover: ProverFactory, gpus: list[int], *, wait: bool = True
) -> None:
    """The throughput executor prepared and, beside it (another thread: NVRTC builds release the
    GIL), the capacity phase's GPUs warmed when its prover is the CuPy one (`CupyCapacityFactory`);
    with `wait` False that warm-up is left running (`CupyCapacityFactory.warmed` waits for it)."""
    factory = capacity_prover if isinstance(capacity_prover, CupyCapacityFactory) else None
    if factory is not None:
        factory.warm_beside(gpus)
    executor.prepare(gpus)
    if factory is not None and wait:
        factory.warmed()
