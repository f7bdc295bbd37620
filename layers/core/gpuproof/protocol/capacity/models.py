"""Wire models of the capacity phase (v1): parameters per target, the signed commitment, a round
the service opens and the answer it times, the recorded round; and the openings the prover builds
(`TargetOpenings`), which travel as the binary transcript of `wire.py`.

docs/protocol.md "Capacity phase" specifies every field and byte. Pure and AWS-free.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from gpuproof.protocol import limits as L
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.capacity.fill import committed_stages
from gpuproof.protocol.keys import SigningKey, verify
from gpuproof.protocol.limits import FiniteFloat
from gpuproof.protocol.report import Hex64, Hex128, WireModel

CAPACITY_VERSION = 1
COMMITMENT_DOMAIN = b"gpuproof/capacity-commitment/v1\n"
HOST_TARGET = 0xFFFF
# The openings travel as the binary transcript of wire.py (this media type): inline (base64, when
# small) or out of band as one object beside the throughput transcript (its key + this suffix).
OPENINGS_SUFFIX = ".capacity"
OPENINGS_MEDIA_TYPE = "application/vnd.gpuproof.capacity-openings.v3"

Target = Annotated[int, Field(strict=True, ge=0, le=HOST_TARGET)]
Path = Annotated[list[Hex64], Field(max_length=L.MAX_MERKLE_DEPTH)]
# A fill row on the wire: its d bytes (int8 two's complement) as lower-case hex, exactly the bytes
# its leaf hashes; the verifier holds the length to d and every entry to [-125, 125].
RowHex = Annotated[str, Field(pattern=r"^(?:[0-9a-f]{2})*$", max_length=2 * L.MAX_CAPACITY_D)]
RowEntries = RowHex


class CapacityTargetParams(WireModel):
    """What one target (a GPU, or host RAM as target 65535) must fill and answer: set by the service."""

    target: Target
    claimed_bytes: int = Field(strict=True, ge=1, le=L.MAX_CAPACITY_BYTES)
    d: int = Field(strict=True, ge=8, le=L.MAX_CAPACITY_D, description="entries (bytes) per row")
    n_rows: int = Field(strict=True, ge=2, le=L.MAX_CAPACITY_ROWS)
    mode: Literal["scan", "sample"] = Field(description="scan: every row per round; sample: random rows")
    chunk_rows: int = Field(
        strict=True, ge=1, le=L.MAX_CAPACITY_CHUNK_ROWS, description="rows per item (scan)"
    )
    samples: int = Field(strict=True, ge=0, le=L.MAX_CAPACITY_SAMPLES, description="rows per round (sample)")
    spots: int = Field(strict=True, ge=1, le=L.MAX_CAPACITY_SPOTS, description="items opened per round")
    walks: int = Field(strict=True, ge=1, le=L.MAX_CAPACITY_WALKS, description="walks opened")
    walk_stages: int = Field(
        strict=True, ge=1, le=L.MAX_MERKLE_DEPTH, description="stages a walk opens: all of them, L down to 1"
    )
    round_expected_s: FiniteFloat = Field(gt=0)
    round_deadline_s: FiniteFloat = Field(gt=0)
    fill_expected_s: FiniteFloat = Field(gt=0)
    commit_stride: int = Field(
        1,
        strict=True,
        ge=1,
        le=L.MAX_CAPACITY_COMMIT_STRIDE,
        description="layers committed: L, L - stride, ... (1: every layer; 3: every third, §17.3)",
    )
    sweeps: int = Field(
        0, strict=True, ge=0, le=L.MAX_CAPACITY_SWEEPS, description="sweeps of the bandwidth round (0: none)"
    )
    sweep_spots: int = Field(
        0, strict=True, ge=0, le=L.MAX_CAPACITY_SPOTS, description="items opened in the bandwidth round"
    )
    sweep_expected_s: FiniteFloat = Field(0.0, ge=0)
    sweep_deadline_s: FiniteFloat = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> CapacityTargetParams:
        if self.chunk_rows & (self.chunk_rows - 1):
            raise ValueError("chunk_rows must be a power of two")
        if self.mode == "sample" and (self.samples < 1 or self.chunk_rows != 1):
            raise ValueError("a sample target reads samples >= 1 rows, one row per item")
        if self.mode == "scan" and self.samples != 0:
            raise ValueError("a scan target has no samples")
        if self.walk_stages != self.n_stages:
            # a walk that stops above stage 1 misses a fill made cheap by the stage maps' linearity
            # (docs/protocol.md §17.7, Bound 3): X_0, which the verifier regenerates, anchors it
            raise ValueError("walk_stages must equal the fill's stages (a walk opens every stage)")
        if self.round_deadline_s < self.round_expected_s:
            raise ValueError("round_deadline_s must not be shorter than round_expected_s")
        if self.sweeps and (
            self.mode != "scan"
            or self.sweep_spots < 1
            or not 0 < self.sweep_expected_s <= self.sweep_deadline_s
        ):
            raise ValueError(
                "a bandwidth round needs a scan target, sweep_spots >= 1 "
                "and 0 < sweep_expected_s <= sweep_deadline_s"
            )
        if not self.sweeps and (self.sweep_spots or self.sweep_expected_s or self.sweep_deadline_s):
            raise ValueError("sweep fields without sweeps")
        if self.sweeps * self.items > L.MAX_CAPACITY_ROWS:
            raise ValueError("sweeps x items exceeds the item bound")
        return self

    @property
    def is_host(self) -> bool:
        return self.target == HOST_TARGET

    @property
    def items(self) -> int:
        """Items of one round's answer tree: chunks (scan) or sampled rows (sample)."""
        if self.mode == "scan":
            return -(-self.n_rows // self.chunk_rows)
        return self.samples

    @property
    def fill_bytes(self) -> int:
        return self.n_rows * self.d

    @property
    def n_stages(self) -> int:
        """L = ceil(log2 n_rows)."""
        return max(1, (self.n_rows - 1).bit_length())

    @property
    def committed(self) -> list[int]:
        """The committed layers' stages, ascending (L always)."""
        return committed_stages(self.n_stages, self.commit_stride)

    @property
    def proven_bytes(self) -> int:
        """Information the fill holds: n_rows * d entries of log2(251) bits (7.97 of every 8)."""
        return int(self.n_rows * self.d * math.log2(251) / 8)


class CapacityParams(WireModel):
    """The whole capacity phase of one challenge: every target fills at once, then `rounds` timed rounds.
    Version 3: fill format v2 (docs/protocol.md §17.2, every stage map invertible, since version 2)
    and walks v2 (§17.6: each stage's row drawn on its own, every step sending its a_row, openings
    v3); a probe that knows an older version refuses these params instead of proving the old way."""

    version: Literal[3] = 3
    targets: list[CapacityTargetParams] = Field(min_length=1, max_length=L.PROTOCOL_MAX_GPUS + 1)
    rounds: int = Field(strict=True, ge=1, le=L.MAX_CAPACITY_ROUNDS)
    fill_deadline_s: FiniteFloat = Field(
        gt=0, description="service clock: phase opened -> commitment received"
    )
    network_allowance_s: FiniteFloat = Field(ge=0, description="included in every round deadline")

    @model_validator(mode="after")
    def _distinct(self) -> CapacityParams:
        seen = [t.target for t in self.targets]
        if len(set(seen)) != len(seen):
            raise ValueError("one entry per target")
        return self

    def target(self, target: int) -> CapacityTargetParams | None:
        return next((t for t in self.targets if t.target == target), None)


class TargetCommitment(WireModel):
    target: Target
    chain: Hex64 = Field(description="H_L over the layer roots")
    root: Hex64 = Field(description="root_L, the root of the layer the rounds read")


class CapacityCommitment(WireModel):
    version: Literal[1] = 1
    machine_id: Hex64
    challenge_id: Annotated[str, Field(min_length=1, max_length=64)]
    nonce: Hex64
    targets: list[TargetCommitment] = Field(max_length=L.PROTOCOL_MAX_GPUS + 1)

    def signing_bytes(self) -> bytes:
        return COMMITMENT_DOMAIN + canonical_bytes(self.model_dump(mode="json"))

    def target(self, target: int) -> TargetCommitment | None:
        return next((t for t in self.targets if t.target == target), None)


class SignedCapacityCommitment(WireModel):
    commitment: CapacityCommitment
    signature: Hex128

    @classmethod
    def sign(cls, commitment: CapacityCommitment, key: SigningKey) -> SignedCapacityCommitment:
        return cls(commitment=commitment, signature=key.sign(commitment.signing_bytes()).hex())

    def verifies(self) -> bool:
        return verify(
            self.commitment.machine_id, self.commitment.signing_bytes(), bytes.fromhex(self.signature)
        )


class CapacityRound(WireModel):
    """What the service sends to open round `round`: a fresh 32-byte nonce drawn at that moment."""

    round: int = Field(strict=True, ge=1, le=L.MAX_CAPACITY_ROUNDS)
    nonce: Hex64
    targets: list[Target] = Field(min_length=1, max_length=L.PROTOCOL_MAX_GPUS + 1)


class TargetAnswer(WireModel):
    target: Target
    root: Hex64 = Field(description="root of the round's answer tree (the last sweep's in a bandwidth round)")
    sweep_roots: list[Hex64] = Field(
        default_factory=list,
        max_length=L.MAX_CAPACITY_SWEEPS,
        description="bandwidth round only: the roots of sweeps 1..P-1 (root is sweep P's)",
    )


class CapacityAnswer(WireModel):
    round: int = Field(strict=True, ge=1, le=L.MAX_CAPACITY_ROUNDS)
    answers: list[TargetAnswer] = Field(max_length=L.PROTOCOL_MAX_GPUS + 1)


class RoundRecord(WireModel):
    """A round as the service recorded it: its own nonce, its own clock at send and at receipt."""

    round: int = Field(strict=True, ge=1, le=L.MAX_CAPACITY_ROUNDS)
    nonce: Hex64
    targets: list[Target] = Field(max_length=L.PROTOCOL_MAX_GPUS + 1)
    sent_at: FiniteFloat
    received_at: FiniteFloat | None = None
    answers: list[TargetAnswer] = Field(default_factory=list, max_length=L.PROTOCOL_MAX_GPUS + 1)


class SpotOpening(WireModel):
    """Item `item` of round `round`: its rows, the path of their subtree to root_L, and the path of
    the item's answer leaf to the round's answer root."""

    round: int = Field(strict=True, ge=1, le=L.MAX_CAPACITY_ROUNDS)
    item: int = Field(strict=True, ge=0, lt=L.MAX_CAPACITY_ROWS)
    rows: list[RowEntries] = Field(max_length=L.MAX_CAPACITY_CHUNK_ROWS)
    tree_path: Path
    answer_path: Path


class WalkStep(WireModel):
    """Committed stage l of a walk at row i: X_l[i] and the rows of the committed layer below that it
    depends on (`fill.parent_rows`: X_{l-1}[i], X_{l-1}[p_l(i)] for one stage, 2^s rows of X_{l-s}
    for s), with their paths; none when the layer below is X_0 (the verifier regenerates it)."""

    stage: int = Field(strict=True, ge=1, le=L.MAX_MERKLE_DEPTH)
    row: int = Field(strict=True, ge=0, lt=L.MAX_CAPACITY_ROWS)
    a_row: RowEntries
    a_path: Path
    prev: list[RowEntries] = Field(default_factory=list, max_length=2**L.MAX_CAPACITY_COMMIT_STRIDE)
    prev_paths: list[Path] = Field(default_factory=list, max_length=2**L.MAX_CAPACITY_COMMIT_STRIDE)


class WalkOpening(WireModel):
    walk: int = Field(strict=True, ge=0, lt=L.MAX_CAPACITY_WALKS)
    steps: list[WalkStep] = Field(max_length=L.MAX_MERKLE_DEPTH)


class TargetOpenings(WireModel):
    """One target's openings as a prover builds them (rows and digests as hex); encoded for the
    service by `wire.encode_openings`."""

    target: Target
    roots: list[Hex64] = Field(max_length=L.MAX_MERKLE_DEPTH)
    spots: list[SpotOpening] = Field(max_length=L.MAX_CAPACITY_ROUNDS * L.MAX_CAPACITY_SPOTS)
    walks: list[WalkOpening] = Field(max_length=L.MAX_CAPACITY_WALKS)


class CapacityTranscript(WireModel):
    """The v1 JSON encoding of the openings: NO LONGER ACCEPTED by the service (replaced by the
    binary v2 of wire.py); scripts/bench_capacity.py measures it as the binary's reference."""

    version: Literal[1] = 1
    targets: list[TargetOpenings] = Field(max_length=L.PROTOCOL_MAX_GPUS + 1)
