"""`gpuproof-ops`: operator commands (docs/operations.md).

gpuproof-ops keygen [--key ~/.config/gpuproof/operator.key]      # the operator key, mode 0600
gpuproof-ops admit ACCOUNT --api URL [--revoke]                  # signed by the operator key
gpuproof-ops resolve MACHINE_ID --accept committee|service --api URL [--round N] [--note TEXT]
gpuproof-ops republish [--older-than 300] [--dry-run] [--budget 120] [--json]
gpuproof-ops reconcile [--dry-run] [--full] [--grace 300] [--json]

`keygen` makes the operator key; its public key is the stack's `CommitteeOperatorKey` parameter.
`admit` admits a registered committee member into the draw (a member is never drawn before):
only the operator key's signed request can, and it needs no AWS credentials (docs/decisions.md).
`resolve` settles a disputed round (the committee's majority confirmed findings the service's own
differ from): it shows both views, records the operator's choice on the round, and the sweeper
writes the verdict (and so the chain publication) on its next tick.

`republish` brings the verdicts the chain publisher left behind (PublisherDLQDepthAlarm: a
stream batch exhausted its retries) onto the chain: it lists the verdicts decided more than
`--older-than` seconds ago whose publication is missing or still pending, and publishes them
with the publisher's own exactly-once protocol (a pending one is resolved by its oracle nonce,
never submitted twice). Environment: the ChainPublisherFunction's (VERDICTS_TABLE,
PUBLISHED_BATCHES_TABLE, SERVICE_KEY_ID, CHAIN_NODE_URL, ORACLE_KEY_SECRET_ARN or ORACLE_SURI)
and AWS credentials allowed what that function is. Exit 1 when any verdict is still not on chain.
A malformed verdict is listed in one line with its reasons and never stops the others.

`reconcile` runs the sweeper's reconciler now (gpuproof.logic.reconcile): a verdict on chain whose
machine is not marked, a pending or never-published verdict (handed back to the publisher), a
malformed one (set aside); each repair one line. `--full` scans every verdict (and every open
round) once instead of the Unsettled index: after deploying this version over older data.
Environment: the DeadlineSweeperFunction's (VERDICTS_TABLE, MACHINES_TABLE, ROUNDS_TABLE).
Needs the service extra (`pip install 'gpuproof[service]'`): it runs the service's own code.
"""

from __future__ import annotations

import os
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gpuproof.chain.adapter import ChainSettings, ChainUnavailable
from gpuproof.chain.store import DynamoVerdictOutbox, OutboxConflict
from gpuproof.cli.operator import OperatorClient
from gpuproof.cli.output import (
    ENV_API,
    ENV_OPERATOR_KEY,
    KEY_PATH_FIELD,
    ExitCode,
    emit,
    fail,
    fail_for,
    package_version,
    version_callback,
)
from gpuproof.protocol.client import ServiceError
from gpuproof.protocol.keys import KeyFileError, SigningKey
from gpuproof.protocol.ss58 import Ss58Error

app = typer.Typer(help="gpuproof operator commands.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
DEFAULT_OPERATOR_KEY = Path("~/.config/gpuproof/operator.key")
KeyOpt = Annotated[Path, typer.Option("--key", envvar=ENV_OPERATOR_KEY, help="operator key file (mode 0600)")]
ApiOpt = Annotated[str, typer.Option("--api", envvar=ENV_API, help="service API URL")]


def operator_client(api: str, key: Path, as_json: bool) -> OperatorClient:
    try:
        return OperatorClient(api, SigningKey.load(key.expanduser()))
    except KeyFileError as exc:
        fail(f"{exc} (create one with: gpuproof-ops keygen --key {key})", as_json, ExitCode.KEY)


def _refused(exc: ServiceError, as_json: bool) -> None:
    fail_for(exc, as_json)


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", help="print the version and exit", is_eager=True,
                     callback=version_callback("gpuproof-ops", package_version())),
    ] = False,
) -> None:  # fmt: skip
    """Operator commands (run with the service's environment)."""


