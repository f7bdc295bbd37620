"""docs/openapi.json is generated from the routers; this fails when the committed copy is stale."""

from __future__ import annotations

import json
from pathlib import Path

from gpuproof.api.openapi import document, rendered

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_openapi_document_is_current() -> None:
    assert DOC.exists(), "docs/openapi.json is missing: run `make openapi`"
    assert DOC.read_text() == rendered(), "docs/openapi.json is stale: run `make openapi` and commit it"


def test_every_route_documents_its_refusals() -> None:
    spec = json.loads(document())
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method == "post":
                assert {"401", "422"} <= set(op["responses"]), (method, path)
                refusal = op["responses"]["401"]["content"]["application/json"]["schema"]
                assert refusal["$ref"].endswith("/ErrorOut"), (method, path)
