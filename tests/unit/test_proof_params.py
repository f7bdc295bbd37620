"""Challenge parameters: about target_s of work at the claimed rate, exact arithmetic, valid ranges."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gpuproof.protocol.proof import ProofParams, derive_params


@pytest.mark.parametrize("rate", [25.6, 66.4, 157.0, 271.2, 794.5, 1745.0])
def test_gpu_work_is_about_target_seconds(rate: float) -> None:
    p = derive_params(rate)
    gemm_s = p.flops / (rate * 1e12)
    assert 9.0 < gemm_s < 11.0
    assert p.d * p.half * p.half < 2**24
    assert p.expected_s < p.deadline_s < p.expected_s * 1.3
    assert len(p.model_dump_json()) < 400


def test_cpu_params_are_tiny() -> None:
    p = derive_params(None, cpu=True)
    assert p.n * p.d <= 128 * 128 and p.steps <= 8 and p.checks == 48


def test_gpu_needs_a_rate() -> None:
    with pytest.raises(ValueError):
        derive_params(None)


@pytest.mark.parametrize(
    "change",
    [{"q": 8}, {"d": 63}, {"d": 2**21 // 4}, {"deadline_s": 0.001}, {"checks": 0}, {"unknown": 1}],
)
def test_invalid_params_are_refused(change: dict[str, object]) -> None:
    base = derive_params(None, cpu=True).model_dump()
    base.update(change)
    with pytest.raises(ValidationError):
        ProofParams.model_validate(base)
