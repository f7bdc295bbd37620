"""The proof transcript delivered out of band: its reference in the signed report, its object key,
its size bound, and the streaming size + SHA-256 check that the verify worker and the committee
CLI both run on the bytes they fetch (docs/protocol-v2.md §7, docs/architecture.md).

No AWS here: the bytes arrive as an iterable of chunks from whichever transport fetched them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.limits import PROTOCOL_MAX_GPUS
from gpuproof.protocol.proof import GpuPairs, ProofParams, ThroughputCommitment, ThroughputProof, codes
from gpuproof.protocol.proof.wire import TranscriptError, decode_transcript, encode_transcript
from gpuproof.protocol.reasons import Reason
from gpuproof.protocol.report import Hex64, Hex128, WireModel

# Reason codes of delivery (the proof's own codes are in protocol/proof/codes.py).
REFERENCE_MALFORMED = "proof_reference_malformed"
TRANSCRIPT_MISSING = "transcript_missing"
TRANSCRIPT_TOO_LARGE = "transcript_too_large"
TRANSCRIPT_SIZE_MISMATCH = "transcript_size_mismatch"
TRANSCRIPT_DIGEST_MISMATCH = "transcript_digest_mismatch"
TRANSCRIPT_MALFORMED = "transcript_malformed"
TRANSCRIPT_VERSION_UNSUPPORTED = "transcript_version_unsupported"
ALL_CODES = (
    REFERENCE_MALFORMED,
    TRANSCRIPT_MISSING,
    TRANSCRIPT_TOO_LARGE,
    TRANSCRIPT_SIZE_MISMATCH,
    TRANSCRIPT_DIGEST_MISMATCH,
    TRANSCRIPT_MALFORMED,
    TRANSCRIPT_VERSION_UNSUPPORTED,
)

# Media types of the uploaded object: v1 is the ThroughputProof's canonical JSON (the transition,
# until the v2 codec lands); v2 is the binary format of docs/protocol-v2.md §7.
MEDIA_TYPES = {
    1: "application/vnd.gpuproof.transcript.v1+json",
    2: "application/vnd.gpuproof.transcript.v2",
}
# Whatever a template parameter says, nothing larger is ever read (8 GPUs x 64 MiB, the parameter's cap).
MAX_TRANSCRIPT_BYTES = 8 * 64 * 1024 * 1024
KEY_PREFIX = "transcripts/"
# template.yaml's TranscriptMaxBytesPerGpu default.
DEFAULT_MAX_BYTES_PER_GPU = 4 * 1024 * 1024


class TranscriptRef(WireModel):
    """What the signed report carries in `proof` instead of the transcript itself.

    `version` is the object's format: 1 = the whole ThroughputProof as canonical JSON (small
    proofs), 2 = the binary transcript of docs/protocol.md §7 (roots and openings per GPU), in
    which case the reference itself carries the rest of the proof: the signed commitment (a
    chained value per GPU) and the pairs the service drew. A capacity openings reference
    (docs/protocol.md §17.10) is version 2 alone: the binary openings, their SHA-256 and size.
    """

    version: Literal[1, 2]
    transcript_sha256: Hex64
    transcript_bytes: int = Field(ge=1, le=MAX_TRANSCRIPT_BYTES)
    commitment: ThroughputCommitment | None = None
    signature: Hex128 | None = None
    pairs: list[GpuPairs] | None = Field(default=None, max_length=PROTOCOL_MAX_GPUS)
    parts: list[Annotated[int, Field(strict=True, ge=1, le=MAX_TRANSCRIPT_BYTES)]] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        exclude_if=lambda v: v is None,  # absent from a one-object reference's bytes (signed reports)
        description="capacity openings uploaded in two objects (docs/protocol.md §17.10): each "
        "one's size, in order; they add up to transcript_bytes, whose SHA-256 is the concatenation's",
    )

    @model_validator(mode="after")
    def _parts_add_up(self) -> TranscriptRef:
        if self.parts is not None and sum(self.parts) != self.transcript_bytes:
            raise ValueError(f"the parts' {sum(self.parts)} bytes are not transcript_bytes")
        return self

    @classmethod
    def of(cls, version: Literal[1, 2], data: bytes, proof: ThroughputProof | None = None) -> TranscriptRef:
        digest = hashlib.sha256(data).hexdigest()
        rest: dict[str, Any] = {}
        if version == 2:
            if proof is None:
                raise ValueError("a binary transcript's reference carries the proof's commitment")
            rest = {"commitment": proof.commitment, "signature": proof.signature, "pairs": proof.pairs}
        return cls(version=version, transcript_sha256=digest, transcript_bytes=len(data), **rest)


class TranscriptUpload(WireModel):
    """Where and how the probe uploads one challenge's transcript: a presigned S3 POST whose
    signed policy fixes the key, bounds the size and requires a SHA-256 checksum field."""

    method: Literal["POST"] = "POST"
    url: str
    fields: dict[str, str]
    key: str
    max_bytes: int = Field(ge=1)
    expires_at: float = Field(description="service clock; the policy's expiration")
    checksum_field: str = "x-amz-checksum-sha256"


def is_reference(proof: Mapping[str, Any] | None) -> bool:
    """True when the report's proof is a reference to an uploaded transcript (not inline v1 JSON)."""
    return proof is not None and "transcript_sha256" in proof


