"""The probe's side of the capacity phase (docs/protocol.md §17): after the proof of throughput,
open the phase, fill every target from the phase nonce, commit, answer each read round as it
opens, and send the openings the service's draw secret names.

Two provers: on the GPU backend (a host whose inventory found NVIDIA GPUs: the proof of throughput
runs `CupyExecutor`) the CuPy prover (`gpuproof.protocol.capacity.cupy_prover`, through
`CupyCapacityFactory`: kernels built and the memory budget checked BEFORE the phase is opened, so a
fill that does not fit is skipped, said so, and never started); on the CPU backend the numpy prover
(`gpuproof.protocol.capacity.prover`), which holds every layer while it opens the walks and so
skips phases whose fills exceed MAX_NUMPY_FILL_BYTES. A skipped phase is recorded by the service as
`capacity_missing` (in shadow mode not a refusal). The CuPy prover has run only on the CUDA test
double so far (docs/measurements.md). The numpy prover books the modelled seconds of its
`SimulatedDevice`s (the hardware double); nothing reads them here: the service times every message
on its own clock.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from benchmark_probe.client import ServiceClient, upload_transcript
from benchmark_probe.report import Challenge
from gpuproof.protocol.capacity import (
    CapacityAnswer,
    CapacityCommitment,
    CapacityParams,
    CapacityRound,
    SignedCapacityCommitment,
    TargetOpenings,
    Walk,
    draw_walks,
)
from gpuproof.protocol.capacity.device import SimulatedDevice
from gpuproof.protocol.capacity.draws import all_spots
from gpuproof.protocol.capacity.models import OPENINGS_MEDIA_TYPE
from gpuproof.protocol.capacity.prover import CapacityProver
from gpuproof.protocol.capacity.wire import encode_head, encode_host_part, encode_openings, has_host_part
from gpuproof.protocol.delivery import TranscriptRef
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.limits import MAX_CAPACITY_OPENINGS_STORED_BYTES

if TYPE_CHECKING:
    from gpuproof.protocol.capacity.cupy_prover import (
        CupyCapacityOptions,
        CupyCapacityProver,
        CupyCapacityRuntime,
        HostReservation,
        MemoryPlan,
    )
    from gpuproof.protocol.proof import ProofExecutor

# The numpy prover holds every layer of a fill while it opens the walks: fills above this are
# skipped on the CPU backend (a GPU-size phase runs on the CuPy prover of the GPU backend).
MAX_NUMPY_FILL_BYTES = 64 * 1024 * 1024
Delivery = Literal["auto", "inline", "upload"]
log = logging.getLogger(__name__)


class PhaseProver(Protocol):
    """What `run_capacity` drives: the numpy `CapacityProver` or the CuPy `CupyCapacityProver`."""

    def fill(self) -> CapacityCommitment: ...

    def answer(self, round_: CapacityRound) -> CapacityAnswer: ...

    def open(
        self,
        round_nonces: Mapping[int, bytes],
        spots: Mapping[int, Mapping[int, Sequence[int]]],
        walks: Mapping[int, Sequence[Walk]],
        ready: Callable[[list[TargetOpenings]], None] | None = None,
    ) -> list[TargetOpenings]: ...


ProverFactory = Callable[[bytes, str, str, CapacityParams, Mapping[int, SimulatedDevice]], PhaseProver]


class CupyCapacityFactory:
    """The GPU backend's capacity prover: one CuPy runtime (a worker thread per GPU) for every phase.

    `prepare` builds the kernels, warms cuBLAS and checks the memory budget on every GPU the phase
    uses, before the phase is opened (the fill deadline runs from the opening). The simulated
    devices `run_capacity` passes are not used: the GPUs are real (or the CUDA test double)."""

    def __init__(self, runtime: CupyCapacityRuntime, options: CupyCapacityOptions | None = None) -> None:
        self.runtime, self.options = runtime, options
        self._warming: Future[None] | None = None
        self._reserved: HostReservation | None = None

    def warm(self, gpus: Sequence[int]) -> None:
        """The kernels built and cuBLAS warmed on every lane the phase may use on these GPUs
        (targets), whatever its parameters; `prepare` then finds them built."""
        from gpuproof.protocol.capacity.cupy_prover import HOST_LANES

        self.runtime.prepare([self.runtime.device_of(g) for g in gpus], range(1 + HOST_LANES))

    def warm_beside(self, gpus: Sequence[int]) -> None:
        """`warm` started on a thread of its own, returning at once (the probe's proof hook, before
        the challenge): a first run's NVRTC build of the capacity source (≈ 7.5 s of one CPU core,
        docs/measurements.md) then runs beside the registration, the micro-benchmarks and the whole
        throughput proof (≈ 16 s of GPU work whose host side is a few launches) instead of before
        the challenge. `warmed` (and `prepare`, before the phase is opened) waits for it."""
        from gpuproof.protocol.capacity.cupy_prover import lower_priority

        pool = ThreadPoolExecutor(1, thread_name_prefix="capacity-warm", initializer=lower_priority)
        self._warming = pool.submit(self.warm, list(gpus))
        pool.shutdown(wait=False)

    def warmed(self) -> None:
        """Wait for `warm_beside`'s build, raising its error (nothing to wait for without one)."""
        warming, self._warming = self._warming, None
        if warming is not None:
            warming.result()

    def reserve(self, params: CapacityParams) -> None:
        """Host RAM's fill array allocated and first-touched from now on, in the background
        (`cupy_prover.reserve_host`): the probe calls it right after taking the challenge, so the
        pages are touched beside the throughput proof (≈ 32 GB/s, ESTIMATE: 1 TiB takes ≈ 34 s, which
        the fill would otherwise wait for) instead of after the capacity phase is opened. Nothing
        is allocated when host RAM does not hold it now; `release` gives it back."""
        from gpuproof.protocol.capacity.cupy_prover import reserve_host

        self.release()
        self._reserved = reserve_host(params, self.options)

    def release(self) -> None:
        """A reservation the phase did not take, given back (nothing to do without one)."""
        reserved, self._reserved = self._reserved, None
        if reserved is not None:
            reserved.release()

    def prepare(self, params: CapacityParams) -> MemoryPlan:
        """The budget, refused with `CapacityMemoryError` (its numbers) when it does not fit (host
        RAM counted with what the reservation already holds); first the kernels `warm_beside`
        builds, waited for."""
        from gpuproof.protocol.capacity.cupy_prover import CapacityMemoryError, plan_memory

        self.warmed()
        ram = self._reserved.host_ram() if self._reserved is not None else None
        plan = plan_memory(params, self.runtime, self.options, host_ram=ram)
        if not plan.fits:
            self.release()
            raise CapacityMemoryError(plan.describe())
        self.runtime.prepare([b.device for b in plan.devices], plan.lane_ids)
        return plan

    def __call__(
        self,
        nonce: bytes,
        machine_id: str,
        challenge_id: str,
        params: CapacityParams,
        _devices: Mapping[int, SimulatedDevice],
    ) -> CupyCapacityProver:
        from gpuproof.protocol.capacity.cupy_prover import CupyCapacityProver

        reserved, self._reserved = self._reserved, None
        return CupyCapacityProver(
            nonce,
            machine_id,
            challenge_id,
            params,
            runtime=self.runtime,
            options=self.options,
            reserved=reserved,
        )


