"""Challenge parameters (v2): the fewest steps at which a card at 0.8 of the claimed model's speed
misses by 0.5 s (the slow-card margin), exact arithmetic, valid ranges, v1 refused, and the
deadline's tolerance simulated for honest and slow GPUs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from gpuproof.claim import Claim, proof_params_for
from gpuproof.protocol.proof import ProofParams, check_deadline, codes, derive_params
from gpuproof.protocol.proof.params import (
    DEFAULT_TOLERANCE,
    EPILOGUE_FRACTION,
    NETWORK_ALLOWANCE_S,
    SETUP_S,
    SLOW_MISS_S,
    pipeline_floor_s,
)
from gpuproof.reference import reference_table

CLAIMABLE = [r for r in reference_table() if r.expected_int8_tops is not None]


@pytest.mark.parametrize("rate", [170.0, 462.0, 1385.0])
def test_gpu_pipeline_is_the_fewest_steps_over_the_slow_card_floor(rate: float) -> None:
    p = derive_params(rate)
    step_s = 2 * p.n * p.d * p.d / (rate * 1e12) * (1 + EPILOGUE_FRACTION)
    floor = pipeline_floor_s(SETUP_S)
    assert p.steps * step_s >= floor > (p.steps - 1) * step_s
    assert p.c_bound < 2**24
    assert p.expected_s < p.deadline_s < p.expected_s * 1.3
    assert len(p.model_dump_json()) < 400


def test_the_slow_card_floor_is_the_stated_one() -> None:
    """(0.5 + 1 + 0.14 x 1) / (1 / 0.8 - 1.14) = 14.9 s at S = 1 s (docs/protocol.md "Deadline")."""
    assert pipeline_floor_s(1.0) == pytest.approx(1.64 / 0.11)
    assert pipeline_floor_s(5.0) == pytest.approx(2.2 / 0.11)
    for tolerance in (1.05, 1.25, 1.3):  # under 1 / 0.9 an honest card misses; from 1.25 no slow one does
        with pytest.raises(ValueError):
            pipeline_floor_s(1.0, tolerance=tolerance)


def test_a_given_target_still_sizes_by_gemm_seconds() -> None:
    assert 9.0 < derive_params(1385.0, target_s=10.0).ops / 1385e12 < 11.0


def test_the_h100_gets_the_h100_shape() -> None:
    p = proof_params_for(Claim("H100 SXM5 80GB", 1))[0]
    assert (p.n, p.d, p.checks, p.version, p.q) == (2**18, 4096, 140, 2, 17)
    # 14.9 s of pipeline at 0.7 x 1979 TOPS with the H100's epilogue 0.86: docs/protocol.md "Deadline"
    assert p.steps == 1263 and p.expected_s == pytest.approx(15.917)


def test_cpu_params_are_tiny() -> None:
    p = derive_params(None, cpu=True)
    assert p.n * p.d <= 128 * 128 and p.steps <= 8 and p.checks == 140


def test_gpu_needs_a_rate() -> None:
    with pytest.raises(ValueError):
        derive_params(None)


@pytest.mark.parametrize(
    "change",
    [{"q": 7}, {"d": 63}, {"d": 12}, {"d": 8200}, {"deadline_s": 0.001}, {"checks": 0}, {"unknown": 1}],
)
def test_invalid_params_are_refused(change: dict[str, object]) -> None:
    base = derive_params(None, cpu=True).model_dump()
    base.update(change)
    with pytest.raises(ValidationError):
        ProofParams.model_validate(base)


def test_v1_params_are_refused_with_their_own_code() -> None:
    v1 = {"version": 1, "gpu_index": 0, "n": 128, "d": 128, "steps": 8, "q": 7, "checks": 48}
    with pytest.raises(ValidationError) as refused:
        ProofParams.model_validate({**v1, "expected_s": 1.0, "deadline_s": 2.0})
    assert codes.unsupported_version(refused.value) is not None


# --- the deadline's tolerance: simulated -----------------------------------------------------------
GPUS = 8
ATTEMPTS = 4000
HONEST_NOISE = 0.10  # per-GPU speed, uniform in [0.9, 1.1], independent per attempt
SLOW = 0.80  # a GPU 20% slower than the claimed model on the whole pipeline


def _pipeline_s(model: str) -> tuple[float, float, float]:
    """(work at nominal speed, setup, deadline) of one GPU of the claimed model."""
    ref = next(r for r in CLAIMABLE if r.model == model)
    p = proof_params_for(Claim(model, GPUS))[0]
    rate = ref.expected_int8_tops
    assert rate is not None and ref.epilogue_fraction is not None and ref.setup_s is not None
    work = p.ops / (rate * 1e12) * (1 + ref.epilogue_fraction)
    return work, ref.setup_s, p.deadline_s


def _wilson_upper(accepted: int, trials: int, z: float = 2.576) -> float:
    p = accepted / trials
    centre = p + z * z / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return (centre + spread) / (1 + z * z / trials)


@pytest.mark.parametrize("model", [r.model for r in CLAIMABLE])
def test_an_honest_host_with_noisy_gpus_meets_the_deadline(model: str) -> None:
    """8 GPUs, each within +-10% of the model's speed, network latency up to its allowance: refused
    in at most 0.5% of attempts (upper 99% Wilson bound), through check_deadline itself."""
    work, setup, deadline = _pipeline_s(model)
    params = proof_params_for(Claim(model, GPUS))
    rng = np.random.default_rng(11)
    speeds = rng.uniform(1 - HONEST_NOISE, 1 + HONEST_NOISE, size=(ATTEMPTS, GPUS))
    latency = rng.uniform(0.0, NETWORK_ALLOWANCE_S, size=ATTEMPTS)
    elapsed = (work / speeds).max(axis=1) + setup + latency
    refused = sum(1 for e in elapsed.tolist() if check_deadline(0.0, e, params))
    assert _wilson_upper(refused, ATTEMPTS) <= 0.005, (model, refused, deadline)


@pytest.mark.parametrize("model", [r.model for r in CLAIMABLE])
@pytest.mark.parametrize("speed", [SLOW, 0.7, 0.5])
def test_a_gpu_twenty_percent_slower_misses_the_deadline(model: str, speed: float) -> None:
    """One GPU at <= 0.8 of the model's speed, zero network latency (the best case for a cheat):
    refused every time, whatever the other GPUs do."""
    work, setup, _ = _pipeline_s(model)
    params = proof_params_for(Claim(model, GPUS))
    elapsed = work / speed + setup
    assert [r.code for r in check_deadline(0.0, elapsed, params)] == [codes.DEADLINE_MISSED]


def test_the_tolerance_sits_between_the_two_bounds() -> None:
    """What the two simulations above pin: 1/0.9 of the work must fit, 1/0.8 must not, and must
    miss by the stated margin (SLOW_MISS_S), one step fewer would not (the fewest steps)."""
    for ref in CLAIMABLE:
        work, setup, deadline = _pipeline_s(ref.model)
        expected = work + setup
        assert work / (1 - HONEST_NOISE) + setup + NETWORK_ALLOWANCE_S <= DEFAULT_TOLERANCE * expected + 1.0
        assert work / SLOW + setup >= deadline + SLOW_MISS_S - 0.001  # deadlines round up to 1 ms
        steps = proof_params_for(Claim(ref.model, 1))[0].steps
        fewer = work * (steps - 1) / steps
        assert fewer / SLOW + setup < DEFAULT_TOLERANCE * (fewer + setup) + NETWORK_ALLOWANCE_S + SLOW_MISS_S
