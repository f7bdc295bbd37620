"""The cyclic garbage collector paused around the verifier's allocation-heavy calls.

Decoding a transcript and checking its openings allocate tens of thousands of small objects (row
views, digests, path nodes) that are freed by reference counting alone: none forms a cycle. Each
allocation burst still triggers the collector's generational passes, which re-scan every live
object; on the 8 x H100 phase that was 40-50% of decode time and ~15% of the walk check
(docs/benchmarks.md). Pausing it is what `gc.freeze`-style servers do for such bursts; it is
nesting-safe, restores the previous state, and collects nothing less (cycles, if any, wait for the
next pass after the call).
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def collector_paused(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` with the cyclic collector disabled while it runs (re-enabled after, if it was on)."""

    @functools.wraps(fn)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused
