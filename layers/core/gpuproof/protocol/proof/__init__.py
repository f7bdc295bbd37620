"""Proof of throughput: seeded exact GEMM chains, Merkle commitments, openings, verification.

docs/protocol.md specifies it byte for byte. Pure and AWS-free: the probe (prover), the verify
worker and the committee CLI (verifiers) all import it.
"""

from __future__ import annotations

from gpuproof.protocol.proof import codes
from gpuproof.protocol.proof.executor import ChainCommit, NumpyExecutor, ProofExecutor, RecomputedRows
from gpuproof.protocol.proof.matrices import gpu_seed
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
    check_deadline,
    verify_commitment,
    verify_gpu,
    verify_proof,
    verify_throughput,
)

__all__ = [
    "ChainCommit",
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
    "check_deadline",
    "codes",
    "derive_params",
    "draw_all_pairs",
    "draw_pairs",
    "gpu_seed",
    "verify_commitment",
    "verify_gpu",
    "verify_proof",
    "verify_throughput",
]
