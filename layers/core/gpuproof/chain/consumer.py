"""The consumer side, the reference for the pallet's logic: find batches on chain, decode them,
check the service signature, the Merkle root, and one verdict's proof standalone.

A pallet does the same in `submit_verdicts`: decode SignedVerdictBatch, check magic/version,
that `service_key` is a configured key, the P-256 signature over SCALE(header), that
verdict_count and the Merkle root match the records; then store each verdict (docs/chain.md).
"""

from __future__ import annotations

import hmac
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpuproof.chain.merkle import MerkleProof, leaf_hash, merkle_root, verify_proof
from gpuproof.chain.payload import (
    MAGIC,
    VERSION,
    PayloadError,
    decode_header,
    decode_record,
    split_payload,
)
from gpuproof.chain.signer import verify_signature


def _hex(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


@dataclass
class VerifiedBatch:
    """A decoded batch and every problem found; `ok` only when there is none."""

    payload: bytes
    header: dict[str, Any] = field(default_factory=dict)
    header_bytes: bytes = b""
    signature: bytes = b""
    records: list[bytes] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # where it was found on chain (None when checked from the feed or from bytes)
    block_number: int | None = None
    block_hash: str | None = None
    extrinsic_index: int | None = None
    call: str | None = None
    signer: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def proof(self, index: int) -> MerkleProof:
        from gpuproof.chain.merkle import merkle_proof

        return merkle_proof([leaf_hash(r) for r in self.records], index)


def verify_payload(payload: bytes, trusted_keys: Collection[bytes]) -> VerifiedBatch:
    """Decode and check a batch payload; every failed check is listed in `problems`."""
    out = VerifiedBatch(payload=payload)
    try:
        out.header_bytes, out.signature, out.records = split_payload(payload)
        out.header = decode_header(out.header_bytes)
        out.verdicts = [decode_record(r) for r in out.records]
    except PayloadError as exc:
        out.problems.extend(exc.reasons)
        return out
    h = out.header
    if _hex(h["magic"]) != MAGIC or h["version"] != VERSION:
        out.problems.append(f"unknown magic/version {h['magic']}/{h['version']}")
    key = _hex(h["service_key"])
    if key not in set(trusted_keys):
        out.problems.append("service_key is not a trusted service key")
    if not verify_signature(key, out.header_bytes, out.signature):
        out.problems.append("service signature does not verify over the header")
    if h["verdict_count"] != len(out.records):
        out.problems.append(f"verdict_count {h['verdict_count']} but {len(out.records)} records")
    if not out.records or not hmac.compare_digest(
        merkle_root([leaf_hash(r) for r in out.records]), _hex(h["merkle_root"])
    ):
        out.problems.append("merkle_root does not match the records")
    return out


def verify_verdict(
    header_bytes: bytes,
    signature: bytes,
    record: bytes,
    proof: MerkleProof,
    trusted_keys: Collection[bytes],
) -> list[str]:
    """Check ONE verdict without the rest of its batch: header signature + Merkle proof."""
    problems: list[str] = []
    try:
        header = decode_header(header_bytes)
        decode_record(record)
    except PayloadError as exc:
        return exc.reasons
    key = _hex(header["service_key"])
    if key not in set(trusted_keys):
        problems.append("service_key is not a trusted service key")
    if not verify_signature(key, header_bytes, signature):
        problems.append("service signature does not verify over the header")
    if proof.leaf_count != header["verdict_count"]:
        problems.append("proof leaf_count differs from the header's verdict_count")
    if not verify_proof(leaf_hash(record), proof, _hex(header["merkle_root"])):
        problems.append("Merkle proof does not lead to the header's merkle_root")
    return problems


class BlockSource(Protocol):
    def block_extrinsics(self, number: int) -> tuple[str, list[bytes]] | None: ...

    def decode_extrinsic(self, raw: bytes, block_hash: str) -> dict[str, Any]: ...

    def block_number(self) -> int: ...


ACCEPTED_CALLS = ("System.remark_with_event", "System.remark")


def scan_chain(
    source: BlockSource,
    trusted_keys: Collection[bytes],
    from_block: int = 0,
    to_block: int | None = None,
    calls: Collection[str] = (*ACCEPTED_CALLS, "GpuproofOracle.submit_verdicts"),
) -> Iterator[VerifiedBatch]:
    """Every gpuproof batch in blocks from_block..to_block (default: best), verified."""
    last = source.block_number() if to_block is None else to_block
    for number in range(from_block, last + 1):
        block = source.block_extrinsics(number)
        if block is None:
            break
        block_hash, extrinsics = block
        for index, raw in enumerate(extrinsics):
            if MAGIC not in raw:
                continue  # cheap filter before decoding the call
            xt = source.decode_extrinsic(raw, block_hash)
            if xt["call"] not in calls:
                continue
            payload = next(
                (v for v in xt["args"].values() if isinstance(v, bytes) and v.startswith(MAGIC)), None
            )
            if payload is None:
                continue
            batch = verify_payload(payload, trusted_keys)
            batch.block_number, batch.block_hash, batch.extrinsic_index = number, block_hash, index
            batch.call, batch.signer = xt["call"], xt.get("signer")
            yield batch


@dataclass(frozen=True)
class Score:
    """A machine's standing as the chain says: its last Confirmed round's calc_point, or why not."""

    machine_id: str
    round: int
    result: str  # Confirmed | Refused | Revoked (NoConsensus changes nothing)
    calc_point: int
    revocation: dict[str, Any] | None = None


def current_scores(batches: Iterator[VerifiedBatch] | list[VerifiedBatch]) -> dict[str, Score]:
    """Fold verified batches in chain order into each machine's current score, the way a pallet
    keeps it: Confirmed/Refused of a round set it; Revoked of round r withdraws it when the score
    standing is round r's (a later round's verdict is not undone by an older revocation);
    NoConsensus changes nothing. Batches with problems are skipped."""
    scores: dict[str, Score] = {}
    for batch in batches:
        if not batch.ok:
            continue
        for v in batch.verdicts:
            mid = v["upload_info"]["machine_id"].decode()
            result = v["result"]
            current = scores.get(mid)
            if result == "NoConsensus":
                continue
            if result == "Revoked":
                revoked_round = int(v["revocation"]["revokes_round"])
                if current is None or current.round != revoked_round:
                    continue
                scores[mid] = Score(mid, revoked_round, "Revoked", 0, v["revocation"])
                continue
            if current is not None and v["round"] < current.round:
                continue
            scores[mid] = Score(mid, v["round"], result, int(v["upload_info"]["calc_point"]))
    return scores
