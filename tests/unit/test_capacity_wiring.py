"""The capacity phase's wiring (issue 12, docs/protocol.md §17.10): the shadow switch, the session
as the challenge stores it, and the openings' delivery bounds at the real H100 size."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest

from gpuproof.claim import capacity_params_for, make_claim
from gpuproof.config import enforced_checks
from gpuproof.logic.capacity import load_session, openings_bytes, session_doc
from gpuproof.logic.verification import SHADOW_BY_DEFAULT
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.capacity import CapacitySession, CapacityTranscript, TargetOpenings
from gpuproof.protocol.capacity.models import SpotOpening, WalkOpening, WalkStep
from gpuproof.protocol.capacity.openings import openings_limit
from gpuproof.protocol.capacity.params import cpu_capacity_params
from gpuproof.protocol.capacity.prover import CapacityProver
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.limits import (
    MAX_BODY_BYTES,
    MAX_CAPACITY_OPENINGS_BYTES_PER_TARGET,
    MAX_CAPACITY_OPENINGS_STORED_BYTES,
)
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
    stored = openings_bytes(CapacityTranscript(targets=openings))
    assert len(stored) <= MAX_CAPACITY_OPENINGS_STORED_BYTES
    assert len(canonical_bytes(CapacityTranscript(targets=openings).model_dump(mode="json"))) < MAX_BODY_BYTES


def _h100_openings(rng: np.random.Generator) -> tuple[TargetOpenings, int]:
    """One H100 target's openings at their real shapes (rows and paths random: the size, not the
    content, is what is measured)."""
    claim = make_claim("NVIDIA H100 80GB HBM3", 1, allow_cpu_backend=False)
    params = capacity_params_for(claim)
    assert params is not None
    tp = params.targets[0]
    depth = tp.n_stages  # L = 27: the tree over N rows, padded to 2^L
    sub = tp.chunk_rows.bit_length() - 1
    answer_depth = math.ceil(math.log2(tp.items))

    def row() -> str:
        return rng.integers(-125, 126, size=tp.d, dtype=np.int8).tobytes().hex()

    def path(n: int) -> list[str]:
        return [rng.bytes(32).hex() for _ in range(n)]

    spots = [
        SpotOpening(
            round=r,
            item=int(rng.integers(tp.items)),
            rows=[row() for _ in range(tp.chunk_rows)],
            tree_path=path(depth - sub),
            answer_path=path(answer_depth),
        )
        for r in range(1, params.rounds + 1)
        for _ in range(tp.spots)
    ]
    walks = [
        WalkOpening(
            walk=w,
            steps=[
                WalkStep(
                    stage=depth - j,
                    row=int(rng.integers(tp.n_rows)),
                    a_row=row(),
                    a_path=path(depth),
                    own_prev=row(),
                    own_prev_path=path(depth),
                    mate_prev=row(),
                    mate_prev_path=path(depth),
                )
                for j in range(tp.walk_stages)
            ],
        )
        for w in range(tp.walks)
    ]
    return TargetOpenings(target=0, roots=path(depth), spots=spots, walks=walks), len(params.targets)


def test_h100_size_openings_need_the_upload_and_fit_its_bound() -> None:
    openings, targets = _h100_openings(np.random.default_rng(1))
    raw = canonical_bytes(CapacityTranscript(targets=[openings]).model_dump(mode="json"))
    # measured: ~5.3 MB of JSON per H100 GPU (docs/protocol.md §17.8)
    assert 5.0e6 < len(raw) < 5.6e6
    assert len(raw) > MAX_BODY_BYTES  # over the request limit: inline is impossible
    assert len(zlib.compress(raw, 6)) > MAX_CAPACITY_OPENINGS_STORED_BYTES  # fill rows do not compress
    assert len(raw) <= MAX_CAPACITY_OPENINGS_BYTES_PER_TARGET  # the upload takes it
    eight = capacity_params_for(make_claim("NVIDIA H100 80GB HBM3", 8, allow_cpu_backend=False), 2**40)
    assert eight is not None and 9 * len(raw) <= openings_limit(eight)
    assert CapacityTranscript.model_validate_json(raw).targets[0] == openings  # within the wire bounds
    assert targets == 1
