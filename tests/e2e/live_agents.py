"""Adversarial live-check agents for tests/e2e/test_live_check.py, run in a process of their own
(as the real agent is: `benchmark-probe agent --live-listen`), so the test process's threads (the
local stack, the bots) do not hold the agent's interpreter lock while it is being timed.

    python -m tests.e2e.live_agents {slower|late} KEY_FILE API_URL PORT

prints `ready` once it listens, then serves until killed.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from benchmark_probe.live import LiveResponder, LiveServer, RoundSource
from gpuproof.claim import Claim, proof_params_for
from gpuproof.protocol import live as L
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import (
    ChainCommit,
    NumpyExecutor,
    ProofParams,
    Prover,
    RecomputedRows,
    SignedCommitment,
)

CPU_PARAMS = proof_params_for(Claim(None, 0))
# Past the member's own deadline by a margin no scheduler hiccup closes: derived deadline + the
# largest RTT allowance + 1 s.
LATE_S = max(p.deadline_s for p in CPU_PARAMS) + L.MAX_RTT_ALLOWANCE_S + 1.0


class SlowerExecutor(NumpyExecutor):
    """An adversarial prover (a test double at the hardware boundary): the real chain, with every
    step taking longer, as on a GPU slower than the one claimed."""

    name = "numpy-slowed"

    def commit(self, seed: bytes, b_seed: bytes, params: ProofParams, keep_level: int) -> ChainCommit:
        chain = super().commit(seed, b_seed, params, keep_level)
        time.sleep(LATE_S)  # T steps at (LATE_S / T) extra each
        return chain

    def recompute(
        self,
        seed: bytes,
        b_seed: bytes,
        params: ProofParams,
        want_a: Mapping[int, Sequence[int]],
        want_c: Mapping[int, Sequence[int]],
    ) -> RecomputedRows:
        return super().recompute(seed, b_seed, params, want_a, want_c)


class LateResponder(LiveResponder):
    """An agent that proves at speed and answers late (a relay to hardware elsewhere)."""

    def prove(
        self, nonce: bytes, challenge_id: str, params: list[ProofParams]
    ) -> tuple[Prover, SignedCommitment]:
        answered = super().prove(nonce, challenge_id, params)
        time.sleep(LATE_S)
        return answered


def serve(kind: str, key: SigningKey, api_url: str, port: int) -> LiveServer:
    if kind == "slower":
        responder = LiveResponder(key, RoundSource(api_url), SlowerExecutor())
    elif kind == "late":
        responder = LateResponder(key, RoundSource(api_url), NumpyExecutor())
    else:
        raise SystemExit(f"unknown agent kind {kind!r}")
    return LiveServer(responder, "127.0.0.1", port).start()


if __name__ == "__main__":
    kind, key_file, api, port = sys.argv[1:5]
    serve(kind, SigningKey.load(Path(key_file)), api, int(port))
    print("ready", flush=True)
    threading.Event().wait()
