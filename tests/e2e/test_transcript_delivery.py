"""The transcript of an 8 x H100 host, at its real size, through the whole local path: the
commitment's presigned POST, the probe's upload to S3 (moto, from template.yaml), report intake
(the object is there at the declared size), the verify worker's streamed fetch and SHA-256 check,
to a recorded verification. Also: intake refusals, and a digest mismatch at full size.

The bytes are random in the exact layout of docs/protocol-v2.md §7 (d = 4096, n = 2^18 → Merkle
depth 18, T = 1,600 steps, m = 72 openings, 8 GPUs): the delivery is what is under test. Until
the v2 codec is in this branch the worker refuses them as `transcript_version_unsupported`, AFTER
delivery and digest passed; the v2 codec turns this into a decoded, verified transcript.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from benchmark_probe.client import ServiceError, upload_transcript
from benchmark_probe.report import Challenge, build_report
from gpuproof.protocol.delivery import MEDIA_TYPES, TranscriptRef
from gpuproof.protocol.report import Integrity

from .h100_host import Committed, committed_h100_host, send_report, shaped_transcript
from .test_attacks import h100_inventory

pytestmark = pytest.mark.e2e


def proof_check(host: Committed) -> tuple[dict[str, Any], dict[str, Any]]:
    status = host.client.machine(host.key.public_hex)
    (report,) = status["reports"]
    verification = report["verification"]
    assert verification is not None, "no verification recorded"
    (check,) = [c for c in verification["checks"] if c["name"] == "proof_of_throughput"]
    return status, check


@pytest.fixture
def peak_memory() -> Iterator[list[int]]:
    tracemalloc.start()
    peak: list[int] = []
    try:
        yield peak
    finally:
        tracemalloc.stop()


def test_8xh100_transcript_through_the_local_path(local_stack: Any, peak_memory: list[int]) -> None:
    """A transcript with exactly an 8 x H100 host's dimensions (d = 4096, n = 2^18 so Merkle
    depth 18, T and m as the challenge sets them, 8 GPUs), through upload, intake, the worker's
    fetch, digest check, binary decoding and verification, to a recorded verdict (refused: its
    content is random)."""
    host = committed_h100_host(local_stack)
    params = host.params
    assert len(params) == 8 and {(p.n, p.d) for p in params} == {(1 << 18, 4096)}
    assert {(p.n - 1).bit_length() for p in params} == {18}
    transcript = shaped_transcript(params, host.pairs, np.random.default_rng(8))
    print(f"\n8xH100 transcript: {len(transcript)} bytes ({len(transcript) // 8} per GPU)")
    assert host.upload["max_bytes"] >= len(transcript)
    upload_transcript(host.upload, transcript, MEDIA_TYPES[2], backoff_s=0)
    ref = host.reference(transcript)
    assert send_report(host, ref)["state"] == "submitted"

    tracemalloc.reset_peak()
    local_stack.drain()  # the verify worker: fetch, digest, decode
    _, peak = tracemalloc.get_traced_memory()
    peak_memory.append(peak)
    print(f"peak traced memory while the worker ran: {peak / 2**20:.1f} MiB")

    status, check = proof_check(host)
    delivered = check["details"]["transcript"]
    assert delivered == {
        "key": host.upload["key"],
        "version": 2,
        "bytes": len(transcript),
        "sha256": ref.transcript_sha256,
        "limit_bytes": host.upload["max_bytes"],
        "delivered": True,
    }
    # Delivered, digest-checked and decoded: random roots and rows fail the proof's own checks.
    codes = {r["code"] for r in check["reasons"]}
    assert "proof_root_chain_invalid" in codes and all(c.startswith("proof_") for c in codes), codes
    assert not codes & {"proof_transcript_malformed", "transcript_digest_mismatch"}, codes
    assert status["machine"]["state"] == "refused"
    # An upper bound: moto serves the object from this same process (scripts/bench_delivery.py
    # measures the worker with moto in its own process). Decoding holds every opening as Python
    # ints (~20x the bytes): within the VerifyWorker's 1024 MB.
    assert peak < 900 << 20, peak


def test_a_full_size_transcript_other_than_the_signed_one_is_refused(local_stack: Any) -> None:
    host = committed_h100_host(local_stack)
    transcript = shaped_transcript(host.params, host.pairs, np.random.default_rng(9))
    swapped = bytearray(transcript)
    swapped[len(swapped) // 2] ^= 0xFF
    upload_transcript(host.upload, bytes(swapped), MEDIA_TYPES[2], backoff_s=0)
    send_report(host, host.reference(transcript))  # same size: intake cannot tell
    local_stack.drain()
    status, check = proof_check(host)
    assert {r["code"] for r in check["reasons"]} == {"transcript_digest_mismatch"}
    assert check["details"]["transcript"]["delivered"] is False
    assert status["machine"]["state"] == "refused"


def test_intake_refuses_a_report_whose_transcript_is_not_there_and_keeps_the_challenge(
    local_stack: Any,
) -> None:
    host = committed_h100_host(local_stack)
    data = b"\x01" * 1000
    with pytest.raises(ServiceError) as missing:
        send_report(host, host.reference(data))
    assert missing.value.status == 422 and missing.value.code == "transcript_missing"
    upload_transcript(host.upload, data[:999], MEDIA_TYPES[2], backoff_s=0)
    with pytest.raises(ServiceError) as short:
        send_report(host, host.reference(data))
    assert short.value.code == "transcript_size_mismatch"
    # Nothing was stored: the probe uploads again and resends within the challenge's life.
    upload_transcript(host.upload, data, MEDIA_TYPES[2], backoff_s=0)
    assert send_report(host, host.reference(data))["state"] == "submitted"


def test_intake_refuses_a_declared_size_over_the_challenge_limit(local_stack: Any) -> None:
    host = committed_h100_host(local_stack)
    over = host.upload["max_bytes"] + 1
    ref = TranscriptRef(version=2, transcript_sha256="0" * 64, transcript_bytes=over)
    with pytest.raises(ServiceError) as refused:
        send_report(host, ref)
    assert refused.value.status == 413 and refused.value.code == "transcript_too_large"
    bad = {"version": 2, "transcript_sha256": "zz", "transcript_bytes": 1}
    inventory = h100_inventory(8)
    report = build_report(host.key, Challenge.from_json(host.challenge), inventory, [], Integrity(), bad)
    with pytest.raises(ServiceError) as malformed:
        host.client.submit_report(
            host.key.public_hex, host.challenge["challenge_id"], report.model_dump(mode="json")
        )
    assert malformed.value.status == 422 and malformed.value.code == "proof_reference_malformed"
