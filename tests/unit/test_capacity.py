"""The capacity phase (issue 12): an honest host passes; each adversary of the issue is refused
with its own reason; the stated bounds at GPU size; the verification record's shape."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.capacity import (
    HOST_TARGET,
    CapacityAnswer,
    CapacitySession,
    SessionError,
    SignedCapacityCommitment,
    codes,
    derive_capacity_params,
)
from gpuproof.protocol.capacity.device import OutOfDeviceMemory
from gpuproof.protocol.capacity.draws import draw_spots, draw_walks, target_rounds
from gpuproof.protocol.capacity.fill import Fill, capacity_seed, partner
from gpuproof.protocol.capacity.models import CapacityParams, CapacityTargetParams, TargetAnswer
from gpuproof.protocol.capacity.params import fill_ops
from gpuproof.protocol.capacity.prover import CapacityProver
from gpuproof.protocol.capacity.verifier import LayerPaths, check_walks
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import merkle
from gpuproof.reason_codes import REASON_CODES
from gpuproof.reference import lookup
from tests.unit import capacity_adversaries as adv

KEY = SigningKey.from_seed(bytes(range(32)))
OTHER = SigningKey.from_seed(bytes(range(1, 33)))
NONCE = bytes(range(100, 132))
CHALLENGE = "cap-challenge-1"


def run(
    prover_cls: type[CapacityProver] = CapacityProver,
    *,
    gpus: int = 2,
    host: bool = True,
    devices: dict | None = None,
    sweep_s: float = 0.0,
    **kwargs: object,
) -> adv.Run:  # type: ignore[type-arg]
    params = adv.target_params(gpus, host=host, sweep_s=sweep_s)
    devs = devices if devices is not None else adv.honest_devices(params)
    prover = prover_cls(NONCE, KEY.public_hex, CHALLENGE, params, devs, **kwargs)
    return adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE)


def codes_of(r: adv.Run) -> set[str]:
    return {x.code for x in r.result.reasons}


def test_honest_host_passes_and_the_record_has_the_agreed_shape() -> None:
    r = run(sweep_s=adv.TEST_SWEEP_S)
    assert r.result.reasons == []
    record = r.result.as_record()
    json.loads(canonical_bytes(record))  # canonical JSON: no NaN, no infinity
    assert set(record) == {"version", "gpus", "host_ram", "reasons", "digest"}
    assert record["version"] == 1 and record["reasons"] == []
    assert [g["index"] for g in record["gpus"]] == [0, 1]
    for g in record["gpus"]:
        assert set(g) == {
            "index",
            "claimed_bytes",
            "proven_bytes",
            "bandwidth_bytes_per_s",
            "read_round_p50_s",
            "read_round_max_s",
            "bandwidth_round_s",
            "passed",
        }
        assert g["passed"] and g["claimed_bytes"] == adv.TEST_VRAM
        assert 0.90 * adv.TEST_VRAM <= g["proven_bytes"] <= adv.TEST_VRAM
        assert 0 < g["read_round_p50_s"] <= g["read_round_max_s"]
        assert g["bandwidth_bytes_per_s"] > 0 and g["bandwidth_round_s"] > 0
    assert record["host_ram"]["passed"] and record["host_ram"]["proven_bytes"] >= 0.90 * adv.TEST_RAM
    assert len(record["digest"]) == 64


def test_the_fill_is_exact_and_mixes_rows() -> None:
    tp = adv.target_params(1, host=False).targets[0]
    fill = Fill(capacity_seed(NONCE, KEY.public_hex, 0), tp.n_rows, tp.d)
    layers = fill.layers()
    assert len(layers) == tp.n_stages + 1
    assert all(int(x.min()) >= -125 and int(x.max()) <= 125 for x in layers)
    # change one row of X_0: after L stages at least half of X_L's rows change
    changed = layers[0].copy()
    changed[3] = ((changed[3].astype(np.int64) + 1 + 125) % 251 - 125).astype(np.int8)
    out = changed
    for stage in range(1, fill.n_stages + 1):
        out = fill.step(out, stage)
    assert (out != layers[-1]).any(axis=1).sum() >= tp.n_rows // 2


@pytest.mark.parametrize("keep", [0.5, 0.85, 0.99])
def test_a_gpu_holding_less_than_claimed_and_regenerating_misses_the_round_deadline(keep: float) -> None:
    params = adv.target_params(2, host=False)
    devs = adv.honest_devices(params)
    devs[1] = adv.gpu_device("gpu1-small", capacity=int(adv.TEST_VRAM * keep))
    prover = adv.PartialProver(NONCE, KEY.public_hex, CHALLENGE, params, devs, keep_fraction=keep)
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE)
    prover.recompute_check()
    assert codes_of(r) == {codes.ROUND_DEADLINE_MISSED}
    # one answer carries every GPU of a round (one service-timed deadline): all of them are late
    assert {x.field for x in r.result.reasons} == {"targets[0]", "targets[1]"}
    assert not any(g.passed for g in r.result.gpus) and all(g.proven_bytes == 0 for g in r.result.gpus)


def test_a_gpu_holding_half_and_answering_junk_for_the_rest_fails_the_spot_checks() -> None:
    params = adv.target_params(1, host=False)
    devs = adv.honest_devices(params)
    devs[0] = adv.gpu_device("gpu0-half", capacity=adv.TEST_VRAM // 2)
    prover = adv.PartialProver(NONCE, KEY.public_hex, CHALLENGE, params, devs, regenerate=False)
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE)
    assert codes.ANSWER_MISMATCH in codes_of(r)
    assert codes_of(r) <= {codes.ANSWER_MISMATCH}
    assert max(r.round_s) <= params.targets[0].round_deadline_s  # it was on time, and wrong


def test_a_device_holding_half_cannot_even_allocate_the_fill() -> None:
    params = adv.target_params(1, host=False)
    devs = {0: adv.gpu_device("gpu0-half", capacity=adv.TEST_VRAM // 2)}
    with pytest.raises(OutOfDeviceMemory):
        CapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, devs).fill()


def test_reads_from_a_slower_store_miss_the_round_deadline() -> None:
    params = adv.target_params(2, host=False)
    devs = adv.honest_devices(params)
    # GPU 1's data is served from host memory over PCIe: 60x less bandwidth ...
    devs[1] = adv.gpu_device("gpu1-pcie", scan=adv.PCIE_SCAN)
    r = run(devices=devs, host=False)
    assert codes_of(r) == {codes.ROUND_DEADLINE_MISSED}
    # ... or with an added latency per row read at the hardware boundary
    devs = adv.honest_devices(params)
    devs[0] = adv.gpu_device("gpu0-slow", extra_read_s=1e-3)
    r = run(devices=devs, host=False)
    assert codes_of(r) == {codes.ROUND_DEADLINE_MISSED}


def test_two_devices_cannot_answer_for_four() -> None:
    params = adv.target_params(4, host=False)
    a, b = (
        adv.gpu_device("gpu-a", capacity=2 * adv.TEST_VRAM),
        adv.gpu_device("gpu-b", capacity=2 * adv.TEST_VRAM),
    )
    # even with twice the memory each, the fills queue on two devices: twice the GEMM time
    devs = {0: a, 1: b, 2: a, 3: b}
    r = run(adv.SharedDeviceProver, gpus=4, host=False, devices=devs)
    assert codes.FILL_DEADLINE_MISSED in codes_of(r)
    assert r.fill_s > params.fill_deadline_s
    # with the memory of one fill each, the second fill must also be regenerated in every round
    a, b = adv.gpu_device("gpu-a"), adv.gpu_device("gpu-b")
    r = run(adv.SharedDeviceProver, gpus=4, host=False, devices={0: a, 1: b, 2: a, 3: b})
    assert {codes.FILL_DEADLINE_MISSED, codes.ROUND_DEADLINE_MISSED} <= codes_of(r)
    assert not any(g.passed for g in r.result.gpus)


def test_host_ram_over_claimed_twice_misses_the_host_deadline() -> None:
    params = adv.target_params(1)
    devs = adv.honest_devices(params)
    devs[HOST_TARGET] = adv.host_device(capacity=adv.TEST_RAM // 2)
    r = run(adv.SwapProver, gpus=1, devices=devs, keep_fraction=0.5)
    assert codes_of(r) == {codes.HOST_ROUND_DEADLINE_MISSED}
    assert r.result.gpus[0].passed
    assert (
        r.result.host_ram is not None and not r.result.host_ram.passed and r.result.host_ram.proven_bytes == 0
    )
    # the same host RAM honestly claimed at its size passes
    assert run(gpus=1).result.host_ram.passed  # type: ignore[union-attr]


def test_host_ram_in_swap_misses_the_host_deadline() -> None:
    params = adv.target_params(1)
    devs = adv.honest_devices(params)
    devs[HOST_TARGET] = adv.host_device(row_s=adv.SWAP_ROW_S)
    assert codes_of(run(gpus=1, devices=devs)) == {codes.HOST_ROUND_DEADLINE_MISSED}


class _ReSigned(adv.Tamper):
    """Machine B takes machine A's fill, commitment and openings and signs them as its own."""

    def commitment(self, signed: SignedCapacityCommitment) -> SignedCapacityCommitment:
        c = signed.commitment.model_copy(update={"machine_id": OTHER.public_hex})
        return SignedCapacityCommitment.sign(c, OTHER)


