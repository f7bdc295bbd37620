"""`committee`: a verifier committee member's CLI. Every command has --json.

committee keygen                      # Ed25519 member key, file mode 0600
committee register --api URL --linked OWNER_ACCOUNT ...
committee assignments --api URL
committee inspect MACHINE_ID ROUND --api URL     # re-verifies the evidence locally
committee commit MACHINE_ID ROUND --api URL      # inspects, then commits blake2_128 of the findings
committee reveal MACHINE_ID ROUND --api URL
committee agent --api URL [--once] [--interval 5]  # a bot member that reviews honestly
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gpuproof.cli.evidence_view import evidence_table
from gpuproof.cli.keyimport import imported_key
from gpuproof.cli.member import (
    ApiError,
    CommitConflict,
    CommitteeClient,
    Inspection,
    MemberState,
    commit_findings,
    inspect_transcript,
    reveal_findings,
    run_agent,
)
from gpuproof.cli.output import emit, fail
from gpuproof.protocol.keys import KeyFileError, Scheme, SigningKey

DEFAULT_KEY = Path("~/.config/gpuproof/committee.key")
DEFAULT_STATE = Path("~/.config/gpuproof/committee-state.json")

app = typer.Typer(
    help="gpuproof committee member: inspect the evidence yourself, commit, reveal.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
KeyOpt = Annotated[Path, typer.Option("--key", help="member key file (mode 0600)")]
ApiOpt = Annotated[str, typer.Option("--api", envvar="GPUPROOF_API", help="service API URL")]
StateOpt = Annotated[Path, typer.Option("--state", help="local vote state (rand_str), mode 0600")]
CpuOpt = Annotated[bool, typer.Option("--allow-cpu-backend", help="support CPU-backend reports (demo only)")]


def _client(api: str, key: Path, as_json: bool) -> CommitteeClient:
    try:
        return CommitteeClient(api, SigningKey.load(key.expanduser()))
    except KeyFileError as exc:
        fail(str(exc), as_json)
        raise  # unreachable


def _busy(label: str, as_json: bool) -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn(label), TimeElapsedColumn(), console=err, transient=True, disable=as_json
    )


def _api_error(exc: ApiError, as_json: bool) -> None:
    fail(str(exc), as_json, status=exc.status, code=exc.code, reasons=exc.reasons)


@app.command()
def keygen(
    key: KeyOpt = DEFAULT_KEY,
    scheme: Annotated[Scheme, typer.Option(help="key scheme (sr25519 = DBC's own)")] = Scheme.ed25519,
    import_seed: Annotated[
        bool,
        typer.Option(
            "--import-seed",
            help="reuse an existing account: read its 32-byte secret seed (hex, as `subkey inspect` "
            "prints 'Secret seed') from stdin instead of generating one",
        ),
    ] = False,
    expect_account: Annotated[
        str | None,
        typer.Option("--expect-account", help="refuse unless the key's account (public key) is this"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the member key (account = public key hex), mode 0600, or import an existing one."""
    path = key.expanduser()
    if path.exists():
        fail(f"{path} exists; refusing to overwrite a key", as_json)
    k = (
        imported_key(scheme, expect_account, as_json, "account")
        if import_seed
        else SigningKey.generate(scheme)
    )
    k.save(path)
    if as_json:
        emit({"account": k.public_hex, "key_file": str(path), "imported": import_seed})
    else:
        out.print(f"account [bold]{k.public_hex}[/] (key in {path}, mode 0600)")


@app.command()
def register(
    api: ApiOpt,
    linked: Annotated[
        list[str] | None, typer.Option("--linked", help="owner account you are tied to")
    ] = None,
    key: KeyOpt = DEFAULT_KEY,
    as_json: JsonOpt = False,
) -> None:
    """Join the committee pool; you are never drawn for machines of your linked accounts."""
    client = _client(api, key, as_json)
    try:
        doc = client.register(list(linked or []))
    except ApiError as exc:
        _api_error(exc, as_json)
    if as_json:
        emit(doc)
        return
    out.print(f"registered {doc['account']} (linked: {doc['linked_accounts']})")
    if not doc.get("admitted"):
        out.print("not admitted yet: you are drawn once the operator runs `gpuproof-ops admit` for you")


@app.command()
def assignments(api: ApiOpt, key: KeyOpt = DEFAULT_KEY, as_json: JsonOpt = False) -> None:
    """Rounds you were drawn for, with their phase and deadlines."""
    client = _client(api, key, as_json)
    try:
        items = client.assignments()
    except ApiError as exc:
        _api_error(exc, as_json)
    if as_json:
        emit(items)
        return
    table = Table("machine", "round", "status", "phase", "commit by", "reveal by", "committed", "revealed")
    for a in items:
        table.add_row(
            a["machine_id"][:16] + "…",
            str(a["round"]),
            a["status"],
            a["phase"],
            f"{a['commit_deadline']:.0f}",
            f"{a['reveal_deadline']:.0f}",
            str(a["committed"]),
            str(a["revealed"]),
        )
    out.print(table)


def _inspect(
    client: CommitteeClient, machine_id: str, round_no: int, allow_cpu: bool, as_json: bool
) -> Inspection:
    with _busy("downloading the transcript and re-verifying the proof…", as_json) as progress:
        progress.add_task("inspect")
        try:
            return inspect_transcript(client.transcript(machine_id, round_no), allow_cpu_backend=allow_cpu)
        except ApiError as exc:
            _api_error(exc, as_json)
            raise


