"""An 8 x H100 host for delivery tests and scripts/bench_delivery.py: a machine that took an
8 x H100 challenge and committed (a random chained value per GPU: accepted on receipt), and a
transcript in the exact binary layout for its parameters and drawn pairs, with random content."""

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
from gpuproof.protocol.proof import GpuPairs, ProofParams, SignedCommitment, ThroughputProof
from gpuproof.protocol.proof.wire import MAGIC, max_size
from gpuproof.protocol.report import Integrity

from .api_client import OWNER
from .test_attacks import H100, bf16_figures, fabricated_commitment, h100_inventory


def shaped_transcript(params: list[ProofParams], pairs: list[GpuPairs], rng: np.random.Generator) -> bytes:
    """A transcript in the exact binary layout of docs/protocol.md §7 for these params and the
    pairs the service drew (headers, roots, one opening per pair, a_prev absent at step 1), its
    rows and digests random: it decodes, and the verifier refuses it."""
    packed = 5 * params[0].d // 8
    by_gpu = {g.gpu_index: g.pairs for g in pairs}
    out = bytearray(MAGIC + struct.pack("<H", len(params)))
    for p in params:
        depth = (p.n - 1).bit_length()
        drawn = by_gpu[p.gpu_index]
        out += struct.pack("<HIIHH", p.gpu_index, p.steps, p.n, p.d, len(drawn))
        out += rng.bytes(32 * p.steps)
        for pair in drawn:
            out += struct.pack("<II", pair.step, pair.row)
            if pair.step > 1:
                out += rng.bytes(packed + 32 * depth)  # A_{t-1}[row] and its path
            out += rng.bytes(packed + 32 * depth)  # A_t[row] and its path
    assert len(out) <= max_size(params)
    return bytes(out)


@dataclass
class Committed:
    key: SigningKey
    client: ServiceClient
    challenge: dict[str, Any]
    upload: dict[str, Any]
    signed: SignedCommitment
    pairs: list[GpuPairs]

    @property
    def params(self) -> list[ProofParams]:
        return [ProofParams.model_validate(p) for p in self.challenge["params"]["proof"]]

    def reference(self, data: bytes) -> TranscriptRef:
        """The reference the signed report carries for these transcript bytes."""
        proof = ThroughputProof(
            commitment=self.signed.commitment, signature=self.signed.signature, pairs=self.pairs, openings=[]
        )
        return TranscriptRef.of(2, data, proof)


def committed_h100_host(local_stack: Any, claimed_ram_bytes: int | None = None) -> Committed:
    """A machine that took an 8 x H100 challenge (and claims `claimed_ram_bytes` of host RAM) and
    committed: the answer carries its upload."""
    key = SigningKey.generate()
    client = ServiceClient(local_stack.api_url, key)
    assert register(client, registration_for(key, OWNER, Region.europe)) == "registered"
    body: dict[str, Any] = {"claimed_gpu_model": H100, "gpu_count": 8}
    if claimed_ram_bytes is not None:
        body["claimed_ram_bytes"] = claimed_ram_bytes
    challenge = client.create_challenge(key.public_hex, body)
    assert len(challenge["params"]["proof"]) == 8
    answer: dict[str, Any] = {}

    def capture(*args: Any) -> Any:
        answer.update(real(*args))
        return answer

    real = client.submit_commitment
    client.submit_commitment = capture  # type: ignore[method-assign]
    signed, pairs = fabricated_commitment(client, key, challenge)
    client.submit_commitment = real  # type: ignore[method-assign]
    upload = answer["transcript_upload"]
    assert upload["key"] == f"transcripts/{key.public_hex}/{challenge['challenge_id']}"
    return Committed(key, client, challenge, upload, signed, pairs)


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
