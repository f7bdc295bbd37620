"""Reading capacity openings back: the one decoder every reader uses (the verify worker, inline or
uploaded; a committee member, from the service's capacity transcript), and the bounds that hold
while they travel. Pure and AWS-free.
"""

from __future__ import annotations

import zlib

from gpuproof.protocol.capacity.models import OPENINGS_MEDIA_TYPE, CapacityParams, CapacityTranscript
from gpuproof.protocol.limits import (
    MAX_CAPACITY_OPENINGS_BYTES,
    MAX_CAPACITY_OPENINGS_BYTES_PER_TARGET,
    MAX_CAPACITY_OPENINGS_STORED_BYTES,
)

# The inline form (kept in the challenge item, handed to members as stored): zlib of the openings'
# bytes, inflated to at most this many bytes (the request that carried them was smaller still).
INLINE_COMPRESSION = "zlib"
MAX_INLINE_INFLATED_BYTES = 4 * MAX_CAPACITY_OPENINGS_STORED_BYTES


def openings_limit(params: CapacityParams) -> int:
    """The bound on uploaded openings: per target, capped."""
    return min(MAX_CAPACITY_OPENINGS_BYTES_PER_TARGET * len(params.targets), MAX_CAPACITY_OPENINGS_BYTES)


def load_openings(raw: bytes, media_type: str = OPENINGS_MEDIA_TYPE) -> CapacityTranscript:
    """The openings these bytes of `media_type` hold; ValueError (pydantic's ValidationError is
    one) when they do not decode or the media type is not one this code reads."""
    if media_type != OPENINGS_MEDIA_TYPE:
        raise ValueError(f"no decoder for capacity openings of media type {media_type!r}")
    return CapacityTranscript.model_validate_json(raw)


def inflate_inline(data: bytes) -> bytes:
    """The inline form's bytes, bounded; ValueError when they do not inflate or inflate past the bound."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, MAX_INLINE_INFLATED_BYTES)
    except zlib.error as exc:
        raise ValueError(f"the stored openings do not decompress: {exc}") from exc
    if inflater.unconsumed_tail or not inflater.eof:
        raise ValueError(
            f"the stored openings inflate past {MAX_INLINE_INFLATED_BYTES} bytes or are cut short"
        )
    return raw
