"""The probe's side of the capacity phase (docs/protocol.md §17): after the proof of throughput,
open the phase, fill every target from the phase nonce, commit, answer each read round as it
opens, and send the openings the service's draw secret names.

Only the numpy prover exists (`gpuproof.protocol.capacity.prover`, CPU executor): the CUDA fill
is NOT written, so a phase too large for host memory (a GPU-size claim) is skipped, said so, and
the service records `capacity_missing` (in shadow mode it does not refuse). The prover books the
modelled seconds of its `SimulatedDevice`s (the hardware double); nothing reads them here: the
service times every message on its own clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmark_probe.client import ServiceClient
from benchmark_probe.report import Challenge
from gpuproof.protocol.capacity import (
    CapacityParams,
    CapacityRound,
    CapacityTranscript,
    SignedCapacityCommitment,
    draw_walks,
)
from gpuproof.protocol.capacity.device import SimulatedDevice
from gpuproof.protocol.capacity.draws import all_spots
from gpuproof.protocol.capacity.prover import CapacityProver
from gpuproof.protocol.keys import SigningKey

# The numpy prover holds every layer of a fill while it opens the walks: fills above this are
# skipped on the CPU executor (a GPU-size phase needs the CUDA fill, not written yet).
MAX_NUMPY_FILL_BYTES = 64 * 1024 * 1024

ProverFactory = Callable[[bytes, str, str, CapacityParams, Mapping[int, SimulatedDevice]], CapacityProver]


def numpy_devices(params: CapacityParams) -> dict[int, SimulatedDevice]:
    """One numpy store per target (the hardware double's figures are placeholders: unread here)."""
    return {
        tp.target: SimulatedDevice(f"numpy-{tp.target}", 4 * tp.fill_bytes, 1e9, 1e-6, 1e9, 1e9)
        for tp in params.targets
    }


@dataclass
class CapacityOutcome:
    ran: bool
    note: str
    rounds: int = 0
    openings_bytes: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)


def capacity_params(challenge: Challenge) -> CapacityParams | None:
    doc = challenge.params.get("capacity")
    return None if doc is None else CapacityParams.model_validate(doc)


def run_capacity(
    client: ServiceClient,
    key: SigningKey,
    challenge: Challenge,
    prover_factory: ProverFactory = CapacityProver,
    on_round: Callable[[CapacityRound], None] = lambda _r: None,
) -> CapacityOutcome:
    """The whole interactive phase against the service. `prover_factory` and `on_round` exist for
    tests (adversarial provers, a slow store)."""
    params = capacity_params(challenge)
    if params is None:
        return CapacityOutcome(False, "the challenge carries no capacity phase")
    total = sum(tp.fill_bytes for tp in params.targets)
    if total > MAX_NUMPY_FILL_BYTES:
        return CapacityOutcome(
            False,
            f"capacity phase skipped: its fills hold {total} bytes and only the numpy prover exists "
            "(no GPU executor yet); the service records capacity_missing",
        )
    machine_id, challenge_id = key.public_hex, challenge.challenge_id
    opened = client.open_capacity(machine_id, challenge_id)
    nonce = bytes.fromhex(opened["nonce"])
    prover = prover_factory(nonce, machine_id, challenge_id, params, numpy_devices(params))
    signed = SignedCapacityCommitment.sign(prover.fill(), key)
    step: dict[str, Any] = client.submit_capacity_commitment(
        machine_id, challenge_id, signed.model_dump(mode="json")
    )
    outcome = CapacityOutcome(True, "capacity phase answered", steps=[step])
    nonces: dict[int, bytes] = {}
    while step.get("round"):
        opened_round = CapacityRound.model_validate(step["round"])
        nonces[opened_round.round] = bytes.fromhex(opened_round.nonce)
        on_round(opened_round)
        answer = prover.answer(opened_round)
        step = client.submit_capacity_answer(machine_id, challenge_id, answer.model_dump(mode="json"))
        outcome.steps.append(step)
        outcome.rounds += 1
    secret = bytes.fromhex(str(step["draw_secret"]))
    data = signed.commitment.signing_bytes()
    walks = {tp.target: draw_walks(data, secret, tp) for tp in params.targets}
    openings = prover.open(nonces, all_spots(data, secret, params), walks)
    accepted = client.submit_capacity_openings(
        machine_id, challenge_id, CapacityTranscript(targets=list(openings)).model_dump(mode="json")
    )
    outcome.openings_bytes = int(accepted["stored_bytes"])
    return outcome
