"""`benchmark-probe`: keygen, inventory, bench, submit, status, agent. Every command has --json.

`--api` reads GPUPROOF_API, `--key` GPUPROOF_MACHINE_KEY; exit codes, errors and dates follow the
convention of every gpuproof CLI (gpuproof.cli.output, docs/cli.md).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import requests
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from benchmark_probe import __version__
from benchmark_probe.agent import AgentStats, run_agent
from benchmark_probe.backends import select_backend
from benchmark_probe.bench import Backend, BenchPlan, run_benchmarks
from benchmark_probe.client import ServiceClient, ServiceError
from benchmark_probe.integrity import collect_integrity
from benchmark_probe.inventory import collect_inventory
from benchmark_probe.live import LiveResponder, LiveServer, RoundSource
from benchmark_probe.proof import ProofRunner, default_executor
from benchmark_probe.render import bench_table, calc_point_preview, inventory_tables, upload_table
from benchmark_probe.status import REFUSED_STATES, summary_lines, wait_for_verdict, waited
from benchmark_probe.submit import ProofHook, SubmitOutcome, answer_challenge, submit
from gpuproof.cli.keyimport import new_key, refuse_existing, write_key
from gpuproof.cli.output import (
    ENV_API,
    ENV_MACHINE_KEY,
    ExitCode,
    emit,
    fail,
    fail_for,
    handled,
    version_callback,
    when,
)
from gpuproof.protocol.keys import KeyFileError, Scheme, SigningKey
from gpuproof.protocol.live import parse_endpoint
from gpuproof.protocol.machine import Region
from gpuproof.protocol.report import BenchmarkResult
from gpuproof.protocol.ss58 import Ss58Error
from gpuproof.protocol.ss58 import decode as ss58_decode
from gpuproof.protocol.upload_info import UploadInfoError, upload_fields_from_inventory

DEFAULT_KEY = Path("~/.config/gpuproof/machine.key")
app = typer.Typer(
    help="gpuproof host probe: inventory, micro-benchmarks, signed reports.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

KeyOpt = Annotated[Path, typer.Option("--key", envvar=ENV_MACHINE_KEY, help="machine key file (mode 0600)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON on stdout only")]
QuickOpt = Annotated[
    bool, typer.Option("--quick", help="small sizes (smoke test); figures not representative")
]
ApiOpt = Annotated[str, typer.Option("--api", envvar=ENV_API, help="machine API base URL")]
RegionOpt = Annotated[Region, typer.Option("--region", help="DBC region of the machine")]


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", help="print the version and exit", is_eager=True,
                     callback=version_callback("benchmark-probe", __version__)),
    ] = False,
) -> None:  # fmt: skip
    """gpuproof host probe: inventory, micro-benchmarks, signed reports."""


def _load_key(path: Path, as_json: bool) -> SigningKey:
    try:
        return SigningKey.load(path.expanduser())
    except KeyFileError as exc:
        hint = f"create one with: benchmark-probe keygen --key {path}"
        fail(f"{exc} ({hint})", as_json, ExitCode.KEY, code="key_problem")


def _measure(backend: Backend, plan: BenchPlan, show: bool) -> list[BenchmarkResult]:
    if not show:
        return run_benchmarks(backend, plan)
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as progress:
        tasks = {
            d.label: progress.add_task(f"{d.label}: starting", total=backend.steps(plan))
            for d in backend.devices()
        }

        def step(label: str, what: str) -> None:
            progress.update(tasks[label], advance=1, description=f"{label}: {what} done")

        return run_benchmarks(backend, plan, step)


@app.command()
def keygen(
    key: KeyOpt = DEFAULT_KEY,
    scheme: Annotated[Scheme, typer.Option(help="key scheme")] = Scheme.ed25519,
    import_seed: Annotated[
        bool,
        typer.Option(
            "--import-seed",
            help="reuse an existing key: read its 32-byte secret seed (hex, as `subkey inspect` prints "
            "'Secret seed') from stdin instead of generating one; with --scheme sr25519 for a DBC node key",
        ),
    ] = False,
    import_mnemonic: Annotated[
        bool,
        typer.Option(
            "--import-mnemonic",
            help="reuse an existing key: read its BIP-39 phrase from stdin, optionally with a "
            "derivation path (PHRASE//hard/soft; sr25519 only)",
        ),
    ] = False,
    expect_machine_id: Annotated[
        str | None,
        typer.Option("--expect-machine-id", help="refuse unless the imported key is this (SS58 or hex)"),
    ] = None,
    show_mnemonic: Annotated[
        bool, typer.Option("--show-mnemonic", help="show the new phrase on stderr even when not a terminal")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask whether the phrase is written down")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create the machine key (mode 0600) from a new BIP-39 phrase, or import one.

    The new phrase is shown once, for backup. Refuses to overwrite a key file."""
    path = key.expanduser()
    refuse_existing(path, as_json)
    made = new_key(
        scheme,
        import_seed=import_seed,
        import_mnemonic=import_mnemonic,
        expected=expect_machine_id,
        show_mnemonic=show_mnemonic,
        yes=yes,
        as_json=as_json,
        what="machine_id",
    )
    doc = write_key(path, made, as_json)
    doc["machine_id"] = made.key.public_hex
    if as_json:
        emit(doc)
        return
    verb = "imported" if doc["imported"] else "written"
    out.print(
        f"machine key {verb} to {path} (mode 0600)\n"
        f"machine_id {doc['machine_id']}\naddress    {doc['address']}",
        highlight=False,
    )
    out.print(
        "next: benchmark-probe submit --api URL --owner YOUR_STASH_SS58 --region REGION", highlight=False
    )


