"""The capacity phase end to end on the local stack (issue 12, docs/protocol.md §17): the probe
opens the phase after its throughput commitment, fills, commits, answers every timed read round
and sends its openings; the verify worker records verification["capacity"]. Shadow by default
(CapacityEnforcement=shadow): a failed phase is recorded, not refused; with enforce it refuses.

The CPU claim's test-size phase (`cpu_capacity_params`), the numpy prover and the adversaries of
tests/unit/capacity_adversaries.py (a device holding half its fill, answering junk for the rest);
a slow store is a real delay before an answer, past the round deadline on the service's clock.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from benchmark_probe.capacity import CupyCapacityFactory, openings_reference, run_capacity
from benchmark_probe.client import ServiceClient, ServiceError, upload_transcript
from benchmark_probe.cupy_double import CupyTestDouble
from benchmark_probe.integrity import collect_integrity
from benchmark_probe.nvml_double import fake_gpu
from benchmark_probe.proof import prove
from benchmark_probe.report import Challenge, build_report
from gpuproof.api.wiring import verify_services
from gpuproof.protocol.capacity import (
    CapacityAnswer,
    CapacityCommitment,
    CapacityParams,
    CapacityRound,
    SignedCapacityCommitment,
    draw_walks,
)
from gpuproof.protocol.capacity.cupy_prover import CupyCapacityRuntime
from gpuproof.protocol.capacity.device import SimulatedDevice
from gpuproof.protocol.capacity.draws import all_spots, bandwidth_round
from gpuproof.protocol.capacity.fill import capacity_seed, chain_value
from gpuproof.protocol.capacity.models import HOST_TARGET, OPENINGS_MEDIA_TYPE, TargetAnswer, TargetCommitment
from gpuproof.protocol.capacity.prover import CapacityProver
from gpuproof.protocol.capacity.wire import encode_head, encode_host_part, encode_openings, max_size
from gpuproof.protocol.delivery import MEDIA_TYPES
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import NumpyExecutor
from tests.unit import capacity_adversaries as adv

from .h100_host import committed_h100_host, send_report, shaped_transcript
from .test_proof_flow import new_machine, take_challenge, verification

pytestmark = pytest.mark.e2e


def half_memory(
    nonce: bytes,
    machine_id: str,
    challenge_id: str,
    params: CapacityParams,
    devices: Mapping[int, SimulatedDevice],
) -> CapacityProver:
    """Holds half of every fill and answers zeros for the rest (on time, and wrong)."""
    return adv.PartialProver(nonce, machine_id, challenge_id, params, devices, regenerate=False)


def finish(
    local_stack: Any, key: SigningKey, client: ServiceClient, inventory: Any, challenge: Challenge, proof: Any
) -> dict[str, Any]:
    """Sign and send the report, let the verify worker run, read the machine back."""
    proof_doc = None if proof is None else proof.model_dump(mode="json")
    signed = build_report(key, challenge, inventory, [], collect_integrity(), proof_doc)
    client.submit_report(key.public_hex, challenge.challenge_id, signed.model_dump(mode="json"))
    local_stack.drain()
    status: dict[str, Any] = client.machine(key.public_hex)
    return status


def run_machine(
    local_stack: Any, prover: Any = CapacityProver, on_round: Any = lambda _r: None, delivery: Any = "auto"
) -> tuple[dict[str, Any], Any]:
    key, client, inventory = new_machine(local_stack)
    challenge = take_challenge(client, key, inventory)
    proof = prove(client, key, challenge, NumpyExecutor())
    outcome = run_capacity(client, key, challenge, prover, on_round, delivery)
    # 4 GPU rounds, 4 host RAM rounds, the bandwidth round (§17.12)
    assert outcome.ran and outcome.rounds == 9, outcome.note
    return finish(local_stack, key, client, inventory, challenge, proof), outcome


def test_an_honest_machine_proves_its_capacity(local_stack: Any) -> None:
    status, outcome = run_machine(local_stack)
    report = status["reports"][0]["verification"]
    check = verification(status)["capacity"]
    assert check["status"] == "pass" and check["shadow"] is True and check["reasons"] == []
    record = report["capacity"]
    assert record["version"] == 1 and record["reasons"] == [] and len(record["digest"]) == 64
    [gpu] = record["gpus"]
    assert gpu["passed"] and gpu["index"] == 0 and gpu["claimed_bytes"] == 16 * 1024
    assert 0.90 * 16 * 1024 <= gpu["proven_bytes"] <= 16 * 1024
    assert 0 < gpu["read_round_p50_s"] <= gpu["read_round_max_s"] and gpu["bandwidth_bytes_per_s"] > 0
    assert gpu["bandwidth_round_s"] > 0  # the bandwidth round ran and was timed by the service
    host = record["host_ram"]
    assert host["passed"] and 0.90 * 32 * 1024 <= host["proven_bytes"] <= 32 * 1024
    assert report["passed"] is True and status["machine"]["state"] != "refused"
    assert 0 < outcome.openings_bytes <= 256 * 1024 and outcome.delivery == "inline"


def test_openings_uploaded_out_of_band_prove_the_same(local_stack: Any) -> None:
    """...and come from the GPU backend's CuPy prover, run on the CUDA test double (its kernels built
    with g++): the probe's GPU path of `run_capacity` (budget checked before the phase opens)."""
    gpu = CupyCapacityFactory(CupyCapacityRuntime(CupyTestDouble.for_gpus([fake_gpu(0)])))
    status, outcome = run_machine(local_stack, gpu, delivery="upload")
    # the GPU target's part uploaded while host RAM's were recomputed, then host RAM's (§17.10)
    assert outcome.delivery == "upload in two parts" and outcome.openings_bytes > 100_000
    check = verification(status)["capacity"]
    assert check["status"] == "pass" and check["reasons"] == []
    record = status["reports"][0]["verification"]["capacity"]
    assert record["gpus"][0]["passed"] and record["host_ram"]["passed"]


