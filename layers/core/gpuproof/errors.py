"""Rejections: domain errors carrying every reason, each with a stable code and its HTTP status."""

from __future__ import annotations

from collections.abc import Sequence

from gpuproof.protocol.reasons import Reason
from gpuproof.reason_codes import STATUS_BY_CODE

# Statuses come from the one registry of reason codes (gpuproof/reason_codes.py).
__all__ = ["STATUS_BY_CODE", "Rejection", "raise_if"]


class Rejection(Exception):
    """Input refused; nothing was stored. `reasons` lists every reason found."""

    def __init__(self, reasons: Sequence[Reason]) -> None:
        if not reasons:
            raise ValueError("a rejection needs at least one reason")
        self.reasons = list(reasons)
        super().__init__("; ".join(r.message for r in self.reasons))

    @property
    def code(self) -> str:
        return self.reasons[0].code

    @property
    def status(self) -> int:
        return STATUS_BY_CODE.get(self.code, 400)

    def body(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.reasons[0].message,
            "reasons": [r.as_dict() for r in self.reasons],
        }


def raise_if(reasons: Sequence[Reason]) -> None:
    if reasons:
        raise Rejection(reasons)
