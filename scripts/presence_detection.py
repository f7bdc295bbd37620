"""How fast presence waves revoke identities that share one GPU (docs/protocol.md §19, the table).

k identities on ONE GPU, every one checked at each wave they are selected for (wave fraction p);
one GPU answers one check per wave (2W > D + S for every model of §8's table), so the sharer
answers one selected identity and lets the others miss. It plays smart: it answers the identity
nearest to revocation (most misses in its window). Run through the service's own rules
(`logic.presence.presence_step`, which counts the checks in wave order, with the policy's window
and misses); printed: the mean number of waves until the first identity is revoked and
until all but one are, and those in days at the policy's waves a day.

    python scripts/presence_detection.py [--trials 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
from typing import Any

from gpuproof.config import PresencePolicy
from gpuproof.logic.presence import MISSED, PASSED, new_open, presence_step, slot_of
from gpuproof.logic.records import Machine
from gpuproof.logic.states import MachineState
from gpuproof.logic.waves import Wave

CPU_CLAIM = {"claimed_gpu_model": None, "gpu_count": 0}
MAX_WAVES = 1000
POLICY_FOR_SINCE = PresencePolicy(6, 3, 180, 5.0, 120.0, enforce=True)  # the first look: watched


def _machine(i: int, t: float) -> Machine:
    m = Machine(f"{i + 1:064x}", "owner", "europe", MachineState.published, 0.0, 0.0, claim=CPU_CLAIM)
    step = presence_step(m, t, POLICY_FOR_SINCE, ())
    return dataclasses.replace(m, presence=step.presence)


def run(policy: PresencePolicy, k: int, rng: random.Random, max_waves: int = MAX_WAVES) -> tuple[int, int]:
    t = 1_000_000.0
    alive = {i: _machine(i, t) for i in range(k)}
    first = last = 0
    for n in range(1, max_waves + 1):
        t += policy.min_gap_s + 3600.0
        wave = Wave(f"w{n}", t, rng.randbytes(32).hex())
        waves = (wave,)
        slots = {i: slot_of(m, wave, policy) for i, m in alive.items()}
        checked = [i for i, s in slots.items() if s is not None]
        if checked:
            recent = {i: (alive[i].presence or {}).get("recent", []) for i in checked}
            served = max(checked, key=lambda i: (recent[i].count(MISSED), -i))
            slot = slots[served]
            assert slot is not None
            m = alive[served]
            open_check: dict[str, Any] = {**new_open(slot, m.machine_id, _params()), "result": PASSED}
            alive[served] = dataclasses.replace(m, presence={**(m.presence or {}), "open": open_check})
        for i in list(alive):  # each identity's sweeper look after the wave's window
            step = presence_step(alive[i], t + 3000.0, policy, waves)
            if step.outcome == "revoke":
                del alive[i]
                first = first or n
            elif step.presence is not None:
                alive[i] = dataclasses.replace(alive[i], presence=step.presence)
        if len(alive) <= 1:
            last = n
            break
    return first, last


def _params() -> list[dict[str, Any]]:
    from gpuproof.claim import Claim, challenge_params

    params: list[dict[str, Any]] = challenge_params(Claim(None, 0))["proof"]
    return params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=300)
    args = parser.parse_args()
    base = PresencePolicy(6, 3, 180, 5.0, 120.0, enforce=True, miss_window=10)
    rules = {
        "window (3 of the last 10)": base,
        "consecutive (3 in a row)": dataclasses.replace(base, miss_window=3),
    }
    print("| rule | p | k | first revoked (waves, days) | all but one revoked (waves, days) |")
    print("|---|---:|---:|---:|---:|")
    rng = random.Random(19)
    for name, rule in rules.items():
        for fraction in (1.0, 0.5):
            policy = dataclasses.replace(rule, wave_fraction=fraction)
            for k in (2, 4, 10):
                # Deterministic at p = 1; the consecutive rule's survivors run to the end (slow).
                trials = 1 if fraction == 1.0 else args.trials if rule is base else 20
                runs = [run(policy, k, rng) for _ in range(trials)]
                cells = []
                for values in ([f for f, _ in runs], [a for _, a in runs]):
                    done = [v for v in values if v]
                    if not done:
                        cells.append(f"never (in {MAX_WAVES:,} waves)")
                        continue
                    mean = statistics.fmean(done)
                    cell = f"{mean:.1f} ({mean / policy.checks_per_day:.2f} d)"
                    if len(done) < len(values):
                        cell += f"; never in {len(values) - len(done)} of {len(values)} runs"
                    cells.append(cell)
                print(f"| {name} | {fraction:g} | {k} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
