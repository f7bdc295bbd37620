"""The claim a challenge fixes: which GPU model and how many GPUs the host says it has.

The claim is made once, when the host asks for a challenge; the service sizes the proof of
throughput for it and stores it in the challenge's `params`. Everything downstream (the verify
worker, calc_point, the verdict's CommitteeUploadInfo, the committee's expected findings) reads
the claim from the challenge, never the names in the report's inventory: a report can only fail
to match its claim, never upgrade it. Pure (no AWS): the service and the committee CLI share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gpuproof.protocol.capacity import CapacityParams, derive_capacity_params
from gpuproof.protocol.capacity.params import COMMIT_STRIDE, GPU_HASH_BYTES_PER_S, cpu_capacity_params
from gpuproof.protocol.proof import ProofParams, codes, derive_params
from gpuproof.protocol.proof.params import EPILOGUE_FRACTION, SETUP_S
from gpuproof.protocol.reasons import Reason
from gpuproof.reference import GpuReference, lookup


@dataclass(frozen=True)
class Claim:
    """`gpu_model` is a reference-table model name (None for a CPU-only claim, gpu_count 0)."""

    gpu_model: str | None
    gpu_count: int

    @property
    def cpu(self) -> bool:
        return self.gpu_count == 0

    @property
    def reference(self) -> GpuReference | None:
        return None if self.gpu_model is None else lookup(self.gpu_model)

    def as_dict(self) -> dict[str, Any]:
        return {"claimed_gpu_model": self.gpu_model, "gpu_count": self.gpu_count}


class ClaimError(ValueError):
    """A claim the service does not accept; `reasons` lists every reason."""

    def __init__(self, reasons: list[Reason]) -> None:
        super().__init__("; ".join(r.message for r in reasons))
        self.reasons = reasons


def make_claim(claimed_gpu_model: str | None, gpu_count: int, *, allow_cpu_backend: bool) -> Claim:
    """The claim of a challenge request, its model name normalised to the reference table.

    Raises ClaimError: a CPU-only claim where the CPU backend is not allowed, a GPU claim without a
    model the table knows (with a rate to size the proof from), or a model named with no GPUs.
    """
    if gpu_count == 0:
        reasons = []
        if claimed_gpu_model:
            reasons.append(
                Reason(
                    "claim_inconsistent",
                    "a GPU model is named but gpu_count is 0; claim the GPUs or no model",
                    "claimed_gpu_model",
                )
            )
        if not allow_cpu_backend:
            reasons.append(
                Reason(
                    "cpu_claim_refused",
                    "gpu_count 0 (a CPU-only host) is not accepted here: this service verifies GPUs",
                    "gpu_count",
                )
            )
        if reasons:
            raise ClaimError(reasons)
        return Claim(None, 0)
    ref = lookup(claimed_gpu_model or "")
    if ref is None or ref.expected_int8_tops is None:
        raise ClaimError(
            [
                Reason(
                    "unknown_gpu_model",
                    f"{claimed_gpu_model!r} is not a model with a reference int8 rate "
                    "(the proof's deadline is sized from it)",
                    "claimed_gpu_model",
                )
            ]
        )
    return Claim(ref.model, gpu_count)


def proof_params_for(claim: Claim, *, cpu_deadline_s: float = 0.0) -> list[ProofParams]:
    """The proof-of-throughput parameters the service gives this claim: one set per GPU, sized
    from the claimed model's expected int8 rate (its fastest exact path): the fewest steps at which
    a card at 0.8 of it misses the deadline by 0.5 s (`pipeline_floor_s`), with the model's own
    epilogue and setup allowances (and its own matrix shape when
    its row has one: only the local stack's TEST DOUBLE GPU does); a CPU claim gets the small
    CPU parameters, its deadline at least `cpu_deadline_s` (CPU_PROOF_DEADLINE_S: the CPU backend
    is a plumbing check for tests and demos, timed on a host it shares with the stack and the other
    provers of a test, not a throughput bound; docs/protocol.md "Deadline"). GPU claims never read it."""
    if claim.cpu:
        params = derive_params(None, cpu=True)
        if cpu_deadline_s > params.deadline_s:
            params = params.model_copy(update={"deadline_s": cpu_deadline_s})
        return [params]
    ref = claim.reference
    rate = None if ref is None else ref.expected_int8_tops
    if ref is None or rate is None:
        raise ClaimError([Reason("unknown_gpu_model", f"{claim.gpu_model!r} has no reference int8 rate")])
    epilogue = EPILOGUE_FRACTION if ref.epilogue_fraction is None else ref.epilogue_fraction
    setup = SETUP_S if ref.setup_s is None else ref.setup_s
    return [
        derive_params(
            rate, gpu_index=i, epilogue_fraction=epilogue, setup_s=setup, n=ref.proof_n, d=ref.proof_d
        )
        for i in range(claim.gpu_count)
    ]


def challenge_params(
    claim: Claim, claimed_ram_bytes: int | None = None, *, cpu_deadline_s: float = 0.0
) -> dict[str, Any]:
    """What a challenge stores and the probe must answer: the claim, its proof parameters, the
    claimed host RAM and the capacity phase (docs/protocol.md §17) for every claimed GPU and it."""
    params = proof_params_for(claim, cpu_deadline_s=cpu_deadline_s)
    capacity = capacity_params_for(claim, claimed_ram_bytes)
    return {
        **claim.as_dict(),
        "claimed_ram_bytes": claimed_ram_bytes,
        "proof": [p.model_dump(mode="json") for p in params],
        "capacity": None if capacity is None else capacity.model_dump(mode="json"),
    }


def claim_of(params: Mapping[str, Any]) -> Claim:
    """The claim stored in a challenge's params. Raises ClaimError when it is missing or unknown
    (a challenge issued before claims were bound, or a model since removed from the table)."""
    count = params.get("gpu_count")
    model = params.get("claimed_gpu_model")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ClaimError([Reason("claim_missing", "the challenge carries no GPU count claim")])
    if count == 0:
        if model:
            raise ClaimError([Reason("claim_inconsistent", "a GPU model is named with gpu_count 0")])
        return Claim(None, 0)
    ref = lookup(model) if isinstance(model, str) else None
    if ref is None or ref.model != model:
        raise ClaimError([Reason("claim_missing", f"the challenge claims an unknown model {model!r}")])
    return Claim(ref.model, count)


def stored_proof_params(params: Mapping[str, Any]) -> list[ProofParams]:
    return [ProofParams.model_validate(p) for p in params.get("proof") or []]


def stored_cpu_deadline(params: Mapping[str, Any]) -> float:
    """The deadline a CPU challenge was issued with (0 if none parses): a committee member, who
    cannot know the service's CpuProofDeadlineSeconds, holds a CPU claim's parameters to it (never
    below the derived one) and recomputes everything else."""
    try:
        stored = stored_proof_params(params)
    except ValueError:
        return 0.0
    return stored[0].deadline_s if len(stored) == 1 else 0.0


def params_reasons(params: Mapping[str, Any], claim: Claim, *, cpu_deadline_s: float = 0.0) -> list[Reason]:
    """Why a challenge's stored proof parameters are not the ones its claim gets (empty if they
    are): the verify worker recomputes them rather than trusting what was stored."""
    try:
        stored = stored_proof_params(params)
    except ValidationError as exc:
        unsupported = codes.unsupported_version(exc)
        if unsupported is not None:
            return [Reason(codes.VERSION_UNSUPPORTED, unsupported)]
        return [Reason("challenge_params_mismatch", "the challenge's proof parameters do not parse")]
    except ValueError:
        return [Reason("challenge_params_mismatch", "the challenge's proof parameters do not parse")]
    expected = proof_params_for(claim, cpu_deadline_s=cpu_deadline_s)
    if stored != expected:
        return [
            Reason(
                "challenge_params_mismatch",
                f"the challenge's proof parameters are not those of its claim "
                f"({claim.gpu_count} x {claim.gpu_model or 'CPU'})",
            )
        ]
    return []


def stored_capacity_params(params: Mapping[str, Any]) -> CapacityParams | None:
    """The capacity phase a challenge stored (None: issued before the phase was wired, or none)."""
    doc = params.get("capacity")
    return None if doc is None else CapacityParams.model_validate(doc)


def capacity_params_reasons(params: Mapping[str, Any], claim: Claim) -> list[Reason]:
    """Why a challenge's stored capacity phase is not the one its claim and claimed RAM get (the
    verify worker recomputes it, as it does the proof parameters)."""
    ram = params.get("claimed_ram_bytes")
    ram = ram if isinstance(ram, int) and not isinstance(ram, bool) else None
    try:
        stored = stored_capacity_params(params)
    except (ValidationError, ValueError):
        return [Reason("capacity_params_mismatch", "the challenge's capacity parameters do not parse")]
    if stored != capacity_params_for(claim, ram):
        return [Reason("capacity_params_mismatch", "the challenge's capacity parameters are not its claim's")]
    return []


def verified_claim(verification: Mapping[str, Any]) -> Claim:
    """The claim a verification held its report to (`verification["claim"]`); ClaimError if none.
    Challenges expire from their table a day after expiry; the verification keeps the claim."""
    doc = verification.get("claim")
    if not isinstance(doc, Mapping):
        raise ClaimError([Reason("claim_missing", "the verification records no claim")])
    return claim_of(doc)


def capacity_params_for(
    claim: Claim,
    host_ram_bytes: int | None = None,
    *,
    hash_bytes_per_s: float = GPU_HASH_BYTES_PER_S,
    host_hash_bytes_per_s: float | None = None,
    commit_stride: int = COMMIT_STRIDE,
) -> CapacityParams | None:
    """The capacity phase (docs/protocol.md §17) this claim gets: every claimed GPU fills 90% of the
    claimed model's VRAM, sized from its reference row (memory, bandwidth, expected int8 rate), and
    host RAM when a RAM figure is claimed. A CPU claim (accepted only where ALLOW_CPU_BACKEND) gets
    the fixed test-size phase `cpu_capacity_params` (no VRAM; the wiring end to end).
    `hash_bytes_per_s` (device SHA-256 per GPU; `host_hash_bytes_per_s` over host RAM's rows) and
    `commit_stride` differ from the service's only in what-if estimates (scripts/probe_estimate.py)."""
    if claim.cpu:
        return cpu_capacity_params()
    ref = claim.reference
    if ref is not None and ref.test_size_capacity:
        return cpu_capacity_params(gpus=claim.gpu_count)
    if ref is None or ref.expected_int8_tops is None or ref.mem_bw_gbs is None:
        raise ClaimError(
            [Reason("unknown_gpu_model", f"{claim.gpu_model!r} has no reference rate or bandwidth")]
        )
    return derive_capacity_params(
        gpu_count=claim.gpu_count,
        mem_gb=ref.mem_gb,
        rate_tops=ref.expected_int8_tops,
        bandwidth_gbs=ref.mem_bw_gbs,
        host_ram_bytes=host_ram_bytes,
        hash_bytes_per_s=hash_bytes_per_s,
        host_hash_bytes_per_s=host_hash_bytes_per_s,
        commit_stride=commit_stride,
    )
