"""No free retries: every challenge is an attempt; a failed one costs an escalating cooldown.

A challenge fails when its report is refused by the automated stage, or when its commitment was
received (so the drawn pairs were revealed) but no report was accepted for it: the host saw
which rows would be opened and walked away. Without this, any per-attempt pass probability p
becomes ≈ 1 after 1/p abandoned tries. A challenge abandoned before its commitment reveals
nothing and is counted as taken, not failed.

After k consecutive failures the next challenge waits min(base × 2^(k−1), ceiling) seconds from
the last failure; an attempt that passes the automated stage resets k (not the totals).
docs/protocol.md "Attempts" turns this into a bound per day.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpuproof.logic.records import Attempts, Challenge, ChallengeStatus
from gpuproof.protocol.reasons import Reason


@dataclass(frozen=True)
class CooldownPolicy:
    base_s: float = 600.0
    max_s: float = 86400.0

    def cooldown_s(self, consecutive_failed: int) -> float:
        if consecutive_failed <= 0 or self.base_s <= 0:
            return 0.0
        return float(min(self.base_s * 2 ** min(consecutive_failed - 1, 40), self.max_s))

    def failed_attempts_within(self, horizon_s: float) -> int:
        """The most failed attempts a machine can make within `horizon_s` from a clean start."""
        if self.base_s <= 0:
            raise ValueError("with no cooldown the number of attempts is unbounded")
        elapsed, k = 0.0, 0
        while True:
            k += 1  # the k-th failure happens at `elapsed`
            wait = self.cooldown_s(k)
            if elapsed + wait > horizon_s:
                return k
            elapsed += wait


def _failed(attempts: Attempts, challenge_id: str, at: float, policy: CooldownPolicy) -> Attempts:
    k = attempts.consecutive_failed + 1
    return replace(
        attempts,
        failed=attempts.failed + 1,
        consecutive_failed=k,
        last_failed_at=at,
        cooldown_until=at + policy.cooldown_s(k),
        counted_challenge_id=challenge_id,
    )


def abandoned(challenge: Challenge | None) -> bool:
    """A challenge whose commitment was received but whose report never was (still `issued`)."""
    return (
        challenge is not None
        and challenge.commitment_received_at is not None
        and challenge.status is ChallengeStatus.issued
    )


def count_previous(attempts: Attempts, previous: Challenge | None, policy: CooldownPolicy) -> Attempts:
    """`attempts` with the machine's previous challenge counted as failed if it was abandoned after
    its commitment (once: `counted_challenge_id` remembers it). The failure dates from the
    commitment's receipt, when the pairs were revealed."""
    if previous is None or not abandoned(previous) or attempts.counted_challenge_id == previous.challenge_id:
        return attempts
    assert previous.commitment_received_at is not None
    return _failed(attempts, previous.challenge_id, previous.commitment_received_at, policy)


def cooldown_reasons(attempts: Attempts, now: float) -> list[Reason]:
    if attempts.cooldown_until is not None and now < attempts.cooldown_until:
        wait = attempts.cooldown_until - now
        return [
            Reason(
                "challenge_cooldown",
                f"{attempts.consecutive_failed} consecutive failed attempt(s): the next challenge may be "
                f"taken in {wait:.0f} s (at {attempts.cooldown_until:.0f}, epoch seconds)",
                "machine_id",
            )
        ]
    return []


def taken(attempts: Attempts) -> Attempts:
    return replace(attempts, taken=attempts.taken + 1)


def after_verification(
    attempts: Attempts, challenge_id: str, passed: bool, now: float, policy: CooldownPolicy
) -> Attempts:
    """The automated stage decided `challenge_id`: a refusal is a failed attempt, a pass resets
    the consecutive count."""
    if not passed:
        return _failed(attempts, challenge_id, now, policy)
    return replace(attempts, consecutive_failed=0, cooldown_until=None, counted_challenge_id=challenge_id)
