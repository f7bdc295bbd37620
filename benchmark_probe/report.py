"""Build and sign the BenchmarkReport a probe sends in answer to a challenge."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from benchmark_probe import __version__
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.report import BenchmarkReport, BenchmarkResult, Integrity, Inventory, SignedReport


class ChallengeFormatError(ValueError):
    """The service's challenge response lacks a field the probe needs."""


@dataclass(frozen=True)
class Challenge:
    """What POST /machines/{id}/challenges returns: the report must be bound to it."""

    challenge_id: str
    nonce: str
    expires_at: Any = None
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Any) -> Challenge:
        if not isinstance(body, dict):
            raise ChallengeFormatError(f"challenge response is not a JSON object: {body!r}")
        missing = [k for k in ("challenge_id", "nonce") if not body.get(k)]
        if missing:
            raise ChallengeFormatError(f"challenge response lacks {', '.join(missing)}")
        params = body.get("params") or {}
        return cls(
            str(body["challenge_id"]), str(body["nonce"]).lower(), body.get("expires_at"), dict(params)
        )


def build_report(
    key: SigningKey,
    challenge: Challenge,
    inventory: Inventory,
    benchmarks: list[BenchmarkResult],
    integrity: Integrity,
    proof: dict[str, Any] | None = None,
    *,
    created_at: int | None = None,
) -> SignedReport:
    """The signed report. `proof` is the seam where the proof of throughput (issue 4) plugs in."""
    report = BenchmarkReport(
        machine_id=key.public_hex,
        challenge_id=challenge.challenge_id,
        challenge_nonce=challenge.nonce,
        probe_version=__version__,
        created_at=int(time.time()) if created_at is None else created_at,
        inventory=inventory,
        benchmarks=benchmarks,
        integrity=integrity,
        proof=proof,
    )
    return SignedReport.sign(report, key)
