"""The capacity phase's wiring (issue 12, docs/protocol.md §17.10): the shadow switch, the session
as the challenge stores it, and the binary openings' delivery bounds at the real H100 size."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from gpuproof.claim import capacity_params_for, make_claim
from gpuproof.config import enforced_checks
from gpuproof.logic.capacity import load_session, session_doc
from gpuproof.logic.verification import SHADOW_BY_DEFAULT, check
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.capacity import (
    CapacityParams,
    CapacitySession,
    CapacityTranscript,
    TargetOpenings,
    derive_capacity_params,
)
from gpuproof.protocol.capacity.openings import openings_limit
from gpuproof.protocol.capacity.params import cpu_capacity_params
from gpuproof.protocol.capacity.prover import CapacityProver
from gpuproof.protocol.capacity.wire import encode_openings, max_size
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.limits import (
    MAX_BODY_BYTES,
    MAX_CAPACITY_OPENINGS_BYTES,
    MAX_CAPACITY_OPENINGS_STORED_BYTES,
    MAX_CHECK_REASONS,
    PROTOCOL_MAX_GPUS,
)
from gpuproof.protocol.reasons import Reason
from gpuproof.reference import reference_table
from tests.unit import capacity_adversaries as adv

KEY = SigningKey.from_seed(bytes(range(32)))
NONCE = bytes(range(7, 39))


def test_capacity_is_in_shadow_unless_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAPACITY_ENFORCEMENT", raising=False)
    monkeypatch.setenv("ENFORCE_CHECKS", "evidence")
    assert enforced_checks() == {"evidence"}  # capacity stays in SHADOW_BY_DEFAULT's shadow
    assert "capacity" in SHADOW_BY_DEFAULT
    monkeypatch.setenv("CAPACITY_ENFORCEMENT", "enforce")
    assert enforced_checks() == {"evidence", "capacity"}
    monkeypatch.setenv("CAPACITY_ENFORCEMENT", "shadow")
    assert "capacity" not in enforced_checks()
    monkeypatch.setenv("CAPACITY_ENFORCEMENT", "off")
    with pytest.raises(RuntimeError, match="neither shadow nor enforce"):
        enforced_checks()


def _honest_session() -> tuple[CapacitySession, list[TargetOpenings]]:
    params = cpu_capacity_params()
    prover = CapacityProver(NONCE, KEY.public_hex, "ch", params, adv.honest_devices(params))
    kept: list[TargetOpenings] = []

    class Keep(adv.Tamper):
        def openings(self, openings):  # type: ignore[no-untyped-def]
            kept.extend(openings)
            return openings

    run = adv.run_phase(prover, KEY, params, nonce=NONCE, challenge_id="ch", tamper=Keep())
    assert run.result.reasons == []
    return run.session, kept


def test_the_stored_session_round_trips_exactly_and_the_cpu_openings_fit_inline() -> None:
    session, openings = _honest_session()
    doc = json.loads(json.dumps(session_doc(NONCE, session)))  # as JSONAttribute stores it
    nonce, again = load_session(session.params, doc)
    assert nonce == NONCE and again == session
    stored = encode_openings(openings, session.params)
    assert len(stored) <= MAX_CAPACITY_OPENINGS_STORED_BYTES  # kept in the challenge item
    assert len(base64.b64encode(stored)) + 4096 < MAX_BODY_BYTES  # and inline in one request body


def _h100_openings(rng: np.random.Generator, gpus: int = 1) -> tuple[CapacityParams, list[TargetOpenings]]:
    """H100 targets' openings at their real shapes (rows and digests random: the size, not the
    content, is what is measured)."""
    claim = make_claim("NVIDIA H100 80GB HBM3", gpus, allow_cpu_backend=False)
    params = capacity_params_for(claim)
    assert params is not None
    return params, adv.shaped_openings(params, rng)


def test_h100_size_openings_need_the_upload_and_fit_its_bound() -> None:
    params, openings = _h100_openings(np.random.default_rng(1))
    data = encode_openings(openings, params)
    # docs/protocol.md §17.8: 5.28 MB per H100 GPU in binary (walks down to stage 1, each step
    # with its own a_row, the bandwidth round's 24 spots), the same openings as JSON 10.78 MB (2.0x)
    assert 5_000_000 < len(data) <= max_size(params) == 5_697_971
    json_v1 = canonical_bytes(CapacityTranscript(targets=openings).model_dump(mode="json"))
    assert 1.9 * len(data) < len(json_v1) < 2.2 * len(data)
    assert len(data) > MAX_CAPACITY_OPENINGS_STORED_BYTES  # over the inline bound: it is uploaded
    assert len(data) <= openings_limit(params)  # the upload takes it


def test_every_derivable_phase_fits_the_upload_cap() -> None:
    """The upload bound is the phase's own size (`wire.max_size`), never capped below it: for
    8 x H100 + 256 GiB (49.5 MB) and for the largest phase the service derives, 64 GPUs of the
    reference table's largest model and 2.2 TiB of host RAM (the most N <= 2^32 rows hold)."""
    eight = capacity_params_for(make_claim("NVIDIA H100 80GB HBM3", 8, allow_cpu_backend=False), 2**38)
    assert eight is not None
    assert openings_limit(eight) == max_size(eight) == 49_467_147
    big = max(reference_table(), key=lambda g: g.mem_gb)
    largest = derive_capacity_params(
        gpu_count=PROTOCOL_MAX_GPUS,
        mem_gb=big.mem_gb,
        rate_tops=1000.0,
        bandwidth_gbs=big.mem_bw_gbs or 1000.0,
        host_ram_bytes=int(2.2 * 2**40),
    )
    assert largest.targets[-1].n_rows > 2**31  # host RAM near the row bound
    assert openings_limit(largest) == max_size(largest) <= MAX_CAPACITY_OPENINGS_BYTES


def test_a_check_lists_its_first_reasons_and_counts_the_rest_per_code() -> None:
    """Wrong openings of an 8-GPU phase fail ~1,400 spots and walks: the stored check lists
    MAX_CHECK_REASONS of them and one counted reason per code of the rest (every code stays)."""
    many = [Reason("capacity_merkle_path_invalid", f"spot {k}") for k in range(40)]
    many += [Reason("capacity_walk_check_failed", f"walk {k}") for k in range(5)]
    result = check("capacity", many)
    assert len(result.reasons) == MAX_CHECK_REASONS + 2 and result.status == "fail"
    assert result.reasons[:MAX_CHECK_REASONS] == many[:MAX_CHECK_REASONS]
    assert [(r.code, r.message) for r in result.reasons[MAX_CHECK_REASONS:]] == [
        (
            "capacity_merkle_path_invalid",
            f"and {40 - MAX_CHECK_REASONS} more with this code (a check lists 32)",
        ),
        ("capacity_walk_check_failed", "and 5 more with this code (a check lists 32)"),
    ]
    assert check("capacity", many[:3]).reasons == many[:3]