def test_two_machines_cannot_share_one_devices_proof() -> None:
    params = adv.target_params(1, host=False)
    prover = CapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, adv.honest_devices(params))
    # as is: A's commitment names and is signed by A
    r = adv.run_phase(prover, KEY, params, machine_id=OTHER.public_hex, nonce=NONCE, challenge_id=CHALLENGE)
    assert {codes.MACHINE_MISMATCH, codes.SIGNATURE_INVALID} <= codes_of(r)
    # re-signed by B: the seed binds the machine, so A's roots do not chain for B
    prover = CapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, adv.honest_devices(params))
    r = adv.run_phase(
        prover,
        OTHER,
        params,
        machine_id=OTHER.public_hex,
        nonce=NONCE,
        challenge_id=CHALLENGE,
        tamper=_ReSigned(),
    )
    assert codes_of(r) == {codes.ROOT_CHAIN_INVALID}


@pytest.mark.parametrize("junk", [0, -1, -5])
def test_a_cheap_fill_regenerates_in_time_and_fails_the_walks(junk: int) -> None:
    params = adv.target_params(1, host=False)
    # half the memory, a thousand times the GEMM rate: regenerating from junk fits the deadline
    devs = {0: adv.gpu_device("gpu0-half", capacity=adv.TEST_VRAM // 2, gemm=1e3 * adv.GPU_GEMM)}
    prover = adv.CheapFillProver(NONCE, KEY.public_hex, CHALLENGE, params, devs, junk_stage=junk)
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE)
    assert max(r.round_s) <= params.targets[0].round_deadline_s  # the rounds alone would pass
    assert codes_of(r) == {codes.WALK_CHECK_FAILED}
    assert len(r.result.reasons) == params.targets[0].walks  # every walk crosses the junk stage


def test_tampered_openings_are_refused() -> None:
    class Flip(adv.Tamper):
        def openings(self, openings):  # type: ignore[no-untyped-def]
            t = openings[0]
            spot = t.spots[0]
            first = bytearray(bytes.fromhex(spot.rows[0]))
            first[0] = (first[0] + 1) % 0x7D  # another in-range entry
            rows = [first.hex(), *spot.rows[1:]]
            spots = [spot.model_copy(update={"rows": rows}), *t.spots[1:]]
            step = t.walks[0].steps[0]
            a_row = "7e" + step.a_row[2:]  # 126: out of range
            walks = [
                t.walks[0].model_copy(
                    update={"steps": [step.model_copy(update={"a_row": a_row}), *t.walks[0].steps[1:]]}
                ),
                *t.walks[1:],
            ]
            return [t.model_copy(update={"spots": spots, "walks": walks}), *openings[1:]]

    params = adv.target_params(1, host=False)
    prover = CapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, adv.honest_devices(params))
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE, tamper=Flip())
    assert codes_of(r) == {codes.MERKLE_PATH_INVALID, codes.ANSWER_MISMATCH, codes.VALUE_OUT_OF_RANGE}


