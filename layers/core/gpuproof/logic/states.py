"""The machine's state machine (docs/machine-states.md): which state may follow which."""

from __future__ import annotations

from enum import StrEnum


class MachineState(StrEnum):
    registered = "registered"
    challenged = "challenged"
    submitted = "submitted"
    auto_verified = "auto_verified"
    refused = "refused"
    committee = "committee"
    confirmed = "confirmed"
    no_consensus = "no_consensus"
    # The committee's majority confirmed findings the service's differ from: an operator settles it.
    disputed = "disputed"
    published = "published"
    # A published machine whose heartbeats stopped (the sweeper's liveness check): still scored.
    offline = "offline"
    # Its score was withdrawn on chain (a Revoked verdict) and its GPUs released: offline too long.
    revoked = "revoked"
    # Its owner signed an exit: score withdrawn, GPUs released.
    exited = "exited"


S = MachineState
TRANSITIONS: dict[MachineState, frozenset[MachineState]] = {
    S.registered: frozenset({S.challenged}),
    # A new challenge supersedes an open one (the old one can no longer be answered).
    S.challenged: frozenset({S.challenged, S.submitted}),
    S.submitted: frozenset({S.auto_verified, S.refused}),
    S.auto_verified: frozenset({S.committee}),
    # A refused machine may try again with a fresh challenge.
    S.refused: frozenset({S.challenged, S.published, S.exited}),
    S.committee: frozenset({S.confirmed, S.refused, S.no_consensus, S.disputed}),
    # Settled by the operator (`gpuproof-ops resolve`): the committee's or the service's findings.
    S.disputed: frozenset({S.confirmed, S.refused}),
    # NoConsensus goes back to be drawn again with fresh members.
    S.no_consensus: frozenset({S.committee}),
    S.confirmed: frozenset({S.published}),
    S.published: frozenset({S.challenged, S.offline, S.exited}),
    # Heartbeats resumed: online again; offline past the limit: revoked.
    S.offline: frozenset({S.published, S.revoked, S.exited}),
    # A revoked or exited machine may prove itself again from a fresh challenge.
    S.revoked: frozenset({S.challenged, S.exited}),
    S.exited: frozenset({S.challenged}),
}

# The states whose machine holds a score on chain and is watched for liveness.
WATCHED = frozenset({S.published, S.offline})
# The states an owner may exit from (no verification or committee round under way).
EXITABLE = frozenset(s for s, targets in TRANSITIONS.items() if S.exited in targets)


def may_follow(current: MachineState, nxt: MachineState) -> bool:
    return nxt in TRANSITIONS[current]


def states_before(nxt: MachineState) -> frozenset[MachineState]:
    """Every state from which `nxt` may be entered (used in conditional writes)."""
    return frozenset(s for s, targets in TRANSITIONS.items() if nxt in targets)
