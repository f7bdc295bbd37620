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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench_proof
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_proof  # the throughput verification's CPU per GPU

from gpuproof.claim import capacity_params_for, make_claim
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.capacity import (
    CapacityAnswer,
    CapacityCommitment,
    CapacityParams,
    CapacitySession,
    CapacityTranscript,
    gpu_target,
    phase,
    verify_capacity,
)
from gpuproof.protocol.capacity.draws import bandwidth_round, draw_walks
from gpuproof.protocol.capacity.fill import capacity_seed, chain_value
from gpuproof.protocol.capacity.models import (
    CapacityTargetParams,
    SignedCapacityCommitment,
    TargetAnswer,
    TargetCommitment,
)
from gpuproof.protocol.capacity.prover import CapacityProver
from gpuproof.protocol.capacity.verifier import check_walks
from gpuproof.protocol.capacity.wire import OpenedTarget, decode_openings, encode_openings, max_size
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import merkle
from tests.unit import capacity_adversaries as adv

REPEATS = 5
SMALL_ROWS = 2**10


def _h100() -> CapacityTargetParams:
    return adv.reference_target("H100 SXM5 80GB")


def _level_s(samples: int = 20000) -> float:
    """Seconds per Merkle level of a path check (one SHA-256 of 65 bytes in Python)."""
    sib = [bytes(32)] * 32
    leaf = bytes(32)
    start = time.process_time()
    for _ in range(samples // 32):
        merkle.root_from_path(leaf, 12345, sib)
    return (time.process_time() - start) / (samples // 32 * 32)


def _honest_small_phase(h100: CapacityTargetParams) -> tuple[list[float], list[float], CapacityParams]:
    """Process CPU seconds of verify_capacity (REPEATS runs) over an honest phase with the H100's
    d, chunk, spots and walks and a small fill, its openings through the binary transcript (decoded
    once; the next section times decoding), and of its walks alone (`check_walks`)."""
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
        hash_bytes_per_s=1e6,
        network_allowance_s=adv.ALLOWANCE_S,
        commit_stride=h100.commit_stride,
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
    decoded = decode_openings(encode_openings(prover.open(nonces, spots, drawn), params), params)
    signed: SignedCapacityCommitment = session.signed  # type: ignore[assignment]
    seed = capacity_seed(nonce, key.public_hex, tp.target)
    roots = [decoded[0].roots[k].tobytes() for k in range(len(decoded[0].roots))]
    walks = draw_walks(signed.commitment.signing_bytes(), session.draw_secret, tp)
    got = {w.walk: w for w in decoded[0].walks}
    times, walk_times = [], []
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
            openings=decoded,
            rng=np.random.default_rng(k),
        )
        times.append(time.process_time() - start)
        assert result.passed
        t, reasons = _cpu(lambda k=k: check_walks(seed, tp, roots, walks, got, np.random.default_rng(k), "b"))
        assert reasons == []
        walk_times.append(t)
    return times, walk_times, params


def known_walks_s(tp: CapacityTargetParams, rng: np.random.Generator) -> list[float]:
    """Process CPU seconds of check_walks (REPEATS runs) over `tp.walks` honest walks of tp's real
    shape (`known_draw_walks`: content made knowing the draw, so no fill is needed)."""
    seed = rng.bytes(32)
    walks = draw_walks(rng.bytes(64), rng.bytes(32), tp)
    roots, got = adv.known_draw_walks(seed, tp, walks, rng)
    times = []
    for k in range(REPEATS):
        t, reasons = _cpu(lambda k=k: check_walks(seed, tp, roots, walks, got, np.random.default_rng(k), "b"))
        assert reasons == [], reasons
        times.append(t)
    return times


def capacity_section(throughput_s: float | None = None, throughput_one_s: float | None = None) -> str:
    """The capacity sections and the service's CPU per GPU, throughput + capacity; `throughput_s`
    and `throughput_one_s`: the throughput verification's CPU per GPU of an 8-GPU and a one-GPU host
    measured in the same run (bench_proof.verify_section), measured here when not given."""
    if throughput_s is None or throughput_one_s is None:
        bench_proof.verify_section()
        throughput_s = bench_proof.verify_section.total_s  # type: ignore[attr-defined]
        throughput_one_s = bench_proof.verify_section.total_one_s  # type: ignore[attr-defined]
    h100 = _h100()
    med = statistics.median
    times, walk_times, params = _honest_small_phase(h100)
    tp = params.targets[0]
    h100_walks = known_walks_s(h100, np.random.default_rng(5))
    level = _level_s()
    spots_n = h100.spots * params.rounds + h100.sweep_spots  # + the bandwidth round's (§17.12)
    extra_spot = (h100.n_stages - tp.n_stages) + (merkle.depth(h100.items) - merkle.depth(tp.items))
    extra_s = spots_n * extra_spot * level
    rest = med(times) - med(walk_times)
    capacity = rest + extra_s + med(h100_walks)

    def ms(v: list[float]) -> str:
        return f"{med(v) * 1e3:.1f} ms (min {min(v) * 1e3:.1f}, max {max(v) * 1e3:.1f})"

    return "\n".join(
        [
            "### Capacity phase: service CPU time to verify one GPU",
            "",
            f"H100 parameters (derive_capacity_params, H100 SXM5 80GB): d = {h100.d}, n_rows = {h100.n_rows:,} "
            f"(L = {h100.n_stages} stages), chunk_rows = {h100.chunk_rows}, {params.rounds} rounds x "
            f"{h100.spots} spots, the bandwidth round's {h100.sweeps} sweeps x {h100.sweep_spots} spots, "
            f"{h100.walks} walks x {h100.walk_stages} stages. Method: (a) an honest phase with the same d, "
            f"chunk, spots and walks and {tp.n_rows} rows (L = {tp.n_stages}), its openings through the "
            f"binary transcript, verified {REPEATS} times, less its own walks' check (`check_walks`, timed "
            f"on the same openings): the spots, rounds and commitment; (b) the Merkle levels the H100's "
            f"depth adds to those spots ({spots_n * extra_spot:,} node hashes: {extra_spot} per spot), "
            f"timed here per level; (c) `check_walks` over {h100.walks} honest walks of the H100's own "
            f"shape (N = {h100.n_rows:,}, L = {h100.n_stages}), made by a prover that knew the draw "
            "(tests/unit/capacity_adversaries.py `known_draw_walks`: X_0 regenerated, every step's rows "
            "computed, sparse trees), so every step is checked and passes. Process CPU time, median "
            f"(min, max) of {REPEATS}; BLAS on one thread. Decoding the openings is not included (the next "
            "section measures it at the real shapes).",
            "",
            "| part | time |",
            "|---|---|",
            f"| verify_capacity, small fill | {ms(times)} |",
            f"| of which its walks (L = {tp.n_stages}) | {ms(walk_times)} |",
            f"| (a) spots, rounds, commitment (the difference of the medians) | {rest * 1e3:.1f} ms |",
            f"| (b) {spots_n * extra_spot:,} spot Merkle levels at {level * 1e6:.2f} us each | "
            f"{extra_s * 1e3:.1f} ms |",
            f"| (c) {h100.walks} walks of the H100's shape ({h100.walks * len(h100.committed)} steps, every {h100.commit_stride} layers committed) | "
            f"{ms(h100_walks)} |",
            f"| **capacity CPU per H100 GPU target, (a) + (b) + (c)** (no decoding, no host RAM) | "
            f"**{capacity * 1e3:.0f} ms** |",
            f"| reference: one SHA-256 Merkle node hash (65 bytes), this run | {level * 1e6:.2f} us |",
            "",
            "The next section measures the same at the real shapes, with decoding and the host RAM target; "
            "its totals are the service's CPU per GPU.",
            "",
            openings_section(throughput_s, throughput_one_s, level),
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
    roots = {tp.target: [rng.bytes(32) for _ in tp.committed] for tp in params.targets}
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


@dataclass
class PhaseCost:
    """Process CPU seconds (REPEATS runs each) of one fabricated phase's decode and verify, and the
    median honest walk check of each target (`known_walks_s`, one measurement per target shape)."""

    params: CapacityParams
    data: bytes
    decode_s: list[float]
    verify_s: list[float]
    walks_s: dict[int, list[float]]  # target -> check_walks seconds
    codes: set[str]
    verify: Callable[[list[OpenedTarget]], Any]
    openings: list[Any]

    @property
    def walks_total_s(self) -> float:
        return sum(statistics.median(v) for v in self.walks_s.values())

    @property
    def total_s(self) -> float:
        med = statistics.median
        return med(self.decode_s) + med(self.verify_s) + self.walks_total_s


def phase_cost(params: CapacityParams, rng: np.random.Generator) -> PhaseCost:
    key, nonce, session, openings = fabricated_phase(params, rng)
    assert session.signed is not None and session.draw_secret is not None
    assert session.commitment_received_at is not None
    signed, secret, received = session.signed, session.draw_secret, session.commitment_received_at
    data = encode_openings(openings, params)

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

    decode_s, verify_s = [], []
    codes: set[str] = set()
    for _ in range(REPEATS):
        t, decoded = _cpu(lambda: decode_openings(data, params))
        decode_s.append(t)
        t, result = _cpu(lambda decoded=decoded: verify(decoded))  # type: ignore[misc]
        verify_s.append(t)
        codes = {r.code for r in result.reasons}
    # Honest walks of each target's shape (random rows fail every walk's first step above), timed
    # once per distinct shape: the GPU targets of one model share theirs.
    by_shape: dict[tuple[int, int, int, int], list[float]] = {}
    walks_s = {}
    for tp in params.targets:
        shape = (tp.d, tp.n_rows, tp.walks, tp.commit_stride)
        if shape not in by_shape:
            by_shape[shape] = known_walks_s(tp, rng)
        walks_s[tp.target] = by_shape[shape]
    return PhaseCost(params, data, decode_s, verify_s, walks_s, codes, verify, openings)


FABRICATED_CODES = {
    "capacity_merkle_path_invalid",
    "capacity_answer_mismatch",
    "capacity_sweep_mismatch",
    "capacity_walk_check_failed",
}


def openings_section(
    throughput_s: float | None = None, throughput_one_s: float | None = None, level: float | None = None
) -> str:
    """The real-shape sections; with the throughput figures of the same run (8-GPU and one-GPU
    host, per GPU) and the node-hash reference, also the service's CPU per GPU, all in."""
    rng = np.random.default_rng(12)
    one = capacity_params_for(make_claim(H100_MODEL, 1, allow_cpu_backend=False))
    params = capacity_params_for(make_claim(H100_MODEL, 8, allow_cpu_backend=False), HOST_RAM)
    assert one is not None and params is not None
    host_cost = phase_cost(params, rng)
    one_cost = phase_cost(one, rng)
    assert host_cost.codes == FABRICATED_CODES, host_cost.codes
    assert (
        one_cost.codes == FABRICATED_CODES - {"capacity_sweep_mismatch"} or one_cost.codes == FABRICATED_CODES
    )
    openings, data = host_cost.openings, host_cost.data
    gpu_json = len(canonical_bytes(openings[0].model_dump(mode="json")))
    host_json = len(canonical_bytes(openings[-1].model_dump(mode="json")))
    gpu_binary = max_size(one) - 10  # one target's section (magic and count aside): the layout's size
    json_all = canonical_bytes(CapacityTranscript(targets=openings).model_dump(mode="json"))
    json_zlib = len(zlib.compress(json_all, 6))
    json_s = [_cpu(lambda: CapacityTranscript.model_validate_json(json_all))[0] for _ in range(REPEATS)]
    json_peak = _peak(lambda: CapacityTranscript.model_validate_json(json_all))
    binary_peak = _peak(lambda: host_cost.verify(decode_openings(data, params)))
    med = statistics.median
    gpus = len(params.targets) - 1
    gpu_walks = host_cost.walks_s[params.targets[0].target]
    host_walks = host_cost.walks_s[params.targets[-1].target]

    def ms(v: list[float]) -> str:
        return f"{med(v) * 1e3:.1f} ms (min {min(v) * 1e3:.1f}, max {max(v) * 1e3:.1f})"

    host = params.targets[-1]
    steps_n = sum(tp.walks * len(tp.committed) for tp in params.targets)
    lines = [
        "### Capacity phase: binary openings of 8 x H100 + 256 GiB host (verify worker side)",
        "",
        f"Real shapes: capacity_params_for(8 x {H100_MODEL}, 256 GiB): 8 GPU targets (d = 1024, L = 27, "
        f"16-row chunks, 4 rounds x 12 spots, 32 walks x {params.targets[0].walk_stages} stages) and host "
        f"RAM (d = {host.d}, "
        f"L = {host.n_stages}, sample mode); and capacity_params_for(1 x {H100_MODEL}) (one GPU target, no "
        "host RAM). Content: random rows at the positions the service's draw names, "
        "layer roots random but chained to a signed commitment (scripts/bench_capacity.py "
        "`fabricated_phase`), so the verifier runs its real path: the roots chain, the draws match, every "
        "spot and the first step of every walk are checked (and fail: random rows open nothing; "
        "a walk stops at its first failing step). Every walk's honest cost is then added: "
        f"`check_walks` over honest walks of each target's real shape ({steps_n:,} steps in all for the "
        "8-GPU host), made by a prover that knew the draw (`known_draw_walks`), timed once per shape (the "
        f"{gpus} GPU targets share theirs) and the host's; each walk's first step is so counted twice. "
        f"Process CPU time, median of {REPEATS} (min, max), one process, BLAS on one thread, the cyclic "
        "collector paused inside the verifier's calls as the worker runs them (`collector_paused`); peak "
        "memory by tracemalloc above the transcript's own bytes. Reference in the same run: the v1 JSON "
        "of the same openings parsed by pydantic, as the worker did before.",
        "",
        "| size | binary v2 | v1 JSON |",
        "|---|---|---|",
        f"| one H100 GPU target | {gpu_binary:,} | {gpu_json:,} |",
        f"| host RAM target (256 GiB) | {len(data) - 10 - 8 * gpu_binary:,} | {host_json:,} |",
        f"| **8 x H100 + host** | **{len(data):,}** (max_size {max_size(params):,}) | "
        f"**{len(json_all):,}** ({json_zlib:,} zlib'd) |",
        "",
        "| verify worker | 8 x H100 + host | 1 x H100 |",
        "|---|---|---|",
        f"| v1 JSON parsed into models (reference) | {ms(json_s)} | |",
        f"| binary decoded (`decode_openings`, views of the bytes) | {ms(host_cost.decode_s)} | "
        f"{ms(one_cost.decode_s)} |",
        f"| verify_capacity on the decoded openings | {ms(host_cost.verify_s)} | {ms(one_cost.verify_s)} |",
        f"| honest walks: one GPU target's {params.targets[0].walks} | {ms(gpu_walks)} | "
        f"{ms(one_cost.walks_s[one.targets[0].target])} |",
        f"| honest walks: the host's {host.walks} | {ms(host_walks)} | (none) |",
        f"| every target's walks | {host_cost.walks_total_s * 1e3:.1f} ms ({gpus} x GPU + host) | "
        f"{one_cost.walks_total_s * 1e3:.1f} ms |",
        f"| **decode + verify (sum of medians)** | **{host_cost.total_s * 1e3:.0f} ms** | "
        f"**{one_cost.total_s * 1e3:.0f} ms** |",
        "",
        f"Decode alone: {med(host_cost.decode_s) / med(json_s):.4f} x the JSON parse "
        f"({med(json_s) / med(host_cost.decode_s):,.0f} times faster). Peak traced memory: binary decode + "
        f"verify {binary_peak / 2**20:.1f} MiB (the bytes themselves: {len(data) / 2**20:.1f} MiB, held "
        "once: the decoded rows and digests are views); the JSON parse alone "
        f"{json_peak / 2**20:.1f} MiB (its text: {len(json_all) / 2**20:.1f} MiB). Worker budget: 1024 MB, "
        "60 s (template.yaml).",
        "",
    ]
    if throughput_s is not None and throughput_one_s is not None and level is not None:
        cap_host = host_cost.total_s / gpus
        cap_one = one_cost.total_s
        total_host, total_one = throughput_s + cap_host, throughput_one_s + cap_one
        lines += [
            "### Service CPU per GPU: throughput + capacity, all in",
            "",
            "Per GPU of the host: the throughput proof's verification (decode, verify_gpu, the H100's extra "
            "Merkle levels and root chain; the proof section above, this run) plus the capacity phase's "
            "decode + verify + every walk (the table above) divided by the host's GPUs; the host RAM "
            "target's share is in the 8-GPU figure. One core, process CPU time, medians of this run. The "
            "node-hash reference (SHA-256 of 65 bytes, this run) puts the figure in units that do not "
            "depend on the machine's speed that minute.",
            "",
            "| host | throughput per GPU | capacity per GPU | **total per GPU** | in node hashes |",
            "|---|---:|---:|---:|---:|",
            f"| 8 x H100 + 256 GiB | {throughput_s * 1e3:.0f} ms | {cap_host * 1e3:.0f} ms | "
            f"**{total_host * 1e3:.0f} ms** (target <= 250 ms) | {total_host / level:,.0f} |",
            f"| 1 x H100, no host RAM | {throughput_one_s * 1e3:.0f} ms | {cap_one * 1e3:.0f} ms | "
            f"**{total_one * 1e3:.0f} ms** | {total_one / level:,.0f} |",
            f"| reference: one node hash, this run | | | {level * 1e6:.2f} us | 1 |",
            "",
        ]
        openings_section.total_host_s = total_host  # type: ignore[attr-defined]
        openings_section.total_one_s = total_one  # type: ignore[attr-defined]
    return "\n".join(lines)


if __name__ == "__main__":
    print(capacity_section())
