"""Rejections: domain errors carrying every reason, each with a stable code and its HTTP status."""

from __future__ import annotations

from collections.abc import Sequence

from gpuproof.protocol.reasons import Reason

# One status per reason code. A rejection answers with the status of its first reason, so
# callers list the most fundamental reason first.
STATUS_BY_CODE: dict[str, int] = {
    "malformed_json": 400,
    "signature_missing": 401,
    "signature_malformed": 401,
    "signature_invalid": 401,
    "content_digest_mismatch": 401,
    "timestamp_stale": 401,
    "key_mismatch": 403,
    "bond_signature_invalid": 403,
    "report_signature_invalid": 403,
    "challenge_machine_mismatch": 403,
    "unknown_machine": 404,
    "unknown_challenge": 404,
    "unknown_report": 404,
    "replayed_nonce": 409,
    "machine_exists": 409,
    "machine_state_conflict": 409,
    "challenge_used": 409,
    "commitment_exists": 409,
    "challenge_expired": 410,
    "body_too_large": 413,
    "report_too_large": 413,
    "proof_commitment_signature_invalid": 403,
    "proof_params_mismatch": 422,
    "proof_nonce_mismatch": 422,
    "proof_machine_mismatch": 422,
    "proof_challenge_mismatch": 422,
    "schema_invalid": 422,
    # committee (logic/committee.py)
    "not_assigned": 403,
    "unknown_member": 404,
    "unknown_round": 404,
    "beacon_not_started": 404,
    "member_exists": 409,
    "round_closed": 409,
    "already_committed": 409,
    "commit_window_closed": 409,
    "duplicate_commit": 409,
    "commit_refused": 409,
    "not_committed": 409,
    "already_revealed": 409,
    "reveal_not_open": 409,
    "reveal_window_closed": 409,
    "reveal_refused": 409,
    "reveal_mismatch": 422,
    "reveal_machine_mismatch": 422,
    "unknown_gpu_model": 422,
    "cpu_claim_refused": 422,
    "claim_inconsistent": 422,
    "challenge_cooldown": 429,
    "report_machine_mismatch": 422,
    "report_challenge_mismatch": 422,
    "heartbeat_machine_mismatch": 422,
    # the transcript delivered out of band (protocol/delivery.py)
    "proof_reference_malformed": 422,
    "transcript_missing": 422,
    "transcript_too_large": 413,
    "transcript_size_mismatch": 422,
    "transcript_digest_mismatch": 422,
    "transcript_malformed": 422,
    "transcript_version_unsupported": 422,
}


class Rejection(Exception):
    """Input refused; nothing was stored. `reasons` lists every reason found."""

    def __init__(self, reasons: Sequence[Reason]) -> None:
        if not reasons:
            raise ValueError("a rejection needs at least one reason")
        self.reasons = list(reasons)
        super().__init__("; ".join(r.message for r in self.reasons))

    @property
    def code(self) -> str:
        return self.reasons[0].code

    @property
    def status(self) -> int:
        return STATUS_BY_CODE.get(self.code, 400)

    def body(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.reasons[0].message,
            "reasons": [r.as_dict() for r in self.reasons],
        }


def raise_if(reasons: Sequence[Reason]) -> None:
    if reasons:
        raise Rejection(reasons)
