"""Capacity phase (issue 12) costs: the service's CPU time to verify one GPU's capacity phase at
H100 parameters, measured on an honest phase with the H100's d, chunk, spots, walks and walk
stages but a small fill (2^10 rows), plus the Merkle levels the H100's depth adds, timed here;
and the binary openings of a real 8 x H100 + 256 GiB phase (sizes, decode, verify, peak memory)
beside the v1 JSON they replaced, measured in the same run.

`python scripts/bench_capacity.py` prints markdown; `make bench` calls `capacity_section()`.
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpuproof.claim import capacity_params_for, make_claim
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.capacity import (
    CapacityAnswer,
    CapacityCommitment,
    CapacityParams,
    CapacitySession,
    CapacityTranscript,
    derive_capacity_params,
    gpu_target,
    phase,
    verify_capacity,
)
from gpuproof.protocol.capacity.draws import bandwidth_round
from gpuproof.protocol.capacity.fill import capacity_seed, chain_value
from gpuproof.protocol.capacity.models import (
    CapacityTargetParams,
    SignedCapacityCommitment,
    TargetAnswer,
    TargetCommitment,
)
from gpuproof.protocol.capacity.prover import CapacityProver
from gpuproof.protocol.capacity.verifier import _WalkChecker
from gpuproof.protocol.capacity.wire import OpenedTarget, decode_openings, encode_openings, max_size
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


def _honest_small_phase(h100: CapacityTargetParams, walks: int) -> list[float]:
    """Process CPU seconds of verify_capacity (REPEATS runs) over an honest phase with the H100's
    d, chunk and spots, `walks` walks, and a small fill."""
    small_bytes = int(SMALL_ROWS * h100.d * 8 / (8 * 0.9) * (8 / 7.97) * 0.9)
    tp = gpu_target(
        0,
        small_bytes,
        rate_tops=1e-6,
        bandwidth_gbs=1e-3,
        d=h100.d,
        chunk_rows=h100.chunk_rows,
        spots=h100.spots,
        walks=walks,
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
    spots, drawn = session.draw()
    nonces = {r.round: bytes.fromhex(r.nonce) for r in session.rounds}
    openings = prover.open(nonces, spots, drawn)
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
    _honest_small_phase.tp = tp  # type: ignore[attr-defined]
    _honest_small_phase.rounds = params.rounds  # type: ignore[attr-defined]
    return times


def capacity_section() -> str:
    h100 = _h100()
    times = _honest_small_phase(h100, h100.walks)
    one_walk = _honest_small_phase(h100, 1)
    tp: CapacityTargetParams = _honest_small_phase.tp  # type: ignore[attr-defined]
    rounds: int = _honest_small_phase.rounds  # type: ignore[attr-defined]
    # A walk step at the small depth, from the two runs; the H100's walks have more steps (every
    # stage, L = 27) than the small fill's (L = 10): added at that cost plus their extra levels.
    step = (statistics.median(times) - statistics.median(one_walk)) / ((h100.walks - 1) * tp.walk_stages)
    extra_steps = h100.walks * (h100.walk_stages - tp.walk_stages)
    level = _level_s()
    spots_n = h100.spots * rounds + h100.sweep_spots  # + the bandwidth round's (§17.12)
    extra_spot = (h100.n_stages - tp.n_stages) + (merkle.depth(h100.items) - merkle.depth(tp.items))
    extra_walk = 3 * (h100.n_stages - tp.n_stages)  # three paths per walk step at most
    extra_levels = spots_n * extra_spot + h100.walks * h100.walk_stages * extra_walk
    measured = statistics.median(times)
    total = measured + extra_steps * step + extra_levels * level
    return "\n".join(
        [
            "### Capacity phase: service CPU time to verify one GPU",
            "",
            f"H100 parameters (derive_capacity_params, H100 SXM5 80GB): d = {h100.d}, n_rows = {h100.n_rows:,} "
            f"(L = {h100.n_stages} stages), chunk_rows = {h100.chunk_rows}, {rounds} rounds x "
            f"{h100.spots} spots, the bandwidth round's {h100.sweeps} sweeps x {h100.sweep_spots} spots, "
            f"{h100.walks} walks x {h100.walk_stages} stages. Method: an honest phase "
            f"with the same d, chunk, spots and walks and {tp.n_rows} rows (L = {tp.n_stages}), verified "
            f"{REPEATS} times (process CPU time); the {extra_steps:,} walk steps the H100's depth adds "
            f"(a walk opens every stage), at the step cost measured here (the same phase with 1 walk: "
            f"{step * 1e6:.0f} us a step), and the Merkle levels the H100's depth adds "
            f"({extra_levels:,} node hashes: {extra_spot} more per spot, {extra_walk} more per walk step) "
            "timed here per level and added. Decoding the openings is not included (the next section "
            "measures it at the real shapes). BLAS on one thread.",
            "",
            "| part | time |",
            "|---|---|",
            f"| verify_capacity, small fill (median of {REPEATS}; min {min(times) * 1e3:.1f}, "
            f"max {max(times) * 1e3:.1f}) | {measured * 1e3:.1f} ms |",
            f"| {extra_steps:,} extra walk steps at {step * 1e6:.0f} us each | {extra_steps * step * 1e3:.1f} ms |",
            f"| {extra_levels:,} extra Merkle levels at {level * 1e6:.2f} us each | "
            f"{extra_levels * level * 1e3:.1f} ms |",
            f"| **capacity CPU per H100 GPU (estimate from the two)** | **{total * 1e3:.0f} ms** |",
            "",
            openings_section(),
        ]
    )


# -- the binary openings of a real 8 x H100 + 256 GiB phase ----------------------------------------

H100_MODEL = "NVIDIA H100 80GB HBM3"
HOST_RAM = 256 * 2**30


def fabricated_phase(
    params: CapacityParams, rng: np.random.Generator
) -> tuple[SigningKey, bytes, CapacitySession, list[Any]]:
    """A phase at these params with nothing filled: random layer roots chained to a signed
    commitment, every round answered in time with a random root, and openings of the real shapes
    at the drawn positions with random rows. The verifier runs its real path on them: the roots
    chain, the draws match, every spot and each walk's first step are checked and fail."""
    key = SigningKey.from_seed(bytes(range(32)))
    nonce = rng.bytes(32)
    roots = {tp.target: [rng.bytes(32) for _ in range(tp.n_stages)] for tp in params.targets}
    commitment = CapacityCommitment(
        machine_id=key.public_hex,
        challenge_id="bench",
        nonce=nonce.hex(),
        targets=[
            TargetCommitment(
                target=t,
                chain=chain_value(capacity_seed(nonce, key.public_hex, t), layer).hex(),
                root=layer[-1].hex(),
            )
            for t, layer in roots.items()
        ],
    )
    clock = 100.0
    session = CapacitySession(params, opened_at=clock)
    session.receive_commitment(SignedCapacityCommitment.sign(commitment, key), clock + 1.0)
    swept, sweeps = bandwidth_round(params), {tp.target: tp.sweeps for tp in params.targets}
    while not session.done:
        clock += 2.0
        opened = session.open_round(clock)
        answers = [
            TargetAnswer(
                target=t,
                root=rng.bytes(32).hex(),
                sweep_roots=[rng.bytes(32).hex() for _ in range(sweeps[t] - 1)]
                if opened.round == swept
                else [],
            )
            for t in opened.targets
        ]
        session.receive_answer(CapacityAnswer(round=opened.round, answers=answers), clock + 0.1)
    spots, walks = session.draw()
    openings = adv.shaped_openings(params, rng, spots=spots, walks=walks, roots=roots)
    return key, nonce, session, openings


