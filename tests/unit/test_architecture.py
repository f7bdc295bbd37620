"""Shape rules checked statically: no import cycles; the protocol module imports nothing from AWS."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {ROOT / "layers" / "core": "gpuproof", ROOT: "benchmark_probe"}
AWS = ("boto3", "botocore", "pynamodb", "aws_lambda_powertools", "moto")


def modules() -> dict[str, Path]:
    out = {}
    for base, package in PACKAGES.items():
        for path in (base / package).rglob("*.py"):
            parts = path.relative_to(base).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports(path: Path, known: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """What a file imports; `from pkg import submodule` depends on the submodule, not on pkg."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_no_import_cycles() -> None:
    mods = modules()
    known = set(mods)
    graph = {
        name: {m for m in imports(path, known) if m in mods and m != name} for name, path in mods.items()
    }
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, name, dep]))
            if dep not in state:
                visit(dep, [*trail, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_protocol_imports_nothing_from_aws_or_the_service() -> None:
    for name, path in modules().items():
        if name.startswith("gpuproof.protocol"):
            for imported in imports(path):
                top = imported.split(".")[0]
                assert top not in AWS, f"{name} imports {imported}"
                assert not imported.startswith(("gpuproof.adapters", "gpuproof.api", "gpuproof.logic")), (
                    f"{name} imports {imported}"
                )


def test_handlers_are_thin() -> None:
    for app in (ROOT / "functions").glob("*/app.py"):
        tree = ast.parse(app.read_text())
        (handler,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "lambda_handler"]
        assert len(handler.body) == 1 and isinstance(handler.body[0], ast.Return), app
