"""Wire models of the proof of throughput: parameters, signed commitment, pairs, openings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from gpuproof.protocol import limits as L
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.keys import SigningKey, verify
from gpuproof.protocol.limits import FiniteFloat, ProofEntry
from gpuproof.protocol.report import Hex64, Hex128, WireModel

PROOF_VERSION = 1
COMMITMENT_DOMAIN = b"gpuproof/throughput-commitment/v1\n"
# Every product fits fp32 exactly when d * h * h < 2**24 (h = q // 2): docs/protocol.md "Exactness".
FP32_EXACT = 2**24

ChallengeId = Annotated[str, Field(min_length=1, max_length=64)]
GpuIndex = Annotated[int, Field(ge=0, le=L.MAX_GPU_INDEX)]
Step = Annotated[int, Field(ge=1, le=L.MAX_PROOF_STEPS)]
Row = Annotated[int, Field(ge=0, lt=L.MAX_PROOF_ROW)]
Path = Annotated[list[Hex64], Field(max_length=L.MAX_MERKLE_DEPTH)]
Entries = Annotated[list[ProofEntry], Field(max_length=L.MAX_PROOF_D)]


class ProofParams(WireModel):
    """What one GPU must compute: set by the service in the challenge, never by the host."""

    version: Literal[1] = 1
    gpu_index: GpuIndex
    n: int = Field(ge=1, le=2**22, description="rows of A_t (independent row chains)")
    d: int = Field(ge=2, le=2**16, description="columns of A_t; B is d x d")
    steps: int = Field(ge=1, le=100_000, description="chained GEMM steps T")
    q: int = Field(ge=3, le=15, description="odd modulus; entries lie in [-(q//2), q//2]")
    checks: int = Field(ge=1, le=4096, description="(step, row) pairs the service opens")
    expected_s: FiniteFloat = Field(gt=0, description="expected time on the claimed GPU")
    deadline_s: FiniteFloat = Field(gt=0, description="service-clock limit from issue to commitment receipt")
    claimed_rate_tflops: FiniteFloat | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> ProofParams:
        if self.q % 2 == 0:
            raise ValueError("q must be odd")
        if self.d % 2:
            raise ValueError("d must be even (two entries are packed per byte)")
        if self.d * self.half * self.half >= FP32_EXACT:
            raise ValueError("d * (q//2)**2 must stay below 2**24 so fp32 sums are exact")
        if self.deadline_s < self.expected_s:
            raise ValueError("deadline_s must not be shorter than expected_s")
        return self

    @property
    def half(self) -> int:
        return self.q // 2

    @property
    def flops(self) -> int:
        """Multiply-adds counted as 2 flops: 2 * n * d * d per step."""
        return 2 * self.n * self.d * self.d * self.steps


class GpuCommitment(WireModel):
    """One GPU's commitment: the Merkle root of A_t for t = 1..T and the chained value H_T."""

    gpu_index: GpuIndex
    roots: list[Hex64] = Field(max_length=L.MAX_PROOF_STEPS)
    chain: Hex64
    elapsed_s: FiniteFloat | None = Field(
        default=None, ge=0, le=L.MAX_DURATION_S, description="self-reported, informative only"
    )


class ThroughputCommitment(WireModel):
    """What the machine signs once every GPU has finished: bound to machine, challenge and nonce."""

    version: Literal[1] = 1
    machine_id: Hex64
    challenge_id: ChallengeId
    nonce: Hex64
    gpus: list[GpuCommitment] = Field(max_length=L.PROTOCOL_MAX_GPUS)

    def signing_bytes(self) -> bytes:
        return COMMITMENT_DOMAIN + canonical_bytes(self.model_dump(mode="json"))

    def gpu(self, gpu_index: int) -> GpuCommitment | None:
        return next((g for g in self.gpus if g.gpu_index == gpu_index), None)


class SignedCommitment(WireModel):
    commitment: ThroughputCommitment
    signature: Hex128

    @classmethod
    def sign(cls, commitment: ThroughputCommitment, key: SigningKey) -> SignedCommitment:
        return cls(commitment=commitment, signature=key.sign(commitment.signing_bytes()).hex())

    def verifies(self) -> bool:
        """True when the machine key named in the commitment signed exactly these bytes."""
        return verify(
            self.commitment.machine_id, self.commitment.signing_bytes(), bytes.fromhex(self.signature)
        )


class Pair(WireModel):
    """A transition to open: row `row` of step `step` (1..T), i.e. A_{step-1}[row] -> A_step[row]."""

    step: Step
    row: Row


class GpuPairs(WireModel):
    gpu_index: GpuIndex
    pairs: list[Pair] = Field(max_length=L.MAX_PROOF_CHECKS)


class RowOpening(WireModel):
    """One opened transition. a_prev is absent for step 1: the verifier regenerates A_0[row]."""

    step: Step
    row: Row
    # Entries are bounded integers on the wire (|entry| <= 2**24, strict: no floats, no booleans),
    # so nothing outside int64's comfortable range ever reaches numpy; the verifier then holds
    # them to the parameters' own range.
    a_prev: Entries | None = None
    a_prev_path: Path = Field(default_factory=list)
    c_row: Entries = Field(description="C_step[row] = A_{step-1}[row] . B, not committed")
    a_row: Entries
    a_path: Path


class GpuOpenings(WireModel):
    gpu_index: GpuIndex
    openings: list[RowOpening] = Field(max_length=L.MAX_PROOF_CHECKS)


class ThroughputProof(WireModel):
    """The whole transcript the committee re-verifies: signed commitment, drawn pairs, openings."""

    commitment: ThroughputCommitment
    signature: Hex128
    pairs: list[GpuPairs] = Field(max_length=L.PROTOCOL_MAX_GPUS)
    openings: list[GpuOpenings] = Field(max_length=L.PROTOCOL_MAX_GPUS)
    pairs_secret: Hex64 | None = Field(
        default=None,
        description="the service's draw secret, published after the openings so anyone can replay the draw",
    )
