"""TranscriptsBucket on moto, built from template.yaml: the presigned POST the service hands out,
the probe's upload, and the verify worker's streamed read with its size and SHA-256 checks.

What moto does NOT enforce of the signed POST policy (content-length-range, the checksum field,
expiry) is pinned here as such: when a moto release starts enforcing it these tests say so, and
the refusals the service relies on are the worker's, tested on the same objects.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import pytest
import requests

from benchmark_probe.client import ServiceError, upload_transcript
from gpuproof.adapters.transcripts import S3TranscriptStore
from gpuproof.local.template import LOCAL_REGION
from gpuproof.protocol.delivery import MEDIA_TYPES, TranscriptRef

from ..conftest import MotoEndpoint


@pytest.fixture
def store(moto_server: MotoEndpoint) -> S3TranscriptStore:
    return S3TranscriptStore(moto_server.resources.bucket_name("TranscriptsBucket"), LOCAL_REGION)


def ids() -> tuple[str, str]:
    return secrets.token_hex(32), secrets.token_hex(16)


def codes(reasons: list[Any]) -> set[str]:
    return {r.code for r in reasons}


def test_the_bucket_is_built_from_the_template(moto_server: MotoEndpoint) -> None:
    s3 = moto_server.client("s3")
    name = moto_server.resources.bucket_name("TranscriptsBucket")
    assert os.environ["TRANSCRIPTS_BUCKET"] == name
    block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    (rule,) = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]}
    assert rules["ExpireTranscripts"]["Expiration"]["Days"] == 30
    assert rules["ExpireTranscripts"]["Filter"] == {"Prefix": "transcripts/"}


def test_an_upload_through_the_presigned_post_reads_back_whole(store: S3TranscriptStore) -> None:
    machine_id, challenge_id = ids()
    data = os.urandom(300_000)
    upload = store.upload_target(machine_id, challenge_id, max_bytes=1 << 20, expires_at=2e9, now=1.9e9)
    upload_transcript(upload.model_dump(), data, MEDIA_TYPES[1], backoff_s=0)
    assert store.size(machine_id, challenge_id) == len(data)
    got, reasons = store.read(machine_id, challenge_id, TranscriptRef.of(1, data), 1 << 20)
    assert reasons == [] and got == data
    fetched = requests.get(store.download_url(machine_id, challenge_id, 60), timeout=30)
    assert fetched.status_code == 200 and fetched.content == data


def test_an_absent_transcript(store: S3TranscriptStore) -> None:
    machine_id, challenge_id = ids()
    assert store.size(machine_id, challenge_id) is None
    got, reasons = store.read(machine_id, challenge_id, TranscriptRef.of(1, b"x"), 1 << 20)
    assert got is None and codes(reasons) == {"transcript_missing"}


def test_a_body_other_than_the_signed_one_is_refused_by_its_digest(store: S3TranscriptStore) -> None:
    machine_id, challenge_id = ids()
    signed, uploaded = os.urandom(50_000), os.urandom(50_000)
    upload = store.upload_target(machine_id, challenge_id, max_bytes=1 << 20, expires_at=2e9, now=1.9e9)
    fields = {**upload.fields, "x-amz-checksum-sha256": TranscriptRef.of(1, signed).transcript_sha256}
    r = requests.post(upload.url, data=fields, files={"file": ("t", uploaded)}, timeout=30)
    # AWS refuses a checksum field that is not the body's (BadDigest); moto stores the body.
    assert r.status_code in (200, 201, 204), "moto now checks the checksum: update docs/architecture.md"
    got, reasons = store.read(machine_id, challenge_id, TranscriptRef.of(1, signed), 1 << 20)
    assert got is None and codes(reasons) == {"transcript_digest_mismatch"}


def test_an_oversized_body_is_refused_by_size_without_being_read(store: S3TranscriptStore) -> None:
    machine_id, challenge_id = ids()
    limit = 64 * 1024
    big = os.urandom(limit + 1)
    upload = store.upload_target(machine_id, challenge_id, max_bytes=limit, expires_at=2e9, now=1.9e9)
    # The probe refuses to send it ...
    with pytest.raises(ServiceError) as refused:
        upload_transcript(upload.model_dump(), big, MEDIA_TYPES[1], backoff_s=0)
    assert refused.value.code == "transcript_too_large"
    # ... a modified probe sends it anyway: AWS refuses it (EntityTooLarge), moto stores it.
    r = requests.post(upload.url, data=upload.fields, files={"file": ("t", big)}, timeout=30)
    assert r.status_code in (200, 201, 204), "moto now enforces content-length-range: update the docs"
    got, reasons = store.read(machine_id, challenge_id, TranscriptRef.of(1, big), limit)
    assert got is None and codes(reasons) == {"transcript_too_large"}
    # A report that declares a smaller size than the object is refused on the object's size.
    got, reasons = store.read(machine_id, challenge_id, TranscriptRef.of(1, big[:100]), limit)
    assert got is None and codes(reasons) == {"transcript_too_large", "transcript_size_mismatch"}


def test_moto_stores_an_upload_under_another_key_than_the_policys(store: S3TranscriptStore) -> None:
    """AWS refuses a form whose key is not the policy's exact key; moto does not. The worker
    reads only its own challenge's key, so such an object is never taken for another's."""
    machine_id, challenge_id = ids()
    victim_machine, victim_challenge = ids()
    upload = store.upload_target(machine_id, challenge_id, max_bytes=1 << 20, expires_at=2e9, now=1.9e9)
    fields = {**upload.fields, "key": f"transcripts/{victim_machine}/{victim_challenge}"}
    r = requests.post(upload.url, data=fields, files={"file": ("t", b"forged")}, timeout=30)
    assert r.status_code in (200, 201, 204), "moto now enforces the policy's key: update the docs"
    assert store.size(machine_id, challenge_id) is None
    victim = TranscriptRef.of(1, b"honest")
    got, reasons = store.read(victim_machine, victim_challenge, victim, 1 << 20)
    assert got is None and codes(reasons) == {"transcript_digest_mismatch"}


def test_a_transcript_in_two_parts_reads_back_as_their_concatenation(store: S3TranscriptStore) -> None:
    """Capacity openings uploaded in two objects (docs/protocol.md §17.10: the GPU targets' part, then
    host RAM's): read in order, checked by each part's size and the whole's SHA-256; a missing or
    resized part is refused on its size, without reading; parts swapped fail the digest."""
    machine_id, challenge_id = ids()
    head, tail = os.urandom(200_000), os.urandom(70_000)
    ref = TranscriptRef(
        version=2,
        transcript_sha256=TranscriptRef.of(1, head + tail).transcript_sha256,
        transcript_bytes=len(head) + len(tail),
        parts=[len(head), len(tail)],
    )

    def put(suffix: str, data: bytes) -> None:
        upload = store.upload_target(machine_id, challenge_id, 1 << 20, 2e9, 1.9e9, suffix=suffix)
        upload_transcript(upload.model_dump(), data, MEDIA_TYPES[2], backoff_s=0)

    put(".capacity", head)
    got, reasons = store.read(machine_id, challenge_id, ref, 1 << 20, ".capacity")
    assert got is None and codes(reasons) == {"transcript_missing"}
    put(".capacity.2", tail[:-1])
    got, reasons = store.read(machine_id, challenge_id, ref, 1 << 20, ".capacity")
    assert got is None and codes(reasons) == {"transcript_size_mismatch"}
    put(".capacity.2", tail)
    got, reasons = store.read(machine_id, challenge_id, ref, 1 << 20, ".capacity")
    assert reasons == [] and got == head + tail
    got, reasons = store.read(machine_id, challenge_id, ref, len(head), ".capacity")
    assert got is None and codes(reasons) == {"transcript_too_large"}
    put(".capacity", tail + head[: len(head) - len(tail)])  # the same sizes, other bytes
    put(".capacity.2", head[len(head) - len(tail) :])
    got, reasons = store.read(machine_id, challenge_id, ref, 1 << 20, ".capacity")
    assert got is None and codes(reasons) == {"transcript_digest_mismatch"}
