"""Capacity phase (issue 12) costs: the service's CPU time to verify one GPU's capacity phase at
H100 parameters, measured on an honest phase with the H100's d, chunk, spots, walks and walk
stages but a small fill (2^10 rows), plus the Merkle levels the H100's depth adds, timed here.

`python scripts/bench_capacity.py` prints markdown; `make bench` calls `capacity_section()`.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpuproof.protocol.capacity import derive_capacity_params, gpu_target, phase, verify_capacity
from gpuproof.protocol.capacity.models import SignedCapacityCommitment
from gpuproof.protocol.capacity.prover import CapacityProver
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import merkle
from gpuproof.reference import lookup
from tests.unit import capacity_adversaries as adv

REPEATS = 5
SMALL_ROWS = 2**10


def _h100():  # type: ignore[no-untyped-def]
    ref = lookup("H100 SXM5 80GB")
    assert ref is not None and ref.expected_int8_tops and ref.mem_bw_gbs
    return derive_capacity_params(
        gpu_count=1,
        mem_gb=ref.mem_gb,
        rate_tops=ref.expected_int8_tops,
        bandwidth_gbs=ref.mem_bw_gbs,
        host_ram_bytes=None,
    ).targets[0]


def _level_s(samples: int = 20000) -> float:
    """Seconds per Merkle level of a path check (one SHA-256 of 65 bytes in Python)."""
    sib = [bytes(32)] * 32
    leaf = bytes(32)
    start = time.process_time()
    for _ in range(samples // 32):
        merkle.root_from_path(leaf, 12345, sib)
    return (time.process_time() - start) / (samples // 32 * 32)


def capacity_section() -> str:
    h100 = _h100()
    small_bytes = int(SMALL_ROWS * h100.d * 8 / (8 * 0.9) * (8 / 7.97) * 0.9)
    tp = gpu_target(
        0,
        small_bytes,
        rate_tops=1e-6,
        bandwidth_gbs=1e-3,
        d=h100.d,
        chunk_rows=h100.chunk_rows,
        spots=h100.spots,
        walks=h100.walks,
        walk_stages=min(h100.walk_stages, 10),
        hash_bytes_per_s=1e6,
        network_allowance_s=adv.ALLOWANCE_S,
    )
    params = phase([tp], rounds=4, network_allowance_s=adv.ALLOWANCE_S, fill_allowance_s=1e6)
    key = SigningKey.from_seed(bytes(range(32)))
    nonce = bytes(range(32))
    devices = {0: adv.gpu_device("gpu0", capacity=10 * tp.fill_bytes, gemm=1e12, scan=1e12)}
    prover = CapacityProver(nonce, key.public_hex, "bench", params, devices)
    run = adv.run_phase(prover, key, params, nonce=nonce, challenge_id="bench")
    assert run.result.reasons == [], run.result.reasons
    session = run.session
    assert session.draw_secret is not None and session.commitment_received_at is not None
    spots, walks = session.draw()
    nonces = {r.round: bytes.fromhex(r.nonce) for r in session.rounds}
    openings = prover.open(nonces, spots, walks)
    signed: SignedCapacityCommitment = session.signed  # type: ignore[assignment]
    times = []
    for k in range(REPEATS):
        start = time.process_time()
        result = verify_capacity(
            params,
            machine_id=key.public_hex,
            challenge_id="bench",
            nonce=nonce,
            signed=signed,
            phase_opened_at=session.opened_at,
            commitment_received_at=session.commitment_received_at,
            rounds=session.rounds,
            draw_secret=session.draw_secret,
            openings=openings,
            rng=np.random.default_rng(k),
        )
        times.append(time.process_time() - start)
        assert result.passed
    level = _level_s()
    spots_n = h100.spots * params.rounds
    extra_spot = (h100.n_stages - tp.n_stages) + (merkle.depth(h100.items) - merkle.depth(tp.items))
    extra_walk = 3 * (h100.n_stages - tp.n_stages)  # three paths per walk step at most
    extra_levels = spots_n * extra_spot + h100.walks * h100.walk_stages * extra_walk
    measured = statistics.median(times)
    total = measured + extra_levels * level
    return "\n".join(
        [
            "### Capacity phase: service CPU time to verify one GPU",
            "",
            f"H100 parameters (derive_capacity_params, H100 SXM5 80GB): d = {h100.d}, n_rows = {h100.n_rows:,} "
            f"(L = {h100.n_stages} stages), chunk_rows = {h100.chunk_rows}, {params.rounds} rounds x "
            f"{h100.spots} spots, {h100.walks} walks x {h100.walk_stages} stages. Method: an honest phase "
            f"with the same d, chunk, spots and walks and {tp.n_rows} rows (L = {tp.n_stages}), verified "
            f"{REPEATS} times (process CPU time); the Merkle levels the H100's depth adds "
            f"({extra_levels:,} node hashes: {extra_spot} more per spot, {extra_walk} more per walk step) "
            "timed here per level and added. Transcript decoding is NOT included (the JSON transcript is "
            "the only encoding so far; a binary codec is not written). BLAS on one thread.",
            "",
            "| part | time |",
            "|---|---|",
            f"| verify_capacity, small fill (median of {REPEATS}; min {min(times) * 1e3:.1f}, "
            f"max {max(times) * 1e3:.1f}) | {measured * 1e3:.1f} ms |",
            f"| {extra_levels:,} extra Merkle levels at {level * 1e6:.2f} us each | "
            f"{extra_levels * level * 1e3:.1f} ms |",
            f"| **capacity CPU per H100 GPU (estimate from the two)** | **{total * 1e3:.0f} ms** |",
            "",
        ]
    )


if __name__ == "__main__":
    print(capacity_section())
