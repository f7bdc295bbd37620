"""The capacity phase at test size (issue 12): test-size parameters, modelled devices (the
hardware double, `SimulatedDevice`), a driver that runs the interactive phase against the
service's `CapacitySession` on a modelled clock, and adversarial provers.

Every computation is real numpy; only device seconds are modelled (bandwidth, per-row latency,
hash and GEMM rates below), so the deadlines judge what the modelled device could do and the
tests do not depend on this machine's load. Shared by tests/unit/test_capacity*.py and
scripts/bench_capacity.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from gpuproof.protocol.capacity import (
    CapacityParams,
    CapacityResult,
    CapacitySession,
    SignedCapacityCommitment,
    derive_capacity_params,
    gpu_target,
    host_target,
    phase,
    verify_capacity,
)
from gpuproof.protocol.capacity.device import OutOfDeviceMemory, SimulatedDevice
from gpuproof.protocol.capacity.draws import Walk, bandwidth_round, target_rounds
from gpuproof.protocol.capacity.fill import (
    HALF,
    MIX,
    Fill,
    Q,
    Rows,
    capacity_seed,
    coefficient,
    leaf,
    parent_rows,
    parent_stage,
    recentre,
    scale,
    stage_perms,
)
from gpuproof.protocol.capacity.models import (
    CapacityTargetParams,
    SpotOpening,
    TargetOpenings,
    WalkOpening,
    WalkStep,
)
from gpuproof.protocol.capacity.params import fill_ops
from gpuproof.protocol.capacity.prover import CapacityProver, TargetState
from gpuproof.protocol.capacity.wire import Digests, OpenedStep, OpenedTarget, OpenedWalk
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import merkle
from gpuproof.reference import reference_table

# -- a test-size "reference model": 16 KiB of VRAM, 32 KiB of host RAM ------------------------------
TEST_VRAM = 16 * 1024
TEST_RAM = 32 * 1024
TEST_D = 32
# The modelled test GPU: rates in the proportions of an H100 at GPU size, scaled to these bytes so
# a scan takes ~30 ms and a fill ~20 s (fill ops 1.7e7 at 1e6 ops/s, x 1.5 overhead).
GPU_SCAN = 1.0e6  # bytes/s ("HBM")
GPU_HASH = 1.0e6  # bytes/s
GPU_GEMM = 1.0e6  # int8 ops/s
PCIE_SCAN = GPU_SCAN / 60  # host memory over PCIe: 3.35 TB/s HBM vs ~55 GB/s PCIe 5 x16
HOST_ROW_S = 1e-5  # a random row from DRAM
SWAP_ROW_S = 1e-3  # a random row from swap / NVMe
RTT_S = 0.05  # modelled network round trip (the allowance is 0.2 s)
ALLOWANCE_S = 0.2
HOST_SAMPLES = 1024
TEST_SWEEP_S = 1.5  # the bandwidth round at test size (0: the phase has none)


def target_params(
    gpus: int, *, host: bool = True, rounds: int = 4, walks: int = 8, sweep_s: float = 0.0
) -> CapacityParams:
    """The test-size phase; `sweep_s` > 0 adds the bandwidth round (§17.12), which the read-round
    tests leave out so that each judges its own bound alone."""
    targets: list[CapacityTargetParams] = [
        gpu_target(
            i,
            TEST_VRAM,
            rate_tops=GPU_GEMM / 1e12,
            bandwidth_gbs=GPU_SCAN / 1e9,
            d=TEST_D,
            chunk_rows=4,
            spots=8,
            walks=walks,
            hash_bytes_per_s=GPU_HASH,
            network_allowance_s=ALLOWANCE_S,
            sweep_s=sweep_s,
        )
        for i in range(gpus)
    ]
    if host:
        targets.append(
            host_target(
                TEST_RAM,
                fill_rate_tops=GPU_GEMM * max(1, gpus) / 1e12,
                d=TEST_D,
                samples=HOST_SAMPLES,
                spots=8,
                walks=walks,
                rows_per_s=1 / HOST_ROW_S,
                hash_bytes_per_s=GPU_HASH,
                network_allowance_s=ALLOWANCE_S,
            )
        )
    return phase(targets, rounds=rounds, network_allowance_s=ALLOWANCE_S, fill_allowance_s=ALLOWANCE_S)


def gpu_device(
    name: str,
    *,
    capacity: int = TEST_VRAM,
    scan: float = GPU_SCAN,
    extra_read_s: float = 0.0,
    gemm: float = GPU_GEMM,
) -> SimulatedDevice:
    return SimulatedDevice(name, capacity, scan, 1e-6, GPU_HASH, gemm, extra_read_s=extra_read_s)


def host_device(*, capacity: int = TEST_RAM, row_s: float = HOST_ROW_S) -> SimulatedDevice:
    return SimulatedDevice("host-ram", capacity, GPU_SCAN, row_s, GPU_HASH, GPU_GEMM)


def honest_devices(params: CapacityParams) -> dict[int, SimulatedDevice]:
    return {
        tp.target: host_device() if tp.is_host else gpu_device(f"gpu{tp.target}") for tp in params.targets
    }


@dataclass
class Run:
    result: CapacityResult
    session: CapacitySession
    fill_s: float
    round_s: list[float]


def run_phase(
    prover: CapacityProver,
    key: SigningKey,
    params: CapacityParams,
    *,
    machine_id: str | None = None,
    nonce: bytes,
    challenge_id: str,
    tamper: Tamper | None = None,
) -> Run:
    """The interactive phase on a modelled clock: the service clock advances by the modelled
    device seconds plus the network round trip; the service's own session records every time."""
    clock = 100.0
    session = CapacitySession(params, opened_at=clock)
    prover.reset_clocks()
    commitment = prover.fill()
    fill_s = prover.phase_seconds()
    signed = SignedCapacityCommitment.sign(commitment, key)
    if tamper is not None:
        signed = tamper.commitment(signed)
    clock += fill_s + RTT_S / 2
    session.receive_commitment(signed, clock)
    round_s = []
    nonces: dict[int, bytes] = {}
    while not session.done:
        clock += 0.001
        opened = session.open_round(clock)
        nonces[opened.round] = bytes.fromhex(opened.nonce)
        prover.reset_clocks()
        answer = prover.answer(opened)
        took = prover.phase_seconds() + RTT_S
        round_s.append(took)
        clock += took
        session.receive_answer(answer, clock)
    spots, walks = session.draw()
    openings: Sequence[TargetOpenings] = prover.open(nonces, spots, walks)
    if tamper is not None:
        openings = tamper.openings(openings)
    result = verify_session(
        params,
        session,
        openings,
        machine_id=machine_id or key.public_hex,
        challenge_id=challenge_id,
        nonce=nonce,
    )
    return Run(result, session, fill_s, round_s)


