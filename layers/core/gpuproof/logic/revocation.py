"""Scores follow the truth: a machine whose published score no longer holds gets a `Revoked`
verdict, published through the same outbox as every verdict (docs/chain.md "Revoked").

A revocation is decided by the service alone (no committee round): when a scored machine fails a
re-verification (the verify worker), stays offline past the limit (the sweeper's liveness check),
or its owner signs an exit (machine API). The verdict withdraws exactly the Confirmed verdict whose
score is on chain (`Machine.scored`): `round` is that verdict's round, `upload_info` is its
upload_info with `calc_point` 0 and `is_support` false, and `evidence_digest` is the SHA-256 of
the canonical revocation document (reason, detail, the revoked verdict's id, the evidence), which
the verdict item keeps. In the same transaction the machine's GPU UUIDs are released.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from gpuproof.logic.records import Machine, Verdict, VerdictResult
from gpuproof.logic.states import MachineState
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.reasons import Reason


def revocation_document(machine: Machine, reason: Reason, evidence: dict[str, Any]) -> dict[str, Any]:
    scored = machine.scored or {}
    return {
        "machine_id": machine.machine_id,
        "reason": reason.code,
        "detail": reason.message,
        "revokes_verdict_id": scored.get("verdict_id"),
        "evidence": evidence,
    }


def revoked_verdict(machine: Machine, reason: Reason, evidence: dict[str, Any], now: float) -> Verdict | None:
    """The Revoked verdict withdrawing `machine`'s score on chain; None when it has none."""
    scored = machine.scored
    if not scored:
        return None
    round_ = int(scored["round"])
    info = dict(scored["upload_info"])
    info["calc_point"] = 0
    info["is_support"] = False
    doc = revocation_document(machine, reason, evidence)
    return Verdict(
        verdict_id=Verdict.revocation_id_for(machine.machine_id, round_),
        machine_id=machine.machine_id,
        round=round_,
        result=VerdictResult.revoked,
        upload_info=info,
        committee=[],
        performance_index=None,
        evidence_digest=hashlib.sha256(canonical_bytes(doc)).hexdigest(),
        decided_at=now,
        revocation=doc,
    )


def withdrawn(machine: Machine, state: MachineState, reason: Reason, now: float) -> Machine:
    """The machine as a revocation leaves it (what `MachineStore.revoke` writes): in `state` with
    `reason`, no score, no GPU UUIDs, no liveness watch, no presence schedule."""
    return dataclasses.replace(
        machine,
        state=state,
        state_reasons=[reason.as_dict()],
        updated_at=now,
        scored=None,
        gpu_uuids=[],
        liveness_due_at=None,
        offline_since=None,
        presence=None,
    )
