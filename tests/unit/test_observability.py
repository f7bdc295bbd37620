"""The service's metrics as EMF records: one per distinct reason, deadline misses apart, a bounded
`reason` dimension, and nothing for a zero count."""

from __future__ import annotations

import json

import pytest

from gpuproof import observability


def emitted(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def test_refusals_count_each_reason_once_and_deadline_misses_apart(
    capfd: pytest.CaptureFixture[str],
) -> None:
    observability.count_refusals(
        ["proof_deadline_missed", "report_signature_invalid", "proof_deadline_missed"]
    )
    observability.count_refusals(["no such code, free text"])
    records = emitted(capfd.readouterr().out)
    refusals = sorted(str(r["reason"]) for r in records if observability.REFUSALS in r)
    assert refusals == sorted(
        ["proof_deadline_missed", "report_signature_invalid", observability.UNREGISTERED]
    )
    assert [r[observability.DEADLINE_MISSES] for r in records if observability.DEADLINE_MISSES in r] == [
        [1.0]
    ]
    for r in records:
        (directive,) = r["_aws"]["CloudWatchMetrics"]  # type: ignore[index]
        assert directive["Namespace"] == "gpuproof"  # `service` joins from POWERTOOLS_SERVICE_NAME


def test_a_zero_count_emits_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    observability.count(observability.PUBLICATION_FAILURES, 0)
    assert emitted(capfd.readouterr().out) == []
