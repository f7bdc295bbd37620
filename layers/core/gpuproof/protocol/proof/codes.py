"""Stable reason codes of the proof of throughput (docs/protocol.md, "Reason codes")."""

from __future__ import annotations

from pydantic import ValidationError

from gpuproof.protocol.proof.models import VERSION_UNSUPPORTED as _VERSION_UNSUPPORTED

VERSION_UNSUPPORTED = _VERSION_UNSUPPORTED
PARAMS_MISMATCH = "proof_params_mismatch"
SIGNATURE_INVALID = "proof_commitment_signature_invalid"
NONCE_MISMATCH = "proof_nonce_mismatch"
MACHINE_MISMATCH = "proof_machine_mismatch"
CHALLENGE_MISMATCH = "proof_challenge_mismatch"
ROOT_CHAIN_INVALID = "proof_root_chain_invalid"
PAIRS_MISMATCH = "proof_pairs_mismatch"
PAIRS_MISSING = "proof_pairs_missing"
PAIRS_EXTRA = "proof_pairs_extra"
PAIRS_DUPLICATE = "proof_pairs_duplicate"
OPENINGS_MISMATCH = "proof_openings_mismatch"
OPENINGS_MISSING = "proof_openings_missing"
OPENINGS_EXTRA = "proof_openings_extra"
OPENINGS_DUPLICATE = "proof_openings_duplicate"
OPENING_MALFORMED = "proof_opening_malformed"
VALUE_OUT_OF_RANGE = "proof_value_out_of_range"
MERKLE_PATH_INVALID = "proof_merkle_path_invalid"
ROW_CHECK_FAILED = "proof_row_check_failed"
DEADLINE_MISSED = "proof_deadline_missed"
CLOCK_INVALID = "proof_clock_invalid"
TRANSCRIPT_MALFORMED = "proof_transcript_malformed"

ALL_CODES = (
    VERSION_UNSUPPORTED,
    PARAMS_MISMATCH,
    SIGNATURE_INVALID,
    NONCE_MISMATCH,
    MACHINE_MISMATCH,
    CHALLENGE_MISMATCH,
    ROOT_CHAIN_INVALID,
    PAIRS_MISMATCH,
    PAIRS_MISSING,
    PAIRS_EXTRA,
    PAIRS_DUPLICATE,
    OPENINGS_MISMATCH,
    OPENINGS_MISSING,
    OPENINGS_EXTRA,
    OPENINGS_DUPLICATE,
    OPENING_MALFORMED,
    VALUE_OUT_OF_RANGE,
    MERKLE_PATH_INVALID,
    ROW_CHECK_FAILED,
    DEADLINE_MISSED,
    CLOCK_INVALID,
    TRANSCRIPT_MALFORMED,
)


def unsupported_version(exc: ValidationError) -> str | None:
    """The message of a `proof_version_unsupported` error inside a validation error, if any: a
    document of another protocol version is refused with that code, not as merely malformed."""
    for error in exc.errors():
        if error.get("type") == VERSION_UNSUPPORTED:
            return str(error.get("msg", "unsupported proof version"))
    return None
