"""docs/openapi.json is generated from the routers; this fails when the committed copy is stale."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gpuproof.api.openapi import document, rendered
from gpuproof.local.template import load_template

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


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


# The web console's HTML pages (gpuproof.console.app) are not part of the JSON API the document
# describes; tests/e2e/test_console_browser.py loads them (and their 404s) in a browser.
HTML_FUNCTIONS = {"ConsoleFunction"}


def test_every_template_route_is_in_the_document() -> None:
    """The fuzz run (tests/e2e/test_schema_fuzz.py) covers what the document lists: all of the API."""
    template = load_template(DOC.parents[1] / "template.yaml")
    routes = {
        (str(e.properties["Method"]).lower(), _shape(str(e.properties["Path"])))
        for spec in template.functions()
        if spec.logical_id not in HTML_FUNCTIONS
        for e in spec.events
        if e.type == "HttpApi"
    }
    spec = json.loads(DOC.read_text())
    documented = {(method, _shape(path)) for path, ops in spec["paths"].items() for method in ops}
    assert routes, "no HttpApi route found in template.yaml"
    assert routes == documented


def test_the_html_pages_are_the_console_functions_only() -> None:
    template = load_template(DOC.parents[1] / "template.yaml")
    pages = {
        str(e.properties["Path"])
        for spec in template.functions()
        if spec.logical_id in HTML_FUNCTIONS
        for e in spec.events
        if e.type == "HttpApi"
    }
    assert pages == {
        "/",
        "/console/machines/{machine_id}",
        "/console/members/{account}",
        "/console/operator",
        "/console/static/{name}",
    }


def test_signed_routes_document_the_envelope_refusals() -> None:
    spec = json.loads(document())
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            refusals = set(op["responses"]) - {"200", "201", "202"}
            assert "422" in refusals, (method, path)
            if "401" in refusals:
                assert {"400", "413"} <= refusals, (method, path)