def parse_reference(proof: Mapping[str, Any]) -> tuple[TranscriptRef | None, list[Reason]]:
    """A proof of throughput's reference (one object: `parts` is the capacity openings' only)."""
    try:
        ref = TranscriptRef.model_validate(proof)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "proof" for e in exc.errors()})
        return None, [
            Reason(
                REFERENCE_MALFORMED,
                f"the proof reference does not parse ({exc.error_count()} errors: {', '.join(fields)})",
                "signed_report.report.proof",
            )
        ]
    if ref.parts is not None:
        return None, [
            Reason(
                REFERENCE_MALFORMED,
                "a proof transcript is uploaded as one object (no parts)",
                "signed_report.report.proof.parts",
            )
        ]
    return ref, []


def transcript_key(machine_id: str, challenge_id: str) -> str:
    return f"{KEY_PREFIX}{machine_id}/{challenge_id}"


def transcript_limit(per_gpu_bytes: int, gpu_count: int) -> int:
    """A challenge's bound: the per-GPU parameter times its GPU count (a CPU claim counts one)."""
    return min(per_gpu_bytes * max(1, gpu_count), MAX_TRANSCRIPT_BYTES)


def size_reasons(size: int | None, ref: TranscriptRef, max_bytes: int) -> list[Reason]:
    """Why an object of `size` bytes (None: absent) cannot be the transcript `ref` names."""
    if size is None:
        return [Reason(TRANSCRIPT_MISSING, "no transcript was uploaded for this challenge", "proof")]
    reasons = []
    if size > max_bytes:
        reasons.append(
            Reason(TRANSCRIPT_TOO_LARGE, f"the transcript is {size} bytes (limit {max_bytes})", "proof")
        )
    if size != ref.transcript_bytes:
        reasons.append(
            Reason(
                TRANSCRIPT_SIZE_MISMATCH,
                f"the uploaded transcript is {size} bytes; the report says {ref.transcript_bytes}",
                "proof.transcript_bytes",
            )
        )
    return reasons


# A transcript uploaded in parts (`TranscriptRef.parts`): part k's object is the transcript's key
# + the object's suffix + PART_SUFFIXES[k] (the first part is the object a one-part upload names).
PART_SUFFIXES = ("", ".2")


def ref_parts(ref: TranscriptRef, suffix: str = "") -> list[tuple[str, int]]:
    """(object suffix, size) of each object `ref` was uploaded as: one, or its `parts` in order."""
    sizes = ref.parts or [ref.transcript_bytes]
    return [(suffix + part, size) for part, size in zip(PART_SUFFIXES, sizes, strict=False)]


def parts_size_reasons(sizes: Sequence[int | None], ref: TranscriptRef, max_bytes: int) -> list[Reason]:
    """Why objects of `sizes` (in `ref_parts` order; None: absent) cannot be the transcript `ref`
    names; for one object, `size_reasons`."""
    if ref.parts is None:
        return size_reasons(sizes[0] if sizes else None, ref, max_bytes)
    reasons = []
    for k, (size, want) in enumerate(zip(sizes, ref.parts, strict=True)):
        if size is None:
            reasons.append(
                Reason(TRANSCRIPT_MISSING, f"part {k + 1} of the transcript was not uploaded", "proof")
            )
        elif size != want:
            reasons.append(
                Reason(
                    TRANSCRIPT_SIZE_MISMATCH,
                    f"part {k + 1} of the transcript is {size} bytes; the reference says {want}",
                    "proof.parts",
                )
            )
    if ref.transcript_bytes > max_bytes:
        reasons.append(
            Reason(
                TRANSCRIPT_TOO_LARGE,
                f"the transcript is {ref.transcript_bytes} bytes (limit {max_bytes})",
                "proof",
            )
        )
    return reasons


