"""`committee`: a verifier committee member's CLI. Every command has --json (docs/cli.md).

committee keygen [--scheme sr25519] [--import-seed | --import-mnemonic]  # key file, mode 0600
committee register --api URL --linked OWNER_ACCOUNT ...
committee status --api URL                         # your record, open rounds, what to do next
committee assignments --api URL                    # deadlines as dates with countdowns
committee inspect MACHINE_ID ROUND --api URL [--live]  # re-verifies the evidence locally; --live
                                                   # also challenges the machine's agent yourself
committee commit MACHINE_ID ROUND --api URL [--live]   # inspects, then commits blake2_128 of the findings
committee reveal MACHINE_ID ROUND --api URL        # reveals the findings (and the live check's result)
committee verify-draw MACHINE_ID ROUND --api URL   # recomputes the draw from the round's public data
committee retire --api URL                         # leave the pool: never drawn again
committee agent --api URL [--once] [--interval 5] [--live]  # a bot member that reviews honestly

`--api` reads GPUPROOF_API, `--key` GPUPROOF_COMMITTEE_KEY. Exit codes: gpuproof.cli.output.ExitCode.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import requests
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gpuproof.cli.evidence_view import capacity_table, evidence_table
from gpuproof.cli.keyimport import address, new_key, refuse_existing, write_key
from gpuproof.cli.live import LiveOptions, live_checker
from gpuproof.cli.member import (
    ApiError,
    CommitConflict,
    CommitteeClient,
    Inspection,
    LiveChecker,
    MemberState,
    PassStats,
    commit_findings,
    inspect_round,
    reveal_findings,
    run_agent,
)
from gpuproof.cli.output import (
    ENV_API,
    ENV_COMMITTEE_KEY,
    ExitCode,
    emit,
    fail,
    fail_for,
    handled,
    package_version,
    version_callback,
    when,
)
from gpuproof.committee.recompute import recompute_draw
from gpuproof.protocol.keys import KeyFileError, Scheme, SigningKey

DEFAULT_KEY = Path("~/.config/gpuproof/committee.key")
DEFAULT_STATE = Path("~/.config/gpuproof/committee-state.json")

app = typer.Typer(
    help="gpuproof committee member: inspect the evidence yourself, commit, reveal.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
KeyOpt = Annotated[Path, typer.Option("--key", envvar=ENV_COMMITTEE_KEY, help="member key file (mode 0600)")]
ApiOpt = Annotated[str, typer.Option("--api", envvar=ENV_API, help="service API URL")]
StateOpt = Annotated[Path, typer.Option("--state", help="local vote state (rand_str), mode 0600")]
CpuOpt = Annotated[bool, typer.Option("--allow-cpu-backend", help="support CPU-backend reports (demo only)")]
MachineArg = Annotated[str, typer.Argument(help="the machine's id (64 hex characters)")]
RoundArg = Annotated[int, typer.Argument(help="the round number (from 1)", min=1)]


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", help="print the version and exit", is_eager=True,
                     callback=version_callback("committee", package_version())),
    ] = False,
) -> None:  # fmt: skip
    """gpuproof committee member: inspect the evidence yourself, commit, reveal."""


LiveOpt = Annotated[
    bool,
    typer.Option(
        "--live",
        help="also run your own live check: challenge the machine's agent with your nonce and pair "
        "secret, time it with your clock, verify it yourself; a failed one makes you refuse",
    ),
]
PrivateOpt = Annotated[
    bool,
    typer.Option(
        "--allow-private-endpoint", help="let --live reach a loopback/private address (local stacks)"
    ),
]


ShadowOpt = Annotated[
    bool, typer.Option("--live-shadow", help="run the live check in shadow mode: recorded, not counted")
]


def _live(
    client: CommitteeClient, live: bool, allow_private: bool, shadow: bool = False
) -> LiveChecker | None:
    options = LiveOptions(allow_private=allow_private, shadow=shadow)
    return live_checker(client.key, options) if live or shadow else None


def _client(api: str, key: Path, as_json: bool) -> CommitteeClient:
    try:
        return CommitteeClient(api, SigningKey.load(key.expanduser()))
    except KeyFileError as exc:
        fail(
            f"{exc} (create one with: committee keygen --key {key})",
            as_json,
            ExitCode.KEY,
            code="key_problem",
        )


def _busy(label: str, as_json: bool) -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn(label), TimeElapsedColumn(), console=err, transient=True, disable=as_json
    )


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
    import_mnemonic: Annotated[
        bool,
        typer.Option(
            "--import-mnemonic",
            help="reuse an existing account: read its BIP-39 phrase from stdin, optionally with a "
            "derivation path (PHRASE//hard/soft; sr25519 only)",
        ),
    ] = False,
    expect_account: Annotated[
        str | None,
        typer.Option("--expect-account", help="refuse unless the imported key is this account (SS58 or hex)"),
    ] = None,
    show_mnemonic: Annotated[
        bool, typer.Option("--show-mnemonic", help="show the new phrase on stderr even when not a terminal")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask whether the phrase is written down")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create the member key from a new BIP-39 phrase (shown once, for backup), or import one."""
    path = key.expanduser()
    refuse_existing(path, as_json)
    made = new_key(
        scheme,
        import_seed=import_seed,
        import_mnemonic=import_mnemonic,
        expected=expect_account,
        show_mnemonic=show_mnemonic,
        yes=yes,
        as_json=as_json,
        what="account",
    )
    doc = write_key(path, made, as_json)
    doc["account"] = made.key.public_hex
    if as_json:
        emit(doc)
        return
    out.print(f"account {doc['address']}\n  public key {doc['public_key']}\n  key file {path} (mode 0600)")
    key_flag = "" if path == DEFAULT_KEY.expanduser() else f" --key {path}"
    out.print(
        "next: join the pool with\n"
        f"  committee register --api URL{key_flag} [--linked YOUR_OWNER_ACCOUNT ...]\n"
        "then ask the operator to admit you (gpuproof-ops admit ACCOUNT); you are drawn once admitted",
        highlight=False,
    )


