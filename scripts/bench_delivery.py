"""The proof transcript of an 8 x H100 host through the local path, measured: its size, and the
verify worker's peak Python heap (tracemalloc) while it fetches, digest-checks and decodes it.

moto runs in a process of its own, so the figure is the worker's (with the local stack's pollers
and HTTP front, which idle meanwhile), not moto's copy of the object. The bytes are random in the
exact v2 layout (docs/protocol-v2.md §7); tests/e2e/test_transcript_delivery.py runs the same path.

    python scripts/bench_delivery.py            # one JSON object on stdout
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]  # the tests' 8 x H100 host

import boto3  # noqa: E402
import numpy as np  # noqa: E402

from benchmark_probe.client import upload_transcript  # noqa: E402
from gpuproof.adapters.transcripts import S3TranscriptStore  # noqa: E402
from gpuproof.local.moto_server import HOST, free_port  # noqa: E402
from gpuproof.local.stack import LocalStack  # noqa: E402
from gpuproof.local.template import LOCAL_REGION  # noqa: E402
from gpuproof.protocol.delivery import MEDIA_TYPES  # noqa: E402
from tests.e2e.h100_host import committed_h100_host, send_report, shaped_transcript  # noqa: E402

PARAMETERS = {"AllowCpuBackend": "true", "ChallengeCooldownSeconds": "0"}


def moto_process() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection((HOST, port), 0.2).close()
            return proc, f"http://{HOST}:{port}"
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise RuntimeError("moto did not start")


def measure() -> dict[str, Any]:
    proc, endpoint = moto_process()
    try:
        with LocalStack(endpoint_url=endpoint, parameters=PARAMETERS) as stack:
            host = committed_h100_host(stack)
            transcript = shaped_transcript(host.params, host.pairs, np.random.default_rng(8))
            ref = host.reference(transcript)
            upload_transcript(host.upload, transcript, MEDIA_TYPES[2], backoff_s=0)
            send_report(host, ref)
            tracemalloc.start()
            stack.drain()
            _, worker_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            (report,) = host.client.machine(host.key.public_hex)["reports"]
            (check,) = [c for c in report["verification"]["checks"] if c["name"] == "proof_of_throughput"]
            store = S3TranscriptStore(os.environ["TRANSCRIPTS_BUCKET"], LOCAL_REGION)
            tracemalloc.start()
            data, reasons = store.read(
                host.key.public_hex, host.challenge["challenge_id"], ref, len(transcript)
            )
            _, fetch_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert data == transcript and not reasons
            del data
            # Reference: the naive read of the same object, one get_object().read() and a hash.
            s3 = boto3.client("s3")
            tracemalloc.start()
            body = s3.get_object(Bucket=store.bucket, Key=host.upload["key"])["Body"].read()
            hashlib.sha256(body).hexdigest()
            _, naive_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            del body
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    mib = 2**20
    return {
        "shape": {
            "gpus": len(host.params),
            "n": host.params[0].n,
            "d": host.params[0].d,
            "steps": host.params[0].steps,
            "openings": host.params[0].checks,
            "merkle_depth": (host.params[0].n - 1).bit_length(),
        },
        "transcript_bytes": len(transcript),
        "transcript_bytes_per_gpu": len(transcript) // len(host.params),
        "limit_bytes": host.upload["max_bytes"],
        "worker_peak_mib": round(worker_peak / mib, 1),
        "fetch_and_digest_peak_mib": round(fetch_peak / mib, 1),
        "naive_get_and_hash_peak_mib": round(naive_peak / mib, 1),
        "delivered": check["details"]["transcript"]["delivered"],
        "proof_reasons": sorted({r["code"] for r in check["reasons"]}),
        "method": "tracemalloc peak of this process during the verify worker's run (stack.drain) and "
        "during S3TranscriptStore.read alone; moto in its own process; Python heap only",
    }


def bench_sections() -> str:
    """The section `make bench` writes into docs/benchmarks.md."""
    m = measure()
    sh = m["shape"]
    return "\n".join(
        [
            "## Proof transcript delivery (8 x H100 shape)",
            "",
            "Method: `scripts/bench_delivery.py`: random bytes in the exact v2 layout (docs/protocol-v2.md "
            f"§7; {sh['gpus']} GPUs, n = {sh['n']}, d = {sh['d']}, T = {sh['steps']}, m = {sh['openings']}, "
            f"Merkle depth {sh['merkle_depth']}) uploaded through the commitment's presigned POST to the "
            "local stack's bucket (moto in its own process), a signed report referencing it, then the "
            "verify worker's run; peak Python heap by tracemalloc. Reference in the same run: one "
            "`get_object().read()` of the same object and its SHA-256.",
            "",
            "| figure | value |",
            "|---|---:|",
            f"| transcript, whole host (bytes) | {m['transcript_bytes']:,} |",
            f"| transcript per GPU (bytes) | {m['transcript_bytes_per_gpu']:,} |",
            f"| the challenge's upload limit (bytes) | {m['limit_bytes']:,} |",
            f"| verify worker's run, peak heap (MiB) | {m['worker_peak_mib']} |",
            f"| of which streamed fetch + size + SHA-256 check (MiB) | {m['fetch_and_digest_peak_mib']} |",
            f"| naive get + hash of the same object (reference, MiB) | {m['naive_get_and_hash_peak_mib']} |",
            "",
            f"Outcome recorded: delivered = {m['delivered']}, proof reasons {m['proof_reasons']} "
            "(random bytes: the v2 codec decides from there).",
            "",
        ]
    )


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
