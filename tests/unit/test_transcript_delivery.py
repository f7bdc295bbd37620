"""The transcript delivered out of band, without AWS: the signed reference, the streaming size and
SHA-256 check the verify worker and the committee CLI share, and the presigned POST policy the
service hands out (what S3 enforces at upload: key, size range, checksum field, expiry)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from benchmark_probe.client import ServiceError, upload_transcript
from gpuproof.adapters.transcripts import S3TranscriptStore
from gpuproof.errors import STATUS_BY_CODE
from gpuproof.protocol import delivery
from gpuproof.protocol.delivery import (
    TranscriptRef,
    decode,
    encode_binary,
    read_verified,
    size_reasons,
    transcript_limit,
)
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import (
    NumpyExecutor,
    Prover,
    SignedCommitment,
    ThroughputProof,
    derive_params,
    draw_all_pairs,
    verify_throughput,
)
from gpuproof.reason_codes import REASON_CODES

DATA = os.urandom(10_000)
REF = TranscriptRef.of(1, DATA)


def chunks(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def codes(reasons: list[Any]) -> set[str]:
    return {r.code for r in reasons}


def test_the_signed_bytes_pass_whole() -> None:
    data, reasons = read_verified(chunks(DATA), REF, max_bytes=len(DATA))
    assert reasons == [] and data == DATA


def test_one_flipped_bit_is_a_digest_mismatch() -> None:
    tampered = bytearray(DATA)
    tampered[5000] ^= 1
    data, reasons = read_verified(chunks(bytes(tampered)), REF, max_bytes=1 << 20)
    assert data is None and codes(reasons) == {"transcript_digest_mismatch"}


def test_a_longer_body_is_refused_before_it_is_all_read() -> None:
    read: list[int] = []

    def endless() -> Any:
        while True:
            read.append(1)
            yield b"\0" * 4096

    data, reasons = read_verified(endless(), REF, max_bytes=8192)
    assert data is None and codes(reasons) == {"transcript_too_large"}
    assert len(read) <= 3  # stopped at the bound, not at the end of the stream
    data, reasons = read_verified(chunks(DATA + b"x"), REF, max_bytes=1 << 20)
    assert data is None and codes(reasons) == {"transcript_size_mismatch"}


def test_a_shorter_body_is_a_size_mismatch() -> None:
    data, reasons = read_verified(chunks(DATA[:-1]), REF, max_bytes=1 << 20)
    assert data is None and codes(reasons) == {"transcript_size_mismatch"}


def test_size_reasons() -> None:
    assert codes(size_reasons(None, REF, 1 << 20)) == {"transcript_missing"}
    assert size_reasons(len(DATA), REF, 1 << 20) == []
    assert codes(size_reasons(len(DATA) + 1, REF, 1 << 20)) == {"transcript_size_mismatch"}
    assert codes(size_reasons(len(DATA), REF, len(DATA) - 1)) == {"transcript_too_large"}


def test_the_reference_is_strict() -> None:
    assert delivery.is_reference(REF.model_dump()) and not delivery.is_reference({"commitment": {}})
    assert not delivery.is_reference(None)
    for bad in (
        {**REF.model_dump(), "transcript_sha256": "AB" * 32},
        {**REF.model_dump(), "transcript_bytes": 0},
        {**REF.model_dump(), "transcript_bytes": delivery.MAX_TRANSCRIPT_BYTES + 1},
        {**REF.model_dump(), "version": 3},
        {**REF.model_dump(), "url": "https://elsewhere.example/"},
    ):
        ref, reasons = delivery.parse_reference(bad)
        assert ref is None and codes(reasons) == {"proof_reference_malformed"}, bad


def test_limits() -> None:
    assert transcript_limit(4 << 20, 8) == 32 << 20
    assert transcript_limit(4 << 20, 0) == 4 << 20  # a CPU claim proves on one "GPU"
    assert transcript_limit(64 << 20, 64) == delivery.MAX_TRANSCRIPT_BYTES


def test_decode_refuses_what_it_cannot_read() -> None:
    proof, reasons = decode(REF, DATA, [])
    assert proof is None and codes(reasons) == {"transcript_malformed"}
    bare = TranscriptRef(version=2, transcript_sha256=REF.transcript_sha256, transcript_bytes=len(DATA))
    proof, reasons = decode(bare, DATA, [])
    assert proof is None and codes(reasons) == {"proof_reference_malformed"}
    with pytest.raises(ValueError):
        TranscriptRef.of(2, DATA)  # a binary transcript's reference needs the proof's commitment


def test_a_binary_transcript_round_trips_to_the_proof_the_verifier_accepts() -> None:
    """The probe's encoding (binary object + reference) decodes to the same proof, which verifies."""
    key = SigningKey.from_seed(bytes([9]) * 32)
    nonce = bytes(range(32))
    params = [derive_params(None, cpu=True, gpu_index=i) for i in range(2)]
    prover = Prover(nonce, key.public_hex, "ch", params, NumpyExecutor())
    signed = SignedCommitment.sign(prover.run(), key)
    secret = bytes([7]) * 32
    pairs = draw_all_pairs(signed, secret, params)
    proof = ThroughputProof(
        commitment=signed.commitment, signature=signed.signature, pairs=pairs, openings=prover.open(pairs)
    )
    data, ref = encode_binary(proof, params)
    assert ref.version == 2 and ref.transcript_bytes == len(data) and ref.commitment == proof.commitment
    again = TranscriptRef.model_validate(ref.model_dump(mode="json"))  # as the signed report carries it
    decoded, reasons = decode(again, data, params)
    assert reasons == [] and decoded == proof
    kw = {"machine_id": key.public_hex, "challenge_id": "ch", "nonce": nonce, "params": params}
    assert verify_throughput(decoded, pairs=pairs, **kw) == []
    flipped = bytearray(data)
    flipped[-1] ^= 0xFF  # the last Merkle sibling of the last opening
    tampered, reasons = decode(again, flipped, params)
    assert tampered is not None and verify_throughput(tampered, pairs=pairs, **kw) != []
    short, reasons = decode(again, data[:-1], params)
    assert short is None and codes(reasons) == {"proof_transcript_malformed"}


