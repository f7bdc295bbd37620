"""What a machine owner reads: the machine's state in words, its reasons, the next step, and the
wait for the verdict (`benchmark-probe status --wait`, the end of `submit`).

The service's `state_reasons` come first; the next step per state is this table's, used when the
service names none (docs/machine-states.md is the source of the states).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmark_probe.client import ServiceClient
from gpuproof.cli.output import duration, when

# Where the machine stops moving by itself: a verdict, or a person must act.
FINAL_STATES = frozenset({"refused", "confirmed", "published", "disputed"})
REFUSED_STATES = frozenset({"refused"})

MEANING = {
    "registered": "registered; no challenge taken yet",
    "challenged": "a challenge is open; the service waits for the signed report",
    "submitted": "the report is in; the service is verifying it",
    "auto_verified": "every check the service runs passed; a committee is being drawn",
    "committee": "three committee members are reviewing the evidence (commit, then reveal)",
    "no_consensus": "the committee did not agree; fresh members are drawn",
    "disputed": "the committee confirmed findings that differ from the service's; the operator settles it",
    "confirmed": "confirmed: the machine is what it claims; calc_point fixed",
    "published": "the verdict is on chain",
    "refused": "refused: the reasons below say why",
}

NEXT_STEP = {
    "registered": "run `benchmark-probe submit` to take a challenge and send the report",
    "challenged": "run `benchmark-probe submit` again (a new challenge supersedes the open one)",
    "submitted": "wait: `benchmark-probe status --wait`",
    "auto_verified": "wait: `benchmark-probe status --wait` (the committee review takes minutes)",
    "committee": "wait: `benchmark-probe status --wait`",
    "no_consensus": "wait: a new committee is drawn",
    "disputed": "wait for the operator's resolution (gpuproof-ops resolve); no new challenge meanwhile",
    "confirmed": "nothing: the verdict is published on chain next; keep `benchmark-probe agent` running",
    "published": "keep `benchmark-probe agent` running: it answers re-verification when asked",
    "refused": "fix what the reasons name, then `benchmark-probe submit` again (after any cooldown)",
}


def reason_lines(reasons: list[Any]) -> list[str]:
    lines = []
    for r in reasons:
        if isinstance(r, dict):
            where = f" [{r['field']}]" if r.get("field") else ""
            lines.append(f"{r.get('code', '?')}: {r.get('message', '')}{where}")
        else:
            lines.append(str(r))
    return lines


def next_step(machine: dict[str, Any]) -> str:
    """The service's own next step when it gives one, else this table's for the state."""
    given = machine.get("next_step")
    if isinstance(given, str) and given:
        return given
    attempts = machine.get("attempts") or {}
    cooldown = attempts.get("cooldown_until")
    step = NEXT_STEP.get(str(machine.get("state")), "see docs/machine-states.md")
    if (
        cooldown
        and cooldown > time.time()
        and machine.get("state") in ("refused", "challenged", "registered")
    ):
        step += f"; the next challenge is issued from {when(cooldown)}"
    return step


def summary_lines(doc: dict[str, Any], now: float | None = None) -> list[str]:
    """A machine's status (GET /machines/{id}) as lines for people: no raw dicts, no epochs."""
    now = time.time() if now is None else now
    m = doc.get("machine", doc)
    state = str(m.get("state"))
    lines = [
        f"machine  {m.get('machine_id')}",
        f"owner    {m.get('owner')}  region {m.get('region')}",
        f"state    {state}: {MEANING.get(state, state)}",
        f"since    {when(m.get('updated_at'), now)}",
    ]
    for line in reason_lines(list(m.get("state_reasons") or [])):
        lines.append(f"  reason {line}")
    attempts = m.get("attempts") or {}
    if attempts:
        lines.append(
            f"attempts {attempts.get('taken', 0)} taken, {attempts.get('failed', 0)} failed "
            f"({attempts.get('consecutive_failed', 0)} in a row)"
            + (
                f"; cooldown until {when(attempts['cooldown_until'], now)}"
                if attempts.get("cooldown_until")
                else ""
            )
        )
    reports = list(doc.get("reports") or [])
    if reports:
        last = reports[-1]
        verification = last.get("verification") or {}
        failed = [c.get("name") for c in verification.get("checks") or [] if c.get("status") == "fail"]
        lines.append(f"report   {last.get('challenge_id')} received {when(last.get('received_at'), now)}")
        if verification.get("calc_point") is not None:
            lines.append(f"  calc_point {verification['calc_point']}")
        if failed:
            lines.append(f"  failed checks: {', '.join(str(f) for f in failed)}")
    lines.append(f"next     {next_step(m)}")
    return lines


def wait_for_verdict(
    client: ServiceClient,
    machine_id: str,
    *,
    timeout_s: float,
    poll_s: float = 5.0,
    on_change: Callable[[dict[str, Any]], None] = lambda _doc: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any], bool]:
    """Poll GET /machines/{id} until a final state or `timeout_s`; (last status, final reached).
    `on_change` sees each new state once."""
    deadline = clock() + timeout_s
    seen = None
    while True:
        doc = client.machine(machine_id)
        state = (doc.get("machine") or {}).get("state")
        if state != seen:
            on_change(doc)
            seen = state
        if state in FINAL_STATES:
            return doc, True
        left = deadline - clock()
        if left <= 0:
            return doc, False
        sleep(min(poll_s, left))


def waited(timeout_s: float) -> str:
    return f"no verdict within {duration(timeout_s)}"
