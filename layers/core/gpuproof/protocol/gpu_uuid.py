"""A GPU's identity as one string: NVML's `GPU-` + 8-4-4-4-12 lowercase hex, whatever was sent.

Uniqueness is claimed on the normalised form, so case, a missing prefix, missing dashes or
surrounding whitespace cannot make one GPU look like two.
"""

from __future__ import annotations

import re

PREFIX = "GPU-"
_HEX32 = re.compile(r"[0-9a-f]{32}")
_GROUPS = (8, 4, 4, 4, 12)
_DASHED = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def normalise_gpu_uuid(raw: str) -> str | None:
    """The canonical form of a GPU UUID, or None when `raw` is not one."""
    text = raw.strip().lower()
    if text.startswith(PREFIX.lower()):
        text = text[len(PREFIX) :]
    if _DASHED.fullmatch(text):
        return PREFIX + text
    if _HEX32.fullmatch(text):
        out, at = [], 0
        for size in _GROUPS:
            out.append(text[at : at + size])
            at += size
        return PREFIX + "-".join(out)
    return None
