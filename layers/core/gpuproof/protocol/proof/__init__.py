"""Proof of throughput (protocol v2): anchored, per-step permuted exact int8 GEMM chains, Merkle
commitments chained to one value per GPU, a binary transcript, verification.

docs/protocol.md specifies it byte for byte. Pure and AWS-free: the probe (prover), the verify
worker and the committee CLI (verifiers) all import it.
"""

from __future__ import annotations

from gpuproof.protocol.proof import codes
from gpuproof.protocol.proof.executor import ChainCommit, NumpyExecutor, ProofExecutor, RecomputedRows
from gpuproof.protocol.proof.matrices import b_seed, gpu_seed
from gpuproof.protocol.proof.models import (
    GpuCommitment,
    GpuOpenings,
    GpuPairs,
    Pair,
    ProofParams,
    RowOpening,
    SignedCommitment,
    ThroughputCommitment,
    ThroughputProof,
)
from gpuproof.protocol.proof.params import derive_params
from gpuproof.protocol.proof.prover import Prover
from gpuproof.protocol.proof.transcript import draw_all_pairs, draw_pairs
from gpuproof.protocol.proof.verifier import (
    Freivalds,
    check_deadline,
    verify_commitment,
    verify_gpu,
    verify_proof,
    verify_throughput,
)
from gpuproof.protocol.proof.wire import TranscriptError, decode_transcript, encode_transcript

__all__ = [
    "ChainCommit",
    "Freivalds",
    "GpuCommitment",
    "GpuOpenings",
    "GpuPairs",
    "NumpyExecutor",
    "Pair",
    "ProofExecutor",
    "ProofParams",
    "Prover",
    "RecomputedRows",
    "RowOpening",
    "SignedCommitment",
    "ThroughputCommitment",
    "ThroughputProof",
    "TranscriptError",
    "b_seed",
    "check_deadline",
    "codes",
    "decode_transcript",
    "derive_params",
    "draw_all_pairs",
    "draw_pairs",
    "encode_transcript",
    "gpu_seed",
    "verify_commitment",
    "verify_gpu",
    "verify_proof",
    "verify_throughput",
]
