"""Reading capacity openings back: the one decoder every reader uses (the verify worker, inline or
uploaded; a committee member, from the service's capacity transcript), and the bound that holds
while they travel. Pure and AWS-free.

The openings are the binary transcript of `wire.py` (`OPENINGS_MEDIA_TYPE`); inline ones are kept
in the challenge item as those bytes and handed to members base64-encoded (`INLINE_ENCODING`).
"""

from __future__ import annotations

from gpuproof.protocol.capacity.models import OPENINGS_MEDIA_TYPE, CapacityParams
from gpuproof.protocol.capacity.wire import OpenedTarget, decode_openings, max_size
from gpuproof.protocol.limits import MAX_CAPACITY_OPENINGS_BYTES

INLINE_ENCODING = "base64"


def openings_limit(params: CapacityParams) -> int:
    """The bound on uploaded openings: the largest binary transcript the params imply, capped."""
    return min(max_size(params), MAX_CAPACITY_OPENINGS_BYTES)


def load_openings(
    raw: bytes | bytearray | memoryview, params: CapacityParams, media_type: str = OPENINGS_MEDIA_TYPE
) -> list[OpenedTarget]:
    """The openings these bytes of `media_type` hold, decoded against the phase's params; ValueError
    (`wire.OpeningsError` is one) when they do not decode or the media type is not one this reads."""
    if media_type != OPENINGS_MEDIA_TYPE:
        raise ValueError(f"no decoder for capacity openings of media type {media_type!r}")
    return decode_openings(raw, params)
