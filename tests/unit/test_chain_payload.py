"""The on-chain payload: SCALE round trip, Merkle proofs, signatures, tampering (no sockets)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from gpuproof.chain import merkle
from gpuproof.chain.consumer import verify_payload, verify_verdict
from gpuproof.chain.payload import (
    HEADER_BYTES,
    PayloadError,
    build_batch,
    decode,
    decode_record,
    encode,
    split_payload,
    verdict_record,
)
from gpuproof.chain.signer import LocalBatchSigner, verify_signature
from gpuproof.logic.records import Verdict, VerdictResult

MID = "c2ad03b01cb72857978f7e18527afddb671c8354c72c46523405334be23c3701"
INFO = {
    "machine_id": MID,
    "gpu_type": "GeForceRTX3080",
    "gpu_num": 4,
    "cuda_core": 8704,
    "gpu_mem": 10,
    "calc_point": 59890,
    "sys_disk": 500,
    "data_disk": 3905,
    "cpu_type": "Intel(R) Xeon(R) Silver 4214R",
    "cpu_core_num": 46,
    "cpu_rate": 2400,
    "mem_num": 440,
    "is_support": True,
}
COMMITTEE = [
    {"account": "5CJbkU3LYb5A2fbvftFXfBF7jVUfzCUXzUkUU9H7v6f9Pzbi", "vote": "agreeing"},
    {"account": "ab" * 32, "vote": "dissenting"},
    {"account": "0x" + "cd" * 32, "vote": "absent"},
]


def verdict(round_: int = 1, **changes: object) -> Verdict:
    v = Verdict(
        verdict_id=Verdict.id_for(MID, round_),
        machine_id=MID,
        round=round_,
        result=VerdictResult.confirmed,
        upload_info=dict(INFO),
        committee=list(COMMITTEE),
        performance_index=0.97,
        evidence_digest="ee" * 32,
        decided_at=1_767_225_600.5,
    )
    return dataclasses.replace(v, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def signer() -> LocalBatchSigner:
    return LocalBatchSigner()


def test_record_round_trip_keeps_every_field() -> None:
    rec = verdict_record(verdict(7, result=VerdictResult.refused))
    back = decode_record(rec.encoded)
    info = back["upload_info"]
    assert info["machine_id"] == MID.encode()
    assert info["gpu_type"] == b"GeForceRTX3080"
    assert info["cpu_type"] == INFO["cpu_type"].encode()
    assert info["rand_str"] == b""
    for name in (
        "gpu_num",
        "cuda_core",
        "gpu_mem",
        "calc_point",
        "sys_disk",
        "data_disk",
        "cpu_rate",
        "mem_num",
    ):
        assert info[name] == INFO[name]
    assert info["is_support"] is True
    assert back["round"] == 7
    assert back["result"] == "Refused"
    assert [c["vote"] for c in back["committee"]] == ["Agreeing", "Dissenting", "Absent"]
    assert back["committee"][1]["account"] == "0x" + "ab" * 32
    assert back["performance_index_ppm"] == 970_000
    assert back["evidence_digest"] == "0x" + "ee" * 32
    assert back["decided_at_ms"] == 1_767_225_600_500
    assert encode("GpuproofVerdictRecord", rec.value) == rec.encoded


def test_upload_info_bytes_are_dbc_committee_upload_info_order() -> None:
    """The upload_info slice is DBC's CommitteeUploadInfo SCALE encoding, field for field."""
    rec = verdict_record(verdict())
    start = 4 + 1  # round (u32) + result (enum index)
    mid = rec.encoded[start : start + 2 + 64]
    assert mid[:2] == ((64 << 2) | 1).to_bytes(2, "little")  # compact length 64 (two-byte mode)
    assert mid[2:] == MID.encode()
    assert rec.encoded[start + 66 : start + 67] == bytes([len("GeForceRTX3080") << 2])
    no_perf = verdict_record(verdict(performance_index=None))
    assert decode_record(no_perf.encoded)["performance_index_ppm"] is None


def test_text_that_looks_like_hex_stays_text() -> None:
    rec = verdict_record(verdict(upload_info={**INFO, "gpu_type": "0xff", "cpu_type": "0x"}))
    info = decode_record(rec.encoded)["upload_info"]
    assert info["gpu_type"] == b"0xff"
    assert info["cpu_type"] == b"0x"


def test_malformed_verdict_lists_every_reason() -> None:
    bad = verdict(
        upload_info={**INFO, "calc_point": -1, "gpu_num": "many"},
        committee=[{"account": "nope", "vote": "agreeing"}, {"account": "ab" * 32, "vote": "maybe"}],
        evidence_digest="xyz",
        result="perhaps",
    )
    with pytest.raises(PayloadError) as err:
        verdict_record(bad)
    text = " | ".join(err.value.reasons)
    for needle in ("calc_point", "gpu_num", "committee[0]", "committee[1]", "evidence_digest", "result"):
        assert needle in text
    with pytest.raises(PayloadError):
        verdict_record(verdict(upload_info={"machine_id": MID}))
    with pytest.raises(PayloadError):
        verdict_record(verdict(upload_info={**INFO, "machine_id": "ab" * 32}))


