"""A request body is UTF-8 JSON of bounded depth with finite numbers, checked before any parser.

json and pydantic recurse per nesting level, so the depth is counted first by a flat scan; only
a body that passes is parsed, here once and by Powertools again.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from gpuproof.protocol.limits import MAX_JSON_DEPTH
from gpuproof.protocol.reasons import Reason

# A complete JSON string (escapes included); what is inside one never counts towards depth.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_DELTA = np.zeros(256, dtype=np.int32)
_DELTA[[ord("["), ord("{")]] = 1
_DELTA[[ord("]"), ord("}")]] = -1


class _NonFinite(ValueError):
    pass


def json_depth(body: bytes) -> int:
    """Deepest nesting of arrays and objects, by a scan that never recurses."""
    flat = _STRING.sub(b"", body)
    if not flat:
        return 0
    depth = np.cumsum(_DELTA[np.frombuffer(flat, dtype=np.uint8)], dtype=np.int64)
    return int(depth.max(initial=0))


def _constant(name: str) -> float:
    raise _NonFinite(name)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text[:40])
    return value


def body_reasons(body: bytes) -> list[Reason]:
    """Why `body` cannot be a request's JSON (empty when it can, and when it is empty)."""
    if not body:
        return []
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Reason("body_not_utf8", f"the body is not UTF-8 (byte {exc.start})", "body")]
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        return [
            Reason("json_too_deep", f"the body nests {depth} levels; the limit is {MAX_JSON_DEPTH}", "body")
        ]
    try:
        doc = json.loads(text, parse_constant=_constant, parse_float=_float)
    except _NonFinite as exc:
        return [Reason("json_non_finite", f"the body holds a non-finite number ({exc})", "body")]
    except (ValueError, RecursionError) as exc:
        return [Reason("malformed_json", f"the body is not valid JSON: {str(exc)[:200]}", "body")]
    try:
        # Escapes such as "\ud800" parse to strings no UTF-8 encoder (nor canonical_bytes) accepts.
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return [Reason("body_not_utf8", "the body escapes a lone UTF-16 surrogate", "body")]
    return []
