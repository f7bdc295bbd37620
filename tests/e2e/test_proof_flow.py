"""The proof of throughput end to end: the probe proves, the service times and checks it."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from benchmark_probe.client import ServiceClient, ServiceError
from benchmark_probe.integrity import collect_integrity
from benchmark_probe.inventory import collect_inventory
from benchmark_probe.proof import prove
from benchmark_probe.report import Challenge, build_report
from benchmark_probe.submit import challenge_request_for, register, registration_for
from gpuproof.api.wiring import machine_services, verify_services
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.machine import Region
from gpuproof.protocol.proof import NumpyExecutor, ProofExecutor, ProofParams, Prover, SignedCommitment
from tests.conftest import CPU_PROOF_DEADLINE_S

from .api_client import OWNER, Tables

pytestmark = pytest.mark.e2e


class SkippingWork(NumpyExecutor):
    """A dishonest prover: writes random rows for half of every step instead of computing them."""

    def next_rows(self, step: int, rows: Sequence[int], c: npt.NDArray[np.int32]) -> npt.NDArray[np.int8]:
        a = super().next_rows(step, rows, c)
        rng = np.random.default_rng(step)
        for k, row in enumerate(rows):
            if row % 2:
                a[k] = rng.integers(-8, 9, size=a.shape[1]).astype(np.int8)
        return a


@pytest.fixture(scope="module")
def tables(local_stack: Any) -> Tables:
    return Tables(
        {
            "machines": local_stack.table_name("MachinesTable"),
            "challenges": local_stack.table_name("ChallengesTable"),
            "reports": local_stack.table_name("ReportsTable"),
            "nonces": local_stack.table_name("RequestNoncesTable"),
        }
    )


def new_machine(local_stack: Any) -> tuple[SigningKey, ServiceClient, Any]:
    key = SigningKey.generate()
    client = ServiceClient(local_stack.api_url, key)
    assert register(client, registration_for(key, OWNER, Region.europe)) == "registered"
    inventory = collect_inventory()
    return key, client, inventory


def take_challenge(client: ServiceClient, key: SigningKey, inventory: Any) -> Challenge:
    body = client.create_challenge(key.public_hex, challenge_request_for(inventory).model_dump(mode="json"))
    return Challenge.from_json(body)


def submit(
    local_stack: Any, key: SigningKey, client: ServiceClient, inventory: Any, challenge: Challenge, proof: Any
) -> dict[str, Any]:
    proof_doc = None if proof is None else proof.model_dump(mode="json")
    signed = build_report(key, challenge, inventory, [], collect_integrity(), proof_doc)
    client.submit_report(key.public_hex, challenge.challenge_id, signed.model_dump(mode="json"))
    local_stack.drain()
    status: dict[str, Any] = client.machine(key.public_hex)
    return status


def verification(status: dict[str, Any]) -> dict[str, Any]:
    report = status["reports"][0]
    assert report["verification"] is not None
    return {c["name"]: c for c in report["verification"]["checks"]}


def run_prover(local_stack: Any, executor: ProofExecutor, delay_s: float = 0.0) -> dict[str, Any]:
    key, client, inventory = new_machine(local_stack)
    challenge = take_challenge(client, key, inventory)
    if delay_s:
        time.sleep(delay_s)
    proof = prove(client, key, challenge, executor)
    return submit(local_stack, key, client, inventory, challenge, proof)


def test_challenge_carries_proof_params(local_stack: Any) -> None:
    key, client, inventory = new_machine(local_stack)
    challenge = take_challenge(client, key, inventory)
    (params,) = challenge.params["proof"]
    assert params["n"] >= 64 and params["steps"] >= 1 and params["deadline_s"] > params["expected_s"]


def test_honest_prover_passes(local_stack: Any) -> None:
    status = run_prover(local_stack, NumpyExecutor())
    checks = verification(status)
    assert checks["proof_of_throughput"]["status"] == "pass", checks["proof_of_throughput"]
    assert checks["proof_of_throughput"]["details"]["elapsed_s"] > 0
    assert status["reports"][0]["verification"]["passed"] is True
    assert status["machine"]["state"] != "refused"


def test_prover_skipping_work_is_refused(local_stack: Any) -> None:
    status = run_prover(local_stack, SkippingWork())
    assert status["machine"]["state"] == "refused"
    codes = {r["code"] for r in status["machine"]["state_reasons"]}
    assert "proof_row_check_failed" in codes, codes


@pytest.fixture
def derived_cpu_deadline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CPU proof's derived deadline (about 1 s) instead of the session's load allowance
    (tests/conftest.py CPU_PROOF_DEADLINE_S), for the machine API and the verify worker alike."""
    monkeypatch.setenv("CPU_PROOF_DEADLINE_S", "0")
    machine_services.cache_clear()
    verify_services.cache_clear()
    yield
    monkeypatch.undo()
    machine_services.cache_clear()
    verify_services.cache_clear()