@app.command()
def inventory(
    as_json: JsonOpt = False,
    region: Annotated[
        Region | None, typer.Option("--region", help="DBC region, for the calc_point preview")
    ] = None,
) -> None:
    """GPUs, host figures, integrity signals, DBC upload fields, a calc_point preview.

    GPUs are read through NVML and cross-checked with CUDA; the preview uses the reference table."""
    inv = collect_inventory()
    integrity = collect_integrity()
    try:
        upload: dict[str, Any] = upload_fields_from_inventory(inv).as_dict()
    except UploadInfoError as exc:
        upload = {"error": exc.reasons}
    mem_num = upload.get("mem_num") if "error" not in upload else round(inv.host.ram_bytes / (1 << 30))
    preview = calc_point_preview(inv, mem_num, region)
    if as_json:
        emit(
            {
                "probe_version": __version__,
                "inventory": inv.model_dump(mode="json"),
                "integrity": integrity.model_dump(mode="json"),
                "dbc_upload_info": upload,
                "calc_point_preview": preview,
            }
        )
        return
    inventory_tables(out, inv, integrity)
    out.print(upload_table(upload))
    for line in preview:
        out.print(line, highlight=False)


@app.command()
def prepare(as_json: JsonOpt = False) -> None:
    """Build every GPU kernel the proof and the capacity phase run, into CuPy's kernel cache (once
    after installing: the first submit then does not pay the builds, ≈ 8 s of one core)."""
    from benchmark_probe.capacity import default_prover
    from benchmark_probe.proof import default_executor, prepare_gpus

    inv = collect_inventory()
    gpus = [gpu.index for gpu in inv.gpus]
    started = time.monotonic()
    if gpus:
        executor = default_executor(inv)
        if as_json:
            prepare_gpus(executor, default_prover(executor), gpus)
        else:
            with err.status(f"building the GPU kernels on {len(gpus)} GPU(s)"):
                prepare_gpus(executor, default_prover(executor), gpus)
    seconds = round(time.monotonic() - started, 3)
    note = (
        f"kernels built and cached on GPU(s) {gpus} in {seconds} s"
        if gpus
        else "no GPU found: nothing to build"
    )
    if as_json:
        emit({"probe_version": __version__, "gpus": gpus, "seconds": seconds, "note": note})
    else:
        out.print(note, highlight=False, markup=False)


@app.command()
def bench(as_json: JsonOpt = False, quick: QuickOpt = False) -> None:
    """Micro-benchmarks on every GPU in parallel (or on the CPU); exit 1 if any figure is unverified."""
    inv = collect_inventory()
    backend, notes = select_backend(inv)
    plan = BenchPlan.quick() if quick else BenchPlan()
    results = _measure(backend, plan, show=not as_json)
    if as_json:
        emit(
            {
                "probe_version": __version__,
                "backend": backend.name,
                "notes": [*inv.notes, *notes],
                "plan": asdict(plan),
                "benchmarks": [r.model_dump(mode="json") for r in results],
            }
        )
    else:
        for note in [*inv.notes, *notes]:
            err.print(f"[yellow]note:[/] {note}")
        bench_table(out, results, inv)
    if not all(r.verified for r in results):
        raise typer.Exit(1)


def proof_hook(key: SigningKey) -> ProofHook:
    """The proof of throughput: CuPy executor on GPU hosts, numpy on the CPU backend."""
    return ProofRunner(key)


def _ss58_owner(value: str) -> str:
    try:
        ss58_decode(value)
    except Ss58Error as exc:
        raise typer.BadParameter(f"{value!r} is not an SS58 address: {exc}") from exc
    return value


def _retry_line(client: ServiceClient) -> None:
    """What was retried, on stderr (stdout stays the command's output, JSON included)."""
    summary = client.retry_summary()
    if summary:
        err.print(summary, markup=False)


