"""Test hooks of the local stack process only (`python -m gpuproof.local --hang-at POINT`).

Nothing in the Lambda code paths reads these: the CLI of the local stack installs them in its own
process. `hang_publisher_at` makes the chain publisher stop for good at one of its fault points
(gpuproof.chain.publisher.faults) and say so on stdout, so that a test can SIGKILL the whole stack
process at exactly that point (tests/e2e/test_process_kill.py).
"""

from __future__ import annotations

import threading

# The publisher's named points, in the order it passes them: the batch reserved (publication
# "pending") but not sent; sent; in a block but the publication not recorded; recorded but the
# machine not marked.
HANG_POINTS = ("before_submit", "after_submit", "before_record", "before_mark")
HUNG_MARKER = "gpuproof local stack: publisher hung at"


def hang_publisher_at(point: str) -> None:
    """Every invocation that reaches `point` prints HUNG_MARKER and then blocks forever."""
    if point not in HANG_POINTS:
        raise ValueError(f"unknown publisher point {point!r}; one of {', '.join(HANG_POINTS)}")
    from gpuproof.chain.publisher import faults

    original = faults.hit

    def hit(name: str) -> None:
        if name == point:
            print(f"{HUNG_MARKER} {point}", flush=True)
            threading.Event().wait()  # until the process is killed
        original(name)

    setattr(faults, "hit", hit)  # noqa: B010 - an instance attribute shadows the method, here only