def _show(inspection: Inspection) -> None:
    for note in inspection.notes:
        out.print(f"[bold yellow]{note}[/]")
    checks = Table("check", "result", "detail", title="evidence re-verified locally")
    for c in inspection.checks:
        checks.add_row(c.name, "[green]ok[/]" if c.ok else "[red]FAIL[/]", c.detail)
    out.print(checks)
    gpus = Table(
        "GPU",
        "claimed (challenge)",
        "NVML name (host-reported)",
        "identified",
        "memory GiB / ref GB",
        "measured BF16 / ref TFLOPS",
        "CUDA cores reported / ref",
        title="claimed vs host-reported vs reference",
    )
    for r in inspection.rows:
        gpus.add_row(
            str(r["gpu"]),
            r["claimed"],
            r["nvml_name"],
            str(r["identified"]),
            f"{r['memory_gib']} / {r['reference_mem_gb']}",
            f"{r['measured_bf16_tflops']} / {r['reference_bf16_tflops']}",
            f"{r['cuda_cores_reported']} / {r['cuda_cores_reference']}",
        )
    if inspection.rows:
        out.print(gpus)
    if inspection.evidence:
        out.print(evidence_table(inspection.evidence))
    if inspection.fields:
        info = Table("field", "your finding", "service expects", title="CommitteeUploadInfo")
        expected = inspection.expected_info or {}
        for k, v in inspection.fields.items():
            e = expected.get(k)
            info.add_row(k, str(v), str(e) if e == v else f"[yellow]{e}[/]")
        out.print(info)
    verdict = "[green]SUPPORT[/]" if inspection.supports else "[red]REFUSE[/]"
    out.print(f"proof: {inspection.proof_status}; your judgement: {verdict}")


@app.command()
def inspect(
    machine_id: str,
    round_no: int,
    api: ApiOpt,
    key: KeyOpt = DEFAULT_KEY,
    allow_cpu_backend: CpuOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Download the round's transcript; re-verify signatures, Merkle paths and your own row checks."""
    inspection = _inspect(_client(api, key, as_json), machine_id, round_no, allow_cpu_backend, as_json)
    emit(inspection.as_dict()) if as_json else _show(inspection)


@app.command()
def commit(
    machine_id: str,
    round_no: int,
    api: ApiOpt,
    key: KeyOpt = DEFAULT_KEY,
    state: StateOpt = DEFAULT_STATE,
    allow_cpu_backend: CpuOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Inspect, then commit blake2_128 of your CommitteeUploadInfo (rand_str kept in --state)."""
    client = _client(api, key, as_json)
    votes = MemberState(state.expanduser())
    saved = votes.get(machine_id, round_no)
    if saved is not None and saved.get("committed"):
        doc = {"commit_hash": saved["commit_hash"], "already_committed": True}
        if as_json:
            emit(doc)
        else:
            out.print(f"already committed {saved['commit_hash']}; the saved vote is kept (reveal it later)")
        return
    inspection = _inspect(client, machine_id, round_no, allow_cpu_backend, as_json)
    try:
        info = commit_findings(client, votes, inspection)
    except ApiError as exc:
        _api_error(exc, as_json)
    except CommitConflict as exc:
        fail(str(exc), as_json, code="commit_conflict")
    doc = {
        "commit_hash": info.commit_hash_hex(),
        "is_support": info.is_support,
        "calc_point": info.calc_point,
        "already_committed": saved is not None,
    }
    emit(doc) if as_json else out.print(f"committed {doc['commit_hash']} (support={info.is_support})")


@app.command()
def reveal(
    machine_id: str,
    round_no: int,
    api: ApiOpt,
    key: KeyOpt = DEFAULT_KEY,
    state: StateOpt = DEFAULT_STATE,
    as_json: JsonOpt = False,
) -> None:
    """Reveal the CommitteeUploadInfo you committed."""
    client = _client(api, key, as_json)
    try:
        info = reveal_findings(client, MemberState(state.expanduser()), machine_id, round_no)
    except (ApiError, LookupError) as exc:
        if isinstance(exc, ApiError):
            _api_error(exc, as_json)
        fail(str(exc), as_json)
    emit(info.model_dump(mode="json")) if as_json else out.print(f"revealed (support={info.is_support})")


@app.command()
def agent(
    api: ApiOpt,
    key: KeyOpt = DEFAULT_KEY,
    state: StateOpt = DEFAULT_STATE,
    once: Annotated[bool, typer.Option("--once", help="one pass, then exit")] = False,
    interval: Annotated[float, typer.Option("--interval", help="seconds between passes")] = 5.0,
    allow_cpu_backend: CpuOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """A bot member: inspects honestly, commits and reveals within its windows."""
    client = _client(api, key, as_json)
    log = (lambda _m: None) if as_json else (lambda m: err.print(m))
    try:
        actions = run_agent(
            client,
            MemberState(state.expanduser()),
            interval_s=interval,
            once=once,
            allow_cpu_backend=allow_cpu_backend,
            stop=threading.Event(),
            log=log,
        )
    except KeyboardInterrupt:
        actions = []
    if as_json:
        emit([asdict(a) for a in actions])