def test_the_proof_hook_reserves_host_ram_beside_the_throughput_proof(local_stack: Any) -> None:
    """The probe's proof hook (`ProofRunner`, as `benchmark-probe submit` runs it) on the GPU
    backend's capacity prover (CUDA test double): host RAM's fill array is reserved right after the
    challenge, touched beside the throughput proof, and is the array the phase fills; the service
    records both proofs as passed."""
    from benchmark_probe.proof import ProofRunner

    key, client, inventory = new_machine(local_stack)
    challenge = take_challenge(client, key, inventory)
    factory = CupyCapacityFactory(CupyCapacityRuntime(CupyTestDouble.for_gpus([fake_gpu(0)])))
    runner = ProofRunner(key, lambda _inventory: NumpyExecutor(), capacity_prover=factory)
    doc = runner(client, challenge, inventory)
    assert runner.capacity is not None and runner.capacity.ran, runner.capacity
    assert runner.capacity.host_reserved and factory._reserved is None  # taken by the phase
    signed = build_report(key, challenge, inventory, [], collect_integrity(), doc)  # doc: the transcript's
    client.submit_report(key.public_hex, challenge.challenge_id, signed.model_dump(mode="json"))
    local_stack.drain()
    status = client.machine(key.public_hex)
    checks = verification(status)
    assert checks["proof_of_throughput"]["status"] == "pass", checks["proof_of_throughput"]
    assert checks["capacity"]["status"] == "pass" and checks["capacity"]["reasons"] == []
    assert status["reports"][0]["verification"]["capacity"]["host_ram"]["passed"]


