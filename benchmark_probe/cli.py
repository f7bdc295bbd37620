"""`benchmark-probe`: keygen, inventory, bench, submit, agent. Every command has --json."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import requests
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from benchmark_probe import __version__
from benchmark_probe.agent import run_agent
from benchmark_probe.backends import select_backend
from benchmark_probe.bench import Backend, BenchPlan, run_benchmarks
from benchmark_probe.client import ServiceClient, ServiceError
from benchmark_probe.integrity import collect_integrity
from benchmark_probe.inventory import collect_inventory
from benchmark_probe.proof import ProofRunner
from benchmark_probe.render import bench_table, inventory_tables
from benchmark_probe.submit import ProofHook, answer_challenge, submit
from gpuproof.cli.keyimport import imported_key
from gpuproof.cli.output import emit, fail
from gpuproof.protocol.keys import KeyFileError, Scheme, SigningKey
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
err = Console(stderr=True)
out = Console()

KeyOpt = Annotated[
    Path, typer.Option("--key", envvar="GPUPROOF_MACHINE_KEY", help="machine key file (mode 0600)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON on stdout only")]
QuickOpt = Annotated[
    bool, typer.Option("--quick", help="small sizes (smoke test); figures not representative")
]
ApiOpt = Annotated[str, typer.Option("--api", help="machine API base URL")]


def _load_key(path: Path, as_json: bool) -> SigningKey:
    try:
        return SigningKey.load(path.expanduser())
    except KeyFileError as exc:
        fail(f"{exc} (create one with: benchmark-probe keygen --key {path})", as_json, 2)
        raise AssertionError("unreachable") from exc


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
    expect_machine_id: Annotated[
        str | None,
        typer.Option("--expect-machine-id", help="refuse unless the key's public key (machine_id) is this"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the machine key (mode 0600), or import an existing one. Refuses to overwrite a key file."""
    path = key.expanduser()
    if path.exists():
        fail(f"refusing to overwrite existing key file {path}", as_json)
    if import_seed:
        new_key = imported_key(scheme, expect_machine_id, as_json, "machine_id")
    else:
        new_key = SigningKey.generate(scheme)
    try:
        new_key.save(path)
    except FileExistsError:
        fail(f"refusing to overwrite existing key file {path}", as_json)
    if as_json:
        emit(
            {
                "machine_id": new_key.public_hex,
                "key_path": str(path),
                "scheme": scheme.value,
                "imported": import_seed,
            }
        )
    else:
        verb = "imported" if import_seed else "written"
        out.print(f"machine key {verb} to {path} (mode 0600)\nmachine_id {new_key.public_hex}")


@app.command()
def inventory(as_json: JsonOpt = False) -> None:
    """GPUs (NVML cross-checked with CUDA), host figures, integrity signals, DBC upload fields."""
    inv = collect_inventory()
    integrity = collect_integrity()
    try:
        upload: dict[str, Any] = upload_fields_from_inventory(inv).as_dict()
    except UploadInfoError as exc:
        upload = {"error": exc.reasons}
    if as_json:
        emit(
            {
                "probe_version": __version__,
                "inventory": inv.model_dump(mode="json"),
                "integrity": integrity.model_dump(mode="json"),
                "dbc_upload_info": upload,
            }
        )
        return
    inventory_tables(out, inv, integrity)
    out.print(f"DBC CommitteeUploadInfo fields: {upload}")


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
        bench_table(out, results)
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


@app.command("submit")
def submit_cmd(
    api: ApiOpt,
    owner: Annotated[
        str, typer.Option("--owner", help="stash account (SS58, checksum verified)", callback=_ss58_owner)
    ],
    region: Annotated[Region, typer.Option("--region", help="DBC region of the machine")],
    key: KeyOpt = DEFAULT_KEY,
    quick: QuickOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Register, take a challenge, benchmark, sign and send the report, print the machine's state."""
    signing_key = _load_key(key, as_json)
    client = ServiceClient(api, signing_key)
    inv = collect_inventory()
    integrity = collect_integrity()
    backend, _notes = select_backend(inv)
    plan = BenchPlan.quick() if quick else BenchPlan()
    stage = (lambda _s: None) if as_json else (lambda s: err.print(f"[cyan]→ {s}[/]"))
    try:
        outcome = submit(
            client,
            signing_key,
            owner,
            region,
            inv,
            integrity,
            lambda _challenge: _measure(backend, plan, show=not as_json),
            proof_hook(signing_key),
            stage,
        )
    except ServiceError as exc:
        _retry_line(client)
        fail(str(exc), as_json, 1, status=exc.status, code=exc.code, reasons=exc.reasons)
        return
    except requests.RequestException as exc:
        _retry_line(client)
        fail(f"service unreachable: {exc}", as_json)
        return
    _retry_line(client)
    if as_json:
        emit(asdict(outcome))
    else:
        out.print(f"machine {outcome.machine_id}: {outcome.registration}; challenge {outcome.challenge_id}")
        out.print(f"report accepted: {outcome.report_response}")
        out.print(f"machine state: {outcome.machine}")


@app.command()
def agent(
    api: ApiOpt,
    key: KeyOpt = DEFAULT_KEY,
    interval: Annotated[float, typer.Option("--interval", min=1.0, help="seconds between heartbeats")] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="send one heartbeat and exit")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stay running: signed heartbeats of live GPU (or host) telemetry every --interval seconds."""
    from benchmark_probe.telemetry import Telemetry

    signing_key = _load_key(key, as_json)
    client = ServiceClient(api, signing_key)
    telemetry = Telemetry()

    def reverify() -> None:
        inv = collect_inventory()
        backend, _notes = select_backend(inv)
        answer_challenge(
            client,
            signing_key,
            inv,
            collect_integrity(),
            lambda _c: _measure(backend, BenchPlan(), show=False),
            proof_hook(signing_key),
        )

    def log(message: str) -> None:
        typer.echo(json.dumps({"event": "log", "message": message})) if as_json else err.print(message)

    from benchmark_probe.presence import PresenceResponder
    from benchmark_probe.proof import default_executor
    from gpuproof.protocol.proof import ProofExecutor

    def presence_executor() -> ProofExecutor:
        inv = collect_inventory()
        executor = default_executor(inv)
        executor.prepare([gpu.index for gpu in inv.gpus] or [0])
        return executor

    presence = PresenceResponder(client, signing_key, presence_executor)

    try:
        stats = run_agent(
            client,
            signing_key.public_hex,
            lambda: telemetry.read(signing_key.public_hex),
            interval_s=interval,
            once=once,
            log=log,
            on_reverify=reverify,
            on_presence=presence,
        )
    except KeyboardInterrupt:
        log("agent stopped")
        return
    finally:
        telemetry.close()
    if as_json:
        emit({"event": "stopped", **asdict(stats)})
    else:
        out.print(f"heartbeats sent {stats.sent}, accepted {stats.accepted}")


if __name__ == "__main__":
    app()