def verify_session(
    params: CapacityParams,
    session: CapacitySession,
    openings: Sequence[TargetOpenings | OpenedTarget],
    *,
    machine_id: str,
    challenge_id: str,
    nonce: bytes,
    seed: int = 7,
) -> CapacityResult:
    """The real verifier over what the service's session recorded (its clock, nonces, draw secret)."""
    assert session.signed is not None and session.commitment_received_at is not None
    assert session.draw_secret is not None
    return verify_capacity(
        params,
        machine_id=machine_id,
        challenge_id=challenge_id,
        nonce=nonce,
        signed=session.signed,
        phase_opened_at=session.opened_at,
        commitment_received_at=session.commitment_received_at,
        rounds=session.rounds,
        draw_secret=session.draw_secret,
        openings=openings,
        rng=np.random.default_rng(seed),
    )


class Tamper:
    """Changes what travels after the prover made it (a relay, or a second machine reusing it)."""

    def commitment(self, signed: SignedCapacityCommitment) -> SignedCapacityCommitment:
        return signed

    def openings(self, openings: Sequence[TargetOpenings]) -> Sequence[TargetOpenings]:
        return openings


# -- openings of real shapes, random content (sizes and codecs are measured on them) ----------------


def shaped_openings(
    params: CapacityParams,
    rng: np.random.Generator,
    *,
    spots: Mapping[int, Mapping[int, Sequence[int]]] | None = None,
    walks: Mapping[int, Sequence[Walk]] | None = None,
    roots: Mapping[int, Sequence[bytes]] | None = None,
) -> list[TargetOpenings]:
    """Every target's openings at the params' real shapes: rows random in [-125, 125], digests
    random; at the given draws (and roots), else at random items and walks that go from a row to
    one of its parents as a walk does. Nothing in them opens anything."""
    out = []
    for tp in params.targets:
        depth = merkle.depth(tp.n_rows)
        tree_depth = depth - (tp.chunk_rows.bit_length() - 1)

        def row() -> str:
            return rng.integers(-HALF, HALF + 1, size=tp.d, dtype=np.int8).tobytes().hex()

        def digests(n: int) -> list[str]:
            raw = rng.bytes(32 * n).hex()
            return [raw[64 * k : 64 * k + 64] for k in range(n)]

        opened_spots = []
        sweep_round = bandwidth_round(params)
        for r in target_rounds(params, tp.target):
            swept = r == sweep_round  # the bandwidth round's items are j = (s - 1) x items + c
            universe = tp.items * tp.sweeps if swept else tp.items
            if spots is not None:
                items = list(spots[tp.target][r])
            else:
                chosen: dict[int, None] = {}
                while len(chosen) < min(tp.sweep_spots if swept else tp.spots, universe):
                    chosen[int(rng.integers(universe))] = None
                items = list(chosen)
            for item in items:
                c = item % tp.items
                count = min(tp.chunk_rows, tp.n_rows - c * tp.chunk_rows) if tp.mode == "scan" else 1
                opened_spots.append(
                    SpotOpening(
                        round=r,
                        item=item,
                        rows=[row() for _ in range(count)],
                        tree_path=digests(tree_depth),
                        answer_path=digests(merkle.depth(tp.items)),
                    )
                )
        plan = (
            list(walks[tp.target])
            if walks is not None
            else [_random_walk(tp, w, rng) for w in range(tp.walks)]
        )
        opened_walks = []
        for walk in plan:
            steps: list[WalkStep] = []
            for stage, at in zip(walk.stages, walk.rows, strict=True):
                a_row, a_path = row(), digests(depth)  # every step its own (walks v2)
                below = parent_stage(stage, tp.commit_stride)
                count = len(parent_rows(at, stage, below, tp.n_rows)) if below else 0
                steps.append(
                    WalkStep(
                        stage=stage,
                        row=at,
                        a_row=a_row,
                        a_path=a_path,
                        prev=[row() for _ in range(count)],
                        prev_paths=[digests(depth) for _ in range(count)],
                    )
                )
            opened_walks.append(WalkOpening(walk=walk.index, steps=steps))
        layer_roots = [r.hex() for r in roots[tp.target]] if roots is not None else digests(len(tp.committed))
        out.append(
            TargetOpenings(target=tp.target, roots=layer_roots, spots=opened_spots, walks=opened_walks)
        )
    return out


