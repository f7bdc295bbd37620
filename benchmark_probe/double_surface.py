"""Compare a hardware double's API with the real library's (CuPy, pynvml), without the hardware:
the callables' signatures, read with `inspect` or from a Cython function's embedded signature, and
whether every call the double accepts the real callable accepts too. Used by
`scripts/cupy_surface_check.py` (CuPy) and `tests/unit/test_nvml_double_surface.py` (pynvml)."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any


@dataclasses.dataclass
class Param:
    name: str
    positional: bool
    keyword: bool
    required: bool


@dataclasses.dataclass
class Signature:
    params: list[Param]
    any_positional: bool = False  # *args
    any_keyword: bool = False  # **kwargs

    @property
    def positional(self) -> list[Param]:
        return [p for p in self.params if p.positional]

    @property
    def required(self) -> int:
        return sum(1 for p in self.positional if p.required)


def from_inspect(fn: Callable[..., Any]) -> Signature | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params, any_pos, any_kw = [], False, False
    for p in sig.parameters.values():
        if p.name in ("self", "cls"):
            continue
        if p.kind is p.VAR_POSITIONAL:
            any_pos = True
        elif p.kind is p.VAR_KEYWORD:
            any_kw = True
        else:
            params.append(
                Param(
                    p.name,
                    positional=p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD),
                    keyword=p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY),
                    required=p.default is p.empty,
                )
            )
    return Signature(params, any_pos, any_kw)


_DOC_SIGNATURE = re.compile(r"^\s*[A-Za-z_][\w.]*\s*\((.*)\)\s*(->.*)?$")


def from_docstring(fn: Any) -> Signature | None:
    """A Cython function's embedded signature: `name(type a, type b=default, *, c=None) -> ret`."""
    first = ((getattr(fn, "__doc__", None) or "").strip().splitlines() or [""])[0].replace("\\*", "*")
    match = _DOC_SIGNATURE.match(first)
    if match is None:
        return None
    parts, depth, current = [], 0, ""
    for ch in match.group(1):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    params: list[Param] = []
    keyword_only = any_pos = any_kw = False
    for part in (p.strip() for p in parts if p.strip()):
        if part == "*":
            keyword_only = True
            continue
        if part == "/":  # the parameters before it are positional only
            for p in params:
                p.keyword = False
            continue
        if part.startswith("**"):
            any_kw = True
            continue
        if part.startswith("*"):
            any_pos, keyword_only = True, True
            continue
        head, _, _ = part.partition("=")
        name = head.split()[-1]
        if name in ("self", "cls"):
            continue
        params.append(Param(name, positional=not keyword_only, keyword=True, required="=" not in part))
    return Signature(params, any_pos, any_kw)


def signature_of(fn: Any) -> Signature | None:
    if inspect.isclass(fn):
        return from_inspect(fn) or from_docstring(fn)
    return from_docstring(fn) or from_inspect(fn)


def accepts(double: Signature, real: Signature, *, names: bool = True) -> list[str]:
    """Why a call the double accepts might not be accepted by the real callable (empty: none);
    `names`: a positional parameter must also have the real one's name (a caller may pass it by
    keyword)."""
    why = []
    if not real.any_positional:
        if len(double.positional) > len(real.positional) or double.any_positional:
            why.append(
                f"the double takes {'any number of' if double.any_positional else len(double.positional)} "
                f"positional arguments, the real one at most {len(real.positional)}"
            )
        for d, r in zip(double.positional, real.positional, strict=False):
            if names and d.name != r.name and d.keyword:
                why.append(f"positional parameter {d.name!r} is {r.name!r} in the real one")
    if double.required < real.required:
        why.append(
            f"the double requires {double.required} positional arguments, the real one {real.required}"
        )
    if names and not real.any_keyword:
        known = {p.name for p in real.params if p.keyword}
        extra = [p.name for p in double.params if p.keyword and p.name not in known]
        if extra:
            why.append(f"keywords the real one does not take: {', '.join(extra)}")
    return why


def resolve(module: ModuleType, path: str) -> tuple[bool, Any]:
    obj: Any = module
    for part in path.split("."):
        try:
            obj = getattr(obj, part)
        except (AttributeError, ImportError):
            return False, None
    return True, obj