@app.command()
def register(
    api: ApiOpt,
    linked: Annotated[
        list[str] | None, typer.Option("--linked", help="owner account you are tied to (SS58 or hex)")
    ] = None,
    key: KeyOpt = DEFAULT_KEY,
    as_json: JsonOpt = False,
) -> None:
    """Join the committee pool; you are never drawn for machines of your linked accounts."""
    client = _client(api, key, as_json)
    with handled(as_json, api):
        doc = client.register(list(linked or []))
    if as_json:
        emit(doc)
        return
    out.print(f"registered {doc['account']} (linked: {', '.join(doc['linked_accounts']) or 'none'})")
    if not doc.get("admitted"):
        out.print("not admitted yet: you are drawn once the operator runs `gpuproof-ops admit` for you")


def _next_step(member: dict[str, Any] | None, items: list[dict[str, Any]], now: float) -> str:
    """What the member should do now, from its record and open assignments."""
    if member is not None and member.get("status") == "retired":
        return "you are retired: you are never drawn again (register with a new key to come back)"
    for a in items:
        if a["status"] != "open":
            continue
        if a["phase"] == "commit" and not a["committed"]:
            return (
                f"commit before {when(a['commit_deadline'], now)}:\n"
                f"  committee commit {a['machine_id']} {a['round']} --api URL"
            )
        if a["phase"] == "reveal" and a["committed"] and not a["revealed"]:
            return (
                f"reveal before {when(a['reveal_deadline'], now)}:\n"
                f"  committee reveal {a['machine_id']} {a['round']} --api URL"
            )
    if member is not None and not member.get("admitted"):
        return "wait for the operator to admit you (gpuproof-ops admit ACCOUNT): you are not drawn before"
    return "nothing to do now; run `committee agent` (or this command) to see new draws"


def _assignment_rows(items: list[dict[str, Any]], now: float) -> Table:
    table = Table("machine (full id)", "round", "phase", "commit by", "reveal by", "committed", "revealed")
    for a in items:
        table.add_row(
            a["machine_id"],
            str(a["round"]),
            a["phase"] if a["status"] == "open" else f"{a['status']} ({a.get('result') or '—'})",
            when(a["commit_deadline"], now),
            when(a["reveal_deadline"], now),
            "yes" if a["committed"] else "no",
            "yes" if a["revealed"] else "no",
        )
    return table


@app.command()
def status(api: ApiOpt, key: KeyOpt = DEFAULT_KEY, as_json: JsonOpt = False) -> None:
    """Your account, registration and admission, open rounds with countdowns, and what to do next."""
    client = _client(api, key, as_json)
    now = time.time()
    try:
        doc = client.assignments_doc()
    except ApiError as exc:
        if exc.code != "unknown_member":
            fail_for(exc, as_json)
        doc = {"account": client.account, "member": None, "assignments": []}
        step = f"register first: committee register --api {api}"
        if as_json:
            emit({**doc, "registered": False, "address": address(client.key), "next_step": step})
            return
        out.print(f"account {address(client.key)} ({client.account}) is not registered\nnext: {step}")
        return
    except requests.RequestException as exc:
        fail_for(exc, as_json, api)
    member, items = doc.get("member"), list(doc.get("assignments") or [])
    open_items = [a for a in items if a["status"] == "open"]
    step = _next_step(member, items, now)
    if as_json:
        emit({**doc, "registered": True, "address": address(client.key), "next_step": step})
        return
    out.print(f"account {address(client.key)}\n  public key {client.account}", highlight=False)
    if member is not None:
        admitted = f"admitted {when(member['admitted_at'], now)}" if member["admitted"] else "NOT admitted"
        out.print(
            f"  {member['status']}, {admitted}; registered {when(member['registered_at'], now)}; "
            f"{member['in_flight']} round(s) in flight",
            highlight=False,
        )
    out.print(f"{len(open_items)} open round(s), {len(items) - len(open_items)} closed")
    if open_items:
        out.print(_assignment_rows(open_items, now))
    out.print(f"next: {step}", highlight=False)


