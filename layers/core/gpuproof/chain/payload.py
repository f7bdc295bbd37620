"""The on-chain payload: SCALE types (through scalecodec), verdict → record, signed batches.

Byte layout and the pallet's view are in docs/chain.md; TYPE_REGISTRY below is the normative
definition (the doc repeats it). The service signs SCALE(BatchHeader), which commits to every
verdict through `merkle_root`, so one verdict plus its Merkle proof plus the header and signature
stands alone.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.exceptions import RemainingScaleBytesNotEmptyException
from scalecodec.utils.ss58 import ss58_decode

from gpuproof.chain.merkle import MerkleProof, leaf_hash, merkle_proof, merkle_root
from gpuproof.chain.signer import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, BatchSigner
from gpuproof.logic.records import Verdict, VerdictResult, Vote
from gpuproof.protocol.dbc_commit import CommitteeUploadInfo

MAGIC = b"gpuproof"
VERSION = 1
PPM = 1_000_000
HEADER_BYTES = 8 + 1 + 16 + 8 + PUBLIC_KEY_BYTES + 4 + 32

# Enum variant order is part of the format: the index is what goes on the wire.
RESULTS: tuple[VerdictResult, ...] = (
    VerdictResult.confirmed,
    VerdictResult.refused,
    VerdictResult.no_consensus,
    VerdictResult.revoked,
)
VOTES: tuple[Vote, ...] = (Vote.agreeing, Vote.dissenting, Vote.absent)
_RESULT_NAMES = ("Confirmed", "Refused", "NoConsensus", "Revoked")
# A revocation's reason code on chain (reason_codes.py; ASCII snake_case).
MAX_REVOCATION_REASON_BYTES = 64
_VOTE_NAMES = ("Agreeing", "Dissenting", "Absent")

TYPE_REGISTRY: dict[str, Any] = {
    "types": {
        # The first three variants carry nothing, so their bytes are one index byte, exactly as
        # before Revoked was appended; Revoked carries the reason code and the revoked verdict's round.
        "GpuproofVerdictResult": {
            "type": "enum",
            "type_mapping": [
                ["Confirmed", "Null"],
                ["Refused", "Null"],
                ["NoConsensus", "Null"],
                ["Revoked", "GpuproofRevocation"],
            ],
        },
        "GpuproofRevocation": {
            "type": "struct",
            "type_mapping": [["reason", "Vec<u8>"], ["revokes_round", "u32"]],
        },
        "GpuproofVote": {"type": "enum", "value_list": list(_VOTE_NAMES)},
        "GpuproofCommitteeVote": {
            "type": "struct",
            "type_mapping": [["account", "[u8; 32]"], ["vote", "GpuproofVote"]],
        },
        # DBC's CommitteeUploadInfo, field for field (rand_str is always empty here).
        "GpuproofUploadInfo": {
            "type": "struct",
            "type_mapping": [
                ["machine_id", "Vec<u8>"],
                ["gpu_type", "Vec<u8>"],
                ["gpu_num", "u32"],
                ["cuda_core", "u32"],
                ["gpu_mem", "u64"],
                ["calc_point", "u64"],
                ["sys_disk", "u64"],
                ["data_disk", "u64"],
                ["cpu_type", "Vec<u8>"],
                ["cpu_core_num", "u32"],
                ["cpu_rate", "u64"],
                ["mem_num", "u64"],
                ["rand_str", "Vec<u8>"],
                ["is_support", "bool"],
            ],
        },
        "GpuproofVerdictRecord": {
            "type": "struct",
            "type_mapping": [
                ["round", "u32"],
                ["result", "GpuproofVerdictResult"],
                ["upload_info", "GpuproofUploadInfo"],
                ["committee", "Vec<GpuproofCommitteeVote>"],
                ["performance_index_ppm", "Option<u32>"],
                ["evidence_digest", "[u8; 32]"],
                ["decided_at_ms", "u64"],
            ],
        },
        "GpuproofBatchHeader": {
            "type": "struct",
            "type_mapping": [
                ["magic", "[u8; 8]"],
                ["version", "u8"],
                ["batch_id", "[u8; 16]"],
                ["created_at_ms", "u64"],
                ["service_key", "[u8; 33]"],
                ["verdict_count", "u32"],
                ["merkle_root", "[u8; 32]"],
            ],
        },
        "GpuproofSignedVerdictBatch": {
            "type": "struct",
            "type_mapping": [
                ["header", "GpuproofBatchHeader"],
                ["signature", "[u8; 64]"],
                ["verdicts", "Vec<GpuproofVerdictRecord>"],
            ],
        },
        "GpuproofMerkleProof": {
            "type": "struct",
            "type_mapping": [["leaf_index", "u32"], ["leaf_count", "u32"], ["siblings", "Vec<[u8; 32]>"]],
        },
    }
}

_UPLOAD_FIELDS = (
    "machine_id", "gpu_type", "gpu_num", "cuda_core", "gpu_mem", "calc_point", "sys_disk", "data_disk",
    "cpu_type", "cpu_core_num", "cpu_rate", "mem_num", "is_support",
)  # fmt: skip
_TEXT_FIELDS = ("machine_id", "gpu_type", "cpu_type")


class PayloadError(ValueError):
    """A verdict that cannot be encoded, or bytes that do not decode; `reasons` lists all."""

    def __init__(self, reasons: Sequence[str]) -> None:
        self.reasons = list(reasons) or ["invalid payload"]
        super().__init__("; ".join(self.reasons))


_runtime: RuntimeConfigurationObject | None = None


def runtime() -> RuntimeConfigurationObject:
    """scalecodec's runtime configuration with the core preset and the gpuproof types."""
    global _runtime
    if _runtime is None:
        from scalecodec.type_registry import load_type_registry_preset

        rc = RuntimeConfigurationObject()
        rc.update_type_registry(load_type_registry_preset("core"))
        rc.update_type_registry(TYPE_REGISTRY)
        _runtime = rc
    return _runtime