def _confirm_without_gpu(has_gpu: bool, yes: bool, as_json: bool) -> None:
    """No GPU: the report would be CPU-only (refused unless the stack allows the CPU backend)."""
    if has_gpu or yes:
        return
    warning = (
        "no GPU found (NVML and CUDA see none): the report would be CPU-only, which a production "
        "service refuses and which earns no calc_point"
    )
    if as_json or not sys.stdin.isatty():
        fail(f"{warning}; pass --yes to submit anyway", as_json, ExitCode.USAGE, code="no_gpu")
    err.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    if not typer.confirm("Submit a CPU-only report anyway?", err=True):
        fail("nothing submitted", as_json, ExitCode.FAILED, code="no_gpu")


def _outcome_lines(outcome: SubmitOutcome) -> list[str]:
    report = outcome.report_response if isinstance(outcome.report_response, dict) else {}
    lines = [
        f"registration  {outcome.registration}",
        f"challenge     {outcome.challenge_id}",
        f"report        accepted {when(report.get('received_at'))}, sha256 {report.get('report_sha256')}",
    ]
    machine = outcome.machine if isinstance(outcome.machine, dict) else {}
    return lines + summary_lines(machine)


def _state_exit(doc: dict[str, Any]) -> None:
    if (doc.get("machine") or {}).get("state") in REFUSED_STATES:
        raise typer.Exit(ExitCode.FAILED)


