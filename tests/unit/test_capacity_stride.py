"""Layers committed every `commit_stride` stages (2: every other, 3: every third, the service's
since 2026-12-07, docs/protocol.md §17.3): the protocol layer's format, made by the numpy prover and
the GPU executor (on the CUDA test double) and judged by the real verifier, in process and through
the binary openings; these tests hold every stride up to MAX_CAPACITY_COMMIT_STRIDE to the same
adversaries as stride 1."""

from __future__ import annotations

import numpy as np
import pytest

from gpuproof.protocol.capacity import CapacityParams, codes
from gpuproof.protocol.capacity.cupy_prover import CupyCapacityProver
from gpuproof.protocol.capacity.draws import draw_walks
from gpuproof.protocol.capacity.fill import Fill, capacity_seed, committed_stages, parent_rows
from gpuproof.protocol.capacity.models import CapacityTargetParams
from gpuproof.protocol.capacity.prover import CapacityProver
from gpuproof.protocol.capacity.verifier import b_times_mod
from gpuproof.protocol.capacity.wire import decode_openings, encode_openings
from gpuproof.protocol.keys import SigningKey
from tests.unit import capacity_adversaries as adv

STRIDES = [2, 3, 4]
KEY = SigningKey.from_seed(bytes(range(32)))
NONCE = bytes(range(100, 132))
CHALLENGE = "cap-challenge-stride"


def strided(params: CapacityParams, stride: int = 2) -> CapacityParams:
    targets = [tp.model_copy(update={"commit_stride": stride}) for tp in params.targets]
    return CapacityParams.model_validate(
        {**params.model_dump(), "targets": [t.model_dump() for t in targets]}
    )


def codes_of(r: adv.Run) -> set[str]:  # type: ignore[type-arg]
    return {x.code for x in r.result.reasons}


def test_committed_stages_and_parent_rows() -> None:
    assert committed_stages(27, 2) == list(range(1, 28, 2)) and committed_stages(4, 2) == [2, 4]
    assert committed_stages(5) == [1, 2, 3, 4, 5]
    # X_3[5] over two stages: X_2[5] = f(X_1[5], X_1[7]) and X_2[1] = f(X_1[1], X_1[3]); own first
    assert parent_rows(5, 3, 1, 16) == [5, 7, 1, 3]
    assert parent_rows(5, 3, 2, 16) == [5, 1]
    assert parent_rows(5, 3, 1, 6) == [5, 5, 1, 3]  # 7 is past N: row 5 pairs with itself at stage 2
    # three stages: each row of the two-stage list expands to (own, mate at stage 1)
    assert parent_rows(5, 3, 0, 16) == [5, 4, 7, 6, 1, 0, 3, 2]
    assert committed_stages(27, 3) == list(range(3, 28, 3)) and committed_stages(10, 3) == [1, 4, 7, 10]
    with pytest.raises(ValueError):
        CapacityTargetParams.model_validate(
            {**adv.target_params(1, host=False).targets[0].model_dump(), "commit_stride": 5}
        )


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("gpus", [1, 2])
def test_an_honest_host_passes_with_every_other_layer_committed(gpus: int, stride: int) -> None:
    params = strided(adv.target_params(gpus, sweep_s=adv.TEST_SWEEP_S), stride)
    prover = CapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, adv.honest_devices(params))
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE)
    assert r.result.reasons == []
    for tp in params.targets:
        state = prover.states[tp.target]
        assert len(state.roots) == len(tp.committed) == -(-tp.n_stages // stride)
        layers = Fill(capacity_seed(NONCE, KEY.public_hex, tp.target), tp.n_rows, tp.d).layers()
        assert np.array_equal(layers[-1], state.held)  # the same fill: only what is committed changes


@pytest.mark.parametrize("stride", STRIDES)
def test_the_binary_openings_carry_2_to_the_stride_parents_a_step_and_decode_to_the_same_verdict(
    stride: int,
) -> None:
    params = strided(adv.target_params(1, host=True), stride)

    class Keep(adv.Tamper):
        def __init__(self) -> None:
            self.kept: list = []  # type: ignore[type-arg]

        def openings(self, openings):  # type: ignore[no-untyped-def]
            self.kept = list(openings)
            return openings

    keep = Keep()
    prover = CapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, adv.honest_devices(params))
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE, tamper=keep)
    assert r.result.reasons == []
    data = encode_openings(keep.kept, params)
    decoded = decode_openings(data, params)
    for tp, target in zip(sorted(params.targets, key=lambda t: t.target), decoded, strict=True):
        assert len(target.roots) == len(tp.committed)
        for walk in target.walks:
            assert [s.stage for s in walk.steps] == tp.committed[::-1]
            for step in walk.steps:
                assert len(step.prev) == len(step.prev_paths) == (2**stride if step.stage > stride else 0)
    again = adv.verify_session(
        params, r.session, decoded, machine_id=KEY.public_hex, challenge_id=CHALLENGE, nonce=NONCE
    )
    assert again.reasons == []