def test_8xh100_openings_travel_by_upload_and_are_decoded_and_judged(local_stack: Any) -> None:
    """The binary openings of a real 8 x H100 + 256 GiB phase (21.5 MB: random rows at the drawn
    positions, roots chained to the signed commitment) through the presigned POST: the service
    checks the reference and the size, the worker fetches them, checks the digest, decodes and
    verifies them; the verifier (not the delivery) refuses them: their rows open nothing."""
    host = committed_h100_host(local_stack, claimed_ram_bytes=2**38)
    mid, cid, client = host.key.public_hex, host.challenge["challenge_id"], host.client
    opened = client.open_capacity(mid, cid)
    params = CapacityParams.model_validate(opened["params"])
    assert len(params.targets) == 9 and params.targets[-1].is_host
    nonce = bytes.fromhex(opened["nonce"])
    rng = np.random.default_rng(3)
    roots = {tp.target: [rng.bytes(32) for _ in tp.committed] for tp in params.targets}
    commitment = CapacityCommitment(
        machine_id=mid,
        challenge_id=cid,
        nonce=nonce.hex(),
        targets=[
            TargetCommitment(
                target=t, chain=chain_value(capacity_seed(nonce, mid, t), layer).hex(), root=layer[-1].hex()
            )
            for t, layer in roots.items()
        ],
    )
    signed = SignedCapacityCommitment.sign(commitment, host.key)
    step = client.submit_capacity_commitment(mid, cid, signed.model_dump(mode="json"))
    swept_round, sweeps = bandwidth_round(params), {tp.target: tp.sweeps for tp in params.targets}
    while step["round"]:
        opened_round = CapacityRound.model_validate(step["round"])
        answers = [
            TargetAnswer(
                target=t,
                root=rng.bytes(32).hex(),
                sweep_roots=[]
                if opened_round.round != swept_round
                else [rng.bytes(32).hex() for _ in range(sweeps[t] - 1)],
            )
            for t in opened_round.targets
        ]
        answer = CapacityAnswer(round=opened_round.round, answers=answers)
        step = client.submit_capacity_answer(mid, cid, answer.model_dump(mode="json"))
    secret, drawn_on = bytes.fromhex(step["draw_secret"]), commitment.signing_bytes()
    openings = adv.shaped_openings(
        params,
        rng,
        spots=all_spots(drawn_on, secret, params),
        walks={tp.target: draw_walks(drawn_on, secret, tp) for tp in params.targets},
        roots=roots,
    )
    raw = encode_openings(openings, params)
    upload, host_upload = step["openings_upload"], step["openings_host_upload"]
    assert 18_000_000 < len(raw) <= upload["max_bytes"] == max_size(params)  # docs/protocol.md §17.8
    # in two parts, as the probe sends them (§17.10): the GPU targets' first, then host RAM's
    head = encode_head([o for o in openings if o.target != HOST_TARGET], params)
    tail = encode_host_part(next(o for o in openings if o.target == HOST_TARGET), params)
    assert head + tail == raw and host_upload["key"] == upload["key"] + ".2"
    upload_transcript(upload, head, OPENINGS_MEDIA_TYPE, backoff_s=0)
    ref = openings_reference(head, tail).model_dump(mode="json", exclude_none=True)
    with pytest.raises(ServiceError) as missing:  # its second part not uploaded yet
        client.submit_capacity_openings(mid, cid, reference=ref)
    assert missing.value.status == 422 and missing.value.code == "transcript_missing"
    upload_transcript(host_upload, tail, OPENINGS_MEDIA_TYPE, backoff_s=0)
    moved = {**ref, "parts": [len(head) - 1, len(tail) + 1]}  # the same whole, another split
    with pytest.raises(ServiceError) as split:
        client.submit_capacity_openings(mid, cid, reference=moved)
    assert split.value.status == 422 and split.value.code == "transcript_size_mismatch"
    with pytest.raises(ServiceError) as unsummed:
        client.submit_capacity_openings(mid, cid, reference={**ref, "parts": [len(head), len(tail) - 1]})
    assert unsummed.value.status == 422
    with pytest.raises(ServiceError) as json_v1:  # the JSON openings are no longer taken
        client.submit_capacity_openings(mid, cid, reference={**ref, "version": 1})
    assert json_v1.value.status == 422 and json_v1.value.code == "capacity_openings_invalid"
    with pytest.raises(ServiceError) as both:
        client.submit_capacity_openings(mid, cid, openings=raw[:100], reference=ref)
    assert both.value.status == 422 and both.value.code == "capacity_openings_invalid"
    whole = openings_reference(raw).model_dump(mode="json", exclude_none=True)
    with pytest.raises(ServiceError) as short:  # one object of these bytes was not uploaded
        client.submit_capacity_openings(mid, cid, reference={**whole, "transcript_bytes": len(raw) - 1})
    assert short.value.status == 422 and short.value.code == "transcript_size_mismatch"
    accepted = client.submit_capacity_openings(mid, cid, reference=ref)
    assert accepted["stored_bytes"] == len(raw)
    proof = shaped_transcript(host.params, host.pairs, rng)
    upload_transcript(host.upload, proof, MEDIA_TYPES[2], backoff_s=0)
    assert send_report(host, host.reference(proof))["state"] == "submitted"
    started = time.monotonic()
    local_stack.drain(120)  # 8 GPUs' proof and 9 capacity targets, in this process on a shared machine
    print(f"verify worker (8 x H100 + host, proof and capacity): {time.monotonic() - started:.1f} s wall")
    check = verification(client.machine(mid))["capacity"]
    codes = {r["code"] for r in check["reasons"]}
    assert check["status"] == "fail" and check["shadow"] is True
    # decoded and judged: every spot and the first step of every walk fail their own checks
    judged = {
        "capacity_merkle_path_invalid",
        "capacity_answer_mismatch",
        "capacity_sweep_mismatch",
        "capacity_walk_check_failed",
    }
    assert judged <= codes
    # a loaded machine may answer a 0.87 s GPU round late: nothing else may appear
    late = {"capacity_round_deadline_missed", "capacity_host_round_deadline_missed"}
    assert codes - late == judged, codes


