"""An 8 x H100 host for delivery tests and scripts/bench_delivery.py: the transcript's shape
(docs/protocol-v2.md §7), random bytes in that exact layout, and a machine that took an 8 x H100
challenge and committed (random roots: the commitment is accepted on receipt)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark_probe.client import ServiceClient
from benchmark_probe.report import Challenge, build_report
from benchmark_probe.submit import register, registration_for
from gpuproof.protocol.delivery import TranscriptRef
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.machine import Region
from gpuproof.protocol.report import Integrity

from .api_client import OWNER
from .test_attacks import H100, bf16_figures, fabricated_commitment, h100_inventory


@dataclass(frozen=True)
class Shape:
    """One host's transcript dimensions (docs/protocol-v2.md §7)."""

    gpus: int = 8
    n: int = 1 << 18
    d: int = 4096
    steps: int = 1600
    m: int = 72

    @property
    def depth(self) -> int:
        return (self.n - 1).bit_length()

    @property
    def opening_bytes(self) -> int:
        """An opening with step > 1 (the larger kind): both packed rows with their paths, k."""
        packed = 5 * self.d // 8
        return 8 + 2 * (packed + 32 * self.depth) + 2 * self.d

    @property
    def gpu_bytes(self) -> int:
        return 2 + 4 + 4 + 2 + 2 + 32 * self.steps + self.m * self.opening_bytes

    @property
    def total_bytes(self) -> int:
        return 8 + 2 + self.gpus * self.gpu_bytes


H100_HOST = Shape()


def v2_shaped_transcript(shape: Shape, rng: np.random.Generator) -> bytes:
    """Random content in §7's layout: header, per GPU its dimensions, roots, openings."""
    packed = 5 * shape.d // 8
    out = bytearray(b"GPTRv2\0\0" + struct.pack("<H", shape.gpus))
    for gpu in range(shape.gpus):
        out += struct.pack("<HIIHH", gpu, shape.steps, shape.n, shape.d, shape.m)
        out += rng.bytes(32 * shape.steps)
        for _ in range(shape.m):
            step, row = int(rng.integers(2, shape.steps + 1)), int(rng.integers(0, shape.n))
            out += struct.pack("<II", step, row)
            out += rng.bytes(packed + 32 * shape.depth)  # A_{t-1}[row] and its path
            out += rng.integers(-200, 200, size=shape.d, dtype="<i2").tobytes()  # k
            out += rng.bytes(packed + 32 * shape.depth)  # A_t[row] and its path
    assert len(out) == shape.total_bytes
    return bytes(out)


@dataclass
class Committed:
    key: SigningKey
    client: ServiceClient
    challenge: dict[str, Any]
    upload: dict[str, Any]


def committed_h100_host(local_stack: Any) -> Committed:
    """A machine that took an 8 x H100 challenge and committed: the answer carries its upload."""
    key = SigningKey.generate()
    client = ServiceClient(local_stack.api_url, key)
    assert register(client, registration_for(key, OWNER, Region.europe)) == "registered"
    challenge = client.create_challenge(key.public_hex, {"claimed_gpu_model": H100, "gpu_count": 8})
    assert len(challenge["params"]["proof"]) == 8
    answer: dict[str, Any] = {}

    def capture(*args: Any) -> Any:
        answer.update(real(*args))
        return answer

    real = client.submit_commitment
    client.submit_commitment = capture  # type: ignore[method-assign]
    fabricated_commitment(client, key, challenge)
    client.submit_commitment = real  # type: ignore[method-assign]
    upload = answer["transcript_upload"]
    assert upload["key"] == f"transcripts/{key.public_hex}/{challenge['challenge_id']}"
    return Committed(key, client, challenge, upload)


def send_report(host: Committed, ref: TranscriptRef) -> Any:
    inventory = h100_inventory(8)
    report = build_report(
        host.key,
        Challenge.from_json(host.challenge),
        inventory,
        bf16_figures(inventory, 790.0),
        Integrity(),
        ref.model_dump(mode="json"),
    )
    return host.client.submit_report(
        host.key.public_hex, host.challenge["challenge_id"], report.model_dump(mode="json")
    )
