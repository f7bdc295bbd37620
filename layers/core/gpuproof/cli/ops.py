"""`gpuproof-ops`: operator commands (docs/operations.md).

gpuproof-ops keygen [--key ~/.config/gpuproof/operator.key]      # the operator key, mode 0600
gpuproof-ops admit ACCOUNT --api URL [--revoke]                  # signed by the operator key
gpuproof-ops resolve MACHINE_ID --accept committee|service --api URL [--round N] [--note TEXT]
gpuproof-ops republish [--older-than 300] [--dry-run] [--budget 120] [--json]
gpuproof-ops reconcile [--dry-run] [--full] [--grace 300] [--json]
gpuproof-ops dlq list [--queue verify|publisher] [--max 10] [--json]
gpuproof-ops dlq redrive [--max 100] [--dry-run] [--json]        # verify DLQ → verify queue
gpuproof-ops stuck [--older-than 600] [--json]                   # machines waiting, with why

Every command takes `--stack-name NAME [--region R]` first (`gpuproof-ops --stack-name gpuproof
stuck`): the deployed stack's outputs (DescribeStacks) fill the environment below
(gpuproof/cli/stack.py); a variable already set wins. Exit codes: gpuproof.cli.output.ExitCode.

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
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import requests
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gpuproof.cli.operator import OperatorClient
from gpuproof.cli.output import (
    ENV_API,
    ENV_OPERATOR_KEY,
    KEY_PATH_FIELD,
    ExitCode,
    duration,
    emit,
    fail,
    fail_for,
    package_version,
    version_callback,
    when,
)
from gpuproof.cli.stack import StackError, apply_outputs, region_or_none, require_env, stack_outputs
from gpuproof.protocol.client import ServiceError
from gpuproof.protocol.keys import KeyFileError, SigningKey
from gpuproof.protocol.ss58 import Ss58Error

app = typer.Typer(help="gpuproof operator commands.", no_args_is_help=True, add_completion=False)
dlq_app = typer.Typer(help="the dead-letter queues: list, redrive", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

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


def _region(as_json: bool = False) -> str:
    region = region_or_none()
    if region is None:
        fail(
            "no AWS region: pass gpuproof-ops --region R COMMAND (or set AWS_REGION)",
            as_json,
            ExitCode.USAGE,
            code="no_region",
        )
    return region


def _env(as_json: bool, *names: str) -> dict[str, str]:
    try:
        return require_env(*names)
    except StackError as exc:
        fail(str(exc), as_json, ExitCode.USAGE, code="not_configured")


SERVICE_MODULES = ("boto3", "botocore", "pynamodb", "aws_lambda_powertools")


def needs_service_extra(as_json: bool) -> None:
    """The AWS commands run the service's own code: without its extra, one line saying so."""
    import importlib

    missing = []
    for module in SERVICE_MODULES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        fail(
            f"this command needs the service extra ({', '.join(missing)} missing): pip install '.[ops]'",
            as_json,
            ExitCode.USAGE,
            code="extra_missing",
        )


@contextmanager
def aws_errors(as_json: bool) -> Iterator[None]:
    """AWS refusing or unreachable (credentials, a missing table): one line, exit 3."""
    needs_service_extra(as_json)
    from botocore.exceptions import BotoCoreError, ClientError
    from pynamodb.exceptions import PynamoDBException

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        fail(f"AWS refused: {error.get('Code')}: {error.get('Message')}", as_json, ExitCode.UNREACHABLE)
    except (BotoCoreError, PynamoDBException) as exc:
        fail(f"AWS: {exc}", as_json, ExitCode.UNREACHABLE)


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", help="print the version and exit", is_eager=True,
                     callback=version_callback("gpuproof-ops", package_version())),
    ] = False,
    stack_name: Annotated[
        str | None,
        typer.Option("--stack-name", envvar="GPUPROOF_STACK", help="read the deployed stack's outputs"),
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="AWS region of the stack")] = None,
) -> None:  # fmt: skip
    """Operator commands: with --stack-name, the deployed stack's outputs are the environment."""
    if region:
        os.environ["AWS_REGION"] = region
    if stack_name:
        needs_service_extra(False)
        try:
            outputs = stack_outputs(stack_name, region)
        except StackError as exc:
            fail(str(exc), False, ExitCode.UNREACHABLE if "not read" in str(exc) else ExitCode.USAGE)
        apply_outputs(outputs, os.environ, region)


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
        fail(f"{account!r} is not an account: {exc}", as_json, ExitCode.USAGE)
    except (ServiceError, requests.RequestException) as exc:
        fail_for(exc, as_json, api)
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
    except (ServiceError, requests.RequestException) as exc:
        fail_for(exc, as_json, api)
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
    env = _env(as_json, "VERDICTS_TABLE", "PUBLISHED_BATCHES_TABLE")
    needs_service_extra(as_json)
    from gpuproof.chain.adapter import ChainSettings, ChainUnavailable
    from gpuproof.chain.store import DynamoVerdictOutbox, OutboxConflict

    outbox = DynamoVerdictOutbox(env["VERDICTS_TABLE"], env["PUBLISHED_BATCHES_TABLE"], _region(as_json))
    with aws_errors(as_json):
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
    from gpuproof.chain.publisher import publish_with_retries

    with aws_errors(as_json):  # the publisher's module makes its AWS clients on import
        from gpuproof.workers.publisher import publisher_services
    settings = ChainSettings.from_env()
    if not settings.enabled:
        fail("CHAIN_NODE_URL is not set: nothing can be published", as_json, ExitCode.USAGE)
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                      disable=as_json) as progress:  # fmt: skip
            progress.add_task(f"publishing {len(verdict_ids)} verdict(s)", total=None)
            outcomes = publish_with_retries(publisher_services(settings), verdict_ids, budget)
    except (ChainUnavailable, OutboxConflict) as exc:
        why = f"not published within {budget:.0f} s: {exc}"
        fail(why, as_json, ExitCode.UNREACHABLE, unpublished=verdict_ids)
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