def _random_walk(tp: CapacityTargetParams, index: int, rng: np.random.Generator) -> Walk:
    """A walk's shape as `draw_walks` makes it: the committed stages from L down, each at its own
    uniformly random row."""
    committed = set(tp.committed)
    stages = [s for s in range(tp.n_stages, tp.n_stages - tp.walk_stages, -1) if s in committed]
    return Walk(index, stages, [int(rng.integers(tp.n_rows)) for _ in stages])


def reference_target(model: str) -> CapacityTargetParams:
    """The capacity params of one GPU of a reference-table model, as the service derives them (its
    reference int8 rate and datasheet bandwidth; no host RAM)."""
    ref = next((m for m in reference_table() if m.model == model), None)
    assert ref is not None and ref.expected_int8_tops and ref.mem_bw_gbs, model
    return derive_capacity_params(
        gpu_count=1,
        mem_gb=ref.mem_gb,
        rate_tops=ref.expected_int8_tops,
        bandwidth_gbs=ref.mem_bw_gbs,
        host_ram_bytes=None,
    ).targets[0]


def sparse_tree(n: int, leaves: Mapping[int, bytes]) -> tuple[bytes, dict[int, Digests]]:
    """The root of a Merkle tree of n leaves where only `leaves` (index: digest) are set, every
    other leaf the empty leaf, and each set leaf's path: a tree of any size at the cost of its set
    leaves (levels x set leaves node hashes)."""
    depth = merkle.depth(n)
    empty = [merkle.EMPTY_LEAF]
    for _ in range(depth):
        empty.append(merkle.node_hash(empty[-1], empty[-1]))
    levels = [dict(leaves)]
    for h in range(depth):
        below = levels[-1]
        levels.append(
            {
                i: merkle.node_hash(below.get(2 * i, empty[h]), below.get(2 * i + 1, empty[h]))
                for i in {k >> 1 for k in below}
            }
        )
    paths = {}
    for index in leaves:
        siblings = [levels[h].get((index >> h) ^ 1, empty[h]) for h in range(depth)]
        paths[index] = np.frombuffer(b"".join(siblings), dtype=np.uint8).reshape(depth, 32)
    return levels[-1].get(0, empty[depth]), paths