def test_the_session_is_interactive_and_in_order() -> None:
    params = adv.target_params(1)
    session = CapacitySession(params, opened_at=0.0)
    with pytest.raises(SessionError):
        session.open_round(1.0)  # before the commitment
    prover = CapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, adv.honest_devices(params))
    session.receive_commitment(SignedCapacityCommitment.sign(prover.fill(), KEY), 1.0)
    first = session.open_round(2.0)
    assert first.targets == [0]
    with pytest.raises(SessionError):
        session.open_round(2.5)  # the previous round is unanswered
    with pytest.raises(SessionError) as wrong:
        session.receive_answer(CapacityAnswer(round=1, answers=[TargetAnswer(target=5, root="00" * 32)]), 3.0)
    assert wrong.value.code == "capacity_answer_invalid"
    session.receive_answer(prover.answer(first), 3.0)
    second = session.open_round(4.0)
    assert second.nonce != first.nonce  # fresh per round, drawn when it opens
    with pytest.raises(SessionError):
        session.draw()  # spots and walks only after the last round


def test_every_capacity_code_is_registered() -> None:
    for code in codes.ALL_CODES:
        assert code in REASON_CODES, code


# -- the stated bounds at GPU size (arithmetic on the service's own parameters) -----------------------


def _h100(host_ram: int | None = 1024 * 2**30, gpus: int = 8):  # type: ignore[no-untyped-def]
    ref = lookup("H100 SXM5 80GB")
    assert ref is not None and ref.expected_int8_tops and ref.mem_bw_gbs
    return derive_capacity_params(
        gpu_count=gpus,
        mem_gb=ref.mem_gb,
        rate_tops=ref.expected_int8_tops,
        bandwidth_gbs=ref.mem_bw_gbs,
        host_ram_bytes=host_ram,
    ), ref


def regenerable_rows(tp: CapacityTargetParams, budget_ops: float) -> int:
    """The most missing rows whose cones fit `budget_ops` (nothing below X_L held)."""
    rows = 0
    while (
        rows < tp.n_rows
        and adv.cone_products(max(2 * rows, 1), tp.n_rows, tp.n_stages) * 2 * tp.d**2 <= budget_ops
    ):
        rows = max(2 * rows, 1)
    return rows


def max_junk_depth(tp: CapacityTargetParams, fraction: float, budget_ops: float) -> int:
    """The deepest junk layer (stages below X_L) from which `fraction` of X_L regenerates within
    `budget_ops`: sum over k < depth of 2 min(N, |M| 2^k) products of 2 d^2 operations."""
    missing = int(fraction * tp.n_rows)
    depth = 0
    while (
        depth < tp.n_stages
        and sum(2 * min(tp.n_rows, missing * 2**k) for k in range(depth + 1)) * 2 * tp.d**2 <= budget_ops
    ):
        depth += 1
    return depth


