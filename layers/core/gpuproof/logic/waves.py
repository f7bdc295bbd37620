"""The presence waves (docs/protocol.md §19): network-wide instants at which the presence checks
of every scored machine open together, so that identities sharing one GPU are checked at once.

The sweeper draws the waves ahead (`extended`: gaps of `min_gap_s` + an exponential, from the OS's
CSPRNG) into one stored schedule that only the service reads (`ensure_waves`); nothing about a
wave leaves the service before a machine's check in it is announced, `lead_s` before it opens.
Per machine, what a wave means derives from the wave's secret and the machine id (HMAC-SHA256):
the check's id, its nonce, its opening (the wave's instant plus an offset below `spread_s`) and,
with a wave fraction p < 1, whether the machine is in the wave at all. So a wave costs one stored
item, not a write per machine: a machine's check is written on it only when its commitment
arrives.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gpuproof.config import PresencePolicy

_RNG = secrets.SystemRandom()

# Waves kept behind `now` (misses are counted from them at a machine's next sweeper look; with 6
# a day, 64 waves are ten days, far longer than any machine goes between looks).
KEEP_PAST = 64


@dataclass(frozen=True)
class Wave:
    wave_id: str
    at: float  # the wave's instant (service clock); a machine's check opens within spread_s of it
    secret: str  # 32 bytes, hex: never leaves the service

    def as_dict(self) -> dict[str, Any]:
        return {"wave_id": self.wave_id, "at": self.at, "secret": self.secret}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Wave:
        return cls(str(d["wave_id"]), float(d["at"]), str(d["secret"]))


@dataclass(frozen=True)
class WaveSchedule:
    waves: tuple[Wave, ...]
    drawn_for: str  # the rate and minimum gap the future waves were drawn with (`_drawn_for`)
    version: int = 0  # the stored item's version (conditional writes)


class WaveSource(Protocol):
    """The schedule as the machine API reads it (it may be cached for `PresencePolicy.cache_s`)."""

    def waves(self, now: float) -> Sequence[Wave]: ...


class WaveStore(Protocol):
    """The stored schedule, as the sweeper keeps it."""

    def load(self) -> WaveSchedule | None: ...

    def save(self, schedule: WaveSchedule, previous: WaveSchedule | None) -> bool:
        """Store `schedule` if the stored one is still `previous` (False: another tick wrote it)."""


def _drawn_for(policy: PresencePolicy) -> str:
    return f"{policy.checks_per_day:g}/day, min gap {policy.min_gap_s:g} s"


def gap(policy: PresencePolicy) -> float:
    """One gap between waves: the minimum gap plus an exponential, the mean gap λ⁻¹ in all."""
    return policy.min_gap_s + _RNG.expovariate(1.0 / (policy.mean_gap_s - policy.min_gap_s))


def extended(schedule: WaveSchedule | None, now: float, policy: PresencePolicy) -> WaveSchedule | None:
    """The schedule drawn `horizon_s` ahead of `now`, the waves older than the last KEEP_PAST
    dropped; None when the stored one needs no change. A schedule drawn for another rate keeps
    only the waves that may already be announced or read (up to now + lead_s + cache_s)."""
    waves = list(schedule.waves) if schedule is not None else []
    visible = now + policy.lead_s + policy.cache_s
    if schedule is not None and schedule.drawn_for != _drawn_for(policy):
        waves = [w for w in waves if w.at <= visible]
    past = sum(1 for w in waves if w.at <= now)
    if past > KEEP_PAST:
        waves = waves[past - KEEP_PAST :]
    # After a stall (or at the first tick) the next wave is drawn from the first instant no
    # machine can have been told of yet; otherwise each gap follows the last wave.
    at = max(waves[-1].at if waves else now, visible)
    while not waves or waves[-1].at < now + policy.horizon_s:
        at += gap(policy)
        waves.append(Wave(secrets.token_hex(8), at, secrets.token_hex(32)))
    new = WaveSchedule(tuple(waves), _drawn_for(policy), schedule.version if schedule else 0)
    if schedule is not None and new.waves == schedule.waves and new.drawn_for == schedule.drawn_for:
        return None
    return new


def ensure_waves(store: WaveStore, now: float, policy: PresencePolicy) -> tuple[Wave, ...]:
    """The sweeper's tick: the schedule, extended and stored when it needs it (one read a tick,
    one write per wave drawn); a tick that loses the race reads the winner's."""
    if not policy.enabled:
        return ()
    stored = store.load()
    new = extended(stored, now, policy)
    if new is None:
        assert stored is not None
        return stored.waves
    if store.save(new, stored):
        return new.waves
    again = store.load()
    return again.waves if again is not None else ()


# ------------------------------------------------------------------ what a wave means per machine


def _mac(wave: Wave, label: str, machine_id: str) -> bytes:
    return hmac.new(bytes.fromhex(wave.secret), f"{label}:{machine_id}".encode(), hashlib.sha256).digest()


def _unit(wave: Wave, label: str, machine_id: str) -> float:
    """A number in [0, 1) that only the service can compute before it tells the machine."""
    return int.from_bytes(_mac(wave, label, machine_id)[:8], "big") / 2.0**64


def check_id_of(wave: Wave, machine_id: str) -> str:
    return _mac(wave, "check", machine_id)[:16].hex()


def nonce_of(wave: Wave, machine_id: str) -> str:
    """The check's nonce (32 bytes, hex): given out from the check's opening only (the fetch), so
    the fetch writes nothing; unpredictable without the wave's secret, one per machine and wave."""
    return _mac(wave, "nonce", machine_id).hex()


def opening(wave: Wave, machine_id: str, policy: PresencePolicy) -> float:
    """When this machine's check in `wave` opens: the wave's instant + an offset below spread_s."""
    return wave.at + policy.spread_s * _unit(wave, "spread", machine_id)


def selected(wave: Wave, machine_id: str, policy: PresencePolicy) -> bool:
    """Whether `wave` checks this machine (always, with the default wave fraction 1)."""
    return policy.wave_fraction >= 1.0 or _unit(wave, "select", machine_id) < policy.wave_fraction