def encode(type_name: str, value: Any) -> bytes:
    obj = runtime().create_scale_object(type_name)
    return bytes(obj.encode(value).data)


def decode(type_name: str, data: bytes) -> Any:
    """Decode exactly `data` (trailing bytes are an error) into scalecodec's plain values."""
    return _decoded(type_name, data).value


# ---------------------------------------------------------------- verdict → record


def account_bytes(account: str) -> bytes:
    """A committee account as its 32-byte AccountId: 64 hex chars (0x optional) or SS58."""
    text = account.strip()
    hex_part = text.removeprefix("0x")
    if len(hex_part) == 64:
        try:
            return bytes.fromhex(hex_part)
        except ValueError:
            pass
    try:
        return bytes.fromhex(ss58_decode(text))
    except Exception as exc:
        raise ValueError(f"account {account!r} is neither 32-byte hex nor SS58") from exc


@dataclass(frozen=True)
class VerdictRecord:
    """One verdict as it goes on chain; `encoded` is its SCALE bytes (the Merkle leaf's preimage)."""

    verdict_id: str
    value: dict[str, Any]
    encoded: bytes

    @property
    def leaf(self) -> bytes:
        return leaf_hash(self.encoded)


def verdict_record(verdict: Verdict) -> VerdictRecord:
    """Validate and encode a verdict; raises PayloadError listing every problem."""
    reasons: list[str] = []
    info = verdict.upload_info if isinstance(verdict.upload_info, Mapping) else {}
    if not info:
        reasons.append("upload_info: missing or not an object")
    missing = [f for f in _UPLOAD_FIELDS if f not in info]
    if info and missing:
        reasons.append(f"upload_info: missing {', '.join(missing)}")
    upload: CommitteeUploadInfo | None = None
    if info and not missing:
        try:
            upload = CommitteeUploadInfo(**{f: info[f] for f in _UPLOAD_FIELDS}, rand_str="")
        except ValidationError as exc:
            reasons.extend(f"upload_info.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    if upload is not None and upload.machine_id != verdict.machine_id:
        reasons.append("upload_info.machine_id differs from the verdict's machine_id")
    if not 0 <= verdict.round < 2**32:
        reasons.append(f"round {verdict.round} is outside u32")
    try:
        result_index = RESULTS.index(VerdictResult(verdict.result))
    except ValueError:
        reasons.append(f"result {verdict.result!r} is not one of {[r.value for r in RESULTS]}")
        result_index = 0
    committee: list[dict[str, Any]] = []
    for n, member in enumerate(verdict.committee if isinstance(verdict.committee, list) else []):
        try:
            vote = VOTES.index(Vote(member["vote"]))
            committee.append({"account": account_bytes(str(member["account"])), "vote": _VOTE_NAMES[vote]})
        except (KeyError, TypeError, ValueError) as exc:
            reasons.append(f"committee[{n}]: {exc}")
    if not isinstance(verdict.committee, list):
        reasons.append("committee: not a list")
    perf: int | None = None
    if verdict.performance_index is not None:
        p = float(verdict.performance_index)
        if not math.isfinite(p) or p < 0 or round(p * PPM) >= 2**32:
            reasons.append(f"performance_index {verdict.performance_index} is outside [0, 4294)")
        else:
            perf = round(p * PPM)
    try:
        digest = bytes.fromhex(verdict.evidence_digest)
        if len(digest) != 32:
            raise ValueError
    except (TypeError, ValueError):
        reasons.append("evidence_digest: not 64 hex characters (sha256)")
        digest = b""
    decided_ms = round(float(verdict.decided_at) * 1000)
    if not 0 <= decided_ms < 2**64:
        reasons.append("decided_at is outside u64 milliseconds")
    result_value: Any = _RESULT_NAMES[result_index]
    if RESULTS[result_index] is VerdictResult.revoked:
        doc = verdict.revocation if isinstance(verdict.revocation, Mapping) else {}
        code = str(doc.get("reason") or "")
        if not code or len(code) > MAX_REVOCATION_REASON_BYTES or not code.isascii():
            reasons.append(
                f"revocation.reason: an ASCII reason code of 1..{MAX_REVOCATION_REASON_BYTES} bytes"
            )
        if upload is not None and (upload.is_support or upload.calc_point != 0):
            reasons.append("a Revoked verdict's upload_info has calc_point 0 and is_support false")
        result_value = {
            "Revoked": {"reason": code.encode("ascii", "replace"), "revokes_round": verdict.round}
        }
    if reasons or upload is None:
        raise PayloadError(reasons)
    upload_value: dict[str, Any] = {f: getattr(upload, f) for f in (*_UPLOAD_FIELDS, "rand_str")}
    for f in (*_TEXT_FIELDS, "rand_str"):
        upload_value[f] = str(upload_value[f]).encode("utf-8")  # bytes, never a "0x.." string
    value = {
        "round": verdict.round,
        "result": result_value,
        "upload_info": upload_value,
        "committee": committee,
        "performance_index_ppm": perf,
        "evidence_digest": digest,
        "decided_at_ms": decided_ms,
    }
    return VerdictRecord(verdict.verdict_id, value, encode("GpuproofVerdictRecord", value))


# ---------------------------------------------------------------- batches


@dataclass(frozen=True)
class SignedBatch:
    """A signed batch: `payload` is the byte string that goes on chain (remark or pallet call)."""

    batch_id: bytes
    header: bytes
    signature: bytes
    records: tuple[bytes, ...]
    payload: bytes

    @property
    def leaves(self) -> list[bytes]:
        return [leaf_hash(r) for r in self.records]

    @property
    def merkle_root(self) -> bytes:
        return merkle_root(self.leaves)

    def proof(self, index: int) -> MerkleProof:
        return merkle_proof(self.leaves, index)


def header_bytes(batch_id: bytes, created_at_ms: int, service_key: bytes, count: int, root: bytes) -> bytes:
    return encode(
        "GpuproofBatchHeader",
        {
            "magic": MAGIC,
            "version": VERSION,
            "batch_id": batch_id,
            "created_at_ms": created_at_ms,
            "service_key": service_key,
            "verdict_count": count,
            "merkle_root": root,
        },
    )


def build_batch(
    records: Sequence[VerdictRecord], signer: BatchSigner, created_at: float, batch_id: bytes | None = None
) -> SignedBatch:
    """Merkle root over the records, header signed by the service key, payload assembled."""
    if not records:
        raise ValueError("a batch needs at least one verdict")
    bid = batch_id or uuid.uuid4().bytes
    encoded = tuple(r.encoded for r in records)
    root = merkle_root([leaf_hash(e) for e in encoded])
    header = header_bytes(bid, round(created_at * 1000), signer.public_key(), len(encoded), root)
    signature = signer.sign(header)
    if len(signature) != SIGNATURE_BYTES:
        raise ValueError("the signer must return 64-byte r‖s")
    # SCALE(SignedVerdictBatch) = header ‖ signature ‖ compact(len) ‖ records: assembled from the
    # parts already encoded, then checked against scalecodec's own decoding in tests.
    payload = header + signature + encode("Compact<u32>", len(encoded)) + b"".join(encoded)
    return SignedBatch(batch_id=bid, header=header, signature=signature, records=encoded, payload=payload)


def split_payload(payload: bytes) -> tuple[bytes, bytes, list[bytes]]:
    """(header bytes, signature, each record's bytes) of a payload; raises PayloadError."""
    if len(payload) < HEADER_BYTES + SIGNATURE_BYTES or not payload.startswith(MAGIC):
        raise PayloadError(["not a gpuproof verdict batch (magic or length)"])
    obj = _decoded("GpuproofSignedVerdictBatch", payload)
    records = [bytes(r.get_used_bytes()) for r in obj.value_object["verdicts"].value_object]
    header = bytes(obj.value_object["header"].get_used_bytes())
    signature = payload[len(header) : len(header) + SIGNATURE_BYTES]
    return header, signature, records


def _decoded(type_name: str, data: bytes) -> Any:
    obj = runtime().create_scale_object(type_name, data=ScaleBytes(bytearray(data)))
    try:
        obj.decode(check_remaining=True)
    except RemainingScaleBytesNotEmptyException as exc:
        raise PayloadError([f"{type_name}: trailing bytes"]) from exc
    except Exception as exc:  # scalecodec raises assorted types on truncated or bad input
        raise PayloadError([f"{type_name}: does not decode ({exc})"]) from exc
    return obj


def decode_header(header: bytes) -> dict[str, Any]:
    value: dict[str, Any] = decode("GpuproofBatchHeader", header)
    return value


def decode_record(record: bytes) -> dict[str, Any]:
    """A record's SCALE bytes → plain values; byte fields as the raw bytes (scalecodec would turn
    UTF-8 into text and anything else into "0x.." hex, which is ambiguous), digests as 0x-hex."""
    obj = _decoded("GpuproofVerdictRecord", record)
    value: dict[str, Any] = dict(obj.value)
    info_obj = obj.value_object["upload_info"].value_object
    info = dict(value["upload_info"])
    for f in (*_TEXT_FIELDS, "rand_str"):
        info[f] = bytes(info_obj[f].value_object)
    value["upload_info"] = info
    result = value["result"]
    if isinstance(result, dict) and "Revoked" in result:  # {"Revoked": {...}} → "Revoked" + detail
        detail = dict(result["Revoked"])
        value["result"] = "Revoked"
        value["revocation"] = {"reason": str(detail["reason"]), "revokes_round": int(detail["revokes_round"])}
    else:
        value["revocation"] = None
    return value