@app.command()
def keygen(key: KeyOpt = DEFAULT_OPERATOR_KEY, as_json: JsonOpt = False) -> None:
    """Create the operator key (Ed25519, mode 0600); deploy with CommitteeOperatorKey = its public key."""
    path = key.expanduser()
    if path.exists():
        fail(f"refusing to overwrite existing key file {path}", as_json, ExitCode.KEY, code="key_exists")
    k = SigningKey.generate()
    k.save(path)
    if as_json:
        emit({"operator_key": k.public_hex, "public_key": k.public_hex, KEY_PATH_FIELD: str(path)})
    else:
        out.print(f"operator key [bold]{k.public_hex}[/] (in {path}, mode 0600)")
        out.print(f"deploy with: sam deploy --parameter-overrides CommitteeOperatorKey={k.public_hex}")


@app.command()
def admit(
    account: Annotated[str, typer.Argument(help="the registered member's account (hex or SS58)")],
    api: ApiOpt,
    key: KeyOpt = DEFAULT_OPERATOR_KEY,
    revoke: Annotated[bool, typer.Option("--revoke", help="withdraw the admission instead")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Admit a registered committee member into the draw (or --revoke it), signed by the operator key."""
    client = operator_client(api, key, as_json)
    try:
        doc = client.admit(account, admitted=not revoke)
    except Ss58Error as exc:
        fail(f"{account!r} is not an account: {exc}", as_json, 2)
    except ServiceError as exc:
        _refused(exc, as_json)
    if as_json:
        emit(doc)
    else:
        out.print(f"{doc['account']}: {'admitted' if doc['admitted'] else 'admission revoked'}")


class Accept(StrEnum):
    committee = "committee"
    service = "service"


def _disputed_round(client: OperatorClient, machine_id: str) -> dict[str, Any] | None:
    """The machine's latest disputed round (rounds are numbered from 1, without gaps)."""
    found = None
    for round_no in range(1, 10_000):
        try:
            doc = client.round(machine_id, round_no)
        except ServiceError as exc:
            if exc.code == "unknown_round":
                return found
            raise
        if doc["status"] == "disputed":
            found = doc
    return found


@app.command()
def resolve(
    machine_id: Annotated[str, typer.Argument(help="the disputed machine")],
    accept: Annotated[Accept, typer.Option("--accept", help="whose findings the verdict carries")],
    api: ApiOpt,
    round_no: Annotated[
        int | None, typer.Option("--round", min=1, help="the disputed round (default: the latest)")
    ] = None,
    note: Annotated[str, typer.Option("--note", help="why (kept on the round)")] = "",
    key: KeyOpt = DEFAULT_OPERATOR_KEY,
    as_json: JsonOpt = False,
) -> None:
    """Settle a disputed round: the verdict carries the committee's or the service's findings."""
    client = operator_client(api, key, as_json)
    try:
        rnd = client.round(machine_id, round_no) if round_no else _disputed_round(client, machine_id)
        if rnd is None:
            fail(f"machine {machine_id} has no disputed round", as_json, 1, code="round_not_disputed")
        views = (rnd.get("tally") or {}).get("differences", [])
        doc = client.resolve(machine_id, int(rnd["round"]), accept.value, note)
    except ServiceError as exc:
        _refused(exc, as_json)
    if as_json:
        emit({"machine_id": machine_id, "round": doc["round"], "resolution": doc["resolution"]})
        return
    table = Table(title=f"disputed round {doc['round']}: committee vs service")
    table.add_column("difference")
    for line in views:
        table.add_row(line)
    out.print(table)
    out.print(f"accepted the {accept.value}'s findings; the verdict is written at the sweeper's next tick")


@app.command()
def republish(
    older_than: Annotated[
        float,
        typer.Option("--older-than", min=0, help="only verdicts decided at least this many seconds ago"),
    ] = 300.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what would be published; publish nothing")
    ] = False,
    budget: Annotated[
        float, typer.Option("--budget", min=1, help="seconds to keep retrying an unreachable chain")
    ] = 120.0,
    as_json: JsonOpt = False,
) -> None:
    """Publish the verdicts the chain publisher left behind (exactly once, by its own protocol)."""
    from gpuproof.chain.publisher import publish_with_retries
    from gpuproof.workers.publisher import publisher_services

    outbox = DynamoVerdictOutbox(
        os.environ["VERDICTS_TABLE"], os.environ["PUBLISHED_BATCHES_TABLE"], _region()
    )
    verdict_ids, bad = outbox.unpublished(time.time() - older_than)
    malformed = [m.line() for m in bad]
    if dry_run or not verdict_ids:
        if as_json:
            emit({"dry_run": dry_run, "unpublished": verdict_ids, "malformed": malformed})
        else:
            out.print(
                f"{len(verdict_ids)} verdict(s) not on chain" + "".join(f"\n  {v}" for v in verdict_ids)
            )
            for line in malformed:
                out.print(f"  {line}", markup=False, highlight=False)
        return
    settings = ChainSettings.from_env()
    if not settings.enabled:
        fail("CHAIN_NODE_URL is not set: nothing can be published", as_json, 2)
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                      disable=as_json) as progress:  # fmt: skip
            progress.add_task(f"publishing {len(verdict_ids)} verdict(s)", total=None)
            outcomes = publish_with_retries(publisher_services(settings), verdict_ids, budget)
    except (ChainUnavailable, OutboxConflict) as exc:
        fail(f"not published within {budget:.0f} s: {exc}", as_json, 2, unpublished=verdict_ids)
    rows = []
    for vid in verdict_ids:
        outcome = outcomes[vid]
        row = outcome.as_dict()
        row["error"] = None if outcome.error is None else str(outcome.error)
        if row["status"] == "published":
            _finish(outbox, vid)
        rows.append(row)
    left = [r for r in rows if r["status"] != "published"]
    if as_json:
        emit({"republished": rows, "not_published": [r["verdict_id"] for r in left], "malformed": malformed})
    else:
        table = Table(title="republished verdicts")
        for col in ("verdict", "status", "block", "error"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["verdict_id"], r["status"], str(r["block_hash"] or "—"), r["error"] or "")
        out.print(table)
        for line in malformed:
            out.print(f"  {line}", markup=False, highlight=False)
    if left:
        raise typer.Exit(1)