def known_draw_walks(
    seed: bytes, tp: CapacityTargetParams, walks: Sequence[Walk], rng: np.random.Generator
) -> tuple[list[bytes], dict[int, OpenedWalk]]:
    """Layer roots and walk openings that pass the walk check for `walks`, made by a prover that knows the
    walks BEFORE it chooses its roots (which committing before the draw rules out): each step's row
    computed from its parents, stage by stage from X_0 up (a parent is the row a lower step computed
    there, else random), the trees sparse (`sparse_tree`), one per committed layer. An honest walk's
    content at any size without a fill: the bench and the real-size tests verify walks of an H100's
    shape with it (every layer committed, or every other)."""
    assert tp.walk_stages == tp.n_stages, "walks open every stage"
    fill = Fill(seed, tp.n_rows, tp.d)
    layers: dict[int, dict[int, Rows]] = {stage: {} for stage in tp.committed}
    perms: dict[int, tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]] = {}

    def put(layer: int, row: int, values: Rows) -> Rows:
        held = layers[layer].setdefault(row, values)
        if not np.array_equal(held, values):
            raise ValueError(f"two walks need different rows {row} of layer {layer}: draw again")
        return held

    def stage_map(stage: int, row: int, own: Rows, mate: Rows) -> Rows:
        if stage not in perms:
            perms[stage] = stage_perms(seed, stage, tp.d)
        pi, sigma = perms[stage]
        spread = np.zeros((2, tp.d))  # own . B[pi] + k mate . B[sigma] = (own -> pi, k mate -> sigma) . B
        spread[0, pi] = own
        spread[1, sigma] = scale(mate, coefficient(row, stage, tp.n_rows))
        return recentre(spread.sum(axis=0) @ fill.b, stage)

    for stage in tp.committed:  # ascending: a step's parents are computed rows where a step put one
        below = parent_stage(stage, tp.commit_stride)
        for walk in walks:
            row = walk.rows[walk.stages.index(stage)]
            rows = parent_rows(row, stage, below, tp.n_rows)
            if below == 0:
                current = list(fill.x0(rows))
            else:
                current = [
                    layers[below][r] if r in layers[below] else put(below, r, _random_row(tp, rng))
                    for r in rows
                ]
            for s in range(below + 1, stage + 1):  # pair by pair up to X_stage[row]
                current = [
                    stage_map(s, rows[k], current[k], current[k + 1]) for k in range(0, len(current), 2)
                ]
                rows = rows[::2]  # each pair's own row
            put(stage, row, current[0])
    trees = {
        layer: sparse_tree(tp.n_rows, {r: leaf(v) for r, v in layers[layer].items()})
        for layer in tp.committed
    }
    roots = [trees[layer][0] for layer in tp.committed]
    opened: dict[int, OpenedWalk] = {}
    for walk in walks:
        steps = []
        for stage, row in zip(walk.stages, walk.rows, strict=True):
            below = parent_stage(stage, tp.commit_stride)
            parents = parent_rows(row, stage, below, tp.n_rows) if below else []
            steps.append(
                OpenedStep(
                    stage=stage,
                    row=row,
                    a_row=layers[stage][row],
                    a_path=trees[stage][1][row],
                    prev=[layers[below][r] for r in parents],
                    prev_paths=[trees[below][1][r] for r in parents],
                )
            )
        opened[walk.index] = OpenedWalk(walk=walk.index, steps=steps)
    return roots, opened


def _random_row(tp: CapacityTargetParams, rng: np.random.Generator) -> Rows:
    return rng.integers(-HALF, HALF + 1, size=tp.d, dtype=np.int8)


S = TypeVar("S", bound=TargetState)


def new_state(prover: CapacityProver, cls: type[S], tp: CapacityTargetParams) -> S:
    """An adversary's state for one target: its seed and device, as the honest prover builds them."""
    return cls(tp, capacity_seed(prover.nonce, prover.machine_id, tp.target), prover.devices[tp.target])


