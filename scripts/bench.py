"""`make bench`: measures what docs/benchmarks.md reports, each beside a reference run in the same process.

Sections: cold import of every handler (reference: `import boto3`), report intake on the local
stack (reference: a raw DynamoDB put_item against the same moto server), Ed25519 request
verification (reference: SHA-256 of the same bytes), then the proof, draw, sweeper and
concurrent-machines (scripts/bench_load.py: 20/50/100 machines at once) sections.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
# One core, as a Lambda verifying one GPU has: BLAS threads would also spin and inflate process time.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parent.parent
# The environment before any section: sections that provision moto write theirs into os.environ
# (endpoints, table names, AllowCpuBackend = false), which a child process must not inherit.
BASE_ENV = dict(os.environ)
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]  # the tests' API client and the sibling bench_* modules

import bench_capacity  # noqa: E402
import bench_draw  # noqa: E402
import bench_evidence  # noqa: E402
import bench_presence  # noqa: E402
import bench_proof  # noqa: E402
import bench_sweep  # noqa: E402

from gpuproof.local.stack import LocalStack  # noqa: E402
from gpuproof.protocol.httpsig import sign_request, verify_request  # noqa: E402
from gpuproof.protocol.keys import SigningKey  # noqa: E402
from tests.e2e.api_client import RawApi, registration  # noqa: E402


def stats(values: list[float], scale: float = 1e3) -> dict[str, float]:
    v = sorted(values)
    q = statistics.quantiles(v, n=100) if len(v) >= 2 else [v[0]] * 99
    return {
        "median": statistics.median(v) * scale,
        "min": v[0] * scale,
        "max": v[-1] * scale,
        "p99": q[98] * scale,
        "p25": q[24] * scale,
        "p75": q[74] * scale,
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


# -- cold import ---------------------------------------------------------------------------------

IMPORT_SNIPPET = """
import importlib.util, sys, time
t0 = time.perf_counter()
{body}
print(time.perf_counter() - t0)
"""


def _import_time(body: str, env: dict[str, str]) -> float:
    code = IMPORT_SNIPPET.format(body=body)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def cold_imports(repeats: int) -> str:
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for name in (
        "MACHINES",
        "CHALLENGES",
        "REPORTS",
        "REQUEST_NONCES",
        "GPU_UUIDS",
        "MEMBERS",
        "ROUNDS",
        "VERDICTS",
        "IDEMPOTENCY",
    ):
        env[f"{name}_TABLE"] = f"bench-{name.lower()}"
    env["VERIFY_QUEUE_URL"] = "https://sqs.us-east-1.amazonaws.com/123456789012/bench"
    reference = [_import_time("import boto3", env) for _ in range(repeats)]
    ref_med = statistics.median(reference)
    rows = []
    for app in sorted((ROOT / "functions").glob("*/app.py")):
        body = (
            f"spec = importlib.util.spec_from_file_location('app', {str(app)!r})\n"
            "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)"
        )
        s = stats([_import_time(body, env) for _ in range(repeats)])
        rows.append(
            f"| `{app.parent.name}` | {s['median']:.0f} | {s['min']:.0f} – {s['max']:.0f} | "
            f"{s['median'] / (ref_med * 1e3):.2f} |"
        )
    r = stats(reference)
    return "\n".join(
        [
            "## Cold import of every handler",
            "",
            f"Method: a fresh `python -c` per measurement imports `functions/<name>/app.py` (the module AWS loads "
            f"on a cold start, with the layer's packages) and times the import with `time.perf_counter`; "
            f"{repeats} runs each, interpreter start-up excluded. Reference: `import boto3` timed the same way "
            f"in the same run (median {r['median']:.0f} ms, {r['min']:.0f} – {r['max']:.0f} ms).",
            "",
            "| handler | median (ms) | min – max (ms) | ratio to `import boto3` |",
            "|---|---:|---:|---:|",
            *rows,
            "",
        ]
    )


# -- report intake --------------------------------------------------------------------------------


def report_intake(n: int) -> str:
    from tests.e2e.test_machine_api import report_for, submission

    with LocalStack(parameters={"AllowCpuBackend": "true"}) as stack:
        api = RawApi(stack.api_url)
        intake: list[float] = []
        for _ in range(n + 5):
            # A machine answers one challenge at a time: one fresh machine per timed report.
            key = SigningKey.generate()
            assert api.register(key).status == 201
            ch = api.challenge(key).body
            doc = submission(ch, report_for(key, ch))
            body = json.dumps(doc).encode()
            path = f"/machines/{key.public_hex}/reports"
            headers = {"content-type": "application/json", **sign_request(key, "POST", path, body)}
            t0 = time.perf_counter()
            r = api.session.post(stack.api_url + path, data=body, headers=headers, timeout=30)
            intake.append(time.perf_counter() - t0)
            assert r.status_code == 202, r.text
        intake = intake[5:]
        stack.drain()
        import boto3

        ddb = boto3.client("dynamodb")
        table = stack.table_name("ReportsTable")
        blob = b"x" * len(body)
        puts: list[float] = []
        for i in range(n + 5):
            item = {"machine_id": {"S": "bench"}, "challenge_id": {"S": f"c{i}"}, "body": {"B": blob}}
            t0 = time.perf_counter()
            ddb.put_item(TableName=table, Item=item)
            puts.append(time.perf_counter() - t0)
        puts = puts[5:]
        size = len(body)
    a, p = stats(intake), stats(puts)
    return "\n".join(
        [
            "## Report intake on the local stack",
            "",
            f"Method: the local embedded stack (moto server + HTTP front + the real `MachineApiFunction` handler, "
            f"verify worker polling in the background); {n} machines, one report each (after 5 warm-ups), each answering "
            f"a fresh challenge; the client times `POST /machines/{{id}}/reports` ({size} byte body) from send to "
            f"response with `time.perf_counter`. Reference in the same run: `put_item` of an item of the same size "
            f"straight into the same moto table ({n} puts after 5 warm-ups).",
            "",
            "| operation | p50 (ms) | p99 (ms) | min – max (ms) |",
            "|---|---:|---:|---:|",
            f"| report intake (signature, 3 reads, 4-item transaction, SQS send) | {a['median']:.1f} | {a['p99']:.1f} | "
            f"{a['min']:.1f} – {a['max']:.1f} |",
            f"| raw DynamoDB `put_item` (reference) | {p['median']:.1f} | {p['p99']:.1f} | {p['min']:.1f} – "
            f"{p['max']:.1f} |",
            "",
            f"Intake p50 is {a['median'] / p['median']:.1f}× a raw put: the request makes four DynamoDB calls, one SQS "
            "call and the HTTP round trip, all against moto on loopback.",
            "",
        ]
    )


# -- Ed25519 -------------------------------------------------------------------------------------


def _per_op(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def ed25519(n: int) -> str:
    import hashlib

    key = SigningKey.generate()
    body = json.dumps(registration(key)).encode()
    headers = sign_request(key, "POST", "/machines", body)
    now = time.time()
    from gpuproof.protocol.httpsig import signature_base
    from gpuproof.protocol.keys import verify

    sig = key.sign(body)
    raw = stats(_per_op(lambda: verify(key.public_hex, body, sig), n), 1e6)
    full = stats(_per_op(lambda: verify_request("POST", "/machines", headers, body, now=now), n), 1e6)
    ref = stats(_per_op(lambda: hashlib.sha256(body).digest(), n), 1e6)
    _ = signature_base
    return "\n".join(
        [
            "## Ed25519 verification",
            "",
            f"Method: {n} timed calls each (`time.perf_counter` around each call, one core), a {len(body)} byte "
            "registration body. `verify` is `cryptography`'s Ed25519 verify; the full request check is "
            "`verify_request` (parse the RFC 9421 headers, rebuild the signature base, verify, content-digest, "
            "freshness). Reference in the same process: SHA-256 of the same body.",
            "",
            "| operation | median (µs) | p25 – p75 (µs) | min – max (µs) | ratio to SHA-256 |",
            "|---|---:|---:|---:|---:|",
            *[
                f"| {name} | {s['median']:.1f} | {s['p25']:.1f} – {s['p75']:.1f} | {s['min']:.1f} – {s['max']:.1f} | "
                f"{s['median'] / ref['median']:.0f} |"
                for name, s in (
                    ("Ed25519 verify", raw),
                    ("signed request check", full),
                    ("SHA-256 (reference)", ref),
                )
            ],
            "",
        ]
    )


def load_section() -> str:
    """scripts/bench_load.py's section, run in a process of its own: its LocalStack must not meet
    the handler modules, clients and cached connections an earlier section's stack left in this
    process (they point at that stack's stopped moto server)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "load.md"
        done = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "bench_load.py"), "--section-to", str(out)],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
            env=BASE_ENV,
        )
        if done.returncode != 0:
            raise RuntimeError(f"scripts/bench_load.py failed ({done.returncode}): {done.stderr[-2000:]}")
        return out.read_text()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--intake", type=int, default=200)
    args = parser.parse_args()
    started = time.monotonic()
    sections = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`scripts/bench.py`) on {dt.date.today().isoformat()}. Machine: {machine()}. "
        "Every figure below was measured in that run; each section states its method and its reference.",
        "",
        cold_imports(args.repeats),
        report_intake(args.intake),
        ed25519(2000),
        bench_proof.bench_sections(),
        bench_capacity.capacity_section(
            bench_proof.verify_section.total_s,  # type: ignore[attr-defined]
            bench_proof.verify_section.total_one_s,  # type: ignore[attr-defined]
        ),
        bench_evidence.bench_sections(),
        bench_draw.bench_sections(),
        bench_sweep.bench_sections(),
        load_section(),
        bench_presence.bench_sections(),
    ]
    sections.append(f"\n_Total bench time: {time.monotonic() - started:.0f} s._\n")
    args.out.write_text("\n".join(sections))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
