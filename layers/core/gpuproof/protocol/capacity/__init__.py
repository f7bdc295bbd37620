"""The capacity phase (v1): each claimed GPU, and host RAM, holds a committed, costly-to-regenerate
fill and answers the service's timed interactive read rounds; the service verifies cheaply.

docs/protocol.md "Capacity phase" specifies it byte for byte. Pure and AWS-free (probe, verify
worker and committee CLI share it).
"""

from __future__ import annotations

from gpuproof.protocol.capacity import codes
from gpuproof.protocol.capacity.draws import Walk, draw_spots, draw_walks, round_plan
from gpuproof.protocol.capacity.models import (
    HOST_TARGET,
    CapacityAnswer,
    CapacityCommitment,
    CapacityParams,
    CapacityRound,
    CapacityTargetParams,
    CapacityTranscript,
    RoundRecord,
    SignedCapacityCommitment,
    TargetOpenings,
)
from gpuproof.protocol.capacity.params import derive_capacity_params, gpu_target, host_target, phase
from gpuproof.protocol.capacity.session import CapacitySession, SessionError
from gpuproof.protocol.capacity.verifier import CapacityResult, TargetResult, verify_capacity

__all__ = [
    "HOST_TARGET",
    "CapacityAnswer",
    "CapacityCommitment",
    "CapacityParams",
    "CapacityResult",
    "CapacityRound",
    "CapacitySession",
    "CapacityTargetParams",
    "CapacityTranscript",
    "RoundRecord",
    "SessionError",
    "SignedCapacityCommitment",
    "TargetOpenings",
    "TargetResult",
    "Walk",
    "codes",
    "derive_capacity_params",
    "draw_spots",
    "draw_walks",
    "gpu_target",
    "host_target",
    "phase",
    "round_plan",
    "verify_capacity",
]