# -- adversaries ------------------------------------------------------------------------------------


def cone_products(missing: int, n_rows: int, n_stages: int) -> int:
    """Row products to regenerate `missing` rows of X_L from X_0 when nothing below is held: at
    stage L - k their cones span min(N, missing * 2^k) rows, two products each."""
    return sum(2 * min(n_rows, missing * 2**k) for k in range(n_stages))


class PartialState(TargetState):
    """Holds only the rows that fit in its device; missing rows are regenerated (`regenerate`,
    charged at the cone's GEMM cost on the device) or answered with zeros (`regenerate=False`)."""

    regenerate = True
    keep_fraction = 0.5

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.kept: set[int] = set()
        self.full: Rows | None = None

    def read(self, rows: Sequence[int]) -> Rows:
        assert self.full is not None
        missing = sorted({r for r in rows if r not in self.kept})
        out = self.full[list(rows)].copy()
        if self.regenerate:
            if missing:
                ops = cone_products(len(missing), self.tp.n_rows, self.tp.n_stages) * 2 * self.tp.d**2
                self.device.charge(self.device.gemm(ops))
            return out  # the regenerated rows are right (the layers are recomputed for real below)
        for k, r in enumerate(rows):
            if r not in self.kept:
                out[k] = 0
        return out


class PartialProver(CapacityProver):
    """A device holding only part of the claimed memory: it keeps what fits (`keep_fraction`)."""

    def __init__(
        self, *args: object, regenerate: bool = True, keep_fraction: float = 0.5, **kwargs: object
    ) -> None:
        self._regenerate, self._keep = regenerate, keep_fraction
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def make_state(self, tp: CapacityTargetParams) -> TargetState:
        state = new_state(self, PartialState, tp)
        state.regenerate, state.keep_fraction = self._regenerate, self._keep
        return state

    def hold(self, state: TargetState, layer: Rows) -> None:
        assert isinstance(state, PartialState)
        keep = int(layer.shape[0] * state.keep_fraction)
        state.device.alloc(keep * layer.shape[1])
        state.kept = set(range(keep))
        state.full = layer  # only to hand back regenerated rows; the kept set decides the cost
        state.held = layer[:keep]

    def recompute_check(self) -> None:
        """Regeneration is real: the layers recompute to the same X_L."""
        for state in self.states.values():
            assert isinstance(state, PartialState) and state.full is not None
            assert np.array_equal(state.fill.layers()[-1], state.full)


class JunkAnswerProver(PartialProver):
    """A `PartialProver` answering zeros for the rows it does not hold (pass regenerate=False) that
    opens its spots as the best such strategy would: every spot's committed rows (they open root_L)
    with the item's path in the answer tree it actually sent in that round. A spot on an item it
    answered from held rows then passes, one on a junk item fails its answer leaf only
    (`capacity_answer_mismatch`): accepted exactly when no spot hits junk (Bound 1). The plain
    `PartialProver` opens paths in the honest answer tree, so it fails every spot of a round it
    answered any junk in, even when no spot hits junk."""

    def open(
        self,
        round_nonces: Mapping[int, bytes],
        spots: Mapping[int, Mapping[int, Sequence[int]]],
        walks: Mapping[int, Sequence[Walk]],
        ready: Callable[[list[TargetOpenings]], None] | None = None,
    ) -> list[TargetOpenings]:
        out = []
        for o in super().open(round_nonces, spots, walks, ready):
            state, trees, opened = self.states[o.target], {}, []
            for spot in o.spots:
                if spot.round != self.sweep_round:
                    if spot.round not in trees:  # the answer tree of what this prover read and sent
                        trees[spot.round] = merkle.levels(self.answer_leaves(state, round_nonces[spot.round]))
                    path = [h.hex() for h in merkle.path(trees[spot.round], spot.item)]
                    spot = spot.model_copy(update={"answer_path": path})
                opened.append(spot)
            out.append(o.model_copy(update={"spots": opened}))
        return out


