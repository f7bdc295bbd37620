"""drop_cached_connections forgets every PynamoDB model's cached connection (benches that run one
local stack after another in a process)."""

from __future__ import annotations

from gpuproof.adapters import tables
from gpuproof.local.stack import drop_cached_connections


def test_every_model_and_subclass_forgets_its_connection() -> None:
    models = [tables.MachineModel, tables.GpuUuidModel, tables.VerdictModel]
    saved = [m._connection for m in models]
    try:
        for m in models:
            m._connection = object()  # type: ignore[assignment]  # a connection to a stopped server
        drop_cached_connections()
        assert all(m._connection is None for m in models)
    finally:
        for m, c in zip(models, saved, strict=True):
            m._connection = c
