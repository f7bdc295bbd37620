"""`gpuproof-ops`: operator commands, run with the service's environment (docs/operations.md).

gpuproof-ops republish [--older-than 300] [--dry-run] [--budget 120] [--json]

`republish` brings the verdicts the chain publisher left behind (PublisherDLQDepthAlarm: a
stream batch exhausted its retries) onto the chain: it lists the verdicts decided more than
`--older-than` seconds ago whose publication is missing or still pending, and publishes them
with the publisher's own exactly-once protocol (a pending one is resolved by its oracle nonce,
never submitted twice). Environment: the ChainPublisherFunction's (VERDICTS_TABLE,
PUBLISHED_BATCHES_TABLE, SERVICE_KEY_ID, CHAIN_NODE_URL, ORACLE_KEY_SECRET_ARN or ORACLE_SURI)
and AWS credentials allowed what that function is. Exit 1 when any verdict is still not on chain.
Needs the service extra (`pip install 'gpuproof[service]'`): it runs the service's own code.
"""

from __future__ import annotations

import os
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gpuproof.chain.adapter import ChainSettings, ChainUnavailable
from gpuproof.chain.store import DynamoVerdictOutbox, OutboxConflict
from gpuproof.cli.output import emit, fail

app = typer.Typer(help="gpuproof operator commands.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


@app.callback()
def main() -> None:
    """Operator commands (run with the service's environment)."""


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
    verdict_ids = outbox.unpublished(time.time() - older_than)
    if dry_run or not verdict_ids:
        if as_json:
            emit({"dry_run": dry_run, "unpublished": verdict_ids})
        else:
            out.print(
                f"{len(verdict_ids)} verdict(s) not on chain" + "".join(f"\n  {v}" for v in verdict_ids)
            )
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
        rows.append(row)
    left = [r for r in rows if r["status"] != "published"]
    if as_json:
        emit({"republished": rows, "not_published": [r["verdict_id"] for r in left]})
    else:
        table = Table(title="republished verdicts")
        for col in ("verdict", "status", "block", "error"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["verdict_id"], r["status"], str(r["block_hash"] or "—"), r["error"] or "")
        out.print(table)
    if left:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
