"""Clients for tests: a raw signed-HTTP client (full control over headers, bodies and signatures),
reads of the stack's tables, and the setup the committee flows share: this host submitted as
`benchmark-probe submit` does, committee members registered and admitted, their bots.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests
from boto3.dynamodb.conditions import Attr, Key

from benchmark_probe.backends import select_backend
from benchmark_probe.bench import BenchPlan, run_benchmarks
from benchmark_probe.client import ServiceClient
from benchmark_probe.integrity import collect_integrity
from benchmark_probe.inventory import collect_inventory
from benchmark_probe.proof import ProofRunner
from benchmark_probe.submit import submit
from gpuproof.cli.live import LiveOptions, live_checker
from gpuproof.cli.member import CommitteeClient, MemberState, run_agent
from gpuproof.cli.operator import OperatorClient
from gpuproof.protocol.httpsig import sign_request
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.machine import Region, bond_message
from gpuproof.protocol.report import Integrity

OWNER = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


@dataclass
class Reply:
    status: int
    body: Any


class RawApi:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.session = requests.Session()

    def send(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
        hdrs = {"content-type": "application/json", **(headers or {})}
        r = self.session.request(method, self.base + path, data=body, headers=hdrs, timeout=30)
        try:
            doc = r.json()
        except ValueError:
            doc = r.text
        return Reply(r.status_code, doc)

    def signed(
        self,
        key: SigningKey,
        method: str,
        path: str,
        doc: Any = None,
        *,
        raw: bytes | None = None,
        **sign_kw: Any,
    ) -> tuple[Reply, dict[str, str], bytes]:
        body = raw if raw is not None else (json.dumps(doc).encode() if doc is not None else b"")
        headers = sign_request(key, method, path, body, **sign_kw)
        return self.send(method, path, body, headers), headers, body

    def register(self, key: SigningKey, owner: str = OWNER, region: str = "europe") -> Reply:
        doc = registration(key, owner, region)
        return self.signed(key, "POST", "/machines", doc)[0]

    def challenge(self, key: SigningKey, machine_id: str | None = None, **doc: Any) -> Reply:
        mid = machine_id or key.public_hex
        return self.signed(key, "POST", f"/machines/{mid}/challenges", doc or {"gpu_count": 0})[0]


def registration(key: SigningKey, owner: str = OWNER, region: str = "europe") -> dict[str, Any]:
    mid = key.public_hex
    return {
        "machine_id": mid,
        "owner": owner,
        "region": region,
        "bond_signature": key.sign(bond_message(mid, owner)).hex(),
    }


def scan_all(table: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item a filtered scan matches, over all pages (a scan page stops at 1 MB, before the
    filter: the session's tables outgrow one page)."""
    items: list[dict[str, Any]] = []
    while True:
        page = table.scan(ConsistentRead=True, **kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class Tables:
    """Reads the stack's real tables to show what was (not) stored for one machine."""

    def __init__(self, names: dict[str, str]) -> None:
        ddb = boto3.resource("dynamodb")
        self.t = {k: ddb.Table(v) for k, v in names.items()}

    def footprint(self, machine_id: str) -> dict[str, Any]:
        machine = self.t["machines"].get_item(Key={"machine_id": machine_id}, ConsistentRead=True).get("Item")
        challenges = scan_all(self.t["challenges"], FilterExpression=Attr("machine_id").eq(machine_id))
        reports = self.t["reports"].query(
            KeyConditionExpression=Key("machine_id").eq(machine_id), ConsistentRead=True
        )["Items"]
        nonces = scan_all(self.t["nonces"], FilterExpression=Attr("nonce_key").begins_with(machine_id))
        return {
            "machine": machine,
            "challenges": sorted((c["challenge_id"], c["status"]) for c in challenges),
            "reports": sorted(r["challenge_id"] for r in reports),
            "nonces": sorted(n["nonce_key"] for n in nonces),
        }


# ------------------------------------------------------------ the committee flows' setup

FLOW_TIMEOUT_S = 60.0


def wait_for(predicate: Callable[[], Any], timeout: float = FLOW_TIMEOUT_S, every: float = 0.25) -> Any:
    """The predicate's first truthy value, asked every `every` s; AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def submit_host(
    api_url: str,
    integrity: Integrity | None = None,
    key: SigningKey | None = None,
    owner: str = OWNER,
    capacity_prover: Any = None,
    delivery: Any = "auto",
) -> tuple[str, ServiceClient]:
    """This host submitted as `benchmark-probe submit --quick` does (register, challenge, the quick
    benchmarks on the backend it selects, the proof, the signed report): its machine id and client.
    `key`: a machine already registered with it (registering again is answered as such);
    `capacity_prover`/`delivery`: the capacity phase's prover (an adversary) and openings delivery."""
    key = key or SigningKey.generate()
    client = ServiceClient(api_url, key)
    inventory = collect_inventory()
    backend, _ = select_backend(inventory)
    submit(
        client,
        key,
        owner,
        Region.europe,
        inventory,
        integrity or collect_integrity(),
        lambda: run_benchmarks(backend, BenchPlan.quick()),
        ProofRunner(key, capacity_prover=capacity_prover, capacity_delivery=delivery),
    )
    return key.public_hex, client


def new_members(
    api_url: str, count: int = 3, operator: OperatorClient | None = None, linked_accounts: Iterable[str] = ()
) -> list[CommitteeClient]:
    """`count` committee members with fresh keys, registered (linked to `linked_accounts`), and
    admitted by `operator` as `gpuproof-ops admit` does when one is given."""
    members = [CommitteeClient(api_url, SigningKey.generate()) for _ in range(count)]
    for member in members:
        member.register(list(linked_accounts))
        if operator is not None:
            operator.admit(member.account)
    return members


@dataclass
class Bot:
    """A member's agent (`committee agent`, CPU backend allowed) on a thread of this process."""

    client: CommitteeClient
    state: MemberState
    stop: threading.Event
    thread: threading.Thread | None = None
    log: list[str] = field(default_factory=list)  # the agent's log lines

    def start(self, live: bool = False) -> None:
        """`live`: the member also challenges the machine's agent itself (`--live`)."""
        if self.thread is not None and self.thread.is_alive():
            return  # running already
        checker = live_checker(self.client.key, LiveOptions(allow_private=True)) if live else None
        self.stop.clear()
        kwargs = {
            "interval_s": 0.3,
            "allow_cpu_backend": True,
            "stop": self.stop,
            "live": checker,
            "log": self.log.append,
        }
        self.thread = threading.Thread(
            target=run_agent, args=(self.client, self.state), kwargs=kwargs, daemon=True
        )
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=30)


@contextmanager
def committee_bots(
    api_url: str, operator: OperatorClient | None, state_dir: Path, count: int = 3, start: bool = True
) -> Iterator[list[Bot]]:
    """`count` new members (admitted when `operator` is given) and their bots, running when
    `start`; afterwards halted and retired, so that later tests' machines are not drawn to them."""
    members = new_members(api_url, count, operator)
    bots = [
        Bot(member, MemberState(state_dir / f"member{i}.json"), threading.Event())
        for i, member in enumerate(members)
    ]
    try:
        if start:
            for bot in bots:
                bot.start()
        yield bots
    finally:
        for bot in bots:
            bot.halt()
        for member in members:
            member.retire()
