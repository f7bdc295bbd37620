"""The honest capacity prover the probe runs on the CPU backend, on the numpy executor (test and
demo sizes; the GPU backend's twin, bit for bit, is `cupy_prover.CupyCapacityProver`).

It fills every target, signs-ready commits, answers each round from the rows it holds, and opens
the drawn spots and walks. Where rows are held is the hardware boundary (`device.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from gpuproof.protocol.capacity.device import SimulatedDevice
from gpuproof.protocol.capacity.draws import Walk, bandwidth_round, item_rows
from gpuproof.protocol.capacity.fill import (
    Fill,
    Rows,
    answer_leaf,
    capacity_seed,
    chain_value,
    leaves,
    parent_rows,
    parent_stage,
)
from gpuproof.protocol.capacity.models import (
    CapacityAnswer,
    CapacityCommitment,
    CapacityParams,
    CapacityRound,
    CapacityTargetParams,
    SpotOpening,
    TargetAnswer,
    TargetCommitment,
    TargetOpenings,
    WalkOpening,
    WalkStep,
)
from gpuproof.protocol.capacity.params import fill_ops
from gpuproof.protocol.capacity.sweep import (
    split_item,
    sweep_bytes_hashed,
    sweep_keys,
    sweep_leaves,
    sweep_roots,
)
from gpuproof.protocol.proof import merkle


class TargetState:
    """One target's fill on the prover: its roots and the rows of X_L it holds on its device."""

    def __init__(self, tp: CapacityTargetParams, seed: bytes, device: SimulatedDevice) -> None:
        self.tp, self.seed, self.device = tp, seed, device
        self.fill = Fill(seed, tp.n_rows, tp.d)
        self.roots: list[bytes] = []
        self.held: Rows | None = None

    def layers(self) -> list[Rows]:
        """X_0..X_L as this prover computes them (adversaries override it)."""
        return self.fill.layers()

    def compute(self) -> list[Rows]:
        """X_0..X_L, and the roots of the committed layers (real numpy work)."""
        layers = self.layers()
        self.roots = [merkle.levels(leaves(layers[stage]))[-1][0] for stage in self.tp.committed]
        return layers

    def read(self, rows: Sequence[int]) -> Rows:
        """Rows of X_L for an answer. Adversaries override this (and what they hold)."""
        assert self.held is not None
        return self.held[list(rows)]


