"""Benchmark of one presence check's service side (docs/benchmarks.md, "Presence checks").

On moto built from template.yaml, with the adapters and use cases the functions run
(DynamoMachineStore, logic.liveness / logic.presence / logic.machines): a scored CPU-claim machine
(the local stack's claim: n = d = 128, T = 8, m = 140) goes through N checks. For each check the
service's steps are timed (process CPU time of this process; moto runs in its own process, so its
time is not counted) and their DynamoDB requests counted on the wire (botocore hooks): the sweeper
opening the check, the heartbeat answer that announces it, the nonce fetch, the commitment (timed,
pairs drawn), the openings (verified with the v2 verifier) and the sweeper's re-arm. The host's
prover work between them is not the service's and is not counted. Not counted either: the API
edge's RFC 9421 check (one Ed25519 verification per request, docs/benchmarks.md "Ed25519
verification") and Lambda/API Gateway overheads (priced per request below).

Run alone: `python scripts/bench_presence.py [--checks 20]` prints the section.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from bench_sweep import Wire, counting, moto_version

STEPS = ("sweeper: open", "heartbeat: announce", "fetch nonce", "commitment", "openings", "sweeper: re-arm")


def _clients(store: Any) -> list[Any]:
    from gpuproof.adapters.tables import GpuUuidModel, MachineModel, RequestNonceModel, VerdictModel

    found = [store._connection.client]
    for model in (MachineModel, RequestNonceModel, VerdictModel, GpuUuidModel):
        found.append(model._get_connection().connection.client)
    return found


def _step(fn: Callable[[], Any], clients: list[Any]) -> tuple[Any, float, Wire]:
    with counting(clients) as wire:
        t0 = time.process_time()
        result = fn()
        cpu = time.process_time() - t0
    return result, cpu, wire


def measure(checks: int) -> str:
    from gpuproof.local.moto_server import MotoServer, aws_environment
    from gpuproof.local.template import load_template, provision

    moto = MotoServer().start()
    try:
        os.environ.update(aws_environment(moto.endpoint_url))
        resources = provision(load_template(), moto.endpoint_url, stack_name="gpuproof-bench")
        os.environ.update(resources.merged_environment())
        return _measure(checks)
    finally:
        moto.stop()


def _measure(checks: int) -> str:
    from gpuproof.adapters.clock import SystemClock
    from gpuproof.adapters.dynamo import DynamoMachineStore, mark_machine_published, scored_of
    from gpuproof.adapters.tables import MachineModel
    from gpuproof.claim import Claim, challenge_params
    from gpuproof.config import LivenessPolicy, PresencePolicy, Settings
    from gpuproof.logic import presence
    from gpuproof.logic.liveness import sweep_liveness
    from gpuproof.logic.machines import Services, record_heartbeat
    from gpuproof.logic.records import Machine
    from gpuproof.logic.states import MachineState
    from gpuproof.protocol.httpsig import SignedRequest
    from gpuproof.protocol.keys import SigningKey
    from gpuproof.protocol.proof import (
        GpuPairs,
        NumpyExecutor,
        ProofParams,
        Prover,
        SignedCommitment,
        ThroughputProof,
    )
    from gpuproof.protocol.telemetry import Heartbeat

    settings = Settings.from_env()
    store = DynamoMachineStore(settings)
    policy = PresencePolicy(6, 3, 0, 5.0, 120.0, enforce=True)
    svc = Services(
        store=store,
        queue=None,
        clock=SystemClock(),
        challenge_ttl_s=900,
        presence=policy,  # type: ignore[arg-type]
    )
    key = SigningKey.generate()
    mid = key.public_hex
    now = time.time()
    store.register(
        Machine(
            mid,
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
            "europe",
            MachineState.confirmed,
            now,
            now,
        ),
        SignedRequest(keyid=mid, created=int(now), nonce="bench-presence-register"),
    )
    info = {"machine_id": mid, "gpu_type": "cpu", "gpu_num": 0, "calc_point": 1, "is_support": True}
    MachineModel(mid).update(actions=[MachineModel.claim.set(Claim(None, 0).as_dict())])
    mark_machine_published(
        settings.machines_table, settings.region, mid, "confirmed", now, scored_of(f"{mid}:1", 1, info)
    )
    clients = _clients(store)
    live = LivenessPolicy(900, 86400)
    n = [0]

    def signed() -> SignedRequest:
        n[0] += 1
        return SignedRequest(keyid=mid, created=int(time.time()), nonce=f"bench-presence-{n[0]:06d}")

    def due_now() -> None:  # the check's Poisson time is now (this bench does not wait hours)
        m = store.get_machine(mid)
        assert m is not None
        p = dict(m.presence or {})
        p["next_at"] = time.time()
        store.set_liveness(m, due_at=time.time(), presence=p)

    sweep = lambda: sweep_liveness(store, SystemClock(), live, presence=policy)  # noqa: E731
    sweep()  # the first look schedules the first check
    cpu: dict[str, list[float]] = {s: [] for s in STEPS}
    wires: dict[str, list[Wire]] = {s: [] for s in STEPS}
    executor = NumpyExecutor()
    for _ in range(checks):
        due_now()
        _, c, w = _step(sweep, clients)
        cpu[STEPS[0]].append(c), wires[STEPS[0]].append(w)
        beat = Heartbeat(machine_id=mid, sent_at=int(time.time()), backend="cpu", host={})
        ack, c, w = _step(lambda b=beat: record_heartbeat(svc, signed(), mid, b), clients)
        cpu[STEPS[1]].append(c), wires[STEPS[1]].append(w)
        check_id = ack.presence["check_id"]
        check, c, w = _step(lambda k=check_id: presence.fetch_presence(svc, signed(), mid, k, None), clients)
        cpu[STEPS[2]].append(c), wires[STEPS[2]].append(w)
        params = [ProofParams.model_validate(p) for p in check["params"]]
        prover = Prover(bytes.fromhex(check["nonce"]), mid, check_id, params, executor)
        sc = SignedCommitment.sign(prover.run(), key)
        receipt, c, w = _step(
            lambda k=check_id, s=sc: presence.presence_commitment(svc, signed(), mid, k, s, None), clients
        )
        cpu[STEPS[3]].append(c), wires[STEPS[3]].append(w)
        pairs = [GpuPairs.model_validate(p) for p in receipt["pairs"]]
        proof = ThroughputProof(
            commitment=sc.commitment, signature=sc.signature, pairs=pairs, openings=prover.open(pairs)
        )
        result, c, w = _step(
            lambda k=check_id, pr=proof: presence.presence_proof(svc, signed(), mid, k, pr), clients
        )
        assert result["result"] == "passed", result
        cpu[STEPS[4]].append(c), wires[STEPS[4]].append(w)
        m = store.get_machine(mid)
        assert m is not None
        store.set_liveness(m, due_at=time.time())  # the re-arm happens when the open check's time is due
        _, c, w = _step(sweep, clients)
        cpu[STEPS[5]].append(c), wires[STEPS[5]].append(w)
    medians = {k: statistics.median(v) for k, v in cpu.items()}
    return (
        _render(checks, cpu, wires, challenge_params(Claim(None, 0))["proof"][0])
        + _sizes(mid)
        + "\n"
        + _cost(medians)
    )


def _sizes(mid: str) -> str:
    """The machine item's size with an open check, measured for this CPU claim and computed for
    an 8 x H100 claim (its proof parameters are what the open check stores)."""
    import json

    import boto3
    from bench_sweep import item_size

    from gpuproof.claim import Claim, challenge_params
    from gpuproof.reference import lookup

    table = os.environ["MACHINES_TABLE"]
    raw = boto3.client("dynamodb").get_item(TableName=table, Key={"machine_id": {"S": mid}})["Item"]
    cpu_item = item_size(raw)
    ref = lookup("H100 SXM5 80GB")
    assert ref is not None
    h100 = len(json.dumps(challenge_params(Claim(ref.model, 8))["proof"]))
    cpu_params = len(json.dumps(challenge_params(Claim(None, 0))["proof"]))
    return (
        f"Machine item after the checks (no check open): {cpu_item:,} bytes (CPU claim, measured). "
        f"An open check stores the claim's proof parameters: {cpu_params:,} bytes for the CPU claim, "
        f"{h100:,} bytes for 8 x H100 SXM5 (computed from `challenge_params`), so an 8-GPU machine's "
        "item stays under 4 KB plus its heartbeat telemetry.\n"
    )


def _render(
    checks: int, cpu: dict[str, list[float]], wires: dict[str, list[Any]], params: dict[str, Any]
) -> str:
    rows = []
    total_cpu = total_req = total_writes = total_units = 0.0
    for s in STEPS:
        med = statistics.median(cpu[s]) * 1000
        req = statistics.fmean(w.requests for w in wires[s])
        writes = statistics.fmean(w.writes for w in wires[s])
        units = statistics.fmean(w.units for w in wires[s])
        total_cpu += med
        total_req += req
        total_writes += writes
        total_units += units
        rows.append(f"| {s} | {med:.1f} | {req:.1f} | {writes:.1f} | {units:.1f} |")
    return "\n".join(
        [
            "## Presence checks: one check's service side",
            "",
            f"Method: `python scripts/bench_presence.py --checks {checks}` — moto {moto_version()} built from "
            "template.yaml; the use cases and adapters the functions run, called in-process (no HTTP, no "
            "Lambda runtime); a scored CPU-claim machine "
            f"(n = {params['n']}, d = {params['d']}, T = {params['steps']}, m = {params['checks']}) answers "
            f"{checks} checks; each step's process CPU time (median; moto's own time is in its process "
            "and not counted) and its DynamoDB requests on the wire (mean; writes = transactions and "
            "updates; read units by DynamoDB's rule for the reads). The prover's work is the host's and "
            f"is not counted. Machine: {platform.machine()}, {os.cpu_count()} logical cores, Python "
            f"{platform.python_version()}, shared with other work.",
            "",
            "| step | CPU (ms, median) | DynamoDB requests | of them writes | read units |",
            "|---|---:|---:|---:|---:|",
            *rows,
            f"| **one check** | **{total_cpu:.1f}** | **{total_req:.1f}** | **{total_writes:.1f}** | "
            f"**{total_units:.1f}** |",
            "",
        ]
    )


# List prices, us-east-1, on-demand (AWS pricing pages as of 2025; check before relying on them).
HTTP_API_PER_M = 1.00
LAMBDA_PER_M = 0.20
LAMBDA_ARM_GB_S = 0.0000133334
DDB_WRU_PER_M = 0.625
DDB_RRU_PER_M = 0.125
# Lambda gives one vCPU at 1769 MB; the functions run at 512 MB: billed time ~ CPU time / 0.289.
VCPU_AT_512 = 512 / 1769
# docs/benchmarks.md "Proof of throughput (v2): service CPU time to verify one GPU" (H100 size).
VERIFY_CPU_PER_GPU_S = 0.133
MACHINES, CHECKS_PER_DAY, GPUS, OFFLINE_AFTER_S = 20_000, 6, 8, 1800
# An 8-GPU machine's item: 1.1 KB measured (CPU claim) + 1.3 KB of H100 x 8 proof parameters while
# a check is open + ~2 KB of heartbeat telemetry for 8 GPUs (estimate): <= 5 KB, 5 write units.
ITEM_WRU, ITEM_RRU = 5, 2


def _cost(cpu: dict[str, float]) -> str:
    checks = MACHINES * CHECKS_PER_DAY
    api_cpu = cpu["fetch nonce"] + cpu["commitment"] + cpu["openings"] + GPUS * VERIFY_CPU_PER_GPU_S
    sweep_cpu = cpu["sweeper: open"] + cpu["sweeper: re-arm"]
    gb_s = (api_cpu + sweep_cpu) / VCPU_AT_512 * 0.5
    # writes: sweeper open and re-arm (update + ByLivenessDue entry), three transactions of the
    # machine item and the request nonce (transactions bill twice); reads: consistent machine
    # reads, the nonce lookups, the two index queries.
    wru = 2 * (ITEM_WRU + 1) + 3 * 2 * (ITEM_WRU + 1)
    rru = 5 * ITEM_RRU + 3 * 1 + 2 * 0.5
    presence = {
        "HTTP API requests": (3 * checks, 3 * checks / 1e6 * HTTP_API_PER_M),
        "Lambda requests": (3 * checks, 3 * checks / 1e6 * LAMBDA_PER_M),
        "Lambda GB-s": (gb_s * checks, gb_s * checks * LAMBDA_ARM_GB_S),
        "DynamoDB write units": (wru * checks, wru * checks / 1e6 * DDB_WRU_PER_M),
        "DynamoDB read units": (rru * checks, rru * checks / 1e6 * DDB_RRU_PER_M),
    }
    looks = MACHINES * 86400 / OFFLINE_AFTER_S
    look_gb_s = cpu["sweeper: re-arm"] / VCPU_AT_512 * 0.5
    liveness = {
        "Lambda GB-s": (look_gb_s * looks, look_gb_s * looks * LAMBDA_ARM_GB_S),
        "DynamoDB write units": ((ITEM_WRU + 1) * looks, (ITEM_WRU + 1) * looks / 1e6 * DDB_WRU_PER_M),
        "DynamoDB read units": ((ITEM_RRU + 0.5) * looks, (ITEM_RRU + 0.5) * looks / 1e6 * DDB_RRU_PER_M),
    }
    lines = [
        "### Presence and liveness at DBC scale (estimate from the figures above)",
        "",
        f"{MACHINES:,} machines of {GPUS} x H100, {CHECKS_PER_DAY} presence checks each a day ({checks:,} "
        f"checks), the liveness watch at OfflineAfterSeconds = {OFFLINE_AFTER_S} s ({looks:,.0f} sweeper "
        "looks a day). Method: per check 3 API requests and 3 MachineApiFunction invocations (fetch, "
        "commitment, openings; the announcing heartbeat is sent anyway and not counted; the sweeper runs "
        "every minute anyway); Lambda time = the CPU measured above for those steps plus the openings' "
        f"verification at H100 size ({VERIFY_CPU_PER_GPU_S * 1000:.0f} ms a GPU, measured in the proof "
        f"section) x {GPUS}, divided by the {VCPU_AT_512:.3f} vCPU a 512 MB function gets, x 0.5 GB; "
        f"DynamoDB units by its rules for an item of <= 5 KB ({wru} write units and {rru:g} read units "
        "a check: two updates with their index entry, three transactions of the machine item and the "
        "nonce, which bill twice; consistent reads). List prices, us-east-1, on-demand (HTTP API "
        f"${HTTP_API_PER_M:.2f}/M requests, Lambda ${LAMBDA_PER_M:.2f}/M requests and "
        f"${LAMBDA_ARM_GB_S:.10f}/GB-s arm64, DynamoDB ${DDB_WRU_PER_M}/M write and ${DDB_RRU_PER_M}/M read "
        "units). An estimate: the CPU was measured on this x86 host, not on Lambda's Graviton.",
        "",
        "| item | per day | $ per day |",
        "|---|---:|---:|",
    ]
    total = 0.0
    for title, block in (("presence", presence), ("liveness watch", liveness)):
        for name, (amount, dollars) in block.items():
            lines.append(f"| {title}: {name} | {amount:,.0f} | {dollars:.2f} |")
            total += dollars
    lines += [f"| **total** | | **{total:.2f}** |", ""]
    return "\n".join(lines)


def bench_sections(checks: int = 20) -> str:
    return measure(checks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=20)
    args = parser.parse_args()
    print(bench_sections(args.checks))


if __name__ == "__main__":
    main()
