"""`tables.bind` drops a model's cached connection when its table, region or endpoint changes: two
local stacks in one process (scripts/bench.py runs one per section) have the same table names on
different ports, and a connection cached for the first would talk to a stopped server."""

from __future__ import annotations

from typing import Any

import pytest
from pynamodb.attributes import UnicodeAttribute
from pynamodb.models import Model

from gpuproof.adapters.tables import bind


class _Probe(Model):
    class Meta:
        table_name = "ProbeTable"

    key = UnicodeAttribute(hash_key=True)


def _connection(model: type[Model]) -> Any:
    return model._get_connection()


def test_a_new_endpoint_drops_the_cached_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1111")
    bind(_Probe, "stack-Machines", "eu-west-1")
    first = _connection(_Probe)
    bind(_Probe, "stack-Machines", "eu-west-1")
    assert _connection(_Probe) is first  # nothing changed: the connection is kept
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2222")
    bind(_Probe, "stack-Machines", "eu-west-1")
    assert _connection(_Probe) is not first
    second = _connection(_Probe)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:3333")  # botocore reads it first
    bind(_Probe, "stack-Machines", "eu-west-1")
    assert _connection(_Probe) is not second


CHANGES = [("other-Machines", "eu-west-1"), ("stack-Machines", "us-east-1")]


@pytest.mark.parametrize(("table", "region"), CHANGES)
def test_a_new_table_or_region_drops_it_too(monkeypatch: pytest.MonkeyPatch, table: str, region: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1111")
    bind(_Probe, "stack-Machines", "eu-west-1")
    first = _connection(_Probe)
    bind(_Probe, table, region)
    assert _connection(_Probe) is not first
    assert (_Probe.Meta.table_name, _Probe.Meta.region) == (table, region)
