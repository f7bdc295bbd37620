"""The CPU backend's deadline floor (CpuProofDeadlineSeconds): CPU claims only, recomputed by the
verify worker, GPU deadlines untouched (docs/protocol.md §8)."""

from __future__ import annotations

import pytest

from gpuproof.claim import Claim, challenge_params, make_claim, params_reasons, proof_params_for
from gpuproof.config import cpu_proof_deadline_s

CPU = Claim(None, 0)


def test_the_floor_raises_only_the_cpu_deadline() -> None:
    (derived,) = proof_params_for(CPU)
    (floored,) = proof_params_for(CPU, cpu_deadline_s=120.0)
    assert derived.deadline_s < 2.0 and floored.deadline_s == 120.0
    assert floored.model_dump(exclude={"deadline_s"}) == derived.model_dump(exclude={"deadline_s"})
    gpu = make_claim("H100 SXM5 80GB", 2, allow_cpu_backend=False)
    assert proof_params_for(gpu, cpu_deadline_s=120.0) == proof_params_for(gpu)


def test_a_floor_below_the_derived_deadline_changes_nothing() -> None:
    assert proof_params_for(CPU, cpu_deadline_s=0.5) == proof_params_for(CPU)


def test_the_verify_worker_recomputes_it() -> None:
    issued = challenge_params(CPU, cpu_deadline_s=120.0)
    assert params_reasons(issued, CPU, cpu_deadline_s=120.0) == []
    assert [r.code for r in params_reasons(issued, CPU)] == ["challenge_params_mismatch"]


@pytest.mark.parametrize("value", ["-1", "601", "nan"])
def test_the_setting_is_bounded(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CPU_PROOF_DEADLINE_S", value)
    with pytest.raises(RuntimeError):
        cpu_proof_deadline_s()


def test_a_member_takes_a_cpu_deadline_as_issued_but_never_below_the_derived_one() -> None:
    from gpuproof.claim import stored_cpu_deadline

    issued = challenge_params(CPU, cpu_deadline_s=120.0)
    assert params_reasons(issued, CPU, cpu_deadline_s=stored_cpu_deadline(issued)) == []
    too_tight = {**issued, "proof": [{**issued["proof"][0], "deadline_s": 0.5}]}
    assert stored_cpu_deadline(too_tight) == 0.5
    assert params_reasons(too_tight, CPU, cpu_deadline_s=stored_cpu_deadline(too_tight)) != []