class SharedDeviceProver(CapacityProver):
    """K devices answering for M > K targets: targets share devices, so fills and scans queue on
    one device, and a fill that does not fit beside the other is kept partly (regenerating the rest)."""

    def hold(self, state: TargetState, layer: Rows) -> None:
        try:
            state.device.alloc(layer.nbytes)
            state.held = layer
        except OutOfDeviceMemory:
            free = state.device.capacity_bytes - state.device.used_bytes
            keep = max(0, free // layer.shape[1])
            state.device.alloc(keep * layer.shape[1])
            state.held = layer
            missing = layer.shape[0] - keep
            self._missing[state.tp.target] = missing

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._missing: dict[int, int] = {}
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def answer_leaves(self, state: TargetState, round_nonce: bytes) -> list[bytes]:
        missing = self._missing.get(state.tp.target, 0)
        if missing:
            ops = cone_products(missing, state.tp.n_rows, state.tp.n_stages) * 2 * state.tp.d**2
            state.device.charge(state.device.gemm(ops))
        return super().answer_leaves(state, round_nonce)


def devices_for(params: CapacityParams, mapping: Mapping[int, SimulatedDevice]) -> dict[int, SimulatedDevice]:
    return {tp.target: mapping[tp.target] for tp in params.targets}


class CheapFillState(PartialState):
    """Commits a fill whose layer `junk_stage` is seeded junk (memory-speed to regenerate) and whose
    stages above it are honest, so the rows it does not hold regenerate cheaply: only
    2^(L - junk_stage) products per row instead of the whole cone (what the walks must catch)."""

    junk_stage = 0

    def layers(self) -> list[Rows]:
        from gpuproof.protocol.capacity.fill import gen_rows

        out = [self.fill.x0(range(self.tp.n_rows))]
        for stage in range(1, self.fill.n_stages + 1):
            if stage == self.junk_stage:
                out.append(gen_rows(self.seed, b"junk", range(self.tp.n_rows), self.tp.d))
            else:
                out.append(self.fill.step(out[-1], stage))
        return out

    def read(self, rows: Sequence[int]) -> Rows:
        assert self.full is not None
        missing = sorted({r for r in rows if r not in self.kept})
        if missing:  # from the junk layer up: 2^k rows per missing row at depth k
            depth = self.fill.n_stages - self.junk_stage
            products = sum(2 * min(self.tp.n_rows, len(missing) * 2**k) for k in range(depth))
            self.device.charge(self.device.gemm(products * 2 * self.tp.d**2))
        return self.full[list(rows)].copy()


class CheapFillProver(PartialProver):
    def __init__(self, *args: object, junk_stage: int, **kwargs: object) -> None:
        self._junk = junk_stage
        super().__init__(*args, **kwargs)

    def make_state(self, tp: CapacityTargetParams) -> TargetState:
        state = new_state(self, CheapFillState, tp)
        state.keep_fraction = self._keep
        state.junk_stage = self.fill_stages(tp) if self._junk <= 0 else self._junk
        return state

    def fill_stages(self, tp: CapacityTargetParams) -> int:
        return tp.n_stages + self._junk  # junk_stage <= 0: counted from the top (0 = X_L itself)


class SwapState(PartialState):
    """Host RAM over-claimed: what does not fit lives in swap (a slower store, `SWAP_ROW_S` a row)."""

    def read(self, rows: Sequence[int]) -> Rows:
        assert self.full is not None
        swapped = sum(1 for r in rows if r not in self.kept)
        self.device.charge(swapped * SWAP_ROW_S)
        return self.full[list(rows)].copy()


class SwapProver(PartialProver):
    def make_state(self, tp: CapacityTargetParams) -> TargetState:
        state = new_state(self, SwapState if tp.is_host else PartialState, tp)
        state.keep_fraction = self._keep if tp.is_host else 1.0
        return state


def fill_cost_s(tp: CapacityTargetParams) -> float:
    return fill_ops(tp.n_rows, tp.d) / GPU_GEMM


class PartialJunkState(TargetState):
    """Layer `junk_stage` is junk only on the rows whose low `junk_stage` bits are in `classes`: X_L
    rows with those low bits (their cones meet the junk) are the cheap ones, a fraction
    len(classes) / 2^junk_stage of X_L. The layers above follow from the junk, so the inconsistent
    rows are the junk rows of layer `junk_stage` (as many as the cheap rows of X_L): a walk meets
    them exactly when its row at that stage is one."""

    junk_stage = 1
    classes: frozenset[int] = frozenset()

    def layers(self) -> list[Rows]:
        from gpuproof.protocol.capacity.fill import gen_rows

        out = [self.fill.x0(range(self.tp.n_rows))]
        mask = (1 << self.junk_stage) - 1
        for stage in range(1, self.fill.n_stages + 1):
            layer = self.fill.step(out[-1], stage)
            if stage == self.junk_stage:
                rows = [i for i in range(self.tp.n_rows) if i & mask in self.classes]
                layer[rows] = gen_rows(self.seed, b"junk", rows, self.tp.d)
            out.append(layer)
        return out


class PartialJunkProver(CapacityProver):
    def __init__(self, *args: object, junk_stage: int, classes: frozenset[int], **kwargs: object) -> None:
        self._junk, self._classes = junk_stage, classes
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def make_state(self, tp: CapacityTargetParams) -> TargetState:
        state = new_state(self, PartialJunkState, tp)
        state.junk_stage, state.classes = self._junk, self._classes
        return state


class SpreadJunkState(TargetState):
    """Junk on the same rows (`junk_rows`) of several committed layers (`junk_stages`), every layer
    computed from the honest one below: each junk row is an inconsistent row of its own step and,
    as a parent, of the step above it. Inconsistencies spread over stages, on rows whose top bits
    are zero: where a walk that went down one path (walks v1: its rows at every stage <= L - k
    share their bits >= L - k) met all of them or none (docs/protocol.md §17.7, Bound 3)."""

    junk_stages: tuple[int, ...] = ()
    junk_rows: tuple[int, ...] = ()

    def layers(self) -> list[Rows]:
        from gpuproof.protocol.capacity.fill import gen_rows

        out = [layer.copy() for layer in self.fill.layers()]
        rows = list(self.junk_rows)
        for stage in self.junk_stages:
            out[stage][rows] = gen_rows(self.seed, b"junk" + bytes([stage]), rows, self.tp.d)
        return out


class SpreadJunkProver(CapacityProver):
    def __init__(
        self, *args: object, junk_stages: tuple[int, ...], junk_rows: tuple[int, ...], **kwargs: object
    ) -> None:
        self._stages, self._rows = junk_stages, junk_rows
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def make_state(self, tp: CapacityTargetParams) -> TargetState:
        state = new_state(self, SpreadJunkState, tp)
        state.junk_stages, state.junk_rows = self._stages, self._rows
        return state


def inconsistent_rows(state: TargetState) -> dict[int, set[int]]:
    """Each committed stage's inconsistent rows I_l in a prover's layers: those where X_l differs
    from the honest map (over the stages since the committed layer below) of that layer as the
    prover holds it; X_0 is the regenerated one."""
    tp, fill = state.tp, state.fill
    layers = state.layers()
    out: dict[int, set[int]] = {}
    for stage in tp.committed:
        below = parent_stage(stage, tp.commit_stride)
        x = fill.x0(range(tp.n_rows)) if below == 0 else layers[below]
        for s in range(below + 1, stage + 1):
            x = fill.step(x, s)
        out[stage] = {int(r) for r in np.nonzero((x != layers[stage]).any(axis=1))[0]}
    return out


# -- the linear-top adversary (docs/protocol.md §17.7, Bound 3: why walks open every stage) ---------


def rref_with_transform(c: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Row-reduce [C | I] modulo 251: (R, T), R = T . C (mod 251) in reduced echelon form, one row
    per pivot (the rank of C)."""
    n, m = c.shape
    a = np.concatenate([c % Q, np.eye(n, dtype=np.int64)], axis=1)
    r = 0
    for col in range(m):
        nz = np.nonzero(a[r:, col])[0]
        if nz.size == 0:
            continue
        p = r + int(nz[0])
        a[[r, p]] = a[[p, r]]
        a[r] = a[r] * pow(int(a[r, col]), Q - 2, Q) % Q
        others = np.nonzero(a[:, col])[0]
        others = others[others != r]
        if others.size:
            a[others] = (a[others] - np.outer(a[others, col], a[r])) % Q
        r += 1
        if r == n:
            break
    return a[:r, :m], a[:r, m:]


class LinearTopState(PartialState):
    """An adversary that uses the stage maps' linearity (mod 251) to make X_L cheap while every
    stage from L down to L - depth + 1 holds exactly.

    In each block of rows the stages L - depth + 1 .. L - 1 mix (rows agreeing outside bits
    L - depth .. L - 2), the layer J = X_{L-1} is z . R + offset with z drawn from a seed and R the
    reduced row basis of the block map's image, so J has a preimage X_{L-depth} = z . T; the layers
    between follow by the honest stages, and X_L = stage L of J. Only stage L - depth (X_{L-depth}
    against the honest X_{L-depth-1}) is inconsistent: walks that open `depth` stages or fewer
    never see it. X_L is cheap: J's pivot coordinates are the seed's z, its other coordinates (the
    image's codimension, `hold`) are all the device keeps, and a row of X_L is two row products of
    J's rows, no cone. Needs N a power of two (every block full)."""

    depth = 6
    _layers: list[Rows] | None = None

    def layers(self) -> list[Rows]:
        if self._layers is None:  # the same fill for the commitment and the openings
            self._layers = self._linear_top()
        return self._layers

    def _linear_top(self) -> list[Rows]:
        from gpuproof.protocol.capacity.fill import gen_rows

        tp, f = self.tp, self.fill
        n, d, top = tp.n_rows, tp.d, f.n_stages
        low = top - self.depth
        width = self.depth - 1  # stages low+1 .. top-1, pairing bits low .. top-2
        assert n == 1 << top and width >= 1 and low >= 1
        block = 1 << width
        size = block * d
        # Residues mod 251: X_l = X_{l-1}[i] . B[pi] + X_{l-1}[p(i)] . B[sigma] + (l - 125).
        basis = np.eye(size, dtype=np.int64).reshape(size, block, d)
        offset = np.zeros((1, block, d), dtype=np.int64)
        for j, stage in enumerate(range(low + 1, top)):
            b_pi, b_sigma = (x.astype(np.int64) for x in f.matrices(stage))
            mates = np.arange(block) ^ (1 << j)
            k = np.where(mates > np.arange(block), 1, MIX)[None, :, None]  # k_l: n = 2^top, no lone rows
            basis = (basis @ b_pi + k * basis[:, mates] @ b_sigma) % Q
            offset = (offset @ b_pi + k * offset[:, mates] @ b_sigma + stage - HALF) % Q
        reduced, transform = rref_with_transform(basis.reshape(size, size))
        rank = reduced.shape[0]
        self.image_rank, self.block_size = rank, size
        x_low = np.zeros((n, d), dtype=np.int64)
        self.j_residues = np.zeros((n, d), dtype=np.int64)
        for base in (r for r in range(n) if not (r >> low) & (block - 1)):
            rows = [base | (m << low) for m in range(block)]
            z = gen_rows(self.seed, b"linear-top", [base], rank).astype(np.int64)[0] % Q
            self.j_residues[rows] = ((z @ reduced + offset.reshape(size)) % Q).reshape(block, d)
            x_low[rows] = (z @ transform % Q).reshape(block, d)
        layers = f.layers()[:low]  # honest X_0 .. X_{low-1}
        layers.append(((x_low + HALF) % Q - HALF).astype(np.int8))
        for stage in range(low + 1, top + 1):
            layers.append(f.step(layers[-1], stage))
        return layers

    def read(self, rows: Sequence[int]) -> Rows:
        """Every row of X_L from J: J's pivot coordinates from the seed, its other coordinates held;
        then two row products a row (charged on the device)."""
        assert self.full is not None
        self.device.charge(self.device.gemm(len(rows) * 2 * 2 * self.tp.d**2))
        return self.full[list(rows)].copy()


class LinearTopProver(PartialProver):
    def __init__(self, *args: object, depth: int, **kwargs: object) -> None:
        self._depth = depth
        super().__init__(*args, **kwargs)

    def make_state(self, tp: CapacityTargetParams) -> TargetState:
        state = new_state(self, LinearTopState, tp)
        state.depth = self._depth
        return state

    def hold(self, state: TargetState, layer: Rows) -> None:
        """Holds J's non-pivot coordinates only: the image's codimension, a fraction of the fill."""
        assert isinstance(state, LinearTopState)
        state.device.alloc(-(-layer.nbytes * (state.block_size - state.image_rank) // state.block_size))
        state.kept = set()
        state.full = layer
        state.held = layer  # the values the reads return; `alloc` above is what it holds
