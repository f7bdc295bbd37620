"""Stable reason codes of the proof of throughput (docs/protocol.md, "Reason codes")."""

from __future__ import annotations

PARAMS_MISMATCH = "proof_params_mismatch"
SIGNATURE_INVALID = "proof_commitment_signature_invalid"
NONCE_MISMATCH = "proof_nonce_mismatch"
MACHINE_MISMATCH = "proof_machine_mismatch"
CHALLENGE_MISMATCH = "proof_challenge_mismatch"
ROOT_CHAIN_INVALID = "proof_root_chain_invalid"
PAIRS_MISMATCH = "proof_pairs_mismatch"
OPENINGS_MISMATCH = "proof_openings_mismatch"
OPENING_MALFORMED = "proof_opening_malformed"
VALUE_OUT_OF_RANGE = "proof_value_out_of_range"
MERKLE_PATH_INVALID = "proof_merkle_path_invalid"
ROW_RECENTRE_FAILED = "proof_row_recentre_failed"
ROW_CHECK_FAILED = "proof_row_check_failed"
DEADLINE_MISSED = "proof_deadline_missed"
CLOCK_INVALID = "proof_clock_invalid"

ALL_CODES = (
    PARAMS_MISMATCH,
    SIGNATURE_INVALID,
    NONCE_MISMATCH,
    MACHINE_MISMATCH,
    CHALLENGE_MISMATCH,
    ROOT_CHAIN_INVALID,
    PAIRS_MISMATCH,
    OPENINGS_MISMATCH,
    OPENING_MALFORMED,
    VALUE_OUT_OF_RANGE,
    MERKLE_PATH_INVALID,
    ROW_RECENTRE_FAILED,
    ROW_CHECK_FAILED,
    DEADLINE_MISSED,
    CLOCK_INVALID,
)
