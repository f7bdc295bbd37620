"""Writes docs/reason-codes.md from the registry: `python -m gpuproof.reasons_doc > docs/reason-codes.md`."""

from __future__ import annotations

from gpuproof.reason_codes import REASON_CODES, STAGES


def rendered() -> str:
    lines = [
        "# Reason codes",
        "",
        "Generated from `layers/core/gpuproof/reason_codes.py` by `make reason-codes`; do not edit by hand",
        "(a test fails when this file is stale). Every refusal carries one of these codes; an API",
        "refusal answers with the HTTP status of its first reason and lists every reason.",
        "",
        "| stage | where it comes from |",
        "|---|---|",
        *(f"| {stage} | {text} |" for stage, text in STAGES.items()),
        "",
    ]
    for stage in STAGES:
        lines += [f"## {stage}", "", "| code | HTTP | meaning |", "|---|---|---|"]
        for code, entry in sorted(REASON_CODES.items()):
            if entry.stage == stage:
                status = "" if entry.status is None else str(entry.status)
                lines.append(f"| `{code}` | {status} | {entry.description} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(rendered(), end="")
