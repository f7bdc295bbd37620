"""Offline detection: a scored machine's heartbeats are watched; silence makes it offline, and
offline past the limit revokes its score on chain (docs/machine-states.md "Liveness").

The machine's item carries `liveness_due_at` while it is watched (published or offline); the
sweeper reads only the machines due (the sparse ByLivenessDue index, at most `limit` a tick, most
overdue first) and re-arms each one. Heartbeats do not touch the index: a heartbeat only writes
`last_heartbeat_at`, and the sweeper, when the machine is due, either finds it fresh (re-armed to
`last seen + offline_after_s`) or stale (offline). So in steady state a watched machine costs one
index read and one conditional write per `offline_after_s`, and an offline one is detected at most
`offline_after_s` + one sweeper period after its last heartbeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gpuproof.config import LivenessPolicy, PresencePolicy
from gpuproof.errors import Rejection
from gpuproof.logic.ports import Clock
from gpuproof.logic.presence import presence_step
from gpuproof.logic.records import Machine, Verdict
from gpuproof.logic.revocation import revoked_verdict
from gpuproof.logic.states import WATCHED, MachineState
from gpuproof.logic.waves import Wave, WaveStore, ensure_waves
from gpuproof.protocol.httpsig import SignedRequest
from gpuproof.protocol.reasons import Reason

# Machines looked at per sweeper tick at most: the tick's work stays bounded whatever the fleet.
# Sized for DBC's 20,000 machines: each is due once per OfflineAfterSeconds (1800 s: 667 a
# minute). Presence waves add no look (a look counts the checks of the waves since the last
# one, logic/presence.py fold); docs/benchmarks.md.
DEFAULT_TICK_LIMIT = 1000


class LivenessStore(Protocol):
    def get_machine(self, machine_id: str) -> Machine | None: ...

    def liveness_due(self, now: float, limit: int) -> list[str]: ...

    def set_liveness(
        self,
        machine: Machine,
        *,
        due_at: float | None,
        offline: Reason | None = None,
        now: float | None = None,
        presence: dict[str, Any] | None = None,
    ) -> bool: ...

    def revoke(
        self,
        machine: Machine,
        state: MachineState,
        reason: Reason,
        verdict: Verdict | None,
        now: float,
        request: SignedRequest | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class LivenessOutcome:
    machine_id: str
    outcome: str  # online | offline | revoked | unwatched | raced
    detail: str = ""


def last_seen(machine: Machine) -> float:
    """The machine's last sign of life: its last heartbeat, or when it became published/online."""
    return max(machine.last_heartbeat_at or 0.0, machine.updated_at)


def sweep_liveness(
    store: LivenessStore,
    clock: Clock,
    policy: LivenessPolicy,
    limit: int = DEFAULT_TICK_LIMIT,
    presence: PresencePolicy | None = None,
    waves: WaveStore | None = None,
) -> list[LivenessOutcome]:
    """One tick: the presence waves drawn ahead (one stored item), then the watched machines due."""
    now = clock.now()
    checks = presence or PresencePolicy(0, 3, 180, 5.0, 120.0)
    schedule = ensure_waves(waves, now, checks) if waves is not None else ()
    out = []
    for machine_id in store.liveness_due(now, limit):
        machine = store.get_machine(machine_id)
        if machine is None:
            continue
        out.append(_look_at(store, machine, now, policy, checks, schedule))
    return out


def _revoke(
    store: LivenessStore, m: Machine, reason: Reason, evidence: dict[str, Any], now: float
) -> LivenessOutcome:
    verdict = revoked_verdict(m, reason, evidence, now)
    try:
        store.revoke(m, MachineState.revoked, reason, verdict, now)
    except Rejection as exc:
        return LivenessOutcome(m.machine_id, "raced", "; ".join(r.code for r in exc.reasons))
    return LivenessOutcome(m.machine_id, "revoked", reason.message)


def _look_at(
    store: LivenessStore,
    m: Machine,
    now: float,
    policy: LivenessPolicy,
    checks: PresencePolicy,
    waves: Sequence[Wave],
) -> LivenessOutcome:
    if m.state not in WATCHED:
        ok = store.set_liveness(m, due_at=None)
        return LivenessOutcome(m.machine_id, "unwatched" if ok else "raced", m.state.value)
    step = presence_step(m, now, checks, waves)
    if step.outcome == "revoke":
        assert step.reason is not None and step.presence is not None
        evidence: dict[str, Any] = {
            "presence": {
                **{k: step.presence[k] for k in ("checks", "passed", "missed", "misses", "recent", "last")},
                "max_misses": checks.max_misses,
                "miss_window": checks.miss_window,
            }
        }
        return _revoke(store, m, step.reason, evidence, now)
    offline: Reason | None = step.reason if step.outcome == "missed" else None
    if m.state == MachineState.published:
        seen = last_seen(m)
        silent = now - seen
        if offline is None and silent > policy.offline_after_s:
            offline = Reason(
                "heartbeat_missed",
                f"no heartbeat for {int(silent)} s (offline after {policy.offline_after_s} s); the "
                f"score is revoked after {policy.revoke_offline_after_s} s offline",
                "last_heartbeat_at",
            )
        live_due = seen + policy.offline_after_s if offline is None else now + policy.revoke_offline_after_s
        kind = "online" if offline is None else "offline"
    else:
        since = m.offline_since if m.offline_since is not None else m.updated_at
        if now - since >= policy.revoke_offline_after_s:
            reason = Reason(
                "offline_too_long",
                f"offline since {since:.0f} ({int(now - since)} s; the limit is "
                f"{policy.revoke_offline_after_s} s)",
                "last_heartbeat_at",
            )
            silence: dict[str, Any] = {
                "last_heartbeat_at": m.last_heartbeat_at,
                "offline_since": since,
                "revoked_at": now,
                "offline_after_s": policy.offline_after_s,
                "revoke_offline_after_s": policy.revoke_offline_after_s,
            }
            return _revoke(store, m, reason, silence, now)
        live_due = since + policy.revoke_offline_after_s
        kind = "offline"
        offline = None  # already offline: a miss is counted in the presence document, the state stays
    ok = store.set_liveness(
        m,
        due_at=live_due,
        offline=offline,
        now=now,
        presence=step.presence,
    )
    detail = "" if offline is None else offline.message
    if step.outcome in ("missed", "shadow_missed"):
        kind = f"presence_{step.outcome}" if offline is None else "offline"
    return LivenessOutcome(m.machine_id, kind if ok else "raced", detail)


def outcomes_by_kind(outcomes: Sequence[LivenessOutcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    return counts
