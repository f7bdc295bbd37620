"""The verifier's calls run with the cyclic collector paused, and leave it as they found it."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from gpuproof.protocol.capacity.verifier import verify_capacity
from gpuproof.protocol.capacity.wire import decode_openings
from gpuproof.protocol.collector import collector_paused
from gpuproof.protocol.proof.verifier import verify_throughput
from gpuproof.protocol.proof.wire import decode_transcript, encode_transcript
from tests.unit.test_proof_protocol import CHALLENGE, KEY, cpu_params, run


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


@collector_paused
def _state(fail: bool = False) -> bool:
    if fail:
        raise RuntimeError("inside")
    return gc.isenabled()


@collector_paused
def _nested() -> tuple[bool, bool]:
    return _state(), gc.isenabled()


def test_paused_inside_restored_after_even_on_error(collector_on: None) -> None:
    assert _state() is False
    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="inside"):
        _state(fail=True)
    assert gc.isenabled()
    assert _nested() == (False, False)  # the inner call does not re-enable it early
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        assert _state() is False
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()


@pytest.mark.parametrize("fn", [decode_openings, verify_capacity, decode_transcript, verify_throughput])
def test_the_verifiers_allocation_heavy_calls_are_wrapped(fn: object) -> None:
    assert getattr(fn, "__wrapped__", None) is not None


def test_no_collection_runs_while_a_transcript_is_decoded_and_verified(collector_on: None) -> None:
    """With a threshold of one allocation the collector would run thousands of times during these
    calls; paused, it runs not once on their thread (its callbacks count every pass; another
    thread left by an earlier test may call gc.collect() of its own, which is not these calls')."""
    r = run(41, cpu_params(gpus=2, n=64, d=64, steps=3))
    data = encode_transcript(r.proof.openings, r.params)
    passes: list[str] = []
    mine = threading.get_ident()

    def count(phase: str, info: dict[str, int]) -> None:
        if threading.get_ident() == mine:
            passes.append(phase)

    args = {"machine_id": KEY.public_hex, "challenge_id": CHALLENGE, "nonce": r.nonce, "params": r.params}
    threshold = gc.get_threshold()
    gc.callbacks.append(count)
    try:
        gc.set_threshold(1)
        decode_transcript.__wrapped__(data, r.params)  # type: ignore[attr-defined]
        unpaused = len(passes)
        passes.clear()
        decoded = decode_transcript(data, r.params)
        during_decode = len(passes)
        proof = r.proof.model_copy(update={"openings": decoded})
        passes.clear()
        reasons = verify_throughput(proof, pairs=r.pairs, **args)  # type: ignore[arg-type]
        during_verify = len(passes)
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(count)
    assert reasons == []
    assert unpaused > 0 and during_decode == during_verify == 0
