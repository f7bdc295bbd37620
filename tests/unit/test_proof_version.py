"""v1 documents are refused with their own reason code everywhere a proof document enters:
the commitment route (HTTP), the verify worker's proof check, the claim's stored params."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import ValidationError

from gpuproof.api.errors import validation_rejection
from gpuproof.api.models import CommitmentSubmission
from gpuproof.claim import Claim, challenge_params, params_reasons
from gpuproof.protocol.proof import codes
from gpuproof.reason_codes import REASON_CODES

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