@app.command()
def assignments(api: ApiOpt, key: KeyOpt = DEFAULT_KEY, as_json: JsonOpt = False) -> None:
    """Rounds you were drawn for, with their phase and deadlines (dates and countdowns)."""
    client = _client(api, key, as_json)
    with handled(as_json, api):
        items = client.assignments()
    if as_json:
        emit(items)
        return
    if not items:
        out.print("no assignments yet")
        return
    out.print(_assignment_rows(items, time.time()))


def _inspect(
    client: CommitteeClient,
    machine_id: str,
    round_no: int,
    allow_cpu: bool,
    as_json: bool,
    live: LiveChecker | None = None,
) -> Inspection:
    with _busy(
        "downloading the transcript, re-verifying the proof and the capacity phase…", as_json
    ) as progress:
        progress.add_task("inspect")
        with handled(as_json, client.api_url):
            transcript, inspection = inspect_round(client, machine_id, round_no, allow_cpu_backend=allow_cpu)
    if live is None:
        return inspection
    with _busy("live check: challenging the machine's agent…", as_json) as progress:
        progress.add_task("live")
        with handled(as_json, client.api_url):
            return live(transcript, inspection)
    raise AssertionError("unreachable")


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
    if inspection.capacity:
        out.print(capacity_table(inspection.capacity))
    if inspection.evidence:
        out.print(evidence_table(inspection.evidence))
    if inspection.fields:
        info = Table("field", "your finding", "service expects", title="CommitteeUploadInfo")
        expected = inspection.expected_info or {}
        for k, v in inspection.fields.items():
            e = expected.get(k)
            info.add_row(k, str(v), str(e) if e == v else f"[yellow]{e}[/]")
        out.print(info)
    # The calc_point breakdown (input by input, proven or declared) goes here once verdicts carry it.
    verdict = "[green]SUPPORT[/]" if inspection.supports else "[red]REFUSE[/]"
    out.print(f"proof: {inspection.proof_status}; your judgement: {verdict}")


