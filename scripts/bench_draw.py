"""Benchmark of the committee draw: cost for pools of 100 and 100,000 members (docs/benchmarks.md)."""

from __future__ import annotations

import os
import platform
import random
import statistics
import time

from gpuproof.committee.beacon import HashChainBeacon
from gpuproof.committee.draw import Member, draw_committee

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_MACHINE = "c2ad03b01cb72857978f7e18527afddb671c8354c72c46523405334be23c3701"
_OWNER = "5" + "O" * 47
_CAP = 3
POOLS = ((100, 201), (100_000, 21))  # (members, repeats)


def _account(rng: random.Random) -> str:
    return "5" + "".join(rng.choices(_B58, k=47))


def _pool(size: int, rng: random.Random) -> tuple[list[Member], dict[str, int]]:
    """SS58-shaped accounts with one linked account each; a tenth at the cap, one tied to the owner."""
    members = [Member(_account(rng), frozenset({_account(rng)})) for _ in range(size)]
    members[size // 2] = Member(members[size // 2].account, frozenset({_OWNER}))
    rng.shuffle(members)
    in_flight = {m.account: _CAP for m in members[: size // 10]}
    return members, in_flight


def _measure(size: int, repeats: int) -> tuple[list[float], list[float]]:
    rng = random.Random(size)
    pool, in_flight = _pool(size, rng)
    beacon = HashChainBeacon(bytes(range(32)), repeats + 1)
    draw_committee(beacon.value(1), _MACHINE, 0, pool, owner=_OWNER, in_flight=in_flight, cap=_CAP)  # warm-up
    times, reference = [], []
    accounts = [m.account for m in pool]
    for r in range(repeats):
        start = time.perf_counter()
        sorted(accounts)  # the reference: sorting the pool's accounts, which every draw must do
        reference.append(time.perf_counter() - start)
        value = beacon.value(r + 1)
        start = time.perf_counter()
        drawn = draw_committee(value, _MACHINE, r, pool, owner=_OWNER, in_flight=in_flight, cap=_CAP)
        times.append(time.perf_counter() - start)
        assert drawn is not None and len(set(drawn)) == 3
    return times, reference


def _fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def bench_sections() -> str:
    """A markdown section with the measured cost of one draw for each pool size."""
    rows = []
    for size, repeats in POOLS:
        times, reference = _measure(size, repeats)
        q = statistics.quantiles(times, n=4)
        ref = statistics.median(reference)
        rows.append(
            f"| {size:,} | {repeats} | {_fmt_ms(statistics.median(times))} | "
            f"{_fmt_ms(q[0])} – {_fmt_ms(q[2])} | {_fmt_ms(min(times))} – {_fmt_ms(max(times))} | "
            f"{_fmt_ms(ref)} | {statistics.median(times) / ref:.1f} |"
        )
    machine = platform.processor() or platform.machine()
    return "\n".join(
        [
            "## Committee draw",
            "",
            "Cost of one `draw_committee` call (filter eligible members, sort by account, select 3 by",
            "SHA-256 rejection sampling), wall time from `time.perf_counter`, after one warm-up draw;",
            "each repeat uses a fresh beacon value and round. Pool: SS58-shaped 48-character accounts",
            "in random order, each with one linked account, a tenth of them at the in-flight cap and",
            "one tied to the owner. Reference, in the same process and repeats: `sorted()` of the",
            "pool's account strings alone.",
            "",
            "| pool members | repeats | median (ms) | interquartile range (ms) | min – max (ms) "
            "| reference sort median (ms) | ratio |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Machine: {machine}, {os.cpu_count()} logical cores, Python {platform.python_version()} "
            f"({platform.python_implementation()}), {platform.system()} {platform.release()}.",
            "",
        ]
    )


if __name__ == "__main__":
    print(bench_sections())
