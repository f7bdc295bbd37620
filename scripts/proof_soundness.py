"""Measured acceptance of adversarial provers against protocol v2, beside the exact prediction and
the stated bound (docs/protocol.md "Soundness").

A trial: a fresh nonce (so a fresh seed), the strategy's committed rows (tests/unit/proof_adversaries.py),
a signed commitment, a fresh draw secret, the strategy's best openings, then the full verifier
(`verify_throughput`). Predicted = hypergeometric P(the m drawn pairs miss the W wrong transitions);
bound = (1 - eps/2)^m with eps = the fraction of row products the strategy skipped (c = 2). 95% interval:
Wilson. Prints markdown; docs/protocol.md quotes it.
Usage: python scripts/proof_soundness.py [--trials 400] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Callable

from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import ProofParams, derive_params, draw_all_pairs, verify_throughput
from tests.unit import proof_adversaries as adv

KEY = SigningKey.from_seed(bytes([5]) * 32)
N, D, T = 64, 32, 8

Make = Callable[[bytes, bytes, ProofParams, int], adv.Forgery]

STRATEGIES: list[tuple[str, Make, int]] = [
    ("row collapse (v1 forgery)", lambda s, o, p, k: adv.collapse(s, p), 1),
    ("reset A_4 := A_0", lambda s, o, p, k: adv.reset(s, p, s=4), 1),
    ("reset A_6 := A_3", lambda s, o, p, k: adv.reset(s, p, s=6, r=3), 1),
    ("replay A_5.. := A_0.. (v1 replay)", lambda s, o, p, k: adv.replay(s, p, s=5), 1),
    ("partial work eps = 1%", lambda s, o, p, k: adv.partial(s, p, 0.01, k), 1),
    ("partial work eps = 5%", lambda s, o, p, k: adv.partial(s, p, 0.05, k), 1),
    ("partial work eps = 10%", lambda s, o, p, k: adv.partial(s, p, 0.10, k), 1),
    ("partial work eps = 20%", lambda s, o, p, k: adv.partial(s, p, 0.20, k), 1),
    ("copied rows, eps = 2% (the tight case, c = 2)", lambda s, o, p, k: adv.copy_rows(s, p, 0.02, k), 1),
    ("copied rows, eps = 10% (the tight case, c = 2)", lambda s, o, p, k: adv.copy_rows(s, p, 0.10, k), 1),
    ("lazy openings (random rows committed)", lambda s, o, p, k: adv.lazy(s, p, k), 1),
    ("cross-GPU reuse (GPU 0's rows as GPU 1's)", lambda s, o, p, k: adv.borrowed("x", o, p), 1),
    ("cross-challenge reuse (an earlier nonce's rows)", lambda s, o, p, k: adv.borrowed("x", o, p), 1),
]


def trial(label: str, make: Make, k: int) -> tuple[bool, int, int]:
    """(accepted, wrong transitions, row products computed)."""
    p = derive_params(None, cpu=True, gpu_index=1 if "GPU" in label else 0, n=N, d=D, steps=T)
    nonce = hashlib.sha256(b"soundness" + label.encode() + k.to_bytes(8, "little")).digest()
    seed = adv.seed_of(nonce, KEY.public_hex, p.gpu_index)
    if "GPU" in label:
        other = adv.seed_of(nonce, KEY.public_hex, 0)
    else:
        other = adv.seed_of(hashlib.sha256(b"earlier" + nonce).digest(), KEY.public_hex, 0)
    forgery = make(seed, other, p, k)
    bad = int(adv.wrong_transitions(seed, p, forgery.chain).sum())
    committed = adv.commit(seed, p, forgery)
    signed = adv.signed_commitment(KEY, nonce, "s", [committed])
    pairs = draw_all_pairs(signed, hashlib.sha256(b"secret" + nonce).digest(), [p])
    proof = adv.proof_for(signed, [committed], pairs)
    reasons = verify_throughput(
        proof, machine_id=KEY.public_hex, challenge_id="s", nonce=nonce, params=[p], pairs=pairs
    )
    return not reasons, bad, forgery.products


def table(trials: int, seed: int, only: str | None = None) -> str:
    m = derive_params(None, cpu=True).checks
    total = N * T
    lines = [
        "| strategy | trials | W / N | work skipped eps | accepted | measured | 95% interval | predicted | bound (1-eps/2)^m |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, make, weight in STRATEGIES:
        if only is not None and only not in label:
            continue
        start = time.perf_counter()
        count = trials * weight
        results = [trial(label, make, seed * 1_000_003 + k) for k in range(count)]
        accepted = sum(r[0] for r in results)
        bad = sum(r[1] for r in results) / count
        skipped = 1 - sum(r[2] for r in results) / count / total
        predicted = sum(adv.hypergeometric(total, r[1], m) for r in results) / count
        lo, hi = adv.wilson(accepted, count)
        bound = (1 - skipped / 2) ** m
        lines.append(
            f"| {label} | {count} | {bad / total:.3f} | {skipped:.3f} | {accepted} | {accepted / count:.4f} "
            f"| [{lo:.4f}, {hi:.4f}] | {predicted:.3g} | {bound:.3g} |"
        )
        sys.stderr.write(f"{label}: {time.perf_counter() - start:.1f} s\n")
    head = (
        f"n = {N}, d = {D}, T = {T} (N = {total} transitions), m = {m} distinct pairs; "
        f"`python scripts/proof_soundness.py --trials {trials} --seed {seed}"
        + (f" --only '{only}'" if only is not None else "")
        + "`.\n\n"
    )
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="run the strategies whose label contains this text")
    args = parser.parse_args()
    sys.stdout.write(table(args.trials, args.seed, args.only))


if __name__ == "__main__":
    main()
