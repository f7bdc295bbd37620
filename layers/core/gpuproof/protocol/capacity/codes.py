"""Stable reason codes of the capacity phase (docs/protocol.md "Capacity phase", docs/reason-codes.md)."""

from __future__ import annotations

MISSING = "capacity_missing"
PARAMS_MISMATCH = "capacity_params_mismatch"
SIGNATURE_INVALID = "capacity_commitment_signature_invalid"
MACHINE_MISMATCH = "capacity_machine_mismatch"
CHALLENGE_MISMATCH = "capacity_challenge_mismatch"
NONCE_MISMATCH = "capacity_nonce_mismatch"
ROOT_CHAIN_INVALID = "capacity_root_chain_invalid"
FILL_DEADLINE_MISSED = "capacity_fill_deadline_missed"
CLOCK_INVALID = "capacity_clock_invalid"
ROUND_MISSING = "capacity_round_missing"
ROUND_DEADLINE_MISSED = "capacity_round_deadline_missed"
HOST_ROUND_DEADLINE_MISSED = "capacity_host_round_deadline_missed"
OPENINGS_MISMATCH = "capacity_openings_mismatch"
OPENING_MALFORMED = "capacity_opening_malformed"
VALUE_OUT_OF_RANGE = "capacity_value_out_of_range"
MERKLE_PATH_INVALID = "capacity_merkle_path_invalid"
ANSWER_MISMATCH = "capacity_answer_mismatch"
WALK_CHECK_FAILED = "capacity_walk_check_failed"
BANDWIDTH_DEADLINE_MISSED = "capacity_bandwidth_deadline_missed"
SWEEP_MISMATCH = "capacity_sweep_mismatch"

DESCRIPTIONS = {
    MISSING: "no capacity phase was run or recorded for the challenge (not proven)",
    PARAMS_MISMATCH: "the commitment or transcript covers other targets than the challenge's capacity params",
    SIGNATURE_INVALID: "the capacity commitment is not signed by the machine key",
    MACHINE_MISMATCH: "the capacity commitment names another machine",
    CHALLENGE_MISMATCH: "the capacity commitment names another challenge",
    NONCE_MISMATCH: "the capacity commitment is for another nonce",
    ROOT_CHAIN_INVALID: "a target's layer roots do not chain to its committed value (another seed?)",
    FILL_DEADLINE_MISSED: "the capacity commitment arrived after the fill deadline (service clock)",
    CLOCK_INVALID: "a capacity time is earlier than the event it follows (service clock)",
    ROUND_MISSING: "a read round was not answered, or its answer lacks a target",
    ROUND_DEADLINE_MISSED: "a GPU's read round was answered after its deadline (service clock)",
    HOST_ROUND_DEADLINE_MISSED: "a host RAM read round was answered after its deadline (service clock)",
    OPENINGS_MISMATCH: "the opened spots or walks differ from those the service drew",
    OPENING_MALFORMED: "the openings do not decode (binary v2), or an opening has a wrong row or path count",
    VALUE_OUT_OF_RANGE: "an opened entry lies outside [-125, 125]",
    MERKLE_PATH_INVALID: "opened rows do not open their committed layer root",
    ANSWER_MISMATCH: "an opened item is not the leaf the round's timed answer committed",
    WALK_CHECK_FAILED: "an opened row is not g_l(own . B[pi_l] + k_l . mate . B[sigma_l]) of its parents",
    BANDWIDTH_DEADLINE_MISSED: "the bandwidth round's sweeps were answered after their deadline: "
    "the device reads its fill slower than the claimed model's memory (service clock)",
    SWEEP_MISMATCH: "an opened bandwidth-round item is not the leaf its timed sweep committed",
}

ALL_CODES = tuple(DESCRIPTIONS)