def read_verified(
    chunks: Iterable[bytes], ref: TranscriptRef, max_bytes: int
) -> tuple[bytearray | None, list[Reason]]:
    """Read at most min(max_bytes, ref.transcript_bytes) bytes, hashing as they come; the bytes
    when their length and SHA-256 are the reference's (constant-time compare), else the reasons.
    The buffer grows with what arrives (a declared size is never allocated up front)."""
    bound = min(max_bytes, ref.transcript_bytes)
    buffer = bytearray()
    digest = hashlib.sha256()
    for chunk in chunks:
        if len(buffer) + len(chunk) > bound:
            over = TRANSCRIPT_TOO_LARGE if len(buffer) + len(chunk) > max_bytes else TRANSCRIPT_SIZE_MISMATCH
            return None, [
                Reason(
                    over,
                    f"the transcript is longer than {bound} bytes (the report says {ref.transcript_bytes})",
                )
            ]
        buffer += chunk
        digest.update(chunk)
    if len(buffer) != ref.transcript_bytes:
        return None, [
            Reason(
                TRANSCRIPT_SIZE_MISMATCH,
                f"read {len(buffer)} bytes; the report says {ref.transcript_bytes}",
                "proof.transcript_bytes",
            )
        ]
    if not hmac.compare_digest(digest.hexdigest(), ref.transcript_sha256):
        return None, [
            Reason(
                TRANSCRIPT_DIGEST_MISMATCH,
                "the transcript's SHA-256 is not the one the signed report carries",
                "proof.transcript_sha256",
            )
        ]
    return buffer, []  # not bytes(buffer): that copy would double the worker's peak


def encode_v1(proof: ThroughputProof) -> bytes:
    """The format-1 transcript object: the ThroughputProof's canonical JSON."""
    return canonical_bytes(proof.model_dump(mode="json"))


def encode_binary(proof: ThroughputProof, params: Sequence[ProofParams]) -> tuple[bytes, TranscriptRef]:
    """The format-2 transcript object (the binary roots and openings) and its reference, which
    carries the commitment, its signature and the pairs."""
    data = encode_transcript(proof.openings, params)
    return data, TranscriptRef.of(2, data, proof)


def decode(
    ref: TranscriptRef, data: bytes | bytearray, params: Sequence[ProofParams]
) -> tuple[ThroughputProof | None, list[Reason]]:
    """The delivered bytes as the proof the verifier checks (format 1: JSON; format 2: the
    binary codec of protocol/proof/wire.py, its shapes taken from the service's `params`)."""
    if ref.version == 1:
        try:
            return ThroughputProof.model_validate_json(data), []
        except ValidationError as exc:
            unsupported = codes.unsupported_version(exc)
            if unsupported is not None:
                return None, [Reason(codes.VERSION_UNSUPPORTED, unsupported, "proof")]
            return None, [
                Reason(
                    TRANSCRIPT_MALFORMED, f"the JSON transcript does not parse: {exc.error_count()} errors"
                )
            ]
    if ref.commitment is None or ref.signature is None or ref.pairs is None:
        return None, [
            Reason(
                REFERENCE_MALFORMED,
                "a binary transcript's reference must carry the commitment, its signature and the pairs",
                "proof",
            )
        ]
    try:
        openings = decode_transcript(bytes(data), params)
    except TranscriptError as exc:
        return None, [Reason(exc.code, f"the binary transcript does not decode: {exc}")]
    try:
        proof = ThroughputProof(
            commitment=ref.commitment, signature=ref.signature, pairs=ref.pairs, openings=openings
        )
    except ValidationError as exc:
        return None, [
            Reason(TRANSCRIPT_MALFORMED, f"the transcript's proof is invalid: {exc.error_count()} errors")
        ]
    return proof, []
