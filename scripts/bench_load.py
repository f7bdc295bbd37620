"""Concurrent machines on the local stack (issue 14 §2, make bench): 20, 50 and 100 honest machines
at once, each doing what `benchmark-probe submit` does (register, challenge, CPU proof, commitment,
transcript upload, signed report, status); per route p50/p99 client-side, as a ratio to a raw
DynamoDB put_item timed in the same run against the same moto server, and the deadline pass rate.

`python scripts/bench_load.py` runs this section alone and replaces it in docs/benchmarks.md.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from benchmark_probe.client import ServiceClient  # noqa: E402
from benchmark_probe.integrity import collect_integrity  # noqa: E402
from benchmark_probe.inventory import collect_inventory  # noqa: E402
from benchmark_probe.proof import challenge_params, deliver, prove_and_receipt  # noqa: E402
from benchmark_probe.report import Challenge, build_report  # noqa: E402
from benchmark_probe.submit import challenge_request_for, register, registration_for  # noqa: E402
from gpuproof.local.stack import LocalStack  # noqa: E402
from gpuproof.protocol.keys import SigningKey  # noqa: E402
from gpuproof.protocol.machine import Region  # noqa: E402
from gpuproof.protocol.proof import NumpyExecutor  # noqa: E402

OWNER = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
LEVELS = (20, 50, 100)
WAIT_S = 600.0
CPU_DEADLINE_S = "120"  # the test session's CpuProofDeadlineSeconds (docs/protocol.md §8)
SECTION = "## Concurrent machines on the local stack"
_HEX = re.compile(r"/[0-9a-f]{32,}")


class TimedClient(ServiceClient):
    """A probe client that times each request by route (path ids replaced by {id})."""

    def __init__(self, *args: Any, times: dict[str, list[float]], lock: threading.Lock, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._times, self._lock = times, lock

    def request(self, method: str, path: str, body: Any = None, retry: Any = None) -> Any:
        t0 = time.perf_counter()
        try:
            return super().request(method, path, body, retry)
        finally:
            elapsed = time.perf_counter() - t0
            with self._lock:
                self._times.setdefault(f"{method} {_HEX.sub('/{id}', path)}", []).append(elapsed)


def _quantile(values: list[float], q: int) -> float:
    v = sorted(values)
    return statistics.quantiles(v, n=100)[q - 1] if len(v) >= 2 else v[0]


def run_level(stack: LocalStack, machines: int) -> dict[str, Any]:
    inventory, integrity = collect_inventory(), collect_integrity()
    request = challenge_request_for(inventory).model_dump(mode="json")
    times: dict[str, list[float]] = {}
    lock = threading.Lock()
    start = threading.Barrier(machines)
    done: list[str] = []
    failures: list[str] = []

    def machine() -> None:
        key = SigningKey.generate()
        client = TimedClient(stack.api_url, key, timeout_s=WAIT_S, times=times, lock=lock)
        try:
            start.wait(WAIT_S)
            register(client, registration_for(key, OWNER, Region.europe))
            challenge = Challenge.from_json(client.create_challenge(key.public_hex, request))
            answered = prove_and_receipt(client, key, challenge, NumpyExecutor())
            assert answered is not None
            doc = deliver(*answered, challenge_params(challenge))
            signed = build_report(key, challenge, inventory, [], integrity, doc)
            client.submit_report(key.public_hex, challenge.challenge_id, signed.model_dump(mode="json"))
            with lock:
                done.append(key.public_hex)
        except Exception as exc:
            with lock:
                failures.append(repr(exc)[:200])

    t0 = time.perf_counter()
    threads = [threading.Thread(target=machine, daemon=True) for _ in range(machines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    stack.drain(timeout=WAIT_S)
    wall = time.perf_counter() - t0
    reader = TimedClient(stack.api_url, SigningKey.generate(), timeout_s=WAIT_S, times=times, lock=lock)
    passed, elapsed = 0, []
    for machine_id in done:
        (report,) = reader.machine(machine_id)["reports"]
        proof = {c["name"]: c for c in report["verification"]["checks"]}["proof_of_throughput"]
        passed += proof["status"] == "pass"
        if proof["details"].get("elapsed_s") is not None:
            elapsed.append(float(proof["details"]["elapsed_s"]))
    # The reference: raw put_item into the same moto server, right after the level, same process.
    import boto3

    ddb = boto3.client("dynamodb")
    table = stack.table_name("ReportsTable")
    puts = []
    for i in range(105):
        item = {
            "machine_id": {"S": "bench-load"},
            "challenge_id": {"S": f"{machines}-{i}"},
            "body": {"B": b"x" * 1000},
        }
        p0 = time.perf_counter()
        ddb.put_item(TableName=table, Item=item)
        puts.append(time.perf_counter() - p0)
    return {
        "machines": machines,
        "times": times,
        "put_p50": statistics.median(puts[5:]),
        "passed": passed,
        "failures": failures,
        "elapsed": sorted(elapsed),
        "wall": wall,
    }


def bench_sections(levels: tuple[int, ...] = LEVELS, note: str = "") -> str:
    results = []
    with LocalStack(
        parameters={
            "AllowCpuBackend": "true",
            "ChallengeCooldownSeconds": "0",
            "CpuProofDeadlineSeconds": CPU_DEADLINE_S,
        }
    ) as stack:
        for n in levels:
            results.append(run_level(stack, n))
    routes = sorted({r for res in results for r in res["times"]})
    lines = [
        SECTION,
        "",
        *([note, ""] if note else []),
        "Method: `scripts/bench_load.py` — one local stack (moto server, HTTP front, the real handlers; "
        f"AllowCpuBackend=true, CpuProofDeadlineSeconds={CPU_DEADLINE_S} as in the tests); for each level, that many "
        "machines start together (a barrier), each a thread doing what `benchmark-probe submit` does: register, "
        "challenge, CPU proof (NumpyExecutor, 128 × 128, 8 steps), commitment, transcript upload (presigned POST to "
        "moto S3), signed report; then the stack is drained and each machine's status read. Latencies are client-side "
        "per request (`time.perf_counter`, send to response, retries included), p50/p99 per route, each also as a "
        "ratio to the p50 of a raw DynamoDB `put_item` (1 KB item) into the same moto server, 100 puts right after "
        "the level. The machines, the stack and moto share one Python process and the host's cores, so the "
        "latencies are the host's under that load, not Lambda's.",
        "",
        "| machines | wall (s) | deadline pass rate | service-timed proof p50 / max (s) | raw put p50 (ms) | failed flows |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        el = res["elapsed"]
        lines.append(
            f"| {res['machines']} | {res['wall']:.0f} | {res['passed']}/{res['machines']} "
            f"({100 * res['passed'] / res['machines']:.0f}%) | "
            + (f"{statistics.median(el):.2f} / {el[-1]:.2f}" if el else "—")
            + f" | {res['put_p50'] * 1e3:.1f} | {len(res['failures'])} |"
        )
    lines += [
        "",
        "| route | "
        + " | ".join(f"{r['machines']}: p50 ms (× put) | p99 ms (× put)" for r in results)
        + " |",
    ]
    lines.append("|---|" + "---:|---:|" * len(results))
    for route in routes:
        cells = []
        for res in results:
            v = res["times"].get(route)
            if not v:
                cells += ["—", "—"]
                continue
            put = res["put_p50"]
            p50, p99 = statistics.median(v), _quantile(v, 99)
            cells += [f"{p50 * 1e3:.0f} ({p50 / put:.0f}×)", f"{p99 * 1e3:.0f} ({p99 / put:.0f}×)"]
        lines.append(f"| `{route}` | " + " | ".join(cells) + " |")
    failed = {res["machines"]: res["failures"] for res in results if res["failures"]}
    if failed:  # a flow that raised is a fault of the stack or the bench, not a figure: stop here
        raise RuntimeError(
            "flows failed: "
            + "; ".join(f"{n} machines: {len(f)} failed, e.g. {f[0]}" for n, f in failed.items())
        )
    lines.append("")
    return "\n".join(lines)


def replace_section(doc: str, section: str) -> str:
    """`section` in place of the one with its title in `doc` (up to the next `## ` title), or appended."""
    start = doc.find(SECTION)
    if start < 0:
        tail = doc.rfind("\n_Total bench time")
        return (doc[:tail] + "\n" + section + doc[tail:]) if tail >= 0 else doc + "\n" + section
    end = doc.find("\n## ", start + len(SECTION))
    end = doc.rfind("\n_Total bench time") if end < 0 else end
    return doc[:start] + section + (doc[end:] if end >= 0 else "")


def main() -> int:
    import datetime as dt

    if len(sys.argv) == 3 and sys.argv[1] == "--section-to":  # make bench: the section alone, in a
        # process of its own, into a file (stdout also carries the handlers' EMF metric lines)
        Path(sys.argv[2]).write_text(bench_sections())
        return 0

    note = (
        f"_This section alone was run (`python scripts/bench_load.py`, {dt.date.today().isoformat()}, with other "
        f"work sharing the 2 cores: load average {os.getloadavg()[0]:.1f} at its start) and pasted here; the rest of "
        "this file is from the last full `make bench`, which runs it too._"
    )
    section = bench_sections(note=note)
    out = ROOT / "docs" / "benchmarks.md"
    out.write_text(replace_section(out.read_text(), section))
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