def test_half_memory_is_recorded_in_shadow_and_not_refused(local_stack: Any) -> None:
    status, _ = run_machine(local_stack, half_memory)
    check = verification(status)["capacity"]
    assert check["status"] == "fail" and check["shadow"] is True
    # the zeros it answers for the rows it lacks fail the read rounds' spots, and the sweeps' when hit
    found = {r["code"] for r in check["reasons"]}
    assert "capacity_answer_mismatch" in found
    assert found <= {"capacity_answer_mismatch", "capacity_sweep_mismatch"}
    record = status["reports"][0]["verification"]["capacity"]
    assert not any(g["passed"] for g in record["gpus"]) and record["gpus"][0]["proven_bytes"] == 0
    assert record["host_ram"]["proven_bytes"] == 0
    assert status["reports"][0]["verification"]["passed"] is True
    assert status["machine"]["state"] != "refused"


def test_a_slow_store_misses_the_round_deadline_on_the_service_clock(local_stack: Any) -> None:
    def slow(r: CapacityRound) -> None:
        if r.round == 1:  # the GPU's first read round: slower than its deadline (10.23 s)
            time.sleep(11.0)

    status, _ = run_machine(local_stack, on_round=slow)
    check = verification(status)["capacity"]
    assert check["status"] == "fail" and check["shadow"] is True
    assert {r["code"] for r in check["reasons"]} == {"capacity_round_deadline_missed"}
    record = status["reports"][0]["verification"]["capacity"]
    assert record["gpus"][0]["proven_bytes"] == 0 and record["host_ram"]["passed"] is True
    assert status["machine"]["state"] != "refused"


