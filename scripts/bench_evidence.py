"""Benchmark of the least reading (`gpuproof.evidence.least_reading`, docs/scoring.md §3.6): the
service's CPU time to assess one machine's evidence, with and without the search, for honest
machines of 8, 16 and 64 GPUs (docs/benchmarks.md)."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "core"), str(ROOT)]

from gpuproof import evidence  # noqa: E402
from gpuproof.claim import Claim  # noqa: E402
from gpuproof.protocol.machine import Region  # noqa: E402
from tests.unit.evidence_facts import capacity_doc, facts  # noqa: E402
from tests.unit.test_evidence import DECLARED_RAM_GB, inventory, report  # noqa: E402

# (model, GPUs): the widest searches of the table at each size (A100 40GB PCIe, H100 PCIe) and two
# common machines; 64 is the protocol's most.
MACHINES = (
    ("H100 SXM5 80GB", 8),
    ("GeForce RTX 4090", 8),
    ("A100 40GB PCIe", 8),
    ("H100 PCIe", 16),
    ("A100 40GB PCIe", 16),
    ("A100 40GB PCIe", 64),
    ("H100 PCIe", 64),
)
REPEATS = 7


def _inputs(model: str, gpus: int) -> tuple[Claim, Any, evidence.MeasuredFacts]:
    claim = Claim(model, gpus)
    return claim, report(inventory(gpus)), facts(claim, capacity=capacity_doc(claim))


def _cpu(call: Callable[[], Any]) -> tuple[list[float], Any]:
    call()  # warm-up
    times, out = [], None
    for _ in range(REPEATS):
        start = time.process_time()
        out = call()
        times.append(time.process_time() - start)
    return times, out


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def bench_sections() -> str:
    """A markdown section: assess() with the least reading, and without it (the reference)."""
    rows = []
    for model, gpus in MACHINES:
        claim, rep, measured = _inputs(model, gpus)

        def run(claim: Claim = claim, rep: Any = rep, measured: evidence.MeasuredFacts = measured) -> Any:
            return evidence.assess(claim, rep, Region.china, DECLARED_RAM_GB, measured)

        times, found = _cpu(run)
        search = evidence.least_reading
        evidence.least_reading = lambda *args, **kwargs: None  # type: ignore[assignment]
        try:
            reference, _ = _cpu(run)
        finally:
            evidence.least_reading = search  # type: ignore[assignment]
        least = next(i.evidence.get("least_reading") for i in found.inputs if i.name == "gpu_num")
        reading = (
            "none" if least is None else " + ".join(f"{d['count']} x {d['model']}" for d in least["devices"])
        )
        ratio = "—" if least is None else f"{float(least['calc_point']) / float(found.point.decimal):.2f}"
        exhaustive = "—" if least is None else ("yes" if least["exhaustive"] else "no (stopped at the bound)")
        med, ref = statistics.median(times), statistics.median(reference)
        rows.append(
            f"| {gpus} × {model} | {_ms(med)} | {_ms(min(times))} – {_ms(max(times))} | {_ms(ref)} | "
            f"{med / ref:.1f} | {reading} | {ratio} | {exhaustive} |"
        )
    return "\n".join(
        [
            "## The least reading: service CPU to assess one machine's evidence",
            "",
            "Method: `evidence.assess` of an honest machine (its proof at the table's estimated speed, "
            "every slot's fill at 90% of the VRAM and 0.85 × the datasheet bandwidth, 512 GiB of host "
            "RAM proven, region china: `tests/unit/evidence_facts.py`), process CPU time "
            f"(`time.process_time`), median of {REPEATS} after one warm-up. Reference, in the same run: the "
            "same `assess` with the least reading's search skipped. The search visits at most "
            f"{evidence.LEAST_READING_VISITS:,} sets (`LEAST_READING_VISITS`).",
            "",
            "| machine | median (ms) | min – max (ms) | without the search (ms) | ratio | least reading "
            "| least / verdict | searched to the end |",
            "|---|---:|---:|---:|---:|---|---:|---|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    print(bench_sections())