def test_every_delivery_code_is_registered_and_intake_codes_are_client_errors() -> None:
    for code in delivery.ALL_CODES:
        assert code in REASON_CODES, code
    for code in ("proof_reference_malformed", "transcript_missing", "transcript_size_mismatch"):
        assert STATUS_BY_CODE[code] == 422, code
    assert STATUS_BY_CODE["transcript_too_large"] == 413


def _policy(upload_fields: dict[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(base64.b64decode(upload_fields["policy"]))
    return doc


def test_the_presigned_post_policy_fixes_key_size_and_checksum() -> None:
    """What AWS S3 enforces on the upload (moto does not; tests/integration proves the worker
    refuses the same things): the exact key, 1..max_bytes, a SHA-256 checksum field, expiry."""
    client = boto3.client(
        "s3",
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",  # a dummy key: presigning is offline
        config=Config(signature_version="s3v4"),
    )
    store = S3TranscriptStore("transcripts-bucket", "eu-west-1", client=client)
    upload = store.upload_target("ab" * 32, "ch-1", max_bytes=8 << 20, expires_at=1000.0, now=100.0)
    assert upload.key == "transcripts/" + "ab" * 32 + "/ch-1"
    assert upload.url.startswith("https://") and upload.max_bytes == 8 << 20
    assert upload.expires_at == 1000.0
    policy = _policy(upload.fields)
    conditions = policy["conditions"]
    assert {"bucket": "transcripts-bucket"} in conditions
    assert {"key": upload.key} in conditions  # exactly this key, not a prefix
    assert ["content-length-range", 1, 8 << 20] in conditions
    assert {"x-amz-checksum-algorithm": "SHA256"} in conditions
    assert ["starts-with", "$x-amz-checksum-sha256", ""] in conditions
    assert upload.fields["x-amz-checksum-algorithm"] == "SHA256"
    assert upload.fields["key"] == upload.key
    assert policy["expiration"].endswith("Z")


def test_transcript_key_names_machine_and_challenge() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert delivery.transcript_key(digest, "c1") == f"transcripts/{digest}/c1"


@pytest.mark.parametrize("version", [1, 2])
def test_media_types(version: int) -> None:
    assert delivery.MEDIA_TYPES[version].startswith("application/vnd.gpuproof.transcript.v")


class ScriptedS3:
    """HTTP double of S3's POST endpoint: answers from a script, records what it was sent."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, Any]] = []

    def post(self, url: str, *, data: dict[str, str], files: dict[str, Any], timeout: float) -> Any:
        self.sent.append({"url": url, "data": data, "files": files})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, text = answer
        return type("Response", (), {"status_code": status, "text": text})()


UPLOAD = {"url": "https://s3.example/b", "fields": {"key": "transcripts/m/c"}, "max_bytes": 20_000}


def test_the_probe_uploads_with_the_checksum_field_and_retries_transient_failures() -> None:
    s3 = ScriptedS3(
        requests.ConnectionError("reset"), (503, "<Error><Code>SlowDown</Code></Error>"), (204, "")
    )
    upload_transcript(UPLOAD, DATA, delivery.MEDIA_TYPES[1], backoff_s=0, session=s3)
    assert len(s3.sent) == 3
    sent = s3.sent[-1]
    assert sent["data"]["key"] == "transcripts/m/c"
    assert base64.b64decode(sent["data"]["x-amz-checksum-sha256"]) == hashlib.sha256(DATA).digest()
    assert sent["files"]["file"][1] == DATA


def test_the_probe_stops_at_a_refusal_and_says_why() -> None:
    too_large = (
        "<Error><Code>EntityTooLarge</Code>"
        "<Message>Your proposed upload exceeds the maximum allowed size</Message></Error>"
    )
    s3 = ScriptedS3((400, too_large), (204, ""))
    with pytest.raises(ServiceError) as refused:
        upload_transcript(UPLOAD, DATA, delivery.MEDIA_TYPES[1], backoff_s=0, session=s3)
    assert refused.value.status == 400 and refused.value.code == "EntityTooLarge"
    assert len(s3.sent) == 1
    with pytest.raises(ServiceError) as local:
        upload_transcript({**UPLOAD, "max_bytes": 10}, DATA, delivery.MEDIA_TYPES[1], session=ScriptedS3())
    assert local.value.code == "transcript_too_large"


def test_a_v1_transcript_round_trips_and_the_member_checks_what_it_fetches() -> None:
    """The committee CLI's side: the bytes it fetches must be the signed ones before it decodes."""
    from gpuproof.cli.member import ApiError, _delivered

    from .test_proof_protocol import cpu_params, run

    proof = run(3, cpu_params(1)).proof
    data = delivery.encode_v1(proof)
    decoded, reasons = decode(TranscriptRef.of(1, data), data, [])
    assert reasons == [] and decoded == proof
    ref = TranscriptRef.of(1, data).model_dump()
    where = {"transcript": {"url": "https://s3.example/t", "expires_at": 0, "key": "k"}}

    got, check = _delivered(where, ref, lambda url: iter(chunks(data)), [])
    assert check.ok and got == proof, check
    tampered = data.replace(b'"commitment"', b'"commitmenT"', 1)
    got, check = _delivered(where, ref, lambda url: iter(chunks(tampered)), [])
    assert got is None and not check.ok and "transcript_digest_mismatch" in check.detail
    got, check = _delivered({"transcript": None}, ref, lambda url: iter(chunks(data)), [])
    assert got is None and not check.ok and "no URL" in check.detail

    def refused(url: str) -> Any:
        raise ApiError(403, "transcript_unavailable", "AccessDenied", [])

    got, check = _delivered(where, ref, refused, [])
    assert got is None and not check.ok and "could not fetch" in check.detail