def test_batch_payload_is_scalecodecs_encoding_of_the_signed_batch(signer: LocalBatchSigner) -> None:
    records = [verdict_record(verdict(r)) for r in range(5)]
    batch = build_batch(records, signer, created_at=time.time())
    decoded = decode("GpuproofSignedVerdictBatch", batch.payload)
    assert decoded["header"]["verdict_count"] == 5
    assert decoded["header"]["merkle_root"] == "0x" + batch.merkle_root.hex()
    # re-encoding what scalecodec decoded gives the same bytes: the hand-assembled payload is SCALE
    again = encode(
        "GpuproofSignedVerdictBatch",
        {
            "header": decoded["header"],
            "signature": decoded["signature"],
            "verdicts": [r.value for r in records],
        },
    )
    assert again == batch.payload
    header, sig, recs = split_payload(batch.payload)
    assert len(header) == HEADER_BYTES
    assert verify_signature(signer.public_key(), header, sig)
    assert recs == list(batch.records)


def test_consumer_accepts_a_genuine_batch(signer: LocalBatchSigner) -> None:
    batch = build_batch([verdict_record(verdict(r)) for r in range(3)], signer, created_at=time.time())
    checked = verify_payload(batch.payload, {signer.public_key()})
    assert checked.ok, checked.problems
    assert [v["upload_info"]["calc_point"] for v in checked.verdicts] == [59890] * 3


def test_consumer_refuses_tampered_payloads(signer: LocalBatchSigner) -> None:
    batch = build_batch([verdict_record(verdict(r)) for r in range(3)], signer, created_at=time.time())
    # calc_point 59890 → 99890 in the second record: the Merkle root no longer matches
    needle = (59890).to_bytes(8, "little")
    first = batch.payload.index(needle)
    second = batch.payload.index(needle, first + 1)
    tampered = bytearray(batch.payload)
    tampered[second : second + 8] = (99890).to_bytes(8, "little")
    checked = verify_payload(bytes(tampered), {signer.public_key()})
    assert not checked.ok
    assert "merkle_root does not match the records" in checked.problems
    # a header edit (here the batch id) breaks the signature
    tampered = bytearray(batch.payload)
    tampered[9] ^= 0xFF
    assert (
        "service signature does not verify over the header"
        in verify_payload(bytes(tampered), {signer.public_key()}).problems
    )
    # an untrusted key, even with a valid signature of its own
    other = LocalBatchSigner()
    assert (
        "service_key is not a trusted service key"
        in verify_payload(batch.payload, {other.public_key()}).problems
    )
    # trailing bytes and truncation
    assert not verify_payload(batch.payload + b"\x00", {signer.public_key()}).ok
    assert not verify_payload(batch.payload[:-3], {signer.public_key()}).ok
    assert not verify_payload(b"not a batch", {signer.public_key()}).ok


def test_one_verdict_verifies_alone(signer: LocalBatchSigner) -> None:
    batch = build_batch([verdict_record(verdict(r)) for r in range(6)], signer, created_at=time.time())
    keys = {signer.public_key()}
    for i in range(6):
        assert verify_verdict(batch.header, batch.signature, batch.records[i], batch.proof(i), keys) == []
    wrong = verify_verdict(batch.header, batch.signature, batch.records[1], batch.proof(2), keys)
    assert "Merkle proof does not lead to the header's merkle_root" in wrong


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 50])
def test_merkle_proofs_for_every_leaf(count: int) -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(count)]
    root = merkle.merkle_root(leaves)
    for i in range(count):
        proof = merkle.merkle_proof(leaves, i)
        assert merkle.verify_proof(leaves[i], proof, root)
        assert not merkle.verify_proof(merkle.leaf_hash(b"other"), proof, root)
        if proof.siblings:
            short = dataclasses.replace(proof, siblings=proof.siblings[:-1])
            assert not merkle.verify_proof(leaves[i], short, root)
        longer = dataclasses.replace(proof, siblings=(*proof.siblings, b"\x00" * 32))
        assert not merkle.verify_proof(leaves[i], longer, root)


def test_merkle_leaves_and_nodes_are_domain_separated() -> None:
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    node = merkle.node_hash(a, b)
    # a two-leaf tree's root is not the leaf hash of the concatenated children
    assert merkle.merkle_root([a, b]) == node
    assert merkle.leaf_hash(a + b) != node
    # odd counts promote, never duplicate: [a, b, c] and [a, b, c, c] differ
    c = merkle.leaf_hash(b"c")
    assert merkle.merkle_root([a, b, c]) != merkle.merkle_root([a, b, c, c])
