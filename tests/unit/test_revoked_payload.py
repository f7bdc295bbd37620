"""Revoked on chain: the new enum variant leaves every older record's bytes unchanged, carries its
reason and the revoked round, refuses a Revoked record that still claims a score, and the
consumer's fold withdraws exactly the score it names (no sockets)."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from gpuproof.chain.consumer import VerifiedBatch, current_scores, verify_payload
from gpuproof.chain.payload import PayloadError, build_batch, decode_record, encode, verdict_record
from gpuproof.chain.signer import LocalBatchSigner
from gpuproof.logic.records import Machine, Verdict, VerdictResult
from gpuproof.logic.revocation import revoked_verdict
from gpuproof.logic.states import MachineState
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.reasons import Reason
from tests.unit.test_chain_payload import INFO, MID, verdict


def scored_machine(round_: int = 1) -> Machine:
    return Machine(
        MID,
        "owner",
        "europe",
        MachineState.offline,
        0.0,
        0.0,
        scored={"verdict_id": Verdict.id_for(MID, round_), "round": round_, "upload_info": dict(INFO)},
    )


def revoked(round_: int = 1, code: str = "offline_too_long") -> Verdict:
    v = revoked_verdict(scored_machine(round_), Reason(code, "why"), {"offline_since": 1.0}, 1_767_300_000.0)
    assert v is not None
    return v


def test_older_results_encode_as_the_one_index_byte_they_always_were() -> None:
    for index, name in enumerate(("Confirmed", "Refused", "NoConsensus")):
        assert encode("GpuproofVerdictResult", name) == bytes([index])
    for result in (VerdictResult.confirmed, VerdictResult.refused, VerdictResult.no_consensus):
        rec = verdict_record(verdict(result=result))
        assert decode_record(rec.encoded)["revocation"] is None


def test_a_revoked_record_carries_its_reason_and_the_revoked_round() -> None:
    v = revoked(round_=3, code="reverification_failed")
    assert v.verdict_id == f"{MID}:3:revoked" and v.committee == []
    assert v.evidence_digest == hashlib.sha256(canonical_bytes(v.revocation or {})).hexdigest()
    assert v.revocation is not None and v.revocation["revokes_verdict_id"] == f"{MID}:3"
    rec = verdict_record(v)
    assert rec.encoded[4] == 3  # after the u32 round: the variant index of Revoked
    out = decode_record(rec.encoded)
    assert out["result"] == "Revoked" and out["round"] == 3
    assert out["revocation"] == {"reason": "reverification_failed", "revokes_round": 3}
    assert out["upload_info"]["calc_point"] == 0 and out["upload_info"]["is_support"] is False
    assert out["upload_info"]["gpu_type"] == INFO["gpu_type"].encode()  # what was revoked


def test_a_revoked_record_that_keeps_a_score_or_lacks_a_reason_is_refused() -> None:
    v = revoked()
    with pytest.raises(PayloadError, match="calc_point 0"):
        verdict_record(dataclasses.replace(v, upload_info={**v.upload_info, "calc_point": 5}))
    with pytest.raises(PayloadError, match="calc_point 0"):
        verdict_record(dataclasses.replace(v, upload_info={**v.upload_info, "is_support": True}))
    with pytest.raises(PayloadError, match=r"revocation\.reason"):
        verdict_record(dataclasses.replace(v, revocation=None))
    with pytest.raises(PayloadError, match=r"revocation\.reason"):
        verdict_record(dataclasses.replace(v, revocation={"reason": "x" * 65}))


def test_no_score_means_no_revoked_verdict() -> None:
    m = dataclasses.replace(scored_machine(), scored=None)
    assert revoked_verdict(m, Reason("machine_exited", "x"), {}, 1.0) is None


def batch_of(*verdicts: Verdict) -> VerifiedBatch:
    signer = LocalBatchSigner()
    b = build_batch([verdict_record(v) for v in verdicts], signer, 1_767_300_000.0)
    out = verify_payload(b.payload, {signer.public_key()})
    assert out.ok, out.problems
    return out


def test_the_fold_withdraws_only_the_score_the_revocation_names() -> None:
    confirmed1 = verdict(1)
    scores = current_scores([batch_of(confirmed1)])
    assert scores[MID].result == "Confirmed" and scores[MID].calc_point == INFO["calc_point"]
    scores = current_scores([batch_of(confirmed1), batch_of(revoked(1))])
    assert scores[MID].result == "Revoked" and scores[MID].calc_point == 0
    assert scores[MID].revocation == {"reason": "offline_too_long", "revokes_round": 1}
    # Re-verified in round 2 after the revocation: a late revocation of round 1 changes nothing.
    confirmed2 = verdict(2, verdict_id=Verdict.id_for(MID, 2))
    scores = current_scores([batch_of(confirmed1), batch_of(confirmed2), batch_of(revoked(1))])
    assert scores[MID].result == "Confirmed" and scores[MID].round == 2
    nc = verdict(3, verdict_id=Verdict.id_for(MID, 3), result=VerdictResult.no_consensus)
    assert current_scores([batch_of(confirmed2), batch_of(nc)])[MID].round == 2
