"""No free retries: failed and abandoned attempts are counted once and cost an escalating cooldown."""

from __future__ import annotations

from gpuproof.logic.attempts import (
    CooldownPolicy,
    abandoned,
    after_verification,
    cooldown_reasons,
    count_previous,
    taken,
)
from gpuproof.logic.records import Attempts, Challenge, ChallengeStatus

POLICY = CooldownPolicy(base_s=600, max_s=86400)


def challenge(cid: str, *, committed_at: float | None, status: ChallengeStatus) -> Challenge:
    return Challenge(
        challenge_id=cid,
        machine_id="ab" * 32,
        nonce="00" * 32,
        issued_at=0.0,
        expires_at=900.0,
        params={},
        status=status,
        commitment_received_at=committed_at,
    )


def test_cooldown_doubles_up_to_its_ceiling() -> None:
    assert [POLICY.cooldown_s(k) for k in range(5)] == [0, 600, 1200, 2400, 4800]
    assert POLICY.cooldown_s(12) == 86400
    assert POLICY.cooldown_s(10_000) == 86400
    assert CooldownPolicy(0, 0).cooldown_s(5) == 0


def test_an_abandoned_commitment_is_a_failure_counted_once_from_its_receipt() -> None:
    walked_away = challenge("c1", committed_at=100.0, status=ChallengeStatus.issued)
    assert abandoned(walked_away)
    after = count_previous(Attempts(taken=1), walked_away, POLICY)
    assert (after.failed, after.consecutive_failed, after.cooldown_until) == (1, 1, 700.0)
    assert count_previous(after, walked_away, POLICY) == after  # never twice
    assert cooldown_reasons(after, 699.0)[0].code == "challenge_cooldown"
    assert cooldown_reasons(after, 700.0) == []


def test_a_challenge_left_before_its_commitment_or_answered_is_no_failure() -> None:
    unanswered = challenge("c1", committed_at=None, status=ChallengeStatus.issued)
    answered = challenge("c2", committed_at=100.0, status=ChallengeStatus.used)
    assert count_previous(Attempts(taken=1), unanswered, POLICY) == Attempts(taken=1)
    assert count_previous(Attempts(taken=1), answered, POLICY) == Attempts(taken=1)
    assert count_previous(Attempts(), None, POLICY) == Attempts()


def test_refusals_escalate_and_a_pass_resets_the_run_not_the_totals() -> None:
    a = Attempts()
    for i, now in enumerate((1000.0, 5000.0, 9000.0)):
        a = after_verification(taken(a), f"c{i}", False, now, POLICY)
    assert (a.taken, a.failed, a.consecutive_failed) == (3, 3, 3)
    assert a.cooldown_until == 9000.0 + 2400
    a = after_verification(taken(a), "c3", True, 20000.0, POLICY)
    assert (a.taken, a.failed, a.consecutive_failed, a.cooldown_until) == (4, 3, 0, None)


def test_the_number_of_failed_attempts_per_day_is_bounded() -> None:
    """docs/protocol.md "Attempts": with the defaults at most 8 failures in the first day, then
    one a day; the bound is what the per-day soundness figure multiplies."""
    assert POLICY.failed_attempts_within(86400) == 8
    # Simulate the fastest attacker: a new attempt the moment each cooldown ends.
    a, now, failures = Attempts(), 0.0, 0
    while now <= 86400:
        assert not cooldown_reasons(a, now)
        a = after_verification(taken(a), f"c{failures}", False, now, POLICY)
        failures += 1
        now = a.cooldown_until or now
    assert failures == 8
    assert CooldownPolicy(600, 86400).failed_attempts_within(30 * 86400) == 8 + 29


def test_attempts_round_trip_through_their_stored_form() -> None:
    a = Attempts(
        taken=3,
        failed=2,
        consecutive_failed=1,
        last_failed_at=5.0,
        cooldown_until=605.0,
        counted_challenge_id="c2",
    )
    assert Attempts.from_dict(a.as_dict()) == a
    assert Attempts.from_dict(None) == Attempts()
