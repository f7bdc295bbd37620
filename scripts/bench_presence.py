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

STEPS = (
    "heartbeat: no check announced",
    "heartbeat: announce",
    "fetch nonce",
    "commitment",
    "openings",
    "sweeper look: nothing to count",
    "sweeper look: after the wave",
)
# Sent or made anyway (a heartbeat a minute, a look per OfflineAfterSeconds): what a check adds to
# them is the difference from their baseline row.
ANYWAY = {
    "heartbeat: announce": "heartbeat: no check announced",
    "sweeper look: after the wave": "sweeper look: nothing to count",
}


def _clients(store: Any) -> list[Any]:
    from gpuproof.adapters.tables import (
        GpuUuidModel,
        HeartbeatModel,
        MachineModel,
        RequestNonceModel,
        VerdictModel,
    )
    from gpuproof.adapters.waves import waves_models

    found = [store._connection.client]
    for model in (
        MachineModel,
        RequestNonceModel,
        VerdictModel,
        GpuUuidModel,
        HeartbeatModel,
        *waves_models(),  # the waves store's own model (one per table), made with the services
    ):
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
    from gpuproof.local.stack import drop_cached_connections
    from gpuproof.local.template import load_template, provision

    moto = MotoServer().start()
    try:
        os.environ.update(aws_environment(moto.endpoint_url))
        resources = provision(load_template(), moto.endpoint_url, stack_name="gpuproof-bench")
        os.environ.update(resources.merged_environment())
        drop_cached_connections()  # an earlier section's stack had the same table names on another port
        return _measure(checks)
    finally:
        moto.stop()


