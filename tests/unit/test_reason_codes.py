"""One registry of reason codes: every code used anywhere is in it, and the docs table is its copy."""

from __future__ import annotations

import ast
from pathlib import Path

from gpuproof.errors import STATUS_BY_CODE, Rejection
from gpuproof.logic.committee import DRAW_FAILED
from gpuproof.protocol import live as live_codes
from gpuproof.protocol.proof import codes as proof_codes
from gpuproof.protocol.reasons import Reason
from gpuproof.reason_codes import REASON_CODES, STAGES
from gpuproof.reasons_doc import rendered

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [ROOT / "layers" / "core" / "gpuproof", ROOT / "benchmark_probe"]
DOC = ROOT / "docs" / "reason-codes.md"


def literal_codes() -> dict[str, set[str]]:
    """code -> files, for every Reason("literal", ...) (or Reason(code="literal")) in the code."""
    found: dict[str, set[str]] = {}
    for root in SCANNED:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = (
                    func.id
                    if isinstance(func, ast.Name)
                    else func.attr
                    if isinstance(func, ast.Attribute)
                    else ""
                )
                if name != "Reason":
                    continue
                arg = (
                    node.args[0]
                    if node.args
                    else next((k.value for k in node.keywords if k.arg == "code"), None)
                )
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.setdefault(arg.value, set()).add(str(path.relative_to(ROOT)))
    return found


def test_the_scan_finds_codes() -> None:
    found = literal_codes()
    assert {"malformed_json", "gpu_uuid_duplicate", "too_many_gpus", "member_exists"} <= set(found)


def test_every_literal_reason_code_is_registered() -> None:
    missing = {code: sorted(files) for code, files in literal_codes().items() if code not in REASON_CODES}
    assert not missing, f"add these to gpuproof/reason_codes.py (one line each): {missing}"


def test_every_proof_code_and_outcome_code_is_registered() -> None:
    assert set(proof_codes.ALL_CODES) <= set(REASON_CODES)
    assert set(live_codes.ALL_CODES) <= set(REASON_CODES)
    assert DRAW_FAILED in REASON_CODES


def test_codes_are_stable_identifiers_with_a_meaning() -> None:
    for code, entry in REASON_CODES.items():
        assert code.isidentifier() and code == code.lower(), code
        assert entry.stage in STAGES, code
        assert entry.description and "|" not in entry.description, code
        assert entry.status is None or 400 <= entry.status < 500, code


def test_every_request_refusal_is_a_4xx() -> None:
    for code, entry in REASON_CODES.items():
        if entry.stage == "request":
            assert entry.status is not None, code
    assert Rejection([Reason("json_too_deep", "x")]).status == 400
    assert Rejection([Reason("too_many_gpus", "x")]).status == 422
    assert STATUS_BY_CODE["body_not_utf8"] == 400


def test_committed_reason_code_table_is_current() -> None:
    assert DOC.exists(), "docs/reason-codes.md is missing: run `make reason-codes`"
    assert DOC.read_text() == rendered(), (
        "docs/reason-codes.md is stale: run `make reason-codes` and commit it"
    )
