"""v1 documents are refused with their own reason code everywhere a proof document enters:
the commitment route (HTTP), the verify worker's proof check, the claim's stored params."""

from __future__ import annotations

import time

import pytest
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import ValidationError

from gpuproof.api.errors import validation_rejection
from gpuproof.api.models import CommitmentSubmission
from gpuproof.claim import Claim, challenge_params, params_reasons
from gpuproof.logic.verification import check_proof
from gpuproof.protocol.proof import codes
from gpuproof.protocol.report import BenchmarkReport, Integrity, Inventory, SignedReport
from gpuproof.reason_codes import REASON_CODES
from tests.unit.test_verify_bounds import HOST, KEY, MID, context, store_for

V1_COMMITMENT = {
    "version": 1,
    "machine_id": "ab" * 32,
    "challenge_id": "c",
    "nonce": "cd" * 32,
    "gpus": [{"gpu_index": 0, "roots": ["00" * 32], "chain": "11" * 32, "elapsed_s": 1.0}],
}


def test_a_v1_commitment_is_refused_at_the_route_as_unsupported() -> None:
    body = {"challenge_id": "c", "signed_commitment": {"commitment": V1_COMMITMENT, "signature": "00" * 64}}
    with pytest.raises(ValidationError) as refused:
        CommitmentSubmission.model_validate(body)
    rejection = validation_rejection(RequestValidationError(refused.value.errors()))
    assert [r.code for r in rejection.reasons] == [codes.VERSION_UNSUPPORTED]
    assert REASON_CODES[codes.VERSION_UNSUPPORTED].status == 422


def test_v1_params_stored_in_a_challenge_are_unsupported_not_mismatched() -> None:
    claim = Claim("H100 SXM5 80GB", 1)
    stored = challenge_params(claim)
    stored["proof"] = [{**stored["proof"][0], "version": 1}]
    assert [r.code for r in params_reasons(stored, claim)] == [codes.VERSION_UNSUPPORTED]


def test_a_v1_proof_in_a_report_is_refused_by_the_verify_worker_as_unsupported() -> None:
    v1_proof = {
        "commitment": {**V1_COMMITMENT, "machine_id": MID, "challenge_id": "ch"},
        "signature": "00" * 64,
        "pairs": [],
        "openings": [],
    }
    report = BenchmarkReport(
        machine_id=MID,
        challenge_id="ch",
        challenge_nonce="cd" * 32,
        probe_version="t",
        created_at=int(time.time()),
        inventory=Inventory(backend="nvml", gpus=[], host=HOST),
        integrity=Integrity(),
        proof=v1_proof,
    )
    store = store_for(SignedReport.sign(report, KEY).model_dump(mode="json"), gpu_count=1)
    result = check_proof(context(store))
    assert [r.code for r in result.reasons] == [codes.VERSION_UNSUPPORTED]
