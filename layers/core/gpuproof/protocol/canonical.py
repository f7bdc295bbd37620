"""Canonical bytes of JSON-like values: the one encoding every signature in gpuproof covers."""

from __future__ import annotations

import json
import math
from typing import Any


def _check(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("canonical encoding refuses NaN and infinities")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"canonical encoding needs string keys, got {type(key).__name__}")
            _check(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check(item)


def canonical_bytes(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys, no insignificant whitespace, no NaN.

    Floats use Python's shortest round-trip repr; integers are exact. A verifier in another
    language must reproduce exactly these bytes (docs/protocol.md, "Canonical encoding").
    """
    _check(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
