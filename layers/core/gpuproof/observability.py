"""The service's own CloudWatch metrics: their names (template.yaml's alarms and dashboard use the
same) and the one way they are emitted (Powertools EMF, namespace POWERTOOLS_METRICS_NAMESPACE).

Each metric is written as its own EMF record at once (as Powertools' `single_metric` does), so a
dimension such as `reason` never leaks onto another metric of the invocation, and a record is
emitted even when the invocation then fails. Every metric carries the `service` dimension
Powertools adds. Records go to the process's own stdout (`sys.__stdout__`, what Lambda ships to
CloudWatch), never to a replaced `sys.stdout`: in the local stack a CLI run in-process captures
that, and a service record must not land in its output.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.base import SingleMetric

from gpuproof.reason_codes import REASON_CODES

# Dimension `reason`: a code of gpuproof/reason_codes.py (a bounded set), never free text.
REFUSALS = "Refusals"
# A proof's commitment arrived after its deadline (reason proof_deadline_missed, verify worker).
DEADLINE_MISSES = "DeadlineMisses"
# Verdicts an invocation of the publisher could not bring on chain (poison or chain unreachable).
PUBLICATION_FAILURES = "PublicationFailures"
# Each backoff of the publisher while the chain is unreachable or a reservation conflicted.
PUBLICATION_RETRIES = "PublicationRetries"
# Disagreements between verdicts, machines and the chain that the reconciler repaired (emitted by
# the reconciler, issue 14 §1; any repair means something went wrong first).
RECONCILIATION_REPAIRS = "ReconciliationRepairs"
# Verdicts the publisher set aside while the chain stays unreachable (the reconciler hands them back).
PUBLICATIONS_DEFERRED = "PublicationsDeferred"
# Already emitted by the publisher before this module: verdicts brought on chain / refused as poison.
VERDICTS_PUBLISHED = "VerdictsPublished"
VERDICTS_REFUSED = "VerdictsRefused"

METRIC_NAMES = (
    REFUSALS,
    DEADLINE_MISSES,
    PUBLICATION_FAILURES,
    PUBLICATION_RETRIES,
    PUBLICATIONS_DEFERRED,
    RECONCILIATION_REPAIRS,
    VERDICTS_PUBLISHED,
    VERDICTS_REFUSED,
)
DEADLINE_MISSED_CODE = "proof_deadline_missed"
UNREGISTERED = "unregistered"  # a code missing from the registry (a test fails on those anyway)


def count(name: str, value: float = 1, **dimensions: str) -> None:
    """Emit one Count metric now, with these dimensions (besides `service`)."""
    if value <= 0:
        return
    metric = SingleMetric(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "gpuproof"))
    metric.add_metric(name=name, unit=MetricUnit.Count, value=value)
    for key, dim in dimensions.items():
        metric.add_dimension(name=key, value=dim)
    stream = sys.__stdout__ or sys.stdout
    print(json.dumps(metric.serialize_metric_set(), separators=(",", ":")), file=stream, flush=True)


def count_refusals(codes: Iterable[str]) -> None:
    """One `Refusals` per distinct reason code of a refusal; deadline misses counted apart too."""
    for code in sorted(set(codes)):
        count(REFUSALS, reason=code if code in REASON_CODES else UNREGISTERED)
        if code == DEADLINE_MISSED_CODE:
            count(DEADLINE_MISSES)