def _finish(outbox: Any, verdict_id: str) -> None:
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

    _env(as_json, "VERDICTS_TABLE", "MACHINES_TABLE")
    _region(as_json)
    with aws_errors(as_json):
        from gpuproof.api.wiring import reconcile_services
        from gpuproof.logic.reconcile import reconcile as run_reconcile

        svc = reconcile_services()
    if grace is not None:
        svc = dataclasses.replace(svc, grace_s=grace)
    now = time.time()
    with aws_errors(as_json):
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


class Queue(StrEnum):
    verify = "verify"
    publisher = "publisher"


DLQ_ENV = {Queue.verify: "VERIFY_DLQ_URL", Queue.publisher: "PUBLISHER_DLQ_URL"}


def _sqs(as_json: bool) -> Any:
    needs_service_extra(as_json)
    import boto3

    return boto3.client("sqs", region_name=_region(as_json))


@dlq_app.command("list")
def dlq_list(
    queue: Annotated[Queue, typer.Option("--queue", help="which dead-letter queue")] = Queue.verify,
    limit: Annotated[int, typer.Option("--max", min=1, max=1000, help="messages to show")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """The DLQ's depth and its first messages (left in the queue)."""
    from gpuproof.cli.queues import depth, peek

    url = _env(as_json, DLQ_ENV[queue])[DLQ_ENV[queue]]
    sqs = _sqs(as_json)
    with aws_errors(as_json):
        count, messages = depth(sqs, url), peek(sqs, url, limit)
    if as_json:
        emit({"queue": queue.value, "url": url, "depth": count, "messages": [m.__dict__ for m in messages]})
        return
    out.print(f"{queue.value} DLQ: {count} message(s)", highlight=False)
    for m in messages:
        sent = when(m.sent_at) if m.sent_at else "—"
        out.print(f"  {m.message_id}  sent {sent}, received {m.receive_count}x  {m.summary()}", markup=False)
    if count and queue is Queue.verify:
        out.print("redrive them to the verify queue: gpuproof-ops dlq redrive")
    elif count:
        out.print("the verdicts they name are published by: gpuproof-ops republish")


@dlq_app.command("redrive")
def dlq_redrive(
    limit: Annotated[int, typer.Option("--max", min=1, max=10_000, help="messages to move at most")] = 100,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count only; move nothing")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Move the verify DLQ's messages back to the verify queue (the publisher DLQ: `republish`)."""
    from gpuproof.cli.queues import depth, redrive

    env = _env(as_json, "VERIFY_DLQ_URL", "VERIFY_QUEUE_URL")
    sqs = _sqs(as_json)
    with aws_errors(as_json):
        if dry_run:
            count = depth(sqs, env["VERIFY_DLQ_URL"])
            moved: list[str] = []
        else:
            moved = redrive(sqs, env["VERIFY_DLQ_URL"], env["VERIFY_QUEUE_URL"], limit)
            count = len(moved)
    if as_json:
        emit({"dry_run": dry_run, "moved": moved, "count": count})
    elif dry_run:
        out.print(f"would move {count} message(s) from the verify DLQ to the verify queue")
    else:
        out.print(f"moved {count} message(s) from the verify DLQ to the verify queue")


@app.command()
def stuck(
    older_than: Annotated[
        float, typer.Option("--older-than", min=0, help="only machines waiting at least this many seconds")
    ] = 600.0,
    as_json: JsonOpt = False,
) -> None:
    """Machines waiting longer than --older-than, oldest first, each with why.

    Waiting: submitted, auto_verified, committee, no_consensus, disputed. Why: the service's
    state_reasons, else what that state waits for."""
    from gpuproof.cli.queues import stuck_machines

    table_name = _env(as_json, "MACHINES_TABLE")["MACHINES_TABLE"]
    with aws_errors(as_json):
        found = stuck_machines(table_name, _region(as_json), older_than)
    if as_json:
        emit({"older_than_s": older_than, "stuck": [s.__dict__ for s in found]})
        return
    out.print(f"{len(found)} machine(s) waiting longer than {duration(older_than)}")
    for s in found:
        out.print(f"  {s.machine_id}  {s.state} since {when(s.since)}", highlight=False)
        for why in s.why:
            out.print(f"    why: {why}", markup=False, highlight=False)


if __name__ == "__main__":
    app()