@app.command()
def inspect(
    machine_id: MachineArg,
    round_no: RoundArg,
    api: ApiOpt,
    key: KeyOpt = DEFAULT_KEY,
    allow_cpu_backend: CpuOpt = False,
    live: LiveOpt = False,
    allow_private_endpoint: PrivateOpt = False,
    live_shadow: ShadowOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Download the round's transcript; re-verify signatures, Merkle paths and your own row checks."""
    client = _client(api, key, as_json)
    checker = _live(client, live, allow_private_endpoint, live_shadow)
    inspection = _inspect(client, machine_id, round_no, allow_cpu_backend, as_json, checker)
    emit(inspection.as_dict()) if as_json else _show(inspection)


@app.command()
def commit(
    machine_id: MachineArg,
    round_no: RoundArg,
    api: ApiOpt,
    key: KeyOpt = DEFAULT_KEY,
    state: StateOpt = DEFAULT_STATE,
    allow_cpu_backend: CpuOpt = False,
    live: LiveOpt = False,
    allow_private_endpoint: PrivateOpt = False,
    live_shadow: ShadowOpt = False,
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
    checker = _live(client, live, allow_private_endpoint, live_shadow)
    inspection = _inspect(client, machine_id, round_no, allow_cpu_backend, as_json, checker)
    try:
        with handled(as_json, api):
            info = commit_findings(client, votes, inspection)
    except CommitConflict as exc:
        fail(str(exc), as_json, code="commit_conflict")
    doc = {
        "commit_hash": info.commit_hash_hex(),
        "is_support": info.is_support,
        "calc_point": info.calc_point,
        "already_committed": saved is not None,
    }
    if as_json:
        emit(doc)
        return
    out.print(f"committed {doc['commit_hash']} (support={info.is_support})")
    out.print(
        f"next: committee reveal {machine_id} {round_no} --api URL, in the reveal phase", highlight=False
    )


@app.command()
def reveal(
    machine_id: MachineArg,
    round_no: RoundArg,
    api: ApiOpt,
    key: KeyOpt = DEFAULT_KEY,
    state: StateOpt = DEFAULT_STATE,
    as_json: JsonOpt = False,
) -> None:
    """Reveal the CommitteeUploadInfo you committed."""
    client = _client(api, key, as_json)
    try:
        with handled(as_json, api):
            info = reveal_findings(client, MemberState(state.expanduser()), machine_id, round_no)
    except LookupError as exc:
        fail(str(exc), as_json, code="no_saved_vote")
    emit(info.model_dump(mode="json")) if as_json else out.print(f"revealed (support={info.is_support})")


@app.command("verify-draw")
def verify_draw(
    machine_id: MachineArg,
    round_no: RoundArg,
    api: ApiOpt,
    key: Annotated[
        Path | None,
        typer.Option("--key", envvar=ENV_COMMITTEE_KEY, help="also check your account is in the pool"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute the round's draw from its public data; exit 1 unless it is the published one.

    Public data: the beacon tip and value, the pool and its digest (GET /beacon, GET /rounds)."""
    account = None
    if key is not None and key.expanduser().exists():
        with handled(as_json):
            account = SigningKey.load(key.expanduser()).public_hex
    anyone = CommitteeClient(api, SigningKey.generate())  # reads are public; nothing is signed
    with handled(as_json, api):
        beacon = anyone.beacon()
        rnd = anyone.round(machine_id, round_no)
    checks = recompute_draw(rnd, beacon, account)
    ok = all(c.ok for c in checks if c.name != "your_account")
    if as_json:
        emit({"machine_id": machine_id, "round": round_no, "ok": ok, "checks": [asdict(c) for c in checks]})
    else:
        table = Table("check", "result", "detail", title=f"draw of {machine_id} round {round_no}")
        for c in checks:
            mark = (
                "[green]ok[/]"
                if c.ok
                else ("[yellow]note[/]" if c.name == "your_account" else "[red]FAIL[/]")
            )
            table.add_row(c.name, mark, c.detail)
        out.print(table)
        out.print("the draw is as published" if ok else "[red]the published draw does NOT recompute[/]")
    if not ok:
        raise typer.Exit(ExitCode.FAILED)


@app.command()
def retire(
    api: ApiOpt,
    key: KeyOpt = DEFAULT_KEY,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Leave the pool (signed by your key): you are never drawn again.

    Rounds already booked still expect your votes."""
    client = _client(api, key, as_json)
    if not yes and not as_json and not typer.confirm(f"retire {client.account} from the pool?", err=True):
        fail("not retired", as_json, ExitCode.FAILED)
    with handled(as_json, api):
        doc = client.retire()
    if as_json:
        emit(doc)
        return
    out.print(
        f"retired {doc['account']}: never drawn again ({doc['in_flight']} booked round(s) still expect votes)"
    )


@app.command()
def agent(
    api: ApiOpt,
    key: KeyOpt = DEFAULT_KEY,
    state: StateOpt = DEFAULT_STATE,
    once: Annotated[bool, typer.Option("--once", help="one pass, then exit")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.1, help="seconds between passes")] = 5.0,
    allow_cpu_backend: CpuOpt = False,
    live: LiveOpt = False,
    allow_private_endpoint: PrivateOpt = False,
    live_shadow: ShadowOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """A bot member: inspects honestly (with --live, challenges each machine itself), commits and
    reveals within its windows.

    Backs off while the service is unreachable; ends with a summary line; exit 3 when no pass
    reached the service."""
    client = _client(api, key, as_json)
    log = (lambda _m: None) if as_json else (lambda m: err.print(m, markup=False, highlight=False))
    stats = PassStats()
    actions = []
    with contextlib.suppress(KeyboardInterrupt):
        actions = run_agent(
            client,
            MemberState(state.expanduser()),
            interval_s=interval,
            once=once,
            allow_cpu_backend=allow_cpu_backend,
            stop=threading.Event(),
            log=log,
            stats=stats,
            live=_live(client, live, allow_private_endpoint, live_shadow),
        )
    summary = stats.summary(actions)
    if as_json:
        emit({"actions": [asdict(a) for a in actions], **asdict(stats), "summary": summary})
    else:
        err.print(summary, markup=False, highlight=False)
    if stats.passes and stats.failed == stats.passes:
        raise typer.Exit(ExitCode.UNREACHABLE if stats.last_unreachable else ExitCode.FAILED)
    if any(a.action == "failed" for a in actions):
        raise typer.Exit(ExitCode.FAILED)


if __name__ == "__main__":
    app()