def test_enforce_refuses_a_failed_capacity_phase_with_its_code(
    local_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPACITY_ENFORCEMENT", "enforce")
    verify_services.cache_clear()
    try:
        status, _ = run_machine(local_stack, half_memory)
    finally:
        monkeypatch.undo()
        verify_services.cache_clear()
    report = status["reports"][0]["verification"]
    check = verification(status)["capacity"]
    assert check["status"] == "fail" and check["shadow"] is False
    assert report["passed"] is False and status["machine"]["state"] == "refused"
    assert "capacity_answer_mismatch" in {r["code"] for r in report["reasons"]}


def _opened(local_stack: Any) -> tuple[SigningKey, ServiceClient, Challenge, CapacityProver]:
    key, client, inventory = new_machine(local_stack)
    challenge = take_challenge(client, key, inventory)
    with pytest.raises(ServiceError) as early:  # before the throughput commitment
        client.open_capacity(key.public_hex, challenge.challenge_id)
    assert early.value.status == 409 and early.value.code == "capacity_state_conflict"
    prove(client, key, challenge, NumpyExecutor())
    opened = client.open_capacity(key.public_hex, challenge.challenge_id)
    params = CapacityParams.model_validate(opened["params"])
    prover = CapacityProver(
        bytes.fromhex(opened["nonce"]),
        key.public_hex,
        challenge.challenge_id,
        params,
        adv.honest_devices(params),
    )
    return key, client, challenge, prover


def test_capacity_messages_out_of_order_or_foreign_are_refused_with_codes(local_stack: Any) -> None:
    key, client, challenge, prover = _opened(local_stack)
    mid, cid = key.public_hex, challenge.challenge_id
    with pytest.raises(ServiceError) as again:
        client.open_capacity(mid, cid)
    assert again.value.status == 409 and again.value.code == "capacity_state_conflict"
    answer = {"round": 1, "answers": [{"target": 0, "root": "00" * 32}]}
    with pytest.raises(ServiceError) as no_commitment:
        client.submit_capacity_answer(mid, cid, answer)
    assert no_commitment.value.status == 409 and no_commitment.value.code == "capacity_state_conflict"
    commitment = prover.fill()
    foreign = SignedCapacityCommitment.sign(commitment, SigningKey.generate())
    with pytest.raises(ServiceError) as forged:
        client.submit_capacity_commitment(mid, cid, foreign.model_dump(mode="json"))
    assert forged.value.status == 403 and forged.value.code == "capacity_commitment_signature_invalid"
    step = client.submit_capacity_commitment(
        mid, cid, SignedCapacityCommitment.sign(commitment, key).model_dump(mode="json")
    )
    assert step["round"]["round"] == 1 and step["draw_secret"] is None
    with pytest.raises(ServiceError) as twice:
        client.submit_capacity_commitment(
            mid, cid, SignedCapacityCommitment.sign(commitment, key).model_dump(mode="json")
        )
    assert twice.value.status == 409 and twice.value.code == "capacity_state_conflict"
    wrong_targets = {"round": 1, "answers": [{"target": 5, "root": "00" * 32}]}
    with pytest.raises(ServiceError) as invalid:
        client.submit_capacity_answer(mid, cid, wrong_targets)
    assert invalid.value.status == 422 and invalid.value.code == "capacity_answer_invalid"
    with pytest.raises(ServiceError) as wrong_round:
        client.submit_capacity_answer(mid, cid, {**answer, "round": 2})
    assert wrong_round.value.status == 409 and wrong_round.value.code == "capacity_state_conflict"
    with pytest.raises(ServiceError) as early_openings:
        client.submit_capacity_openings(mid, cid, b"GPCOv2")
    assert early_openings.value.status == 409 and early_openings.value.code == "capacity_state_conflict"
    with pytest.raises(ServiceError) as schema:
        client.submit_capacity_answer(mid, cid, {"round": 0, "answers": []})
    assert schema.value.status == 422


def test_a_stack_started_with_capacity_enforcement_enforce_refuses_with_the_code() -> None:
    """The template parameter itself (CapacityEnforcement=enforce → CAPACITY_ENFORCEMENT of the
    verify worker), on a stack of its own process: half memory is refused with its code, and an
    honest machine on the same stack is not."""
    from benchmark_probe.inventory import collect_inventory
    from benchmark_probe.submit import register, registration_for
    from gpuproof.protocol.machine import Region

    from .api_client import OWNER
    from .production_stack import production_stack

    def decided(client: ServiceClient, machine_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            doc: dict[str, Any] = client.machine(machine_id)
            if doc["machine"]["state"] not in ("submitted", "challenged"):
                return doc
            time.sleep(0.2)
        raise AssertionError(f"machine {machine_id} still undecided")

    params = ("AllowCpuBackend=true", "ChallengeCooldownSeconds=0", "CapacityEnforcement=enforce")
    with production_stack(*params) as stack:
        outcomes = {}
        for name, prover in (("honest", CapacityProver), ("half", half_memory)):
            key = SigningKey.generate()
            client = ServiceClient(stack.api_url, key)
            assert register(client, registration_for(key, OWNER, Region.europe)) == "registered"
            inventory = collect_inventory()
            challenge = take_challenge(client, key, inventory)
            proof = prove(client, key, challenge, NumpyExecutor())
            assert run_capacity(client, key, challenge, prover).ran
            signed = build_report(
                key,
                challenge,
                inventory,
                [],
                collect_integrity(),
                None if proof is None else proof.model_dump(mode="json"),
            )
            client.submit_report(key.public_hex, challenge.challenge_id, signed.model_dump(mode="json"))
            outcomes[name] = decided(client, key.public_hex)
    honest, half = outcomes["honest"], outcomes["half"]
    assert honest["machine"]["state"] != "refused", honest["reports"][0]["verification"]["reasons"]
    check = verification(honest)["capacity"]
    assert check["status"] == "pass" and check["shadow"] is False
    assert half["machine"]["state"] == "refused"
    refused = half["reports"][0]["verification"]
    assert "capacity_answer_mismatch" in {r["code"] for r in refused["reasons"]}
    assert verification(half)["capacity"]["shadow"] is False