def test_h100_parameters_and_the_stated_bounds() -> None:
    params, ref = _h100()
    gpu = params.targets[0]
    assert gpu.proven_bytes >= 0.90 * 80 * 2**30 and gpu.fill_bytes <= 0.91 * 80 * 2**30
    rate = ref.expected_int8_tops * 1e12
    # the GPU's own GEMM power for a whole round deadline regenerates only a few rows (the other
    # GPUs are full with their own fills, so they have no memory for a cone: docs/protocol.md)
    rows = regenerable_rows(gpu, rate * gpu.round_deadline_s)
    assert rows <= 64 < 1e-5 * gpu.n_rows
    # whereas the whole host's compute could, if it had a fill's worth of free memory
    assert regenerable_rows(gpu, 8 * rate * gpu.round_deadline_s) >= gpu.n_rows
    # data served over PCIe 5 x16 (~55 GB/s) misses the round deadline
    assert gpu.fill_bytes / 55e9 > gpu.round_deadline_s
    # two H100 fills queued on one H100 at the GPU executor's own costs miss the fill deadline
    # (tolerance < 2), but their GEMMs alone fit it: a prover with a fused epilogue and faster
    # hashing could compute two fills in time, so the count rests on memory (Bound 2), not on time
    gpu_part = params.fill_deadline_s - params.targets[-1].fill_expected_s * 1.14
    assert 2 * gpu.fill_expected_s > gpu_part
    assert 2 * fill_ops(gpu.n_rows, gpu.d) / rate < gpu_part
    # host RAM: half of the samples from swap at ~1e6 random reads/s misses the host deadline
    host = params.targets[-1]
    assert host.is_host and host.samples / 2 / 1e6 > host.round_deadline_s
    # the fill's walks open the top stages a cheap fill could regenerate from within a deadline
    assert regenerable_rows(gpu, rate * gpu.round_deadline_s) < 2**gpu.walk_stages
    assert math.isclose(gpu.proven_bytes / gpu.fill_bytes, math.log2(251) / 8, rel_tol=1e-6)


def test_partner_is_an_involution() -> None:
    for n in (5, 8, 463):
        for stage in range(1, (n - 1).bit_length() + 1):
            for i in range(n):
                assert partner(partner(i, stage, n), stage, n) == i


def test_a_claim_gets_capacity_params_for_every_claimed_gpu() -> None:
    from gpuproof.claim import capacity_params_for, make_claim

    claim = make_claim("NVIDIA H100 80GB HBM3", 8, allow_cpu_backend=False)
    params = capacity_params_for(claim, host_ram_bytes=256 * 2**30)
    assert params is not None
    assert [t.target for t in params.targets] == [*range(8), HOST_TARGET]
    assert all(t.claimed_bytes == 80 * 2**30 for t in params.targets[:8])
    # a CPU claim (ALLOW_CPU_BACKEND only) gets the fixed test-size phase, whatever RAM it claims
    cpu = capacity_params_for(make_claim(None, 0, allow_cpu_backend=True), host_ram_bytes=2**40)
    assert cpu is not None and [t.target for t in cpu.targets] == [0, HOST_TARGET]
    assert [t.claimed_bytes for t in cpu.targets] == [16 * 1024, 32 * 1024]


def test_a_challenge_stores_the_capacity_phase_and_the_worker_recomputes_it() -> None:
    from gpuproof.claim import (
        capacity_params_for,
        capacity_params_reasons,
        challenge_params,
        make_claim,
        stored_capacity_params,
    )

    claim = make_claim("NVIDIA H100 80GB HBM3", 2, allow_cpu_backend=False)
    params = challenge_params(claim, 512 * 2**30)
    assert params["claimed_ram_bytes"] == 512 * 2**30
    assert stored_capacity_params(params) == capacity_params_for(claim, 512 * 2**30)
    assert capacity_params_reasons(params, claim) == []
    # a stored phase that is not the claim's (less RAM to prove) is a reason, and so is garbage
    cheaper = {**params, "capacity": challenge_params(claim, 2**30)["capacity"]}
    assert [r.code for r in capacity_params_reasons(cheaper, claim)] == ["capacity_params_mismatch"]
    garbage = {**params, "capacity": {"version": 1, "targets": []}}
    assert [r.code for r in capacity_params_reasons(garbage, claim)] == ["capacity_params_mismatch"]


def test_junk_answers_are_accepted_exactly_when_no_spot_hits_them_at_the_stated_rate() -> None:
    """Bound 1 measured: a GPU keeping 90% of its fill answers zeros for the rest. The real verifier
    accepts exactly when the drawn spots miss every bad item; over fresh draw secrets the acceptance
    rate matches the exact prediction (hypergeometric per round), below the bound (1 - phi)^(spots R)."""
    from tests.unit.proof_adversaries import hypergeometric, wilson

    params = adv.target_params(1, host=False)
    tp = params.targets[0]
    devs = {0: adv.gpu_device("gpu0-90", capacity=adv.TEST_VRAM)}
    prover = adv.JunkAnswerProver(
        NONCE, KEY.public_hex, CHALLENGE, params, devs, regenerate=False, keep_fraction=0.9
    )
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE)
    kept = int(tp.n_rows * 0.9)
    bad = {c for c in range(tp.items) if (c + 1) * tp.chunk_rows > kept}
    rounds = target_rounds(params, 0)
    session = r.session
    assert session.signed is not None and session.commitment_received_at is not None
    hits, _, _ = spot_acceptance(params, prover, session, tp, lambda r, item: item in bad)
    trials = len(hits)
    accepted = hits.count(0)
    predicted = hypergeometric(tp.items, len(bad), tp.spots) ** len(rounds)
    lo, hi = wilson(accepted, trials, 3.0)
    assert lo <= predicted <= hi, (accepted, predicted)
    assert predicted <= (1 - len(bad) / tp.items) ** (tp.spots * len(rounds))


