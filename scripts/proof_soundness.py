"""Measured false-accept rate of provers that fabricate rows, against the predicted rate.

A trial: fresh nonce, a prover that writes random rows instead of computing a fraction f of the
rows of some steps (its Merkle trees cover the fabricated rows, so every path verifies), a fresh
draw secret, then the full verifier. Prints markdown; docs/protocol.md quotes its numbers.
Usage: python scripts/proof_soundness.py [--trials 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import (
    NumpyExecutor,
    Prover,
    SignedCommitment,
    ThroughputProof,
    derive_params,
    draw_all_pairs,
    verify_throughput,
)

KEY = SigningKey.from_seed(bytes([5]) * 32)


class Fabricator(NumpyExecutor):
    """Random rows in place of the computed ones for `rows` at every step in `steps`."""

    def __init__(self, steps: set[int], rows: set[int], salt: int) -> None:
        self.steps, self.rows, self.salt = steps, rows, salt

    def next_rows(
        self, step: int, rows: Sequence[int], c: npt.NDArray[np.float32], q: int
    ) -> npt.NDArray[np.int8]:
        a = super().next_rows(step, rows, c, q)
        if step in self.steps:
            for k, row in enumerate(rows):
                if row in self.rows:
                    rng = np.random.default_rng([self.salt, step, row])
                    a[k] = rng.integers(-(q // 2), q // 2 + 1, size=a.shape[1])
        return a


def predicted(total: int, bad: int, checks: int) -> float:
    """P(no bad transition among `checks` distinct uniform draws of `total`): hypergeometric."""
    return math.prod((total - bad - k) / (total - k) for k in range(checks))


def trial(seed: int, n: int, d: int, steps: int, checks: int, fraction: float, bad_steps: set[int]) -> bool:
    params = [derive_params(None, cpu=True, n=n, d=d, steps=steps, checks=checks)]
    nonce = hashlib.sha256(b"soundness" + seed.to_bytes(8, "little")).digest()
    rng = np.random.default_rng(seed)
    rows = {int(i) for i in rng.permutation(n)[: round(fraction * n)]}
    prover = Prover(nonce, KEY.public_hex, "s", params, Fabricator(bad_steps, rows, seed), keep_level=2)
    signed = SignedCommitment.sign(prover.run(), KEY)
    secret = hashlib.sha256(b"secret" + nonce).digest()
    pairs = draw_all_pairs(signed, secret, params)
    proof = ThroughputProof(
        commitment=signed.commitment, signature=signed.signature, pairs=pairs, openings=prover.open(pairs)
    )
    reasons = verify_throughput(
        proof, machine_id=KEY.public_hex, challenge_id="s", nonce=nonce, params=params, pairs=pairs
    )
    return not reasons


def scenarios(trials: int, seed: int) -> str:
    n, d, checks, f = 100, 32, 48, 0.10
    cases = [
        ("10% of the rows of every step (10% of the work skipped)", 4, {1, 2, 3, 4}, trials),
        ("10% of the rows of one step, T = 1", 1, {1}, trials),
        ("10% of the rows of one step, T = 4", 4, {2}, max(200, trials // 4)),
        ("10% of the rows of one step, T = 16", 16, {7}, max(200, trials // 4)),
    ]
    lines = [
        "### Proof of throughput: measured false-accept rate",
        "",
        f"n = {n} rows, d = {d}, checks m = {checks} distinct (step, row) pairs drawn uniformly over "
        f"T x n transitions; fraction f = {f} of the rows fabricated (random rows committed in the "
        "Merkle trees). Predicted = hypergeometric P(no fabricated transition drawn) "
        "~ (1 - f * steps_fabricated / T)^m. 95% interval: Wilson.",
        "",
        "| fabrication | T | trials | accepted | measured rate | 95% interval | predicted |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, steps, bad, count in cases:
        start = time.perf_counter()
        accepted = sum(trial(seed * 1_000_003 + k, n, d, steps, checks, f, bad) for k in range(count))
        p_hat = accepted / count
        lo, hi = _wilson(accepted, count)
        pred = predicted(steps * n, round(f * n) * len(bad), checks)
        lines.append(
            f"| {label} | {steps} | {count} | {accepted} | {p_hat:.4f} | [{lo:.4f}, {hi:.4f}] | {pred:.4f} |"
        )
        sys.stderr.write(f"{label}: {time.perf_counter() - start:.1f} s\n")
    lines.append("")
    return "\n".join(lines)


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.stdout.write(scenarios(args.trials, args.seed))


if __name__ == "__main__":
    main()
