"""Schema fuzzing of every route in docs/openapi.json (schemathesis) against the local stack.

Owns the fuzz plan: which key signs a generated request (none, a registered machine, a registered
member, a fresh Ed25519 or sr25519 key), which ids are swapped in so signed requests reach
validation and logic, the checks (no 5xx; statuses, content types and bodies as documented; every
4xx in our error shape) and the counts that show the run covered every route.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gpuproof.protocol.httpsig import sign_request
from gpuproof.protocol.keys import Scheme, SigningKey
from gpuproof.protocol.machine import bond_message
from gpuproof.protocol.proof import ThroughputCommitment
from gpuproof.protocol.report import BenchmarkReport

from .api_client import OWNER, RawApi

# Powertools warns on every invocation that publishes no metric; here that is ~2,300 lines of noise.
pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:No application metrics to publish")]

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
MIN_CASES = 2000
MIN_SIGNED_SHARE = 0.30
# Operations with a tiny input space (GET /beacon has none) stop early, so the others take more.
EXAMPLES_PER_OPERATION = 150
# Hypothesis draws the first element most often (its simplest value): a signer, not "none".
SIGNERS = ("machine", "member", "fresh", "fresh_sr25519", "none")
# No 5xx; each status, content type and body as docs/openapi.json documents it.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Answers that stop a request before the logic (the envelope, the body parser, the router).
VALIDATION_CODES = frozenset(
    {
        "schema_invalid",
        "malformed_json",
        "body_too_large",
        "body_not_utf8",
        "json_too_deep",
        "json_non_finite",
        "route_not_found",
    }
)

schema = schemathesis.openapi.from_path(str(SPEC))


@dataclass
class Identities:
    """Real, registered keys and ids on the stack, swapped into generated requests."""

    machine: SigningKey
    member: SigningKey
    challenge_id: str
    challenge_nonce: str
    joined: list[SigningKey] = field(default_factory=list)

    def key(self, signer: str) -> SigningKey | None:
        if signer == "machine":
            return self.machine
        if signer == "member":
            return self.member
        if signer == "fresh":
            return SigningKey.generate()
        if signer == "fresh_sr25519":
            return SigningKey.generate(Scheme.sr25519)
        return None


@dataclass
class Plan:
    """How one generated case is sent: signed by whom, and whether generated ids stay or known ones
    replace them (the simplest draw, False, swaps: most signed requests then reach the logic)."""

    signer: str
    keep_path_ids: bool
    keep_body_ids: bool
    ascii_json: bool  # \uXXXX escapes (what requests sends) or raw UTF-8 (what other clients send)


@dataclass
class Tally:
    cases: Counter[str] = field(default_factory=Counter)
    signed: int = 0
    reached_logic: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    failures: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)
    unsent: list[str] = field(default_factory=list)

    def fail(self, label: str, what: str, trace: str, request: str) -> None:
        """Grouped by route, check and the exception the handler raised: one reproducer per group."""
        lines = trace.strip().splitlines()
        raised = lines[-1].split(":")[0] if lines else ""
        self.failures.setdefault((label, what, raised), []).append(request)

    def failure_report(self) -> str:
        """Each group with its count and its shortest request, the nearest to a minimal reproducer."""
        groups = sorted(self.failures.items(), key=lambda item: -len(item[1]))
        return "\n\n".join(
            f"[{len(requests_)}x] {label}: {what}: {raised}\n{min(requests_, key=len)}"
            for (label, what, raised), requests_ in groups
        )


class ServerTracebacks(logging.Handler):
    """Collects the front's logged handler exceptions, to attach to the request that caused them;
    the pollers' (workers run in the background) are kept apart."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []
        self.background: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        (self.records if record.module == "front" else self.background).append(self.format(record))

    def take(self) -> str:
        out = "\n".join(self.records)
        self.records.clear()
        return out


plans = st.builds(
    Plan,
    signer=st.sampled_from(SIGNERS),
    keep_path_ids=st.booleans(),
    keep_body_ids=st.booleans(),
    ascii_json=st.booleans(),
)


