"""The binary transcript (docs/protocol.md §7): the same GpuOpenings as the JSON encoding, byte for
byte as specified, strict (header = params, no trailing bytes, truncation refused), sized as stated."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from pydantic import ValidationError

from gpuproof.protocol.proof import (
    GpuOpenings,
    ThroughputProof,
    TranscriptError,
    codes,
    decode_transcript,
    encode_transcript,
)
from gpuproof.protocol.proof.matrices import pack_rows
from gpuproof.protocol.proof.wire import MAGIC, PackedRow, gpu_size, max_size
from tests.unit.test_proof_protocol import Run, cpu_params, run, verify


@pytest.fixture(scope="module")
def two_gpus() -> Run:
    return run(3, cpu_params(gpus=2, n=48, d=32, steps=3, checks=20))


def test_binary_and_json_are_two_encodings_of_the_same_transcript(two_gpus: Run) -> None:
    r = two_gpus
    data = encode_transcript(r.proof.openings, r.params)
    decoded = decode_transcript(data, r.params)
    assert decoded == list(r.proof.openings)
    again = [GpuOpenings.model_validate_json(g.model_dump_json()) for g in decoded]
    assert again == decoded  # the decoded models are valid JSON-model values too
    assert encode_transcript(again, r.params) == data
    proof = r.proof.model_copy(update={"openings": decoded})
    assert verify(r, proof=proof) == []


def test_layout_is_the_specified_one(two_gpus: Run) -> None:
    r = two_gpus
    data = encode_transcript(r.proof.openings, r.params)
    assert data[:8] == MAGIC and struct.unpack_from("<H", data, 8) == (2,)
    p = r.params[0]
    gpu, steps, n, d, m = struct.unpack_from("<HIIHH", data, 10)
    assert (gpu, steps, n, d, m) == (0, p.steps, p.n, p.d, 20)
    at = 10 + 14
    assert data[at : at + 32].hex() == r.proof.openings[0].roots[0]
    at += 32 * p.steps
    first = r.proof.openings[0].openings[0]
    assert struct.unpack_from("<II", data, at) == (first.step, first.row)
    size = sum(
        gpu_size(q, [o.step for o in g.openings]) for q, g in zip(r.params, r.proof.openings, strict=True)
    )
    assert len(data) == 10 + size <= max_size(r.params)
    # the opened row's 5-bit packing sits right before its path
    packed = pack_rows(np.array([first.a_row], dtype=np.int8)).tobytes()
    assert packed in data


def test_decoding_is_strict(two_gpus: Run) -> None:
    r = two_gpus
    data = encode_transcript(r.proof.openings, r.params)
    bad = [
        data + b"\0",  # trailing bytes
        data[:-1],  # truncated
        b"GPTRv1\0\0" + data[8:],  # another magic
        data[:8] + struct.pack("<H", 1) + data[10:],  # another GPU count
    ]
    for blob in bad:
        with pytest.raises(TranscriptError) as refused:
            decode_transcript(blob, r.params)
        assert refused.value.code == codes.TRANSCRIPT_MALFORMED
    other = [p.model_copy(update={"steps": p.steps + 1}) for p in r.params]
    with pytest.raises(TranscriptError, match="not the challenge's"):
        decode_transcript(data, other)
    with pytest.raises(TranscriptError, match="over the"):
        decode_transcript(data + bytes(max_size(r.params)), r.params)


def test_a_step_outside_the_chain_is_refused_by_the_decoder(two_gpus: Run) -> None:
    r = two_gpus
    data = bytearray(encode_transcript(r.proof.openings, r.params))
    at = 10 + 14 + 32 * r.params[0].steps
    struct.pack_into("<I", data, at, r.params[0].steps + 1)
    with pytest.raises(TranscriptError, match="outside the chain"):
        decode_transcript(bytes(data), r.params)


def test_what_the_layout_cannot_hold_is_not_encoded(two_gpus: Run) -> None:
    r = two_gpus
    g = r.proof.openings[0]
    o = g.openings[0]
    for change in ({"a_row": [24, *o.a_row[1:]]}, {"a_path": o.a_path[1:]}):
        broken = g.model_copy(update={"openings": [o.model_copy(update=change), *g.openings[1:]]})
        with pytest.raises(ValueError):
            encode_transcript([broken, r.proof.openings[1]], r.params)
    with pytest.raises(ValueError):
        encode_transcript(r.proof.openings[:1], r.params)


def test_out_of_range_rows_survive_decoding_and_the_verifier_refuses_them(two_gpus: Run) -> None:
    """5-bit fields hold 17..31 too: the decoder passes them on, the verifier's range check refuses."""
    r = two_gpus
    g = r.proof.openings[0]
    o = g.openings[0]
    tampered = g.model_copy(
        update={"openings": [o.model_copy(update={"a_row": [23, *o.a_row[1:]]}), *g.openings[1:]]}
    )
    decoded = decode_transcript(encode_transcript([tampered, r.proof.openings[1]], r.params), r.params)
    assert decoded[0].openings[0].a_row[0] == 23
    proof = r.proof.model_copy(update={"openings": decoded})
    assert verify(r, proof=proof) == [codes.VALUE_OUT_OF_RANGE]


def test_v1_documents_are_refused_with_their_own_code(two_gpus: Run) -> None:
    doc = two_gpus.proof.model_dump(mode="json")
    doc["commitment"]["version"] = 1
    with pytest.raises(ValidationError) as refused:
        ThroughputProof.model_validate(doc)
    assert codes.unsupported_version(refused.value) is not None
    v1_proof = {**two_gpus.proof.model_dump(mode="json"), "version": 1}
    with pytest.raises(ValidationError) as again:
        ThroughputProof.model_validate(v1_proof)
    assert codes.unsupported_version(again.value) is not None


def test_the_verifier_reads_a_decoded_rows_bytes_and_a_replaced_row_as_its_list(two_gpus: Run) -> None:
    """Decoded rows are `PackedRow`s: equal to their lists, carrying the bytes the transcript had,
    which the verifier reads (and hashes) instead of d Python ints. A row replaced after decoding
    is a plain list again and is judged as that list: changed, it no longer opens its root."""
    r = two_gpus
    decoded = decode_transcript(encode_transcript(r.proof.openings, r.params), r.params)
    o = decoded[0].openings[0]
    assert isinstance(o.a_row, PackedRow) and o.a_row == list(o.a_row)
    assert o.a_row.packed == pack_rows(np.array([o.a_row], dtype=np.int8)).tobytes()
    changed = [(o.a_row[0] + 1) % 9 if o.a_row[0] < 8 else -8, *o.a_row[1:]]
    g = decoded[0].model_copy(
        update={"openings": [o.model_copy(update={"a_row": changed}), *decoded[0].openings[1:]]}
    )
    proof = r.proof.model_copy(update={"openings": [g, decoded[1]]})
    assert codes.MERKLE_PATH_INVALID in verify(r, proof=proof)
    assert verify(r, proof=r.proof.model_copy(update={"openings": decoded})) == []