def test_honest_prover_gets_the_session_cpu_deadline(local_stack: Any) -> None:
    key, client, inventory = new_machine(local_stack)
    (params,) = take_challenge(client, key, inventory).params["proof"]
    assert params["deadline_s"] == CPU_PROOF_DEADLINE_S > params["expected_s"]


def test_prover_slower_than_the_deadline_is_refused(local_stack: Any, derived_cpu_deadline: None) -> None:
    key, client, inventory = new_machine(local_stack)
    challenge = take_challenge(client, key, inventory)
    deadline = challenge.params["proof"][0]["deadline_s"]
    assert deadline < 2.0  # the derived one: expected_s x tolerance + the network allowance
    time.sleep(deadline * 1.3)
    status = submit(
        local_stack, key, client, inventory, challenge, prove(client, key, challenge, NumpyExecutor())
    )
    assert status["machine"]["state"] == "refused"
    assert "proof_deadline_missed" in {r["code"] for r in status["machine"]["state_reasons"]}


def test_report_without_proof_is_refused(local_stack: Any) -> None:
    key, client, inventory = new_machine(local_stack)
    challenge = take_challenge(client, key, inventory)
    status = submit(local_stack, key, client, inventory, challenge, None)
    assert status["machine"]["state"] == "refused"
    assert "proof_missing" in {r["code"] for r in status["machine"]["state_reasons"]}


def test_old_transcript_replayed_for_a_new_challenge_is_refused(local_stack: Any, tables: Tables) -> None:
    key, client, inventory = new_machine(local_stack)
    old = take_challenge(client, key, inventory)
    old_signed: list[SignedCommitment] = []
    prove(client, key, old, NumpyExecutor(), on_commitment=lambda s: old_signed.append(s) or s)
    new = take_challenge(client, key, inventory)
    with pytest.raises(ServiceError) as exc:
        client.request(
            "POST",
            f"/machines/{key.public_hex}/commitments",
            {"challenge_id": new.challenge_id, "signed_commitment": old_signed[0].model_dump(mode="json")},
        )
    assert exc.value.status == 422
    assert exc.value.code in {"proof_nonce_mismatch", "proof_challenge_mismatch"}
    assert dict(tables.footprint(key.public_hex)["challenges"])[new.challenge_id] == "issued"


def test_transcript_moved_to_another_machine_is_refused(local_stack: Any) -> None:
    key, _client, inventory = new_machine(local_stack)
    thief, thief_client, _ = new_machine(local_stack)
    challenge = take_challenge(thief_client, thief, inventory)
    prover = Prover(
        bytes.fromhex(challenge.nonce),
        key.public_hex,
        challenge.challenge_id,
        [ProofParams.model_validate(p) for p in challenge.params["proof"]],
        NumpyExecutor(),
    )
    stolen = SignedCommitment.sign(prover.run(), key)  # computed and signed by another machine
    with pytest.raises(ServiceError) as exc:
        thief_client.request(
            "POST",
            f"/machines/{thief.public_hex}/commitments",
            {"challenge_id": challenge.challenge_id, "signed_commitment": stolen.model_dump(mode="json")},
        )
    assert exc.value.status == 422 and exc.value.code == "proof_machine_mismatch"


def test_second_commitment_for_a_challenge_is_refused(local_stack: Any) -> None:
    key, client, inventory = new_machine(local_stack)
    challenge = take_challenge(client, key, inventory)
    sent: list[SignedCommitment] = []
    prove(client, key, challenge, NumpyExecutor(), on_commitment=lambda s: sent.append(s) or s)
    with pytest.raises(ServiceError) as exc:
        client.request(
            "POST",
            f"/machines/{key.public_hex}/commitments",
            {"challenge_id": challenge.challenge_id, "signed_commitment": sent[0].model_dump(mode="json")},
        )
    assert exc.value.status == 409 and exc.value.code == "commitment_exists"


def test_shadow_mode_records_a_failing_check_without_deciding(
    local_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHADOW_CHECKS", "proof_of_throughput")
    verify_services.cache_clear()
    try:
        key, client, inventory = new_machine(local_stack)
        challenge = take_challenge(client, key, inventory)
        status = submit(local_stack, key, client, inventory, challenge, None)  # no proof at all
    finally:
        monkeypatch.undo()
        verify_services.cache_clear()
    proof = verification(status)["proof_of_throughput"]
    assert proof["status"] == "fail" and proof["shadow"] is True
    assert [r["code"] for r in proof["reasons"]] == ["proof_missing"]
    assert status["reports"][0]["verification"]["passed"] is True
    assert status["machine"]["state"] != "refused"