def _finish(outbox: DynamoVerdictOutbox, verdict_id: str) -> None:
    """As the stream publisher does after publishing: mark the machine, settle the verdict."""
    from gpuproof.workers.publisher import _advance_machine

    _advance_machine(verdict_id)
    outbox.settle(verdict_id)


@app.command()
def reconcile(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what would be repaired; change nothing")
    ] = False,
    full: Annotated[
        bool, typer.Option("--full", help="scan every verdict and open round, not only the unsettled ones")
    ] = False,
    grace: Annotated[
        float | None,
        typer.Option(
            "--grace", min=0, help="leave verdicts younger than this (s) to the stream (default 300)"
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Repair what the verdicts, the machines and the chain disagree on (the sweeper does it each tick)."""
    import dataclasses

    from gpuproof.api.wiring import reconcile_services
    from gpuproof.logic.reconcile import reconcile as run_reconcile

    svc = reconcile_services()
    if grace is not None:
        svc = dataclasses.replace(svc, grace_s=grace)
    now = time.time()
    done = run_reconcile(svc, now, dry_run=dry_run, full=full)
    rescheduled = _schedule_open_rounds(now, dry_run) if full else []
    set_aside = [] if full else [m.line() for m in _set_aside_verdicts(svc.outbox)]
    doc = done.as_dict() | {"set_aside": set_aside, "rounds_scheduled": rescheduled}
    if as_json:
        emit(doc)
        return
    verb = "would repair" if dry_run else "repaired"
    out.print(f"{verb} {len(done.repairs)}; examined {done.examined}; waiting {len(done.waiting)}")
    for r in done.repairs:
        out.print(f"  {r.line()}", markup=False, highlight=False)
    for line in [*done.malformed, *set_aside]:
        out.print(f"  {line}", markup=False, highlight=False)
    for key in rescheduled:
        out.print(f"  round scheduled {key}", markup=False, highlight=False)


def _set_aside_verdicts(outbox: Any) -> list[Any]:
    """The verdicts the publisher set aside as malformed (each one line)."""
    from gpuproof.chain.store import MalformedVerdict

    loaded = outbox.load_all(outbox.unsettled("malformed"))
    return [m for m in loaded.values() if isinstance(m, MalformedVerdict)]


def _schedule_open_rounds(now: float, dry_run: bool) -> list[str]:
    """Open rounds written before the ByDue index (no due_at): due now, so the next tick sees them."""
    from gpuproof.api.wiring import committee_services

    store = committee_services().store
    missing = [r for r in store.open_rounds() if r.due_at is None]
    if not dry_run:
        for r in missing:
            store.reschedule(r, now)
    return [f"{r.machine_id}:{r.round}" for r in missing]


if __name__ == "__main__":
    app()
