"""The service's side of the interactive capacity phase as a pure state machine: it opens the
phase, receives the signed commitment, opens each round with a fresh nonce at its own clock,
records each answer's receipt time, then draws spots and walks with a fresh secret.

Times are whatever clock the caller passes (the API edge's `edge_time` in the service; a modelled
clock in the tests). The verifier (`verify_capacity`) only reads what this records.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from gpuproof.protocol.capacity.draws import Walk, all_spots, bandwidth_round, draw_walks, round_plan
from gpuproof.protocol.capacity.models import (
    CapacityAnswer,
    CapacityParams,
    CapacityRound,
    RoundRecord,
    SignedCapacityCommitment,
)


class SessionError(ValueError):
    """An out-of-order or unexpected message (the API answers 409/422 with its code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class CapacitySession:
    params: CapacityParams
    opened_at: float
    signed: SignedCapacityCommitment | None = None
    commitment_received_at: float | None = None
    rounds: list[RoundRecord] = field(default_factory=list)
    draw_secret: bytes | None = None

    @property
    def plan(self) -> dict[int, list[int]]:
        return round_plan(self.params)

    def receive_commitment(self, signed: SignedCapacityCommitment, at: float) -> None:
        if self.signed is not None:
            raise SessionError("capacity_state_conflict", "the capacity commitment was already received")
        self.signed, self.commitment_received_at = signed, at

    def open_round(self, at: float) -> CapacityRound:
        """The next round: a nonce drawn now, after the previous answer arrived (interactive)."""
        if self.signed is None:
            raise SessionError("capacity_state_conflict", "no capacity commitment yet")
        if self.rounds and self.rounds[-1].received_at is None:
            raise SessionError("capacity_state_conflict", "the previous round is not answered")
        k = len(self.rounds) + 1
        if k not in self.plan:
            raise SessionError("capacity_state_conflict", "every round was opened")
        record = RoundRecord(round=k, nonce=secrets.token_bytes(32).hex(), targets=self.plan[k], sent_at=at)
        self.rounds.append(record)
        return CapacityRound(round=k, nonce=record.nonce, targets=record.targets)

    def receive_answer(self, answer: CapacityAnswer, at: float) -> None:
        if (
            not self.rounds
            or self.rounds[-1].received_at is not None
            or answer.round != self.rounds[-1].round
        ):
            raise SessionError("capacity_state_conflict", "no open round with this number")
        last = self.rounds[-1]
        if sorted(a.target for a in answer.answers) != sorted(last.targets):
            raise SessionError("capacity_answer_invalid", "the answer must cover exactly the round's targets")
        swept = last.round == bandwidth_round(self.params)
        for a in answer.answers:
            tp = self.params.target(a.target)
            want = tp.sweeps - 1 if swept and tp is not None else 0
            if len(a.sweep_roots) != want:
                raise SessionError(
                    "capacity_answer_invalid",
                    f"target {a.target}: {len(a.sweep_roots)} sweep roots, the round needs {want}",
                )
        self.rounds[-1] = last.model_copy(update={"received_at": at, "answers": list(answer.answers)})

    @property
    def done(self) -> bool:
        return len(self.rounds) == len(self.plan) and all(r.received_at is not None for r in self.rounds)

    def draw(self) -> tuple[dict[int, dict[int, list[int]]], dict[int, list[Walk]]]:
        """Spots and walks, drawn with a fresh secret only once every round is answered."""
        if not self.done or self.signed is None:
            raise SessionError("capacity_state_conflict", "rounds are not all answered")
        if self.draw_secret is None:
            self.draw_secret = secrets.token_bytes(32)
        data = self.signed.commitment.signing_bytes()
        walks = {tp.target: draw_walks(data, self.draw_secret, tp) for tp in self.params.targets}
        return all_spots(data, self.draw_secret, self.params), walks