def _measure(checks: int) -> str:
    from gpuproof.adapters.clock import SystemClock
    from gpuproof.adapters.dynamo import DynamoMachineStore, mark_machine_published, scored_of
    from gpuproof.adapters.tables import MachineModel
    from gpuproof.adapters.waves import DynamoWaveStore
    from gpuproof.claim import Claim, challenge_params
    from gpuproof.config import LivenessPolicy, PresencePolicy, Settings
    from gpuproof.logic import presence
    from gpuproof.logic.liveness import _look_at, sweep_liveness
    from gpuproof.logic.machines import Services, record_heartbeat
    from gpuproof.logic.records import Machine
    from gpuproof.logic.states import MachineState
    from gpuproof.logic.waves import Wave, WaveSchedule, ensure_waves
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
    # Announced 1 s ahead, no spread: the bench puts each wave at the instant it measures.
    policy = PresencePolicy(6, 3, 1, 5.0, 120.0, enforce=True, spread_s=0.0)
    waves = DynamoWaveStore(os.environ["ROUNDS_TABLE"], settings.region, cache_s=policy.cache_s)
    svc = Services(
        store=store,
        queue=None,  # type: ignore[arg-type]
        clock=SystemClock(),
        challenge_ttl_s=900,
        presence=policy,
        waves=waves,
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

    sweep = lambda: sweep_liveness(store, SystemClock(), live, presence=policy)  # noqa: E731
    sweep()  # the first look: watched from now on (waves opening lead_s from now check it)
    time.sleep(policy.lead_s + 0.01)
    cpu: dict[str, list[float]] = {s: [] for s in STEPS}
    wires: dict[str, list[Wire]] = {s: [] for s in STEPS}
    executor = NumpyExecutor()
    drawn: list[Wave] = []

    def one_look() -> Any:
        # A machine's liveness look as the tick makes it for each machine due: read the machine,
        # count its checks of the waves since its last look, re-arm (one per OfflineAfterSeconds).
        m = store.get_machine(mid)
        assert m is not None
        return _look_at(store, m, time.time(), live, policy, waves.waves(time.time()))

    def record(step: str, c: float, w: Wire) -> None:
        cpu[step].append(c)
        wires[step].append(w)

    for i in range(checks):
        quiet = Heartbeat(machine_id=mid, sent_at=int(time.time()), backend="cpu", host={})
        ack, c, w = _step(lambda b=quiet: record_heartbeat(svc, signed(), mid, b), clients)
        assert ack.presence is None
        record("heartbeat: no check announced", c, w)
        _, c, w = _step(one_look, clients)
        record("sweeper look: nothing to count", c, w)
        # This check's wave, opening lead_s from now (a wave of the schedule would be hours away).
        previous = waves.load()
        drawn.append(Wave(f"bench{i:04d}", time.time() + policy.lead_s, f"{i + 1:064x}"))
        waves.save(WaveSchedule(tuple(drawn), "bench", 0), previous)
        waves._cached = None  # the bench's wave is new; a deployed cache holds a wave long before
        beat = Heartbeat(machine_id=mid, sent_at=int(time.time()), backend="cpu", host={})
        ack, c, w = _step(lambda b=beat: record_heartbeat(svc, signed(), mid, b), clients)
        record("heartbeat: announce", c, w)
        assert ack.presence is not None, ack
        check_id = ack.presence["check_id"]
        time.sleep(max(0.0, ack.presence["opens_at"] - time.time()) + 0.01)
        check, c, w = _step(lambda k=check_id: presence.fetch_presence(svc, signed(), mid, k, None), clients)
        record("fetch nonce", c, w)
        params = [ProofParams.model_validate(p) for p in check["params"]]
        prover = Prover(bytes.fromhex(check["nonce"]), mid, check_id, params, executor)
        sc = SignedCommitment.sign(prover.run(), key)
        receipt, c, w = _step(
            lambda k=check_id, s=sc: presence.presence_commitment(svc, signed(), mid, k, s, None), clients
        )
        record("commitment", c, w)
        pairs = [GpuPairs.model_validate(p) for p in receipt["pairs"]]
        proof = ThroughputProof(
            commitment=sc.commitment, signature=sc.signature, pairs=pairs, openings=prover.open(pairs)
        )
        result, c, w = _step(
            lambda k=check_id, pr=proof: presence.presence_proof(svc, signed(), mid, k, pr), clients
        )
        assert result["result"] == "passed", result
        record("openings", c, w)
        time.sleep(0.01)
        _, c, w = _step(one_look, clients)
        record("sweeper look: after the wave", c, w)
    shown = presence.presence_summary(store.get_machine(mid))  # type: ignore[arg-type]
    assert shown is not None and shown["passed"] == checks, shown
    tick = _tick(ensure_waves, waves, policy, clients)
    medians = {k: statistics.median(v) for k, v in cpu.items()}
    return (
        _render(checks, cpu, wires, challenge_params(Claim(None, 0))["proof"][0])
        + tick
        + _sizes(mid)
        + "\n"
        + _cost(medians, wires)
    )


def _tick(ensure_waves: Any, waves: Any, policy: Any, clients: list[Any]) -> str:
    """The schedule's cost per sweeper tick: drawing a wave (a write) and reading it back."""
    first = []
    read = []
    for _ in range(5):
        waves.save(type(waves.load())((), "", 0), waves.load())  # nothing stored: the tick draws
        _, c1, w1 = _step(lambda: ensure_waves(waves, time.time(), policy), clients)
        _, c2, w2 = _step(lambda: ensure_waves(waves, time.time(), policy), clients)
        first.append((c1, w1))
        read.append((c2, w2))
    med = lambda xs: statistics.median(x[0] for x in xs) * 1000  # noqa: E731
    return (
        f"\nPer sweeper tick, not per check (`ensure_waves`, median of 5): drawing waves ahead "
        f"{med(first):.1f} ms CPU, {statistics.fmean(x[1].requests for x in first):.0f} requests "
        f"({statistics.fmean(x[1].writes for x in first):.0f} write); a tick with nothing to draw "
        f"{med(read):.1f} ms CPU, {statistics.fmean(x[1].requests for x in read):.0f} request "
        f"({statistics.fmean(x[1].units for x in read):g} read units). A wave is one item whatever "
        "the fleet: nothing is written per machine before its commitment.\n\n"
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
        rows.append(f"| {s} | {med:.1f} | {req:.1f} | {writes:.1f} | {units:.1f} |")
        if s in ANYWAY.values():
            continue
        base = ANYWAY.get(s)
        if base is not None:  # only what the check adds to a heartbeat or look made anyway
            med -= statistics.median(cpu[base]) * 1000
            req -= statistics.fmean(w.requests for w in wires[base])
            writes -= statistics.fmean(w.writes for w in wires[base])
            units -= statistics.fmean(w.units for w in wires[base])
        total_cpu += med
        total_req += req
        total_writes += writes
        total_units += units
    return "\n".join(
        [
            "## Presence checks: one check's service side",
            "",
            f"Method: `python scripts/bench_presence.py --checks {checks}` — moto {moto_version()} built from "
            "template.yaml; the use cases and adapters the functions run, called in-process (no HTTP, no "
            "Lambda runtime); a scored CPU-claim machine "
            f"(n = {params['n']}, d = {params['d']}, T = {params['steps']}, m = {params['checks']}) answers "
            f"{checks} checks, each at a wave of its own written by the bench (opening 1 s after it is "
            "written; the heartbeat announcing it, the fetch at its opening, the commitment, the openings, "
            "then the sweeper's next look at the machine, which counts the check); beside them a heartbeat "
            "and a look with no check, made anyway (one heartbeat a minute, one look per "
            "OfflineAfterSeconds). Each step's process CPU time (median; moto's own time is in its process "
            "and not counted) and its DynamoDB requests on the wire (mean; writes = transactions and "
            "updates; read units by DynamoDB's rule for the reads). The prover's work is the host's and "
            f"is not counted. Machine: {platform.machine()}, {os.cpu_count()} logical cores, Python "
            f"{platform.python_version()}, shared with other work.",
            "",
            "| step | CPU (ms, median) | DynamoDB requests | of them writes | read units |",
            "|---|---:|---:|---:|---:|",
            *rows,
            f"| **one check** (fetch, commitment, openings, and what it adds to the heartbeat and the "
            f"look) | **{total_cpu:.1f}** | **{total_req:.1f}** | **{total_writes:.1f}** | "
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


def verify_cpu_per_gpu_s() -> float:
    """The throughput check's CPU per GPU of an 8-GPU H100 host, measured in this run's proof section
    (scripts/bench_proof.py `verify_section`, which make bench runs first; measured here if not)."""
    import bench_proof

    if getattr(bench_proof.verify_section, "total_s", None) is None:
        bench_proof.verify_section()
    total: float = bench_proof.verify_section.total_s  # type: ignore[attr-defined]
    return total


MACHINES, CHECKS_PER_DAY, GPUS, OFFLINE_AFTER_S = 20_000, 6, 8, 1800
# An 8-GPU machine's item: 1.1 KB measured (CPU claim) + 1.3 KB of H100 x 8 proof parameters while
# a check is open + ~2 KB of heartbeat telemetry for 8 GPUs (estimate): <= 5 KB, 5 write units.
ITEM_WRU, ITEM_RRU = 5, 2


# The wave's burst (estimates; docs/protocol.md §19): each machine's check opens within SPREAD_S of
# the wave's instant, an H100 proof takes its expected_s of GPU time and the openings of an 8-GPU
# machine are a wire.max_size upload (both from the parameters the service issues, `_h100_proof`),
# read back by the machine API at ~S3_MB_PER_S, a DynamoDB request ~DDB_MS on Lambda.
SPREAD_S, S3_MB_PER_S, DDB_MS = 5.0, 75.0, 5.0
# Quotas (AWS defaults as documented in 2025; all can be raised on request): Lambda concurrent
# executions per account and region, HTTP API requests per second per account and region (burst),
# on-demand throughput per table (read and write request units per second).
LAMBDA_CONCURRENCY, HTTP_API_RPS, HTTP_API_BURST, DDB_TABLE_UNITS = 1000, 10_000, 5_000, 40_000
PROOF_ALLOWANCE_S = 120.0
# Per check, by DynamoDB's rules for an 8-GPU machine item of <= 5 KB (1.1 KB measured for the CPU
# claim + 1.3 KB of 8 x H100 parameters while a check is open + ~2 KB of telemetry, estimated) and a
# 1 KB request-nonce item; transactions bill twice; consistent reads 1 unit per 4 KB.
FETCH_RRU = ITEM_RRU + 1  # the machine, the request nonce (the schedule comes from the cache)
STEP_RRU, STEP_WRU = ITEM_RRU + 1, 2 * ITEM_WRU + 2  # commitment, openings: read both, write both
HEARTBEAT_PER_S = 20_000 / 60  # every machine beats once a minute
HEARTBEAT_WRU = 2 * ITEM_WRU + 2 + 2 * 1  # its transaction: machine item, nonce, history item


def _cost(cpu: dict[str, float], wires: dict[str, list[Any]]) -> str:
    checks = MACHINES * CHECKS_PER_DAY
    added = {k: max(0.0, cpu[k] - cpu[base]) for k, base in ANYWAY.items()}
    api_cpu = cpu["fetch nonce"] + cpu["commitment"] + cpu["openings"] + GPUS * verify_cpu_per_gpu_s()
    api_cpu += added["heartbeat: announce"]
    gb_s = (api_cpu + added["sweeper look: after the wave"]) / VCPU_AT_512 * 0.5
    wru = 2 * STEP_WRU
    rru = FETCH_RRU + 2 * STEP_RRU
    presence = {
        "HTTP API requests": (3 * checks, 3 * checks / 1e6 * HTTP_API_PER_M),
        "Lambda requests": (3 * checks, 3 * checks / 1e6 * LAMBDA_PER_M),
        "Lambda GB-s": (gb_s * checks, gb_s * checks * LAMBDA_ARM_GB_S),
        "DynamoDB write units": (wru * checks, wru * checks / 1e6 * DDB_WRU_PER_M),
        "DynamoDB read units": (rru * checks, rru * checks / 1e6 * DDB_RRU_PER_M),
    }
    looks = MACHINES * 86400 / OFFLINE_AFTER_S
    look_gb_s = cpu["sweeper look: nothing to count"] / VCPU_AT_512 * 0.5
    liveness = {
        "Lambda GB-s": (look_gb_s * looks, look_gb_s * looks * LAMBDA_ARM_GB_S),
        "DynamoDB write units": ((ITEM_WRU + 1) * looks, (ITEM_WRU + 1) * looks / 1e6 * DDB_WRU_PER_M),
        "DynamoDB read units": ((ITEM_RRU + 0.5) * looks, (ITEM_RRU + 0.5) * looks / 1e6 * DDB_RRU_PER_M),
    }
    lines = [
        "### Presence and liveness at DBC scale (estimate from the figures above)",
        "",
        f"{MACHINES:,} machines of {GPUS} x H100, {CHECKS_PER_DAY} waves a day, every machine in each "
        f"({checks:,} checks), the liveness watch at OfflineAfterSeconds = {OFFLINE_AFTER_S} s "
        f"({looks:,.0f} sweeper looks a day, as without presence: a wave adds no look). Method: per check "
        "3 API requests and 3 MachineApiFunction invocations (fetch, commitment, openings); Lambda time = "
        "the CPU measured above for those steps, plus what the check adds to the announcing heartbeat "
        "and to the look that counts it, plus the openings' verification at H100 size "
        f"({verify_cpu_per_gpu_s() * 1000:.0f} ms a GPU of an 8-GPU host, measured in the proof section) x {GPUS}, divided by "
        f"the {VCPU_AT_512:.3f} vCPU a 512 MB function gets, x 0.5 GB; DynamoDB units by its rules for an "
        f"item of <= 5 KB ({wru} write units and {rru:g} read units a check: the fetch reads the machine "
        "and the request nonce and writes nothing, the commitment and the openings each read both and "
        "write both in one transaction, which bills twice). List prices, us-east-1, on-demand (HTTP API "
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
    return "\n".join(lines) + "\n" + _burst(cpu)


def _h100_proof() -> tuple[float, float]:
    """An 8 x H100 machine's proof: its expected_s and its openings' upload in MB (at most)."""
    from gpuproof.claim import Claim, proof_params_for
    from gpuproof.protocol.proof import wire

    params = proof_params_for(Claim("H100 SXM5 80GB", GPUS))
    return params[0].expected_s, round(wire.max_size(params) / 1e6, 1)


def _burst(cpu: dict[str, float]) -> str:
    """The wave's burst: every machine's three requests within seconds of each other."""
    expected_s, transcript_mb = _h100_proof()
    rate = MACHINES / SPREAD_S  # each phase's arrivals per second, spread over SPREAD_S
    s3_s = transcript_mb / S3_MB_PER_S
    phases = {
        "fetch nonce": (cpu["fetch nonce"] / VCPU_AT_512 + 2 * DDB_MS / 1000, FETCH_RRU, 0),
        "commitment": (cpu["commitment"] / VCPU_AT_512 + 3 * DDB_MS / 1000, STEP_RRU, STEP_WRU),
        "openings": (
            (cpu["openings"] + GPUS * verify_cpu_per_gpu_s()) / VCPU_AT_512 + s3_s + 3 * DDB_MS / 1000,
            STEP_RRU,
            STEP_WRU,
        ),
    }
    rows = []
    for name, (duration, rru, wru) in phases.items():
        concurrency = rate * duration
        rows.append(
            f"| {name} | {rate:,.0f} | {duration:.3f} | {concurrency:,.0f} | {rate * rru:,.0f} | "
            f"{rate * wru:,.0f} |"
        )
    open_s = phases["openings"][0]
    drain = MACHINES * open_s / LAMBDA_CONCURRENCY
    beat_wru = HEARTBEAT_PER_S * HEARTBEAT_WRU
    return "\n".join(
        [
            "### The wave's burst at DBC scale (estimate)",
            "",
            f"Method: {MACHINES:,} machines of {GPUS} x H100 at one wave; each machine's check opens at an "
            f"offset below PRESENCE_WAVE_SPREAD_S = {SPREAD_S:g} s from the wave's instant (uniform), so each "
            f"phase's requests arrive at {MACHINES:,} / {SPREAD_S:g} s: the fetches from the openings on, the "
            f"commitments {expected_s} s later (the H100 proof), the openings right after (a {transcript_mb} MB "
            "upload, then the request). Lambda duration = the CPU measured above / "
            f"{VCPU_AT_512:.3f} vCPU (the openings with their verification, {GPUS} x "
            f"{verify_cpu_per_gpu_s() * 1000:.0f} ms, and the transcript's read-back at ~{S3_MB_PER_S:g} MB/s) + "
            f"~{DDB_MS:g} ms a DynamoDB request (assumed, not measured here); concurrency = arrivals x "
            "duration; DynamoDB units by the rules above. All figures estimates.",
            "",
            "| phase | requests/s | Lambda s each | Lambda concurrency wanted | read units/s | write units/s |",
            "|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"- **API Gateway**: {rate:,.0f} requests/s a phase, under the HTTP API's default "
            f"{HTTP_API_RPS:,} requests/s (burst {HTTP_API_BURST:,}) per account and region; without the "
            f"spread all {MACHINES:,} fetches would come within the agents' 0.1 s after one instant.",
            f"- **Lambda**: the openings want ~{rate * open_s:,.0f} concurrent executions against the default "
            f"{LAMBDA_CONCURRENCY:,} per account; at {LAMBDA_CONCURRENCY:,} they are verified in "
            f"~{drain:.0f} s ({MACHINES:,} x {open_s:.2f} s / {LAMBDA_CONCURRENCY:,}), inside the "
            f"{PROOF_ALLOWANCE_S:.0f} s the openings are given after the commitment's deadline, provided "
            "the agents retry throttled requests (they do, for 429) and the heartbeats and fetches of the "
            "same function are not starved: reserve concurrency for MachineApiFunction and raise the "
            "account's limit (3,000 verifies them in a third of the time). The fetches and commitments "
            "need a few hundred.",
            f"- **DynamoDB (on-demand)**: the commitments write ~{rate * STEP_WRU:,.0f} units/s to "
            f"MachinesTable for {SPREAD_S:g} s (and ~{rate * 2:,.0f} to RequestNoncesTable), against the "
            f"default on-demand maximum of {DDB_TABLE_UNITS:,} units/s per table and, on a table that has "
            f"not yet seen such a peak, the ~2x its previous peak on-demand serves at once (the heartbeats: "
            f"~{beat_wru:,.0f} write units/s). A throttled commitment is retried by the agent only after a "
            "429, and a late one fails the check: before enforcing presence at this scale, pre-warm "
            "MachinesTable and RequestNoncesTable (on-demand warm throughput) to the wave's peak, raise the "
            f"table quota, or widen PRESENCE_WAVE_SPREAD_S (7 s: ~{MACHINES / 7 * STEP_WRU:,.0f} units/s; it "
            "must stay below 2·W − D for every model, docs/protocol.md §19). Not done in template.yaml.",
            "",
        ]
    )


def bench_sections(checks: int = 20) -> str:
    return measure(checks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=20)
    args = parser.parse_args()
    print(bench_sections(args.checks))


if __name__ == "__main__":
    main()