@pytest.mark.parametrize(("stride", "which"), [(2, 3), (2, 0), (3, 3), (3, 0), (3, 6), (4, 3), (4, 15)])
def test_a_changed_parent_row_fails_its_step(stride: int, which: int) -> None:
    """Any one of a step's 2^stride parents changed fails both its path and the row check (the
    Freivalds vectors reach every leaf of the step's tree)."""
    params = strided(adv.target_params(1, host=False), stride)

    class Parent(adv.Tamper):
        def openings(self, openings):  # type: ignore[no-untyped-def]
            t = openings[0]
            walk = t.walks[0]
            steps = list(walk.steps)
            step = steps[1]  # above stage `stride`: it opens 2^stride parents
            assert len(step.prev) == 2**stride
            mate = bytearray(bytes.fromhex(step.prev[which]))
            mate[1] = (mate[1] + 1) % 0x7D
            prev = [*step.prev[:which], mate.hex(), *step.prev[which + 1 :]]
            steps[1] = step.model_copy(update={"prev": prev})
            walks = [walk.model_copy(update={"steps": steps}), *t.walks[1:]]
            return [t.model_copy(update={"walks": walks}), *openings[1:]]

    prover = CapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, adv.honest_devices(params))
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE, tamper=Parent())
    assert codes_of(r) == {codes.MERKLE_PATH_INVALID, codes.WALK_CHECK_FAILED}
    assert all(str(x.field).endswith(".walks[0]") for x in r.result.reasons)


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("junk", [-1, -2, -3, -5])
def test_a_cheap_fill_fails_the_walks_whether_its_junk_layer_is_committed_or_not(
    junk: int, stride: int
) -> None:
    """CheapFillProver's junk at an uncommitted layer (L - 1: committed are L, L - stride, ...) is
    still caught: the step from the committed layer above it to the one below it composes its stages."""
    params = strided(adv.target_params(1, host=False), stride)
    tp = params.targets[0]
    devs = {0: adv.gpu_device("gpu0-half", capacity=adv.TEST_VRAM // 2, gemm=1e3 * adv.GPU_GEMM)}
    prover = adv.CheapFillProver(NONCE, KEY.public_hex, CHALLENGE, params, devs, junk_stage=junk)
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE)
    assert max(r.round_s) <= tp.round_deadline_s  # the rounds alone would pass
    assert codes_of(r) == {codes.WALK_CHECK_FAILED}
    assert len(r.result.reasons) == tp.walks  # every walk crosses the junk stage


@pytest.mark.parametrize("stride", STRIDES)
def test_the_linear_top_is_caught_with_every_other_layer_committed(stride: int) -> None:
    """Bound 3's adversary (test_capacity.py): consistent from L down to L - depth + 1, X_{L-1}
    chosen in the image of the stages below. Committing every other layer does not let it through:
    the walks meet the inconsistency inside the step that spans stage L - depth."""
    from tests.unit.test_capacity import _power_of_two_target

    params = strided(_power_of_two_target(16, 512), stride)
    tp = params.targets[0]
    device = adv.gpu_device("gpu0-small", capacity=tp.fill_bytes // 2, gemm=1e3 * adv.GPU_GEMM)
    prover = adv.LinearTopProver(NONCE, KEY.public_hex, CHALLENGE, params, {0: device}, depth=6)
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE)
    assert codes_of(r) == {codes.WALK_CHECK_FAILED}
    assert len(r.result.reasons) == tp.walks


@pytest.mark.parametrize("stride", STRIDES)
def test_the_walks_open_the_committed_stages_at_the_rows_of_every_stage(stride: int) -> None:
    tp = strided(adv.target_params(1, host=False), stride).targets[0]
    full = tp.model_copy(update={"commit_stride": 1})
    draw = (bytes(range(64)), bytes(range(32)))
    for a, b in zip(draw_walks(*draw, tp), draw_walks(*draw, full), strict=True):
        assert a.stages == tp.committed[::-1]
        assert a.rows == [row for stage, row in zip(b.stages, b.rows, strict=True) if stage in a.stages]


@pytest.mark.parametrize(
    ("kept_height", "window_bytes", "stride"),
    [
        (None, None, 2),
        (2, 64 * 32, 2),
        (0, None, 2),
        (3, None, 2),
        (None, None, 3),
        (2, 128 * 32, 3),
        (0, None, 4),
        (None, None, 4),
    ],
)
def test_the_gpu_executor_matches_the_numpy_prover_with_every_other_layer_committed(
    kept_height: int | None, window_bytes: int | None, stride: int
) -> None:
    """GPUs in place and host RAM out of core (two passes) on the CUDA test double: the same
    commitment, answers and openings as the numpy prover, accepted; the fill hashes only the
    committed layers (one tree a committed layer a GPU target, `cap_subtree` launches counted)."""
    from gpuproof.protocol.capacity.cupy_prover import CupyCapacityOptions
    from tests.unit import test_capacity_cupy_prover as twin

    params = strided(twin.params_of(twin.gpu(0, 16000), twin.gpu(1, 12000), twin.host(9000, d=64)), stride)
    assert [t.n_stages for t in params.targets] == [9, 9, 7]
    assert [len(t.committed) for t in params.targets] == [-(-n // stride) for n in (9, 9, 7)]
    options = CupyCapacityOptions(
        group_rows=16,
        host_block_rows=32,
        host_window_rows=8,
        margin_bytes=0,
        kept_height=kept_height,
        window_bytes=window_bytes,
    )
    cp = twin.double(2)
    prover = CupyCapacityProver(
        twin.NONCE, twin.KEY.public_hex, twin.CHALLENGE, params, cupy=cp, options=options
    )
    trees: list[int] = []
    session, _nonces, got, want = twin.run_both(
        params,
        prover,
        before_open=lambda: trees.append(sum(1 for e in cp.log if e[:2] == ("kernel", "cap_subtree"))),
    )
    assert got == want
    assert twin.verify(params, session, got) == []
    layouts = prover._layout(params.targets[2])  # the host fill's blocks and windows
    blocks = -(-params.targets[2].n_rows // layouts.block_rows)
    windows = layouts.block_rows // layouts.window_rows
    below = sum(1 for s in params.targets[2].committed if s <= layouts.block_log)
    above = len(params.targets[2].committed) - below
    gpu_layers = len(params.targets[0].committed)
    fill_trees = 2 * gpu_layers + blocks * below + windows * above  # + the rounds' answer trees
    # at most the self-check's warm-up beyond the fill's trees
    assert trees[0] >= fill_trees and trees[0] - fill_trees < 2 * gpu_layers


@pytest.mark.parametrize("d", [8, 1024, 1073, 1074, 2048])
def test_the_composed_stages_product_is_exact_mod_251_on_either_side_of_the_float32_bound(d: int) -> None:
    """B . v mod 251 in float32 (one centred product up to d = 1073, two 4-bit halves beyond) equals
    the int64 product, at the extremes of both operands' ranges."""
    rng = np.random.default_rng(d)
    b = rng.integers(-125, 126, size=(d, d))
    b[0, :] = 125  # a row of extremes: every partial sum at its largest
    v = rng.integers(0, 251, size=(d, 8))
    v[:, 0] = 125  # centred: +125 (the largest magnitude kept)
    v[:, 1] = 126  # centred: -125
    want = (b @ v) % 251
    got = b_times_mod(b.astype(np.float32), v.astype(np.float64))
    assert np.array_equal(got.astype(np.int64), want)