def test_host_ram_junk_answers_are_accepted_exactly_when_no_spot_hits_them_at_the_stated_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bound 1 measured for host RAM, whose read rounds sample: round r's items are `samples` rows
    drawn with its nonce (sample_row), its `spots` spots drawn among those items, over the R host
    rounds. Host RAM keeps 90% of its fill and answers zeros for the other rows, on time; the GPU
    answers honestly. The real verifier refuses, with one answer mismatch per spot and host RAM's
    only, exactly the draws whose spots hit a junk item; over fresh draw secrets the acceptance rate
    matches the exact prediction given the rounds' nonces (hypergeometric per round over that
    round's junk items), below the bound (1 - phi_r)^spots a round (phi_r that round's junk items);
    over fresh nonces as well it matches (1 - phi)^(spots R), phi the rows not held: distinct items'
    rows are independent, so for host RAM the bound holds with equality."""
    import types

    from gpuproof.protocol.capacity import session as session_module
    from gpuproof.protocol.capacity.draws import sample_row
    from tests.unit.proof_adversaries import hypergeometric, wilson

    drawn_nonces = iter(range(1 << 30))  # the rounds' nonces fixed: the test is deterministic
    monkeypatch.setattr(
        session_module,
        "secrets",
        types.SimpleNamespace(
            token_bytes=lambda n: hashlib.sha256(b"round nonce %d" % next(drawn_nonces)).digest()[:n]
        ),
    )
    params = adv.target_params(1, host=True)
    tp = params.target(HOST_TARGET)
    assert tp is not None and tp.mode == "sample" and tp.items == tp.samples
    prover = adv.JunkAnswerProver(
        NONCE,
        KEY.public_hex,
        CHALLENGE,
        params,
        adv.honest_devices(params),
        regenerate=False,
        keep_fraction=0.9,
    )
    prover.states[0].keep_fraction = 1.0  # type: ignore[attr-defined]  # the GPU holds its whole fill
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE)
    assert max(r.round_s) <= min(t.round_deadline_s for t in params.targets)  # on time, and wrong
    kept = int(tp.n_rows * 0.9)
    rounds = target_rounds(params, HOST_TARGET)
    assert len(rounds) == params.rounds
    session = r.session
    assert session.signed is not None
    nonces = {x.round: bytes.fromhex(x.nonce) for x in session.rounds}
    bad = {
        k: {c for c in range(tp.items) if sample_row(nonces[k], HOST_TARGET, c, tp.n_rows) >= kept}
        for k in rounds
    }
    hits, draws, results = spot_acceptance(params, prover, session, tp, lambda r, c: c in bad[r])
    trials = len(hits)
    for result in results:  # host RAM's reasons only: the GPU answered honestly
        assert all((x.field or "").startswith(f"targets[{HOST_TARGET}]") for x in result.reasons)
        assert result.gpus[0].passed
    accepted = hits.count(0)
    predicted = math.prod(hypergeometric(tp.items, len(bad[k]), tp.spots) for k in rounds)
    lo, hi = wilson(accepted, trials, 3.0)
    assert lo <= predicted <= hi, (accepted, predicted)
    assert predicted <= math.prod((1 - len(bad[k]) / tp.items) ** tp.spots for k in rounds)
    # over fresh nonces as well: each spot's row is a fresh uniform row, missed with 1 - phi
    fresh = sum(
        all(
            sample_row(hashlib.sha256(b"fresh %d %d" % (t, k)).digest(), HOST_TARGET, c, tp.n_rows) < kept
            for k, items in d.items()
            for c in items
        )
        for t, d in enumerate(draws)
    )
    stated = (kept / tp.n_rows) ** (tp.spots * len(rounds))
    lo, hi = wilson(fresh, trials, 3.0)
    assert lo <= stated <= hi, (fresh, stated)


def spot_acceptance(
    params: CapacityParams,
    prover: CapacityProver,
    session: CapacitySession,
    tp: CapacityTargetParams,
    junk: Callable[[int, int], bool],
) -> tuple[list[int], list[dict[int, list[int]]], list[Any]]:
    """3,000 fresh secrets' spot draws of target `tp` and the junk items each meets (`junk(round,
    item)`), and the real verifier on three draws that meet none and three that do: accepted
    exactly when none, one answer mismatch a junk item met. Returns (the hits per draw, the draws,
    the six verifier results)."""
    assert session.signed is not None
    data = session.signed.commitment.signing_bytes()
    nonces = {x.round: bytes.fromhex(x.nonce) for x in session.rounds}
    secrets = [k.to_bytes(8, "little") * 4 for k in range(3000)]
    draws = [draw_spots(data, x, tp, target_rounds(params, tp.target)) for x in secrets]
    hits = [sum(junk(r, item) for r, items in d.items() for item in items) for d in draws]
    chosen = [k for k, h in enumerate(hits) if h == 0][:3] + [k for k, h in enumerate(hits) if h][:3]
    assert len(chosen) == 6, "both outcomes must be checked against the verifier"
    results = []
    for k in chosen:
        session.draw_secret = secrets[k]
        spots, walks = session.draw()
        result = verify_capacity_again(params, session, prover.open(nonces, spots, walks))
        assert result.passed == (hits[k] == 0), k
        assert [x.code for x in result.reasons] == [codes.ANSWER_MISMATCH] * hits[k], k
        results.append(result)
    return hits, draws, results


def verify_capacity_again(params, session, openings):  # type: ignore[no-untyped-def]
    return adv.verify_session(
        params, session, openings, machine_id=KEY.public_hex, challenge_id=CHALLENGE, nonce=NONCE, seed=1
    )


def walk_acceptance(
    params: CapacityParams,
    prover: CapacityProver,
    run: adv.Run,
    met: Callable[[Sequence[int], Sequence[int]], bool],
) -> tuple[int, list[bytes], bytes]:
    """3,000 fresh secrets' walk draws, and the real verifier on three of them that meet no
    inconsistent row and three that do (`met`, by the walks' rows and stages): it accepts the first
    and refuses the others with one walk-check reason a walk met. Returns (the draws that met none,
    the secrets, the commitment's signing bytes)."""
    tp, session = params.targets[0], run.session
    assert session.signed is not None
    data = session.signed.commitment.signing_bytes()
    nonces = {x.round: bytes.fromhex(x.nonce) for x in session.rounds}
    secrets = [k.to_bytes(8, "little") * 4 for k in range(3000)]
    caught = [sum(met(w.rows, w.stages) for w in draw_walks(data, x, tp)) for x in secrets]
    chosen = [k for k, c in enumerate(caught) if c == 0][:3] + [k for k, c in enumerate(caught) if c][:3]
    assert len(chosen) == 6, "both outcomes must be checked against the verifier"
    for k in chosen:
        session.draw_secret = secrets[k]
        spots, walks = session.draw()
        assert sum(met(w.rows, w.stages) for w in walks[tp.target]) == caught[k]
        result = verify_capacity_again(params, session, prover.open(nonces, spots, walks))
        assert result.passed == (caught[k] == 0), k
        assert [x.code for x in result.reasons] == [codes.WALK_CHECK_FAILED] * caught[k]
    return caught.count(0), secrets, data


def test_a_partly_cheap_fill_passes_the_walks_at_the_stated_rate() -> None:
    """Bound 3 measured: junk on a quarter of the low-bit classes of a stage the walks open makes a
    quarter of X_L cheap. The verifier accepts exactly when no walk's row at that stage is a junk
    row, and over fresh secrets the acceptance rate matches (1 - phi)^walks."""
    from tests.unit.proof_adversaries import wilson

    params = adv.target_params(1, host=False, walks=4)
    tp = params.targets[0]
    junk_stage = tp.n_stages - 2  # within the walked stages
    classes = frozenset(range(0, 1 << junk_stage, 4))  # one class in four
    prover = adv.PartialJunkProver(
        NONCE,
        KEY.public_hex,
        CHALLENGE,
        params,
        adv.honest_devices(params),
        junk_stage=junk_stage,
        classes=classes,
    )
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE)
    mask = (1 << junk_stage) - 1
    cheap = {i for i in range(tp.n_rows) if i & mask in classes}

    def met(rows: Sequence[int], stages: Sequence[int]) -> bool:
        return rows[list(stages).index(junk_stage)] in cheap

    accepted, secrets, _ = walk_acceptance(params, prover, r, met)
    trials = len(secrets)
    predicted = (1 - len(cheap) / tp.n_rows) ** tp.walks
    lo, hi = wilson(accepted, trials, 3.0)
    assert lo <= predicted <= hi, (accepted, predicted)


def _power_of_two_target(d: int, n_rows: int) -> adv.CapacityParams:
    from gpuproof.protocol.capacity import gpu_target, phase
    from gpuproof.protocol.capacity.params import rows_for

    claimed = next(c for c in range(n_rows * d // 2, n_rows * d * 2) if rows_for(c, d) == n_rows)
    tp = gpu_target(
        0,
        claimed,
        rate_tops=adv.GPU_GEMM / 1e12,
        bandwidth_gbs=adv.GPU_SCAN / 1e9,
        d=d,
        chunk_rows=4,
        spots=8,
        walks=8,
        hash_bytes_per_s=adv.GPU_HASH,
        network_allowance_s=adv.ALLOWANCE_S,
        sweep_s=adv.TEST_SWEEP_S,
    )
    return phase([tp], rounds=4, network_allowance_s=adv.ALLOWANCE_S, fill_allowance_s=adv.ALLOWANCE_S)


def test_a_fill_made_cheap_by_the_stage_maps_linearity_is_caught_below_the_top_stages() -> None:
    """Bound 3's reason for walks that open every stage. The stage maps are linear modulo 251, so an
    adversary can pick X_{L-1} in the image of the stages below it (a seed and one product a block),
    take a preimage, and make every stage from L down to L - depth + 1 hold exactly: it holds only
    the image's codimension (a fraction of the fill), answers every round and the bandwidth round
    in time from the seed, and a walk that opened only those `depth` stages (10 at GPU size before
    2026-12-02) would have passed. Walks down to stage 1 meet the one inconsistent stage, L - depth,
    on every walk: refused with capacity_walk_check_failed, each at that stage."""
    params = _power_of_two_target(16, 512)
    tp = params.targets[0]
    depth = 6
    low = tp.n_stages - depth
    device = adv.gpu_device("gpu0-small", capacity=tp.fill_bytes // 2, gemm=1e3 * adv.GPU_GEMM)
    prover = adv.LinearTopProver(NONCE, KEY.public_hex, CHALLENGE, params, {0: device}, depth=depth)
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE)
    state = prover.states[0]
    assert isinstance(state, adv.LinearTopState)
    assert device.used_bytes < tp.fill_bytes // 2  # it holds less than half the fill
    assert max(r.round_s[: params.rounds]) <= tp.round_deadline_s  # the read rounds pass
    assert r.round_s[-1] <= tp.sweep_deadline_s  # and the bandwidth round
    assert codes_of(r) == {codes.WALK_CHECK_FAILED}
    assert len(r.result.reasons) == tp.walks  # every walk, and only at the inconsistent stage
    assert all(x.message.startswith(f"stage {low} ") for x in r.result.reasons), r.result.reasons
    # The layers it committed really hold above that stage: X_{L-1} is the chosen image point.
    layers = state.layers()
    j = ((state.j_residues + 125) % 251 - 125).astype(np.int8)
    assert np.array_equal(layers[tp.n_stages - 1], j)
    fill = Fill(state.seed, tp.n_rows, tp.d)
    for stage in range(low + 1, tp.n_stages + 1):
        assert np.array_equal(fill.step(layers[stage - 1], stage), layers[stage])
    assert not np.array_equal(fill.step(layers[low - 1], low), layers[low])
    # Under the old rule (walks open the top `depth` stages; no longer valid params, hence
    # model_copy) the same adversary passes every check: the rule is what refuses it.
    old_tp = tp.model_copy(update={"walk_stages": depth})
    old = params.model_copy(update={"targets": [old_tp]})
    device = adv.gpu_device("gpu0-small", capacity=tp.fill_bytes // 2, gemm=1e3 * adv.GPU_GEMM)
    prover = adv.LinearTopProver(NONCE, KEY.public_hex, CHALLENGE, old, {0: device}, depth=depth)
    assert adv.run_phase(prover, KEY, old, nonce=NONCE, challenge_id=CHALLENGE).result.reasons == []


def test_layer_paths_give_the_verdict_of_a_full_climb_while_reusing_checked_nodes() -> None:
    """The walk check's Merkle paths stop at nodes an earlier path already checked; every verdict,
    in any order and with any sibling tampered (below or above where paths meet), is the one
    `merkle.verify_path` gives for the whole path."""
    rng = np.random.default_rng(7)
    n = 45  # not a power of two: padded leaves
    leaves = [merkle.leaf_hash(bytes([k]) * 8) for k in range(n)]
    tree = merkle.levels(leaves)
    root = tree[-1][0]
    paths = LayerPaths(root, n)
    agreed = opened_ok = 0
    for trial in range(600):
        index = int(rng.integers(0, n))
        siblings = merkle.path(tree, index)
        digest = leaves[index]
        kind = trial % 4
        if kind == 1:  # one sibling flipped, at any level
            level = int(rng.integers(0, len(siblings)))
            siblings[level] = bytes([siblings[level][0] ^ 1]) + siblings[level][1:]
        elif kind == 2:  # another leaf
            digest = leaves[(index + 1) % n]
        elif kind == 3 and trial > 300:  # the top sibling flipped: above any meeting point
            siblings[-1] = bytes(32)
        raw = np.frombuffer(b"".join(siblings), dtype=np.uint8).reshape(len(siblings), 32)
        full = merkle.verify_path(digest, index, n, siblings, root)
        assert paths.opens(digest, index, raw) == full, (trial, index, kind)
        agreed += 1
        opened_ok += full
    assert agreed == 600 and 0 < opened_ok < 600
    assert sum(len(level) for level in paths.known) <= 2 * len(tree[0])  # tree nodes, at most the tree
    assert not paths.opens(leaves[0], n, np.zeros((merkle.depth(n), 32), dtype=np.uint8))  # outside
    assert not paths.opens(leaves[0], 0, np.zeros((1, 32), dtype=np.uint8))  # short path


def test_a_walk_reports_only_its_first_failing_step() -> None:
    """The row checks of every walk are batched per stage; each walk still reports the reasons of
    its first failing step alone (a parent row changed in one step: its path and its row check)."""
    params = adv.target_params(1, host=False)

    class Parent(adv.Tamper):
        row = -1

        def openings(self, openings):  # type: ignore[no-untyped-def]
            t = openings[0]
            walk = t.walks[1]
            steps = list(walk.steps)
            step = steps[2]  # a step above stage 1 (walks open every stage; L > 3 here)
            own = bytearray(bytes.fromhex(step.prev[0]))
            own[0] = (own[0] + 1) % 0x7D
            steps[2] = step.model_copy(update={"prev": [own.hex(), *step.prev[1:]]})
            self.row = step.row
            walks = [*t.walks[:1], walk.model_copy(update={"steps": steps}), *t.walks[2:]]
            return [t.model_copy(update={"walks": walks}), *openings[1:]]

    tp = params.targets[0]
    assert tp.n_stages > 3
    prover = CapacityProver(NONCE, KEY.public_hex, CHALLENGE, params, adv.honest_devices(params))
    tamper = Parent()
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE, tamper=tamper)
    label = f"stage {tp.n_stages - 2} row {tamper.row}"
    assert [(x.code, x.message.split(":")[0]) for x in r.result.reasons] == [
        (codes.MERKLE_PATH_INVALID, label),
        (codes.WALK_CHECK_FAILED, label),
    ]
    assert all(str(x.field).endswith(".walks[1]") for x in r.result.reasons)


def _path_walk_rows(commitment_bytes: bytes, secret: bytes, tp: CapacityTargetParams) -> list[list[int]]:
    """Walks v1, kept here as the reference the test below beats: one path down, row i_L =
    u64le(h[0:8]) mod N, then at stage l the same row or p_l(i) by bit l - 1 of u64le(h[8:16])."""
    from gpuproof.protocol.capacity.draws import _prefix

    prefix = _prefix(b"gpuproof/capacity/walks/v1", secret, commitment_bytes, tp.target)
    out = []
    for w in range(tp.walks):
        h = hashlib.sha256(prefix + w.to_bytes(4, "little")).digest()
        row, bits = int.from_bytes(h[:8], "little") % tp.n_rows, int.from_bytes(h[8:16], "little")
        rows = []
        for stage in range(tp.n_stages, 0, -1):
            if stage in tp.committed:
                rows.append(row)
            if (bits >> (stage - 1)) & 1:
                row = partner(row, stage, tp.n_rows)
        out.append(rows)
    return out


def test_inconsistencies_spread_over_the_stages_are_met_at_the_product_rate() -> None:
    """Bound 3 over every strategy: junk on the same rows (top 3 bits zero) of every committed layer
    at or below L - 3 puts inconsistent rows into several stages at once. Each walk step's row is
    drawn on its own (walks v2), so a walk passes with probability prod_l (1 - |I_l|/N) and all of
    them with that to the power `walks`, at most (1 - sum_l f_l / C)^(C walks): the verifier
    refuses exactly the walks that meet an I_l, and over fresh secrets the acceptance rate matches
    the product. A walk down one path (v1) met these rows at all of those stages or at none, and
    accepted them several times as often (measured with v1's draw)."""
    from tests.unit.proof_adversaries import wilson

    params = adv.target_params(1, host=False, walks=4)
    tp = params.targets[0]
    top = tp.n_stages
    junk_rows = tuple(r for r in range(tp.n_rows) if r >> (top - 3) == 0)
    junk_stages = tuple(s for s in tp.committed if s <= top - 3)
    assert len(junk_stages) >= 3
    prover = adv.SpreadJunkProver(
        NONCE,
        KEY.public_hex,
        CHALLENGE,
        params,
        adv.honest_devices(params),
        junk_stages=junk_stages,
        junk_rows=junk_rows,
    )
    r = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id=CHALLENGE)
    bad = adv.inconsistent_rows(prover.states[tp.target])
    spread = [stage for stage, rows in bad.items() if rows]
    assert len(spread) >= len(junk_stages)  # inconsistent rows in several stages

    def caught(rows: Sequence[int], stages: Sequence[int]) -> bool:
        return any(row in bad[stage] for row, stage in zip(rows, stages, strict=True))

    accepted, secrets, data = walk_acceptance(params, prover, r, caught)
    trials = len(secrets)
    stages = [s for s in range(top, 0, -1) if s in tp.committed]
    fractions = [len(bad[s]) / tp.n_rows for s in tp.committed]
    predicted = math.prod(1 - f for f in fractions) ** tp.walks
    lo, hi = wilson(accepted, trials, 3.0)
    assert lo <= predicted <= hi, (accepted, predicted)
    c = len(tp.committed)
    assert predicted <= (1 - sum(fractions) / c) ** (c * tp.walks) <= math.exp(-tp.walks * sum(fractions))
    accepted_v1 = sum(not any(caught(rows, stages) for rows in _path_walk_rows(data, x, tp)) for x in secrets)
    assert accepted_v1 > 3 * hi, (accepted_v1, accepted)  # the path's stages were correlated


@pytest.mark.parametrize(("stride", "at", "parent", "committed"), [(1, 9, 1, 27), (2, 4, 2, 14)])
def test_walks_of_an_h100s_shape_pass_and_one_changed_row_fails_at_its_step(
    stride: int, at: int, parent: int, committed: int
) -> None:
    """The walk check at the real size (N = 75,766,980 rows, L = 27, d = 1024), every layer
    committed and every other one (a step then opens the 4 rows of X_{l-2} a row depends on): walks
    made by a prover that knew the draw (`known_draw_walks`: the content an honest walk has, without
    a fill) pass, and one entry changed in one step's parent row fails that walk there and nowhere
    else."""
    tp = adv.reference_target("H100 SXM5 80GB").model_copy(update={"commit_stride": stride})
    assert (tp.n_rows, tp.n_stages, tp.d, len(tp.committed)) == (75_766_980, 27, 1024, committed)
    rng = np.random.default_rng(3)
    seed = rng.bytes(32)
    walks = draw_walks(rng.bytes(64), rng.bytes(32), tp)
    roots, got = adv.known_draw_walks(seed, tp, walks, rng)
    assert check_walks(seed, tp, roots, walks, got, rng, "t") == []
    walk = got[walks[5].index]
    step = walk.steps[at]
    assert len(step.prev) == 2 * stride
    changed = step.prev[parent].copy()
    changed[3] = (int(changed[3]) + 126) % 251 - 125  # another in-range entry
    prev = [*step.prev[:parent], changed, *step.prev[parent + 1 :]]
    steps = [*walk.steps[:at], replace(step, prev=prev), *walk.steps[at + 1 :]]
    tampered = {**got, walk.walk: replace(walk, steps=steps)}
    reasons = check_walks(seed, tp, roots, walks, tampered, rng, "t")
    assert [(x.code, x.field) for x in reasons] == [
        (codes.MERKLE_PATH_INVALID, f"t.walks[{walk.walk}]"),
        (codes.WALK_CHECK_FAILED, f"t.walks[{walk.walk}]"),
    ]
    assert all(x.message.startswith(f"stage {step.stage} row {step.row}:") for x in reasons)