@app.command("submit")
def submit_cmd(
    api: ApiOpt,
    owner: Annotated[
        str, typer.Option("--owner", help="stash account (SS58, checksum verified)", callback=_ss58_owner)
    ],
    region: RegionOpt,
    key: KeyOpt = DEFAULT_KEY,
    quick: QuickOpt = False,
    yes: Annotated[bool, typer.Option("--yes", help="submit without asking, even with no GPU found")] = False,
    wait: Annotated[
        float, typer.Option("--wait", min=0, help="then wait up to this many seconds for the verdict")
    ] = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Register, take a challenge, prove, benchmark, send the signed report; print the state.

    With --wait, wait for the verdict. Exit 1 when the machine is refused."""
    signing_key = _load_key(key, as_json)
    inv = collect_inventory()
    _confirm_without_gpu(bool(inv.gpus), yes, as_json)
    client = ServiceClient(api, signing_key)
    backend, _notes = select_backend(inv)
    plan = BenchPlan.quick() if quick else BenchPlan()
    stage: Callable[[str], None] = (lambda _s: None) if as_json else (lambda s: err.print(f"[cyan]→ {s}[/]"))
    try:
        outcome = submit(
            client,
            signing_key,
            owner,
            region,
            inv,
            collect_integrity,  # beside the registration and the GPUs' preparation
            lambda: _measure(backend, plan, show=not as_json),
            proof_hook(signing_key),
            stage,
        )
        final = outcome.machine
        if wait > 0:
            stage(f"wait for the verdict (up to {wait:.0f} s)")
            final, _done = wait_for_verdict(client, outcome.machine_id, timeout_s=wait)
    except (ServiceError, requests.RequestException) as exc:
        _retry_line(client)
        fail_for(exc, as_json, api)
    _retry_line(client)
    if as_json:
        emit({**asdict(outcome), "machine": final})
    else:
        outcome = SubmitOutcome(
            outcome.machine_id, outcome.registration, outcome.challenge_id, outcome.report_response, final
        )
        for line in _outcome_lines(outcome):
            out.print(line, highlight=False, markup=False)
    _state_exit(final if isinstance(final, dict) else {})


@app.command()
def status(
    api: ApiOpt,
    key: KeyOpt = DEFAULT_KEY,
    machine_id: Annotated[
        str | None, typer.Option("--machine-id", help="another machine's id (default: this key's)")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the verdict (or --timeout)")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="seconds --wait waits at most")] = 900.0,
    poll: Annotated[float, typer.Option("--poll", min=1, help="seconds between reads")] = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """The machine's state, its reasons and the next step; with --wait, until the verdict.

    Exit 0 (not refused), 1 refused, or 1 when --wait saw no verdict in time."""
    signing_key = _load_key(key, as_json) if machine_id is None else SigningKey.generate()
    mid = machine_id or signing_key.public_hex
    client = ServiceClient(api, signing_key)

    def show(doc: dict[str, Any]) -> None:
        if not as_json and wait:
            state = (doc.get("machine") or {}).get("state")
            err.print(f"[cyan]→ {state}[/] ({time.strftime('%H:%M:%S')})")

    try:
        with handled(as_json, api):
            try:
                if wait:
                    doc, final = wait_for_verdict(client, mid, timeout_s=timeout, poll_s=poll, on_change=show)
                else:
                    doc, final = client.machine(mid), True
            except ServiceError as exc:
                if exc.code != "unknown_machine":
                    raise
                step = "register it and send a report: benchmark-probe submit --owner SS58 --region REGION"
                fail(f"machine {mid} is not registered; {step}", as_json, ExitCode.FAILED, code=exc.code)
    finally:
        _retry_line(client)
    if as_json:
        emit({**doc, "final": final})
    else:
        for line in summary_lines(doc):
            out.print(line, highlight=False, markup=False)
        if not final:
            err.print(f"[yellow]{waited(timeout)}[/]: run `benchmark-probe status --wait` again")
    _state_exit(doc)
    if not final:
        raise typer.Exit(ExitCode.FAILED)


def _live_server(
    api: str, key: SigningKey, listen: str | None, endpoint: str | None, as_json: bool
) -> LiveServer | None:
    """The live-check endpoint (benchmark_probe/live.py), its executor prepared before any challenge."""
    if (listen is None) != (endpoint is None):
        fail(
            "--live-listen and --live-endpoint go together (serve here, published as there)",
            as_json,
            ExitCode.USAGE,
        )
    if listen is None or endpoint is None:
        return None
    try:
        parse_endpoint(endpoint)
        host, _, port = listen.rpartition(":")
        server_port = int(port)
        if not host:
            raise ValueError("--live-listen is HOST:PORT (the address to bind, e.g. your public IP)")
    except ValueError as exc:
        fail(f"live endpoint: {exc}", as_json, ExitCode.USAGE)
        raise
    inv = collect_inventory()
    executor = default_executor(inv)
    executor.prepare([gpu.index for gpu in inv.gpus] or [0])
    responder = LiveResponder(key, RoundSource(api), executor)
    try:
        return LiveServer(responder, host.strip("[]"), server_port).start()
    except OSError as exc:
        fail(f"cannot listen on {listen}: {exc}", as_json)
        raise


@app.command()
def agent(
    api: ApiOpt,
    key: KeyOpt = DEFAULT_KEY,
    interval: Annotated[float, typer.Option("--interval", min=1.0, help="seconds between heartbeats")] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="send one heartbeat and exit")] = False,
    live_listen: Annotated[
        str | None,
        typer.Option(
            "--live-listen",
            help="serve committee members' live checks on HOST:PORT (e.g. 0.0.0.0:8421); only members "
            "drawn for this machine's open round are answered",
        ),
    ] = None,
    live_endpoint: Annotated[
        str | None,
        typer.Option(
            "--live-endpoint",
            help="the public address members use, published in every heartbeat: http://<public IP>:<port>",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stay running: signed heartbeats of live GPU (or host) telemetry every --interval seconds.

    Backs off while the service is unreachable (the interval doubled per failure, at most 10 min);
    ends with a summary line; exit 3 when no heartbeat was accepted."""
    from benchmark_probe.telemetry import Telemetry

    signing_key = _load_key(key, as_json)
    client = ServiceClient(api, signing_key)
    live_server = _live_server(api, signing_key, live_listen, live_endpoint, as_json)
    telemetry = Telemetry()

    def reverify() -> None:
        inv = collect_inventory()
        backend, _notes = select_backend(inv)
        answer_challenge(
            client,
            signing_key,
            inv,
            collect_integrity(),
            lambda: _measure(backend, BenchPlan(), show=False),
            proof_hook(signing_key),
        )

    def log(message: str) -> None:
        if as_json:
            typer.echo(json.dumps({"event": "log", "message": message}))
        else:
            err.print(message, markup=False, highlight=False)

    from benchmark_probe.presence import PresenceResponder
    from benchmark_probe.proof import default_executor
    from gpuproof.protocol.proof import ProofExecutor

    def presence_executor() -> ProofExecutor:
        inv = collect_inventory()
        executor = default_executor(inv)
        executor.prepare([gpu.index for gpu in inv.gpus] or [0])
        return executor

    presence = PresenceResponder(client, signing_key, presence_executor)
    stats = AgentStats()
    try:
        run_agent(
            client,
            signing_key.public_hex,
            lambda: telemetry.read(signing_key.public_hex),
            interval_s=interval,
            once=once,
            log=log,
            on_reverify=reverify,
            stats=stats,
            live_endpoint=live_endpoint,
            on_presence=presence,
        )
    except KeyboardInterrupt:
        log("agent stopped")
    finally:
        telemetry.close()
        if live_server is not None:
            live_server.stop()
    if as_json:
        emit({"event": "stopped", **asdict(stats), "summary": stats.summary()})
    else:
        err.print(stats.summary(), markup=False, highlight=False)
    if stats.sent and not stats.accepted:
        raise typer.Exit(ExitCode.UNREACHABLE if stats.last_unreachable else ExitCode.FAILED)


if __name__ == "__main__":
    app()
