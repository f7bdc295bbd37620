"""Wire models of the proof of throughput (v2): parameters, signed commitment, pairs, transcript.

The transcript (roots and openings per GPU) has two encodings of these same models: JSON (inline
in a report, CPU sizes) and the binary layout of docs/protocol.md §7 (`wire.py`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from gpuproof.protocol import limits as L
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.keys import SigningKey, verify
from gpuproof.protocol.limits import FiniteFloat, ProofEntry
from gpuproof.protocol.report import Hex64, Hex128, WireModel

PROOF_VERSION = 2
COMMITMENT_DOMAIN = b"gpuproof/throughput-commitment/v2\n"
Q = 17
MAX_D = 8192  # |C| <= d*64 + 8 < 2**24 and |k| < 2**15 for every d up to here
VERSION_UNSUPPORTED = "proof_version_unsupported"  # codes.VERSION_UNSUPPORTED (no import cycle)

ChallengeId = Annotated[str, Field(min_length=1, max_length=64)]
GpuIndex = Annotated[int, Field(ge=0, le=L.MAX_GPU_INDEX)]
Step = Annotated[int, Field(ge=1, le=L.MAX_PROOF_STEPS)]
Row = Annotated[int, Field(ge=0, lt=L.MAX_PROOF_ROW)]
Path = Annotated[list[Hex64], Field(max_length=L.MAX_MERKLE_DEPTH)]
Entries = Annotated[list[ProofEntry], Field(max_length=MAX_D)]


def _only_v2(data: Any, what: str) -> Any:
    """Refuse another protocol version with its own error type (`proof_version_unsupported`),
    before the fields are looked at: a v1 document has other fields and would otherwise read as
    merely malformed."""
    if isinstance(data, dict) and "version" in data and data["version"] != PROOF_VERSION:
        raise PydanticCustomError(
            VERSION_UNSUPPORTED,
            "{what} is protocol version {got}; only version 2 is accepted (v1 is forgeable)",
            {"what": what, "got": repr(data["version"])},
        )
    return data


class ProofParams(WireModel):
    """What one GPU must compute: set by the service in the challenge, never by the host."""

    version: Literal[2] = 2
    gpu_index: GpuIndex
    n: int = Field(ge=1, le=L.MAX_PROOF_ROW, description="rows of A_t")
    d: int = Field(ge=8, le=MAX_D, description="columns of A_t (a multiple of 8); B is d x d")
    steps: int = Field(ge=1, le=L.MAX_PROOF_STEPS, description="chained GEMM steps T")
    q: Literal[17] = Field(default=17, description="modulus; entries lie in [-8, 8]")
    checks: int = Field(ge=1, le=L.MAX_PROOF_CHECKS, description="(step, row) pairs the service opens")
    expected_s: FiniteFloat = Field(gt=0, description="expected time on the claimed GPU")
    deadline_s: FiniteFloat = Field(gt=0, description="service-clock limit from issue to commitment receipt")
    claimed_rate_tops: FiniteFloat | None = Field(
        default=None, gt=0, description="the claimed model's expected dense int8 rate (TOPS)"
    )

    @model_validator(mode="before")
    @classmethod
    def _version(cls, data: Any) -> Any:
        return _only_v2(data, "the proof parameters")

    @model_validator(mode="after")
    def _consistent(self) -> ProofParams:
        if self.d % 8:
            raise ValueError("d must be a multiple of 8 (8 entries are packed in 5 bytes)")
        if self.deadline_s < self.expected_s:
            raise ValueError("deadline_s must not be shorter than expected_s")
        return self

    @property
    def half(self) -> int:
        return self.q // 2

    @property
    def c_bound(self) -> int:
        """|C_t| <= d*h*h + h for honest rows: the product plus the anchor."""
        return self.d * self.half * self.half + self.half

    @property
    def k_bound(self) -> int:
        """|k| <= ceil(c_bound / 17), k = floor(C / 17)."""
        return math.ceil(self.c_bound / self.q)

    @property
    def ops(self) -> int:
        """Multiply-adds counted as 2 ops: 2 * n * d * d per step."""
        return 2 * self.n * self.d * self.d * self.steps

    @property
    def pairs_total(self) -> int:
        return min(self.checks, self.steps * self.n)


class GpuCommitment(WireModel):
    """One GPU's commitment: the chained value H_T over its step roots (the roots travel in the
    transcript and must chain to it)."""

    gpu_index: GpuIndex
    chain: Hex64


class ThroughputCommitment(WireModel):
    """What the machine signs once every GPU has finished: bound to machine, challenge and nonce."""

    version: Literal[2] = 2
    machine_id: Hex64
    challenge_id: ChallengeId
    nonce: Hex64
    gpus: list[GpuCommitment] = Field(max_length=L.PROTOCOL_MAX_GPUS)

    @model_validator(mode="before")
    @classmethod
    def _version(cls, data: Any) -> Any:
        return _only_v2(data, "the commitment")

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
    """One opened transition. a_prev is absent for step 1: the verifier regenerates A_0[row].

    Nothing of C_t[row] is sent: A_t[row] = g_t(C_t[row]) depends on C_t[row] mod 17 only, so the
    verifier checks A_{t-1}[row].B_t + A_0[row] == A_t[row] + 8 - t (mod 17) directly.
    """

    step: Step
    row: Row
    # Entries are bounded integers on the wire (|entry| <= 2**24, strict: no floats, no booleans),
    # so nothing outside int64's comfortable range ever reaches numpy; the verifier then holds
    # them to the parameters' own range.
    a_prev: Entries | None = None
    a_prev_path: Path = Field(default_factory=list)
    a_row: Entries
    a_path: Path


class GpuOpenings(WireModel):
    """One GPU's transcript: its T step roots (they must chain to the committed H_T) and one
    opening per drawn pair, in the drawn order."""

    gpu_index: GpuIndex
    roots: list[Hex64] = Field(max_length=L.MAX_PROOF_STEPS)
    openings: list[RowOpening] = Field(max_length=L.MAX_PROOF_CHECKS)


class ThroughputProof(WireModel):
    """The whole proof the committee re-verifies: signed commitment, drawn pairs, transcript.

    `openings` is the transcript carried inline (JSON); the binary transcript (`wire.py`) encodes
    the same list of GpuOpenings.
    """

    version: Literal[2] = 2
    commitment: ThroughputCommitment
    signature: Hex128
    pairs: list[GpuPairs] = Field(max_length=L.PROTOCOL_MAX_GPUS)
    openings: list[GpuOpenings] = Field(max_length=L.PROTOCOL_MAX_GPUS)
    pairs_secret: Hex64 | None = Field(
        default=None,
        description="the service's draw secret, published after the openings so anyone can replay the draw",
    )

    @model_validator(mode="before")
    @classmethod
    def _version(cls, data: Any) -> Any:
        # A v1 proof carried no version of its own: its commitment's version 1 refuses it.
        return _only_v2(data, "the proof")