def default_prover(executor: ProofExecutor | None) -> ProverFactory:
    """The CuPy prover where the proof of throughput runs on CuPy (the GPU backend), on the same
    CuPy module and GPU map; the numpy prover otherwise."""
    from gpuproof.protocol.proof.cupy_executor import CupyExecutor

    if isinstance(executor, CupyExecutor):
        from gpuproof.protocol.capacity.cupy_prover import CupyCapacityRuntime

        return CupyCapacityFactory(CupyCapacityRuntime(executor.cupy, executor.devices))
    return CapacityProver


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
    delivery: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    host_reserved: bool = False  # host RAM's array came reserved ahead (`CupyCapacityFactory.reserve`)


def openings_reference(*parts: bytes) -> TranscriptRef:
    """What the openings route takes for uploaded openings: format 2 (binary), the SHA-256 and size
    of the whole, and each object's size when they were uploaded in two parts."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    size = sum(len(p) for p in parts)
    sizes = [len(p) for p in parts] if len(parts) > 1 else None
    return TranscriptRef(version=2, transcript_sha256=digest.hexdigest(), transcript_bytes=size, parts=sizes)


class HeadUpload:
    """Two-part openings (docs/protocol.md §17.10): the GPU targets' openings encoded and uploaded
    on a thread of their own as soon as the prover has them (`ready`), while host RAM's are still
    recomputed; then host RAM's section goes to the second upload. Only when the head alone is
    already over the inline bound (so the whole will be uploaded) and the service offered both."""

    def __init__(self, params: CapacityParams, step: Mapping[str, Any], delivery: Delivery) -> None:
        self.params, self.delivery = params, delivery
        self.upload, self.host_upload = step.get("openings_upload"), step.get("openings_host_upload")
        self.head: bytes | None = None
        self._sent: Future[None] | None = None
        self._pool: ThreadPoolExecutor | None = None

    def ready(self, gpu_openings: list[TargetOpenings]) -> None:
        if not (self.upload and self.host_upload and has_host_part(self.params)) or self.delivery == "inline":
            return
        head = encode_head(gpu_openings, self.params)
        if self.delivery == "auto" and len(head) <= MAX_CAPACITY_OPENINGS_STORED_BYTES:
            return  # the whole may still go inline: decided once it is all there
        self.head = head
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="openings-upload")
        self._sent = self._pool.submit(upload_transcript, self.upload, head, OPENINGS_MEDIA_TYPE)

    def finish(self, openings: Sequence[TargetOpenings]) -> TranscriptRef | None:
        """Host RAM's part uploaded and the head's upload waited for (its error raised): the
        reference to both; None when no head was started."""
        if self.head is None or self._sent is None or self._pool is None or not self.host_upload:
            return None
        host = next(
            o for o in openings if o.target == next(t.target for t in self.params.targets if t.is_host)
        )
        tail = encode_host_part(host, self.params)
        try:
            upload_transcript(self.host_upload, tail, OPENINGS_MEDIA_TYPE)
        finally:
            self._sent.result()
            self._pool.shutdown()
        return openings_reference(self.head, tail)


def capacity_params(challenge: Challenge) -> CapacityParams | None:
    doc = challenge.params.get("capacity")
    return None if doc is None else CapacityParams.model_validate(doc)


def run_capacity(
    client: ServiceClient,
    key: SigningKey,
    challenge: Challenge,
    prover_factory: ProverFactory = CapacityProver,
    on_round: Callable[[CapacityRound], None] = lambda _r: None,
    delivery: Delivery = "auto",
) -> CapacityOutcome:
    """The whole interactive phase against the service. `prover_factory` and `on_round` exist for
    tests (adversarial provers, a slow store). The openings are the binary transcript (wire.py);
    they go inline (base64) when they fit the service's inline bound, else (or with
    `delivery="upload"`) to the presigned POST the last round's answer carries, followed by a
    reference."""
    params = capacity_params(challenge)
    if params is None:
        return CapacityOutcome(False, "the challenge carries no capacity phase")
    total = sum(tp.fill_bytes for tp in params.targets)
    if isinstance(prover_factory, CupyCapacityFactory):
        from gpuproof.protocol.capacity.cupy_prover import CapacityMemoryError

        try:
            prover_factory.prepare(params)
        except CapacityMemoryError as exc:
            note = (
                f"capacity phase NOT run: {exc}; the service records capacity_missing "
                "(VRAM and RAM not proven)"
            )
            log.warning(note)
            return CapacityOutcome(False, note)
    elif total > MAX_NUMPY_FILL_BYTES:
        note = (
            f"capacity phase NOT run: its fills hold {total} bytes, more than the numpy prover of the "
            "CPU backend holds (the GPU backend's CuPy prover runs GPU-size phases); the service "
            "records capacity_missing (VRAM and RAM not proven)"
        )
        log.warning(note)
        return CapacityOutcome(False, note)
    machine_id, challenge_id = key.public_hex, challenge.challenge_id
    opened = client.open_capacity(machine_id, challenge_id)
    nonce = bytes.fromhex(opened["nonce"])
    prover = prover_factory(nonce, machine_id, challenge_id, params, numpy_devices(params))
    reserved = bool(getattr(prover, "host_reserved", False))
    signed = SignedCapacityCommitment.sign(prover.fill(), key)
    step: dict[str, Any] = client.submit_capacity_commitment(
        machine_id, challenge_id, signed.model_dump(mode="json")
    )
    outcome = CapacityOutcome(True, "capacity phase answered", steps=[step], host_reserved=reserved)
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
    head = HeadUpload(params, step, delivery)
    openings = prover.open(nonces, all_spots(data, secret, params), walks, ready=head.ready)
    parts = head.finish(openings)
    if parts is not None:  # uploaded in two parts, the GPU targets' beside host RAM's recompute
        accepted = client.submit_capacity_openings(
            machine_id, challenge_id, reference=parts.model_dump(mode="json", exclude_none=True)
        )
        outcome.delivery = "upload in two parts"
        outcome.openings_bytes = int(accepted["stored_bytes"])
        return outcome
    raw = encode_openings(openings, params)
    fits = len(raw) <= MAX_CAPACITY_OPENINGS_STORED_BYTES
    upload = step.get("openings_upload")
    if delivery == "inline" or (delivery == "auto" and (fits or not upload)):
        accepted = client.submit_capacity_openings(machine_id, challenge_id, openings=raw)
        outcome.delivery = "inline"
    else:
        if not upload:
            raise ValueError("the service offered no upload for the capacity openings")
        upload_transcript(upload, raw, OPENINGS_MEDIA_TYPE)
        ref = openings_reference(raw).model_dump(mode="json", exclude_none=True)
        accepted = client.submit_capacity_openings(machine_id, challenge_id, reference=ref)
        outcome.delivery = "upload"
    outcome.openings_bytes = int(accepted["stored_bytes"])
    return outcome