@pytest.fixture(scope="module")
def identities(local_stack: Any) -> Iterator[Identities]:
    api = RawApi(local_stack.api_url)
    machine = SigningKey.generate()
    assert api.register(machine).status == 201
    challenge = api.challenge(machine)
    assert challenge.status == 201, challenge.body
    member = SigningKey.generate()
    joined = api.signed(member, "POST", "/members", {"account": member.public_hex, "linked_accounts": []})[0]
    assert joined.status == 201, joined.body
    ids = Identities(machine, member, challenge.body["challenge_id"], challenge.body["nonce"])
    yield ids
    # Out of the pool for whatever runs later on this stack: the members the run registered (a key
    # signing its own account) would be drawn and never vote. Some may be retired already.
    for key in [member, *ids.joined]:
        api.signed(key, "POST", f"/members/{key.public_hex}/retire")


def swap_ids(case: schemathesis.Case, plan: Plan, ids: Identities, key: SigningKey | None) -> None:
    signer_id = key.public_hex if key is not None else ids.machine.public_hex
    known = {"machine_id": ids.machine.public_hex, "account": signer_id, "challenge_id": ids.challenge_id}
    if not plan.keep_path_ids and case.path_parameters:
        case.path_parameters = {name: known.get(name, value) for name, value in case.path_parameters.items()}
    if not plan.keep_body_ids and isinstance(case.body, dict):
        body = dict(case.body)
        for name in ("machine_id", "account"):
            if name in body:
                body[name] = signer_id
        if "challenge_id" in body:
            body["challenge_id"] = ids.challenge_id
        if key is not None:
            sign_inner(body, key, ids)
            if "bond_signature" in body:
                # A registration: a valid owner (SS58 with its checksum, which generated strings
                # never have) and the key's own bond signature, so some reach the logic.
                body["owner"] = OWNER
                body["bond_signature"] = key.sign(bond_message(key.public_hex, OWNER)).hex()
        case.body = body


def sign_inner(body: dict[str, Any], key: SigningKey, ids: Identities) -> None:
    """Bind a generated signed report / commitment to the open challenge and sign it with `key`, so it
    gets past the inner signature check too (left as generated when it is not a valid payload)."""
    inner_models: list[tuple[str, str, str, type[BenchmarkReport | ThroughputCommitment]]] = [
        ("signed_report", "report", "challenge_nonce", BenchmarkReport),
        ("signed_commitment", "commitment", "nonce", ThroughputCommitment),
    ]
    for outer, name, nonce_field, model in inner_models:
        signed = body.get(outer)
        if not isinstance(signed, dict) or not isinstance(signed.get(name), dict):
            continue
        payload = {
            **signed[name],
            "machine_id": key.public_hex,
            "challenge_id": ids.challenge_id,
            nonce_field: ids.challenge_nonce,
        }
        signed = {**signed, name: payload}
        with contextlib.suppress(ValidationError):
            signed["signature"] = key.sign(model.model_validate(payload).signing_bytes()).hex()
        body[outer] = signed


def prepared(
    case: schemathesis.Case, base_url: str, plan: Plan, key: SigningKey | None
) -> requests.PreparedRequest:
    """The exact bytes to send; a signature covers exactly the path and body requests will send."""
    kw = case.as_transport_kwargs(base_url=base_url)
    if "json" in kw:
        body = json.dumps(kw.pop("json"), ensure_ascii=plan.ascii_json).encode("utf-8")
    else:
        raw = kw.pop("data", b"")
        body = raw.encode() if isinstance(raw, str) else bytes(raw or b"")
    request = requests.Request(
        method=kw["method"], url=kw["url"], params=kw.get("params"), headers=kw.get("headers"), data=body
    ).prepare()
    if key is not None:
        path = urlsplit(request.path_url).path
        request.headers.update(sign_request(key, request.method or "", path, body))
    return request


def reproducer(request: requests.PreparedRequest, plan: Plan, reply: requests.Response, trace: str) -> str:
    body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
    shown = {k: v for k, v in request.headers.items() if k.lower() not in ("user-agent", "accept-encoding")}
    return (
        f"{request.method} {request.path_url} signer={plan.signer} -> {reply.status_code}\n"
        f"  headers: {shown}\n  body ({len(body)} bytes): {body[:600]!r}\n"
        f"  reply: {reply.text[:400]}\n{trace[-1500:]}"
    )


def error_shape_problem(reply: requests.Response) -> str | None:
    if not 400 <= reply.status_code < 500:
        return None
    try:
        doc = reply.json()
    except ValueError:
        return "the 4xx body is not JSON"
    if not isinstance(doc, dict) or not {"code", "message", "reasons"} <= doc.keys():
        return "the 4xx body lacks code/message/reasons"
    if not isinstance(doc["reasons"], list) or not all(
        isinstance(r, dict) and "code" in r and "message" in r for r in doc["reasons"]
    ):
        return "the 4xx reasons are not a list of {code, message}"
    return None


