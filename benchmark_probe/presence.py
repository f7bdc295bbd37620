"""The agent's answer to a presence check (docs/protocol.md §19).

A heartbeat answer may announce `{check_id, opens_at, fetch_by}` (service clock). The agent
waits until `opens_at` (its own clock corrected by the offset the heartbeat answer measured),
fetches the nonce and the proof parameters, runs the proof of throughput at once, sends the
signed commitment (the service times it from `opens_at`), opens the pairs it answers with and
sends the openings: uploaded as the binary transcript to the presigned POST the commitment's
answer carries, the proof request naming it by its TranscriptRef (as the full verification's
report does; an 8-GPU transcript is far over the API's 1 MiB body bound). Nothing else runs in
between: the window is the claim's proof deadline plus a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmark_probe.client import ServiceClient
from benchmark_probe.proof import deliver
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import (
    GpuPairs,
    NumpyExecutor,
    ProofExecutor,
    ProofParams,
    Prover,
    SignedCommitment,
    ThroughputProof,
)

# The agent never waits longer than this for a check to open (a service announces a few minutes
# ahead; anything further is asked again at a later heartbeat).
MAX_WAIT_S = 900.0
# Fetch this long after the opening (by the service clock as the heartbeat measured it): a fetch
# before `opens_at` is refused, and the fetch allowance (5 s) leaves room for it.
OPEN_MARGIN_S = 0.1


@dataclass
class PresenceResponder:
    """`on_presence` for the agent loop; `before_commit` exists for tests (a slower prover)."""

    client: ServiceClient
    key: SigningKey
    # Built at the first check (the GPU context, libraries and kernels), then kept.
    executor_factory: Callable[[], ProofExecutor] = NumpyExecutor
    sleep: Callable[[float], None] = time.sleep
    before_commit: Callable[[], None] = lambda: None
    answered: list[dict[str, Any]] = field(default_factory=list)
    _executor: ProofExecutor | None = None

    def executor(self) -> ProofExecutor:
        if self._executor is None:
            self._executor = self.executor_factory()
        return self._executor

    def __call__(self, announcement: dict[str, Any], service_offset_s: float = 0.0) -> dict[str, Any] | None:
        """Answer one announced check; the service's answer to the openings, or None when the
        check opens too far ahead (it will be announced again)."""
        machine_id = self.key.public_hex
        check_id = str(announcement["check_id"])
        executor = self.executor()  # before the wait: nothing slow inside the timed window
        wait = float(announcement["opens_at"]) - (time.time() + service_offset_s)
        if wait > MAX_WAIT_S:
            return None
        if wait > -OPEN_MARGIN_S:
            self.sleep(wait + OPEN_MARGIN_S)
        check = self.client.request("POST", f"/machines/{machine_id}/presence/{check_id}", {})
        params = [ProofParams.model_validate(p) for p in check["params"]]
        prover = Prover(bytes.fromhex(check["nonce"]), machine_id, check_id, params, executor, parallel=True)
        commitment = prover.run()
        signed = SignedCommitment.sign(commitment, self.key)
        self.before_commit()
        receipt = self.client.request(
            "POST",
            f"/machines/{machine_id}/presence/{check_id}/commitment",
            {"signed_commitment": signed.model_dump(mode="json")},
        )
        pairs = [GpuPairs.model_validate(p) for p in receipt["pairs"]]
        proof = ThroughputProof(
            commitment=signed.commitment, signature=signed.signature, pairs=pairs, openings=prover.open(pairs)
        )
        result: dict[str, Any] = self.client.request(
            "POST",
            f"/machines/{machine_id}/presence/{check_id}/proof",
            # Uploaded where the commitment's answer says and named by its reference (any claim
            # size); inline only from a service that hands out no upload (docs/protocol.md §19).
            {"proof": deliver(proof, receipt, params)},
        )
        self.answered.append(result)
        return result
