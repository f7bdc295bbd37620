"""What the service measured, built for tests from the reference table: a proof of throughput as a
host of a given model and speed would have passed it under the service's clock, and a capacity
record in the shape `gpuproof.protocol.capacity` writes (`verification["capacity"]`). Not a double
of our own code: these are the inputs `gpuproof.evidence` reads, with the figures stated."""

from __future__ import annotations

from typing import Any

from gpuproof.claim import Claim, proof_params_for
from gpuproof.evidence import GB, GIB, MeasuredFacts, Throughput, expected_seconds, parse_capacity
from gpuproof.reference import lookup


def throughput(
    claim: Claim, *, model: str | None = None, speed: float = 1.0, latency_s: float = 0.0
) -> Throughput:
    """The claim's proof answered by GPUs of `model` (default: the claimed one) running `speed` x
    that model's estimated pipeline, plus `latency_s` of network; passed iff within the deadline."""
    params = proof_params_for(claim)
    ref = lookup(model or claim.gpu_model or "")
    assert ref is not None
    times = expected_seconds(ref, params[0].ops)
    assert times is not None
    gemm_and_epilogue = times[0] - (ref.setup_s or 0.0)
    elapsed = gemm_and_epilogue / speed + (ref.setup_s or 0.0) + latency_s
    passed = elapsed <= max(p.deadline_s for p in params)
    return Throughput(passed, elapsed, {p.gpu_index: float(p.ops) for p in params}, "cd" * 32, not passed)


def capacity_doc(
    claim: Claim,
    *,
    model: str | None = None,
    fill: float = 0.9,
    bandwidth_fraction: float = 0.85,
    passed: list[bool] | None = None,
    ram_claimed_gb: int | None = 512,
    ram_proven_gb: int | None = 512,
    ram_passed: bool = True,
) -> dict[str, Any]:
    """A capacity record: each GPU proved `fill` x the claimed model's VRAM at `bandwidth_fraction`
    x `model`'s datasheet bandwidth; host RAM claimed and proven in GiB (None: no host RAM record)."""
    claimed = lookup(claim.gpu_model or "")
    measured = lookup(model or claim.gpu_model or "")
    assert claimed is not None and measured is not None and measured.mem_bw_gbs is not None
    ok = passed or [True] * claim.gpu_count
    host_ram = (
        None
        if ram_claimed_gb is None or ram_proven_gb is None
        else {
            "claimed_bytes": ram_claimed_gb * GIB,
            "proven_bytes": ram_proven_gb * GIB,
            "passed": ram_passed,
        }
    )
    return {
        "version": 1,
        "gpus": [
            {
                "index": i,
                "claimed_bytes": claimed.mem_gb * GIB,
                "proven_bytes": int(fill * claimed.mem_gb * GIB),
                "bandwidth_bytes_per_s": bandwidth_fraction * measured.mem_bw_gbs * GB,
                "read_round_p50_s": 0.004,
                "read_round_max_s": 0.009,
                "passed": ok[i],
            }
            for i in range(claim.gpu_count)
        ],
        "host_ram": host_ram,
        "reasons": [],
        "digest": "ef" * 32,
    }


def facts(claim: Claim, *, capacity: dict[str, Any] | None = None, **rate: Any) -> MeasuredFacts:
    record, reasons = parse_capacity(capacity)
    return MeasuredFacts(throughput(claim, **rate), record, tuple(reasons))
