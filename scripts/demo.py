"""`make demo`: the main job on the local embedded stack, end to end, with a readable summary.

Starts the local stack (moto + the template's resources + the real handlers), makes a new machine
key, runs THIS host's probe (`benchmark-probe submit`, CPU backend when there is no GPU) against
it, waits for the verify worker, then prints the machine's state and the stored report. Three
bot committee members then review the machine to a verdict, the publisher puts it on a local
chain (Chopsticks), and the consumer reads it back and checks the service's signature.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

# Quiet the handlers' structured logs and EMF metrics on the console: the demo prints a summary.
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
warnings.filterwarnings("ignore")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from gpuproof.cli.evidence_view import evidence_table  # noqa: E402
from gpuproof.cli.member import CommitteeClient, MemberState, run_agent  # noqa: E402
from gpuproof.local.chain import unavailable_reason  # noqa: E402
from gpuproof.local.stack import LocalStack  # noqa: E402
from gpuproof.protocol.keys import SigningKey  # noqa: E402

OWNER = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
console = Console()


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "benchmark_probe", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def ops(*args: str) -> Any:
    """`gpuproof-ops ... --json`, as an operator runs it; its JSON answer."""
    cmd = [sys.executable, "-m", "gpuproof.cli.ops", *args, "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"gpuproof-ops {args[0]} failed: {done.stdout} {done.stderr}")
    return json.loads(done.stdout)


def get(stack: LocalStack, path: str) -> Any:
    import requests

    return requests.get(stack.api_url + path, timeout=30).json()


def show_report(stack: LocalStack, machine_id: str, challenge_id: str) -> None:
    stored = get(stack, f"/machines/{machine_id}/reports/{challenge_id}")
    report = stored["signed_report"]["report"]
    inv = report["inventory"]
    host = inv["host"]
    t = Table(title="stored report (byte-exact, signature re-verifiable)", show_header=False)
    t.add_row("report sha256", stored["report_sha256"])
    t.add_row("probe", f"{report['probe_version']} backend={inv['backend']}")
    t.add_row("GPUs", str(len(inv["gpus"])) + (f" ({inv['gpus'][0]['name']})" if inv["gpus"] else ""))
    t.add_row(
        "host", f"{host['cpu_model']} · {host['cpu_cores']} cores · {host['ram_bytes'] / 2**30:.0f} GiB RAM"
    )
    for note in inv.get("notes", []):
        t.add_row("note", note)
    proof = report.get("proof") or {}
    opened = sum(len(o["openings"]) for o in proof.get("openings", []))
    t.add_row("proof", f"{len(proof.get('openings', []))} device transcript(s), {opened} rows opened")
    console.print(t)
    b = Table(title="micro-benchmarks (self-reported, each verified exactly)")
    for col in ("name", "device", "median", "min", "max", "unit", "verified"):
        b.add_column(col)
    for r in report["benchmarks"]:
        figures = [f"{r[k]:.4g}" for k in ("median", "min", "max")]
        b.add_row(r["name"], r["device"], *figures, r["unit"], "yes" if r["verified"] else "NO")
    console.print(b)
    v = stored["verification"]
    c = Table(title=f"automated verification: {'PASSED' if v['passed'] else 'REFUSED'}")
    for col in ("check", "status", "detail"):
        c.add_column(col)
    for check in v["checks"]:
        detail = "; ".join(r["message"] for r in check["reasons"]) or _detail(check)
        c.add_row(check["name"], check["status"] + (" (shadow)" if check["shadow"] else ""), detail)
    console.print(c)
    if v.get("evidence"):
        # Fail closed: what is not proven scores nothing (docs/scoring.md). This host has no GPU and
        # the local stack's capacity phase proves test-size RAM only, so its calc_point is 0.
        console.print(evidence_table(v["evidence"]))


def _detail(check: dict[str, Any]) -> str:
    d = check.get("details", {})
    if check["name"] == "proof_of_throughput":
        return f"service-timed {d.get('elapsed_s', 0):.2f} s from challenge to commitment"
    return d.get("note", "")


FINAL = {"confirmed", "refused", "no_consensus", "published"}


def start_bots(
    stack: LocalStack, tmp: Path, stop: threading.Event, operator_key: Path
) -> list[CommitteeClient]:
    """Three committee members, each a bot that inspects honestly, commits and reveals; each
    admitted by the operator (`gpuproof-ops admit`), as no unadmitted member is ever drawn."""
    members = []
    for i in range(3):
        client = CommitteeClient(stack.api_url, SigningKey.generate())
        client.register([])
        ops("admit", client.account, "--api", stack.api_url, "--key", str(operator_key))
        kwargs = {"interval_s": 0.3, "allow_cpu_backend": True, "stop": stop}
        threading.Thread(
            target=run_agent, args=(client, MemberState(tmp / f"member{i}.json")), kwargs=kwargs, daemon=True
        ).start()
        members.append(client)
    return members


def show_round(member: CommitteeClient, machine_id: str, round_no: int) -> None:
    doc = member.round(machine_id, round_no)
    t = Table(title=f"committee round {round_no}: {doc['result']}", show_header=False)
    t.add_row(
        "beacon",
        f"value #{doc['beacon_index']} of the chain whose tip {doc['beacon_tip'][:16]}… was published",
    )
    t.add_row("pool", f"{doc['pool_size']} eligible members (digest {doc['pool_digest'][:16]}…)")
    tally = doc.get("tally") or {}
    votes = {a: vote for vote in ("agreeing", "dissenting", "absent") for a in tally.get(vote, [])}
    for account in doc["members"]:
        revealed = doc["reveals"].get(account, {}).get("info", {})
        t.add_row(
            f"member {account[:12]}…",
            f"committed {'yes' if account in doc['commits'] else 'no'}; "
            f"revealed calc_point {revealed.get('calc_point', '-')}; vote {votes.get(account, '-')}",
        )
    expected = doc.get("expected_info") or {}
    t.add_row("service's own calc_point", f"{expected.get('calc_point', '-')} (point × 100, DBC's formula)")
    t.add_row(
        "tally", f"{tally.get('reason', '-')}; matches the service's view: {tally.get('matches_expected')}"
    )
    console.print(t)


def show_chain(stack: LocalStack, machine_id: str) -> None:
    """Read the verdict back from the chain as a pallet would: decode, check the signature and root."""
    import boto3

    from gpuproof.chain.adapter import ChainSettings, SubstrateChain
    from gpuproof.chain.consumer import scan_chain
    from gpuproof.chain.signer import public_key_from_der

    kms = boto3.client("kms", endpoint_url=stack.endpoint_url, region_name="us-east-1")
    der = bytes(kms.get_public_key(KeyId=stack.environment["SERVICE_KEY_ID"])["PublicKey"])
    assert stack.chain is not None
    reader = SubstrateChain(ChainSettings(node_url=stack.chain.url), "//reader")
    try:
        for batch in scan_chain(reader, {public_key_from_der(der)}):
            for v in batch.verdicts:
                if v["upload_info"]["machine_id"] == machine_id.encode():
                    t = Table(title="read back from the chain by the consumer", show_header=False)
                    t.add_row("block", f"#{batch.block_number} {batch.block_hash}")
                    checks = "OK" if batch.ok else str(batch.problems)
                    t.add_row("checks", f"service signature and Merkle root: {checks}")
                    t.add_row("verdict", f"{v['result']} · calc_point {v['upload_info']['calc_point']}")
                    console.print(t)
                    return
    finally:
        reader.close()
    console.print("[red]verdict not found on chain[/red]")


def main() -> int:
    t0 = time.monotonic()
    no_chain = unavailable_reason()
    if no_chain:
        console.print(f"[yellow]no local chain ({no_chain}): verdicts stay in VerdictsTable[/yellow]")
    with tempfile.TemporaryDirectory() as tmp:
        operator_key = Path(tmp) / "operator.key"
        operator = ops("keygen", "--key", str(operator_key))["operator_key"]
        params = {"AllowCpuBackend": "true", "CommitteeOperatorKey": operator}
        return run_demo(Path(tmp), params, operator_key, no_chain, t0)


def run_demo(tmp: Path, params: dict[str, str], operator_key: Path, no_chain: str | None, t0: float) -> int:
    with LocalStack(parameters=params, schedule_interval_s=1, chain=no_chain is None) as stack:
        console.rule("gpuproof demo: the local embedded stack")
        console.print(
            f"API  {stack.api_url}\nmoto {stack.endpoint_url}  (tables, queues and key from template.yaml)"
        )
        if stack.chain is not None:
            console.print(f"chain {stack.chain.url}  (Chopsticks, Rococo Asset Hub genesis)")
        stop = threading.Event()
        members = start_bots(stack, tmp, stop, operator_key)
        console.print(
            f"3 committee bots registered and admitted by the operator key: "
            f"{', '.join(m.account[:12] + '…' for m in members)}"
        )
        key = Path(tmp) / "machine.key"
        keygen = probe("keygen", "--key", str(key), "--json")
        if keygen.returncode != 0:
            console.print(keygen.stdout, keygen.stderr)
            return 1
        console.print(f"new machine key {key} (mode {oct(key.stat().st_mode & 0o777)})")
        console.rule("benchmark-probe submit (this host)")
        args = ["--api", stack.api_url, "--owner", OWNER, "--region", "europe", "--key", str(key)]
        run = probe("submit", *args, "--quick", "--yes", "--json")  # --yes: a CPU-only host goes on
        if run.returncode != 0:
            console.print(run.stdout, run.stderr)
            return 1
        out = json.loads(run.stdout)
        machine_id, challenge_id = out["machine_id"], out["challenge_id"]
        console.print(
            f"machine {machine_id}\n{out['registration']}; challenge {challenge_id}; report accepted"
        )
        stack.drain()
        status = get(stack, f"/machines/{machine_id}")
        console.rule("the machine's state")
        m = status["machine"]
        console.print(f"state: [bold]{m['state']}[/bold]  owner {m['owner']}  region {m['region']}")
        for r in m["state_reasons"]:
            console.print(f"  reason {r['code']}: {r['message']}")
        show_report(stack, machine_id, challenge_id)
        console.rule("the committee: beacon draw, commit, reveal, tally")
        deadline = time.monotonic() + 90
        while m["state"] not in FINAL and time.monotonic() < deadline:
            time.sleep(0.5)
            m = get(stack, f"/machines/{machine_id}")["machine"]
        stop.set()
        console.print(f"final state: [bold]{m['state']}[/bold]")
        if m["state"] in FINAL and m["state"] != "refused":
            show_round(members[0], machine_id, 1)
        if stack.chain is not None:
            console.rule("the verdict on chain")
            deadline = time.monotonic() + 60
            while m["state"] != "published" and time.monotonic() < deadline:
                time.sleep(0.5)
                m = get(stack, f"/machines/{machine_id}")["machine"]
            console.print(f"machine state: [bold]{m['state']}[/bold]")
            show_chain(stack, machine_id)
        console.rule("the web console")
        console.print(
            f"network  {stack.api_url}/\n"
            f"machine  {stack.api_url}/console/machines/{machine_id}\n"
            f"member   {stack.api_url}/console/members/{members[0].account}",
            soft_wrap=True,  # whole links, to copy or click
        )
        console.print(f"demo finished in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