def _cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def _peak(fn: Callable[[], Any]) -> int:
    """Bytes tracemalloc saw allocated at the peak of fn, above what was allocated before it."""
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def _walk_steps(params: CapacityParams, key: SigningKey, nonce: bytes, decoded: list[OpenedTarget]) -> None:
    """Every walk step after the first, checked by the verifier's own step check (random rows
    fail the first step, where verify_capacity stops each walk; an honest walk checks them all)."""
    for tp, target in zip(sorted(params.targets, key=lambda t: t.target), decoded, strict=True):
        roots = [target.roots[k].tobytes() for k in range(len(target.roots))]
        checker = _WalkChecker(
            capacity_seed(nonce, key.public_hex, tp.target), tp, roots, np.random.default_rng(0)
        )
        start = time.process_time()
        for walk in target.walks:
            for s in walk.steps[1:]:
                checker.step(s, s.stage, s.row, "bench")
        _walk_steps.seconds += time.process_time() - start  # type: ignore[attr-defined]


def openings_section() -> str:
    rng = np.random.default_rng(12)
    one = capacity_params_for(make_claim(H100_MODEL, 1, allow_cpu_backend=False))
    params = capacity_params_for(make_claim(H100_MODEL, 8, allow_cpu_backend=False), HOST_RAM)
    assert one is not None and params is not None
    key, nonce, session, openings = fabricated_phase(params, rng)
    assert session.signed is not None and session.draw_secret is not None
    assert session.commitment_received_at is not None
    signed, secret, received = session.signed, session.draw_secret, session.commitment_received_at
    data = encode_openings(openings, params)
    gpu_json = len(canonical_bytes(openings[0].model_dump(mode="json")))
    host_json = len(canonical_bytes(openings[-1].model_dump(mode="json")))
    gpu_binary = max_size(one) - 10  # one target's section (magic and count aside): the layout's size
    json_all = canonical_bytes(CapacityTranscript(targets=openings).model_dump(mode="json"))
    json_zlib = len(zlib.compress(json_all, 6))

    def verify(decoded: list[OpenedTarget]) -> Any:
        return verify_capacity(
            params,
            machine_id=key.public_hex,
            challenge_id="bench",
            nonce=nonce,
            signed=signed,
            phase_opened_at=session.opened_at,
            commitment_received_at=received,
            rounds=session.rounds,
            draw_secret=secret,
            openings=decoded,
            rng=np.random.default_rng(1),
        )

    json_s, decode_s, verify_s, steps_s = [], [], [], []
    codes: set[str] = set()
    for _ in range(REPEATS):
        t, _transcript = _cpu(lambda: CapacityTranscript.model_validate_json(json_all))
        json_s.append(t)
        t, decoded = _cpu(lambda: decode_openings(data, params))
        decode_s.append(t)
        t, result = _cpu(lambda decoded=decoded: verify(decoded))  # type: ignore[misc]
        verify_s.append(t)
        codes = {r.code for r in result.reasons}
        _walk_steps.seconds = 0.0  # type: ignore[attr-defined]
        _walk_steps(params, key, nonce, decoded)
        steps_s.append(_walk_steps.seconds)  # type: ignore[attr-defined]
    assert codes == {
        "capacity_merkle_path_invalid",
        "capacity_answer_mismatch",
        "capacity_sweep_mismatch",
        "capacity_walk_check_failed",
    }, codes
    json_peak = _peak(lambda: CapacityTranscript.model_validate_json(json_all))
    binary_peak = _peak(lambda: verify(decode_openings(data, params)))
    med = statistics.median
    total = med(decode_s) + med(verify_s) + med(steps_s)

    def ms(v: list[float]) -> str:
        return f"{med(v) * 1e3:.1f} ms (min {min(v) * 1e3:.1f}, max {max(v) * 1e3:.1f})"

    host = params.targets[-1]
    steps_n = sum(tp.walks * (tp.walk_stages - 1) for tp in params.targets)
    return "\n".join(
        [
            "### Capacity phase: binary openings of 8 x H100 + 256 GiB host (verify worker side)",
            "",
            f"Real shapes: capacity_params_for(8 x {H100_MODEL}, 256 GiB): 8 GPU targets (d = 1024, L = 27, "
            f"16-row chunks, 4 rounds x 12 spots, 32 walks x {params.targets[0].walk_stages} stages) and host "
            f"RAM (d = {host.d}, "
            f"L = {host.n_stages}, sample mode). Content: random rows at the positions the service's draw names, "
            "layer roots random but chained to a signed commitment (scripts/bench_capacity.py "
            "`fabricated_phase`), so the verifier runs its real path: the roots chain, the draws match, every "
            "spot and the first step of every walk are checked (and fail: random rows open nothing; "
            "verify_capacity stops a walk at its first failing step). The other steps of every walk (a walk "
            "opens every stage) "
            f"({steps_n:,}) are timed through the verifier's own step check (`_WalkChecker.step`) and added: "
            "an upper bound of an honest walk (which finds one of its three paths already checked). "
            f"Process CPU time, median of {REPEATS} (min, max), one process, BLAS on one thread; peak memory "
            "by tracemalloc above the transcript's own bytes. Reference in the same run: the v1 JSON "
            "of the same openings parsed by pydantic, as the worker did before.",
            "",
            "| size | binary v2 | v1 JSON |",
            "|---|---|---|",
            f"| one H100 GPU target | {gpu_binary:,} | {gpu_json:,} |",
            f"| host RAM target (256 GiB) | {len(data) - 10 - 8 * gpu_binary:,} | {host_json:,} |",
            f"| **8 x H100 + host** | **{len(data):,}** (max_size {max_size(params):,}) | "
            f"**{len(json_all):,}** ({json_zlib:,} zlib'd) |",
            "",
            "| verify worker, 8 x H100 + host | time |",
            "|---|---|",
            f"| v1 JSON parsed into models (reference) | {ms(json_s)} |",
            f"| binary decoded (`decode_openings`, views of the bytes) | {ms(decode_s)} |",
            f"| verify_capacity on the decoded openings | {ms(verify_s)} |",
            f"| the other {steps_n:,} walk steps | {ms(steps_s)} |",
            f"| **decode + verify (sum of medians)** | **{total * 1e3:.0f} ms** |",
            "",
            f"Decode alone: {med(decode_s) / med(json_s):.4f} x the JSON parse "
            f"({med(json_s) / med(decode_s):,.0f} times faster). Peak traced memory: binary decode + verify "
            f"{binary_peak / 2**20:.1f} MiB (the bytes themselves: {len(data) / 2**20:.1f} MiB, held once: the "
            f"decoded rows and digests are views); the JSON parse alone {json_peak / 2**20:.1f} MiB "
            f"(its text: {len(json_all) / 2**20:.1f} MiB). Worker budget: 1024 MB, 60 s (template.yaml).",
            "",
        ]
    )


if __name__ == "__main__":
    print(capacity_section())
