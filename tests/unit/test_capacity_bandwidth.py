"""The capacity phase's bandwidth round (docs/protocol.md §17.12, issue 12: "the measured bandwidth
separates HBM from GDDR parts"): P chained sweeps over X_L, timed by the service, bound the
device's read rate from below. Modelled devices (the hardware double `SimulatedDevice`) at test
size, the stated thresholds at every reference model's size, and provers that try to beat it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gpuproof.protocol.capacity import (
    CapacityAnswer,
    CapacitySession,
    SessionError,
    SignedCapacityCommitment,
    codes,
)
from gpuproof.protocol.capacity.draws import bandwidth_round, draw_spots, target_rounds
from gpuproof.protocol.capacity.fill import gen_rows
from gpuproof.protocol.capacity.models import TargetAnswer
from gpuproof.protocol.capacity.params import GPU_HASH_BYTES_PER_S
from gpuproof.protocol.capacity.prover import CapacityProver, TargetState
from gpuproof.protocol.capacity.sweep import (
    SWEEP_KEY_DOMAIN,
    min_bandwidth,
    split_item,
    sweep_bytes_hashed,
    sweep_leaves,
    sweep_roots,
)
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import merkle
from gpuproof.reference import reference_table
from tests.unit import capacity_adversaries as adv

KEY = SigningKey.from_seed(bytes(range(32)))
NONCE = bytes(range(100, 132))
CHALLENGE = "bw-challenge-1"
PCIE_BYTES_PER_S = 55e9  # PCIe 5 x16, what HBM data served from host memory would move at most


def params(gpus: int = 1, host: bool = False):  # type: ignore[no-untyped-def]
    return adv.target_params(gpus, host=host, sweep_s=adv.TEST_SWEEP_S)


def run(
    prover_cls: type[CapacityProver] = CapacityProver, devices: dict | None = None, **kw: object
) -> adv.Run:  # type: ignore[type-arg]
    p = params()
    devs = devices if devices is not None else adv.honest_devices(p)
    prover = prover_cls(NONCE, KEY.public_hex, CHALLENGE, p, devs, **kw)
    return adv.run_phase(prover, KEY, p, nonce=NONCE, challenge_id=CHALLENGE)


def codes_of(r: adv.Run) -> set[str]:
    return {x.code for x in r.result.reasons}


def threshold() -> float:
    tp = params().targets[0]
    return min_bandwidth(tp, adv.GPU_HASH, adv.RTT_S)


def test_the_honest_round_measures_the_devices_read_rate() -> None:
    r = run()
    assert r.result.reasons == []
    tp = params().targets[0]
    g = r.result.gpus[0]
    swept = r.round_s[-1]
    assert g.bandwidth_round_s == pytest.approx(swept)
    assert g.bandwidth_bytes_per_s == pytest.approx(tp.sweeps * tp.fill_bytes / swept)
    assert tp.sweeps > 1 and tp.sweep_expected_s <= swept <= tp.sweep_deadline_s


@pytest.mark.parametrize(("ratio", "late"), [(0.9, True), (1.1, False)])
def test_a_device_reading_below_the_stated_threshold_misses_only_the_bandwidth_deadline(
    ratio: float, late: bool
) -> None:
    """The threshold `min_bandwidth` is the stated bound; just below it the read rounds still pass
    (their deadline is mostly network allowance) and only the bandwidth round fails."""
    p = params()
    devs = {0: adv.gpu_device("gpu0-slow-memory", scan=threshold() * ratio)}
    r = run(devices=devs)
    assert codes_of(r) == ({codes.BANDWIDTH_DEADLINE_MISSED} if late else set())
    assert max(r.round_s[:-1]) <= p.targets[0].round_deadline_s


def test_data_served_over_pcie_misses_both_deadlines() -> None:
    r = run(devices={0: adv.gpu_device("gpu0-pcie", scan=adv.PCIE_SCAN)})
    assert codes_of(r) == {codes.ROUND_DEADLINE_MISSED, codes.BANDWIDTH_DEADLINE_MISSED}


class SkippingProver(CapacityProver):
    """Reads only part of X_L in each sweep (faster by `skip`) and fills the other items' leaves
    with junk: the timed root commits to them, so a spot on one is caught."""

    skip = 0.25

    def bad(self, items: int) -> set[int]:
        return {c for c in range(items) if c % 4 == 0} if self.skip else set()

    def sweep(self, state: TargetState, round_nonce: bytes) -> list[bytes]:
        import hashlib

        tp = state.tp
        assert state.held is not None
        bad = self.bad(tp.items)
        per = state.device.sweep(tp.fill_bytes, tp.n_rows, sweep_bytes_hashed(tp.items, tp.chunk_rows))
        state.device.charge(tp.sweeps * per * (1 - len(bad) / tp.items))
        roots, key = [], round_nonce
        for _s in range(tp.sweeps):
            roots.append(self.sweep_tree(state, key)[-1][0])
            key = hashlib.sha256(SWEEP_KEY_DOMAIN + key + roots[-1]).digest()
        return roots

    def sweep_tree(self, state: TargetState, key: bytes) -> list[list[bytes]]:
        assert state.held is not None
        leaves = sweep_leaves(state.tp, state.held, key)
        for c in self.bad(state.tp.items):
            leaves[c] = bytes(32)
        return merkle.levels(leaves)


def test_skipped_reads_are_caught_exactly_when_a_spot_hits_them() -> None:
    """A quarter of each sweep skipped (25% faster): the verifier accepts exactly when no drawn
    spot of the bandwidth round lands on a skipped item, i.e. with probability <= 0.75^sweep_spots
    (1.0e-3 at 24 spots); the prover opens the leaves it committed (the junk ones included)."""
    p = params()
    tp = p.targets[0]
    prover = SkippingProver(NONCE, KEY.public_hex, CHALLENGE, p, adv.honest_devices(p))
    r = adv.run_phase(prover, KEY, p, nonce=NONCE, challenge_id=CHALLENGE)
    bad = prover.bad(tp.items)
    sweep_r = bandwidth_round(p)
    assert sweep_r is not None
    spots, _walks = r.session.draw()
    hit = any(split_item(tp, j)[1] in bad for j in spots[0][sweep_r])
    assert (codes.SWEEP_MISMATCH in codes_of(r)) == hit
    assert codes_of(r) <= {codes.SWEEP_MISMATCH}
    assert (1 - len(bad) / tp.items) ** tp.sweep_spots <= 1.1e-3
    # over fresh draw secrets: caught whenever a spot lands on a skipped item
    session = r.session
    nonces = {x.round: bytes.fromhex(x.nonce) for x in session.rounds}
    caught = 0
    for k in range(4):
        session.draw_secret = bytes([k + 1]) * 32
        spots, walks = session.draw()
        result = verify_again(p, session, prover.open(nonces, spots, walks))
        hit = any(split_item(tp, j)[1] in bad for j in spots[0][sweep_r])
        assert (codes.SWEEP_MISMATCH in {x.code for x in result.reasons}) == hit, k
        caught += hit
    assert caught >= 3  # P(a draw misses every skipped item) = 0.75^24 = 1e-3
    # and a draw that misses every skipped item (found among fresh secrets) is accepted
    assert session.signed is not None
    data = session.signed.commitment.signing_bytes()
    rounds = target_rounds(p, tp.target)

    def misses(secret: bytes) -> bool:
        sweep = draw_spots(data, secret, tp, rounds, sweep_round=sweep_r)[sweep_r]
        return not any(split_item(tp, j)[1] in bad for j in sweep)

    session.draw_secret = next(x for k in range(100_000) if misses(x := k.to_bytes(8, "little") * 4))
    spots, walks = session.draw()
    assert verify_again(p, session, prover.open(nonces, spots, walks)).passed


class ParallelProver(CapacityProver):
    """Keys every sweep with the round nonce (no chaining), so all sweeps could share one read."""

    def sweep(self, state: TargetState, round_nonce: bytes) -> list[bytes]:
        tp = state.tp
        assert state.held is not None
        per = state.device.sweep(tp.fill_bytes, tp.n_rows, sweep_bytes_hashed(tp.items, tp.chunk_rows))
        state.device.charge(per)
        root = merkle.levels(sweep_leaves(tp, state.held, round_nonce))[-1][0]
        return [root] * tp.sweeps


def test_unchained_sweeps_fail_the_spot_checks() -> None:
    r = run(ParallelProver)
    assert codes_of(r) == {codes.SWEEP_MISMATCH}


def test_the_service_refuses_answers_with_the_wrong_sweep_roots() -> None:
    p = params()
    tp = p.targets[0]
    prover = CapacityProver(NONCE, KEY.public_hex, CHALLENGE, p, adv.honest_devices(p))
    session = CapacitySession(p, opened_at=0.0)
    session.receive_commitment(SignedCapacityCommitment.sign(prover.fill(), KEY), 1.0)
    at = 2.0
    sweep_r = bandwidth_round(p)
    while True:
        opened = session.open_round(at)
        answer = prover.answer(opened)
        if opened.round == sweep_r:
            break
        bogus = CapacityAnswer(
            round=opened.round,
            answers=[TargetAnswer(target=0, root=answer.answers[0].root, sweep_roots=["00" * 32])],
        )
        with pytest.raises(SessionError) as err:
            session.receive_answer(bogus, at + 0.1)
        assert err.value.code == "capacity_answer_invalid"
        session.receive_answer(answer, at + 0.1)
        at += 1
    short = answer.answers[0].model_copy(update={"sweep_roots": answer.answers[0].sweep_roots[:-1]})
    with pytest.raises(SessionError) as err:
        session.receive_answer(CapacityAnswer(round=opened.round, answers=[short]), at + 1)
    assert err.value.code == "capacity_answer_invalid"
    assert len(answer.answers[0].sweep_roots) == tp.sweeps - 1
    session.receive_answer(answer, at + 1)
    assert session.done


def test_sweeps_are_sequential_and_need_every_row() -> None:
    """Sweep s+1's key is a function of sweep s's root; one changed row changes every root."""
    tp = params().targets[0]
    top = gen_rows(b"t" * 32, b"X", range(tp.n_rows), tp.d)
    roots = sweep_roots(tp, top, NONCE)
    assert len(set(roots)) == tp.sweeps
    changed = top.copy()
    changed[tp.n_rows - 1, 0] = 0 if changed[tp.n_rows - 1, 0] else 1
    assert all(a != b for a, b in zip(roots, sweep_roots(tp, changed, NONCE), strict=True))


GDDR6_PARTS = ("GeForce RTX 3", "GeForce RTX 40", "RTX A4000", "RTX A5000", "RTX A6000", "A10", "L4", "L40S")


def gddr6_bandwidths() -> list[float]:
    """GDDR6/6X parts of the table (the RTX 5090's GDDR7 is faster, but it has 32 GB: capacity)."""
    return [
        m.mem_bw_gbs
        for m in reference_table()
        if m.mem_bw_gbs and (m.model.startswith(GDDR6_PARTS[:2]) or m.model in GDDR6_PARTS[2:])
    ]


def models() -> list[str]:
    return [m.model for m in reference_table() if m.mem_bw_gbs and m.expected_int8_tops]


@pytest.mark.parametrize("model", models())
def test_at_each_reference_models_size_the_round_bounds_the_read_rate(model: str) -> None:
    """The stated bound at GPU size, every model of the table: an honest card at its datasheet
    bandwidth answers by the deadline with >= 20% margin; a card reading at 0.6x of it, or its data
    served over PCIe (55 GB/s), does not; an HBM claim needs more than any GDDR6/6X part reads.
    H100 PCIe (2.0 TB/s) cannot pass as H100 SXM5 (3.35 TB/s)."""
    row = next(m for m in reference_table() if m.model == model)
    assert row.mem_bw_gbs is not None
    tp = adv.reference_target(model)
    need = min_bandwidth(tp, GPU_HASH_BYTES_PER_S, rtt_s=0.1)
    claimed = row.mem_bw_gbs * 1e9
    assert tp.sweeps >= 10 and 1.0 <= tp.sweep_expected_s <= 2.0
    assert need <= claimed / 1.2, (model, need / claimed)  # the honest card has >= 20% margin
    assert need >= 0.6 * claimed, (model, need / claimed)
    assert need > PCIE_BYTES_PER_S
    if model == "H100 SXM5 80GB":
        assert need > 2.0e12  # an H100 PCIe's HBM2e cannot pass as an SXM5's HBM3
    if model.startswith(("A100", "H100", "H200")):  # HBM parts: every GDDR6/6X part is too slow
        assert need > max(gddr6_bandwidths()) * 1e9


def verify_again(params, session: CapacitySession, openings: Sequence) -> object:  # type: ignore[no-untyped-def]
    return adv.verify_session(
        params, session, openings, machine_id=KEY.public_hex, challenge_id=CHALLENGE, nonce=NONCE, seed=3
    )