class CapacityProver:
    """`devices` maps each target to the device holding it (a GPU, or host RAM for the host target);
    `fill_devices` are the GPUs that compute the fills (the host fill is spread over all of them)."""

    def __init__(
        self,
        nonce: bytes,
        machine_id: str,
        challenge_id: str,
        params: CapacityParams,
        devices: Mapping[int, SimulatedDevice],
    ) -> None:
        self.nonce, self.machine_id, self.challenge_id, self.params = nonce, machine_id, challenge_id, params
        self.devices = dict(devices)
        self.states = {tp.target: self.make_state(tp) for tp in params.targets}
        self.sweep_round = bandwidth_round(params)
        self.swept: dict[int, list[bytes]] = {}  # target -> its bandwidth round's sweep roots

    def make_state(self, tp: CapacityTargetParams) -> TargetState:
        return TargetState(tp, capacity_seed(self.nonce, self.machine_id, tp.target), self.devices[tp.target])

    @property
    def gpu_devices(self) -> list[SimulatedDevice]:
        seen: dict[int, SimulatedDevice] = {}
        for tp in self.params.targets:
            if not tp.is_host:
                seen[id(self.devices[tp.target])] = self.devices[tp.target]
        return list(seen.values())

    def reset_clocks(self) -> None:
        for device in {id(d): d for d in self.devices.values()}.values():
            device.busy_s = 0.0

    def phase_seconds(self) -> float:
        """Devices work concurrently: the phase takes the busiest one's modelled time."""
        return max((d.busy_s for d in self.devices.values()), default=0.0)

    def charge_fill(self, tp: CapacityTargetParams) -> None:
        ops = fill_ops(tp.n_rows, tp.d)
        workers = self.gpu_devices if tp.is_host else [self.devices[tp.target]]
        for device in workers:
            device.charge(device.gemm(ops // len(workers)))
        self.devices[tp.target].charge(0.0)

    def hold(self, state: TargetState, layer: Rows) -> None:
        state.device.alloc(layer.nbytes)
        state.held = layer

    def fill(self) -> CapacityCommitment:
        targets = []
        for tp in self.params.targets:
            state = self.states[tp.target]
            layers = state.compute()
            self.charge_fill(tp)
            self.hold(state, layers[-1])
            targets.append(
                TargetCommitment(
                    target=tp.target,
                    chain=chain_value(state.seed, state.roots).hex(),
                    root=state.roots[-1].hex(),
                )
            )
        return CapacityCommitment(
            machine_id=self.machine_id,
            challenge_id=self.challenge_id,
            nonce=self.nonce.hex(),
            targets=targets,
        )

    def answer_leaves(self, state: TargetState, round_nonce: bytes) -> list[bytes]:
        tp = state.tp
        rows_per_item = [item_rows(tp, round_nonce, c) for c in range(tp.items)]
        flat = [r for rows in rows_per_item for r in rows]
        data = state.read(flat)
        nbytes = len(flat) * tp.d
        cost = (
            state.device.scan(nbytes, len(flat))
            if tp.mode == "scan"
            else state.device.gather(nbytes, len(flat))
        )
        state.device.charge(cost)
        out, at = [], 0
        for c, rows in enumerate(rows_per_item):
            out.append(answer_leaf(round_nonce, tp.target, c, data[at : at + len(rows)]))
            at += len(rows)
        return out

    def sweep(self, state: TargetState, round_nonce: bytes) -> list[bytes]:
        """The bandwidth round's sweep roots from the rows held (adversaries override it)."""
        tp = state.tp
        assert state.held is not None
        top = state.read(range(tp.n_rows))
        per = state.device.sweep(tp.fill_bytes, tp.n_rows, sweep_bytes_hashed(tp.items, tp.chunk_rows))
        state.device.charge(tp.sweeps * per)
        return sweep_roots(tp, top, round_nonce)

    def answer(self, round_: CapacityRound) -> CapacityAnswer:
        nonce = bytes.fromhex(round_.nonce)
        answers = []
        for target in round_.targets:
            state = self.states[target]
            if round_.round == self.sweep_round:
                roots = self.sweep(state, nonce)
                self.swept[target] = roots
                answers.append(
                    TargetAnswer(
                        target=target, root=roots[-1].hex(), sweep_roots=[r.hex() for r in roots[:-1]]
                    )
                )
                continue
            root = merkle.levels(self.answer_leaves(state, nonce))[-1][0]
            answers.append(TargetAnswer(target=target, root=root.hex()))
        return CapacityAnswer(round=round_.round, answers=answers)

    def open(
        self,
        round_nonces: Mapping[int, bytes],
        spots: Mapping[int, Mapping[int, Sequence[int]]],
        walks: Mapping[int, Sequence[Walk]],
        ready: Callable[[list[TargetOpenings]], None] | None = None,
    ) -> list[TargetOpenings]:
        """Spots from the rows held; walks from a recomputed fill (the device holds X_L only). The
        GPU targets first: `ready` gets theirs before host RAM's are recomputed (the probe uploads
        them meanwhile, §17.10)."""
        out: list[TargetOpenings] = []
        for tp in sorted(self.params.targets, key=lambda t: t.is_host):
            if tp.is_host and ready is not None:
                ready(list(out))
            state = self.states[tp.target]
            layers = state.layers()  # the honest prover recomputes; charged, not timed
            self.charge_fill(tp)
            trees = {stage: merkle.levels(leaves(layers[stage])) for stage in tp.committed}
            out.append(
                TargetOpenings(
                    target=tp.target,
                    roots=[r.hex() for r in state.roots],
                    spots=self._spots(state, layers[-1], trees[tp.n_stages], round_nonces, spots[tp.target]),
                    walks=[self._walk(tp, layers, trees, w) for w in walks[tp.target]],
                )
            )
        by_target = {o.target: o for o in out}
        return [by_target[tp.target] for tp in self.params.targets]

    def _spots(
        self,
        state: TargetState,
        top: Rows,
        tree: list[list[bytes]],
        round_nonces: Mapping[int, bytes],
        spots: Mapping[int, Sequence[int]],
    ) -> list[SpotOpening]:
        tp = state.tp
        sub_height = tp.chunk_rows.bit_length() - 1
        out = []
        for r, items in sorted(spots.items()):
            nonce = round_nonces[r]
            if r == self.sweep_round:
                out += self._sweep_spots(state, top, tree[sub_height:], nonce, r, items)
                continue
            answer_tree = merkle.levels(
                [answer_leaf(nonce, tp.target, c, top[item_rows(tp, nonce, c)]) for c in range(tp.items)]
            )
            for item in items:
                rows = item_rows(tp, nonce, item)
                node = item if tp.mode == "scan" else rows[0]
                upper = tree[sub_height:] if tp.mode == "scan" else tree
                out.append(
                    SpotOpening(
                        round=r,
                        item=item,
                        rows=[top[i].tobytes().hex() for i in rows],
                        tree_path=[s.hex() for s in merkle.path(upper, node)],
                        answer_path=[s.hex() for s in merkle.path(answer_tree, item)],
                    )
                )
        return out

    def sweep_tree(self, state: TargetState, key: bytes) -> list[list[bytes]]:
        """One sweep's answer tree from the rows held (what the prover committed; adversaries override it)."""
        assert state.held is not None
        return merkle.levels(sweep_leaves(state.tp, state.held, key))

    def _sweep_spots(
        self,
        state: TargetState,
        top: Rows,
        upper: list[list[bytes]],
        nonce: bytes,
        r: int,
        items: Sequence[int],
    ) -> list[SpotOpening]:
        tp = state.tp
        keys = sweep_keys(nonce, self.swept.get(tp.target, []), tp.sweeps)
        trees: dict[int, list[list[bytes]]] = {}
        out = []
        for j in items:
            s, c = split_item(tp, j)
            if s not in trees:
                trees[s] = self.sweep_tree(state, keys[s - 1])
            rows = item_rows(tp, nonce, c)
            out.append(
                SpotOpening(
                    round=r,
                    item=j,
                    rows=[top[i].tobytes().hex() for i in rows],
                    tree_path=[h.hex() for h in merkle.path(upper, c)],
                    answer_path=[h.hex() for h in merkle.path(trees[s], c)],
                )
            )
        return out

    @staticmethod
    def _walk(
        tp: CapacityTargetParams, layers: list[Rows], trees: Mapping[int, list[list[bytes]]], walk: Walk
    ) -> WalkOpening:
        steps = []
        for stage, row in zip(walk.stages, walk.rows, strict=True):
            below = parent_stage(stage, tp.commit_stride)

            def hexpath(layer: int, i: int) -> list[str]:
                return [s.hex() for s in merkle.path(trees[layer], i)]

            parents = parent_rows(row, stage, below, tp.n_rows) if below else []
            steps.append(
                WalkStep(
                    stage=stage,
                    row=row,
                    a_row=layers[stage][row].tobytes().hex(),
                    a_path=hexpath(stage, row),
                    prev=[layers[below][i].tobytes().hex() for i in parents],
                    prev_paths=[hexpath(below, i) for i in parents],
                )
            )
        return WalkOpening(walk=walk.index, steps=steps)