def reply_code(reply: requests.Response) -> str:
    try:
        doc = reply.json()
    except ValueError:
        return "?"
    return str(doc.get("code", "?")) if isinstance(doc, dict) else "?"


def fuzz_operation(
    operation: Any,
    base_url: str,
    ids: Identities,
    session: requests.Session,
    tally: Tally,
    tracebacks: ServerTracebacks,
) -> None:
    label = operation.label
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if operation.path_parameters or operation.query or operation.body:
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies), plan=plans)
    def run(case: schemathesis.Case, plan: Plan) -> None:
        key = ids.key(plan.signer)
        swap_ids(case, plan, ids, key)
        try:
            request = prepared(case, base_url, plan, key)
            reply = session.send(request, timeout=60)
        except (requests.RequestException, ValueError, UnicodeError) as exc:
            tally.unsent.append(f"{label}: {exc!r}")
            return
        tally.cases[label] += 1
        code = reply_code(reply)
        tally.outcomes[(label, reply.status_code, code)] += 1
        trace = tracebacks.take()
        if label == "POST /members" and reply.status_code == 201 and key is not None:
            ids.joined.append(key)
        if label == "POST /machines/{machine_id}/challenges" and reply.status_code == 201:
            ids.challenge_id, ids.challenge_nonce = reply.json()["challenge_id"], reply.json()["nonce"]
        if key is not None:
            tally.signed += 1
            if reply.status_code == 401:
                tally.fail(label, "correctly signed yet 401", trace, reproducer(request, plan, reply, trace))
            elif code not in VALIDATION_CODES:
                tally.reached_logic[label] += 1
        try:
            case.validate_response(reply, checks=CHECKS)
        except FailureGroup as group:
            titles = "; ".join(sorted({f.title for f in group.exceptions}))
            tally.fail(label, titles, trace, reproducer(request, plan, reply, trace))
        problem = error_shape_problem(reply)
        if problem is not None:
            tally.fail(label, problem, trace, reproducer(request, plan, reply, trace))

    run()


def test_every_route_fuzzed_without_server_errors(local_stack: Any, identities: Identities) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    tally = Tally()
    tracebacks = ServerTracebacks()
    front_log = logging.getLogger("gpuproof_local")
    front_log.addHandler(tracebacks)
    session = requests.Session()
    try:
        for operation in operations:
            fuzz_operation(operation, local_stack.api_url, identities, session, tally, tracebacks)
    finally:
        front_log.removeHandler(tracebacks)
        session.close()

    total = sum(tally.cases.values())
    summary = "\n".join(f"  {op}: {n}" for op, n in sorted(tally.cases.items()))
    print(
        f"\nschema fuzz: {total} cases, {tally.signed} signed, {len(tally.unsent)} unsent, "
        f"{len(tracebacks.background)} background errors\n{summary}"
    )
    for record in tracebacks.background:
        print(record[-1500:])
    for (op, status, code), n in sorted(tally.outcomes.items()):
        print(f"  {op} -> {status} {code}: {n}")
    failing = sum(len(v) for v in tally.failures.values())
    assert not tally.failures, f"{failing} failing requests in {len(tally.failures)} groups:\n\n" + (
        tally.failure_report()
    )
    assert total >= MIN_CASES, summary
    assert {op.label for op in operations} == set(tally.cases), "some route got no case"
    assert tally.signed >= math.ceil(MIN_SIGNED_SHARE * total), f"only {tally.signed} of {total} signed"
    posts = {op.label for op in operations if op.method.upper() == "POST"}
    assert posts <= set(tally.reached_logic), (
        f"signed requests never got past validation: {posts - set(tally.reached_logic)}"
    )


def test_a_path_only_the_gateway_routes_is_refused_in_error_shape(
    local_stack: Any, identities: Identities
) -> None:
    """API Gateway (and the front) match a trailing slash the resolvers' routes do not."""
    api = RawApi(local_stack.api_url)
    machine_id = identities.machine.public_hex
    reply = api.signed(identities.machine, "POST", f"/machines/{machine_id}/heartbeats/", {})[0]
    assert reply.status == 404, reply.body
    assert reply.body.get("code") == "route_not_found", reply.body
    assert [r["code"] for r in reply.body["reasons"]] == ["route_not_found"]
    reply = api.send("GET", f"/rounds/{machine_id}/1/")
    assert reply.status == 404 and reply.body.get("code") == "route_not_found", reply.body
