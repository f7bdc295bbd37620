"""The live check without sockets: the wire rules (protocol/live.py), the agent's answers
(benchmark_probe/live.py, `LiveResponder.handle`) and the member's flow (cli/live.py) talking to
that responder through a transport double, with adversarial agents.

The service's round is a `RoundSource` double holding the documents GET /rounds/... publishes
(tests/e2e/test_live_check.py runs the same against the local stack)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from benchmark_probe.live import MAX_ROUND_READS_PER_MIN, Answer, LiveResponder, RoundSource
from gpuproof.claim import Claim, challenge_params, proof_params_for
from gpuproof.cli.live import LiveOptions, apply_live_check, live_check
from gpuproof.cli.member import Inspection
from gpuproof.protocol import live as L
from gpuproof.protocol.httpsig import sign_request
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import NumpyExecutor, ProofParams, Prover, SignedCommitment

PARAMS = proof_params_for(Claim(None, 0))
MEMBER = SigningKey.generate()


class PublishedRounds(RoundSource):
    """The service's public round documents for one machine (a double of GET /rounds/...)."""

    def __init__(self, machine_id: str, members: list[str], status: str = "open") -> None:
        super().__init__("http://service.invalid")
        self.docs: dict[str, dict[str, Any] | None] = {
            f"/rounds/{machine_id}/1": {"status": status, "members": members},
            f"/rounds/{machine_id}/1/transcript": {"challenge": {"params": challenge_params(Claim(None, 0))}},
        }

    def get(self, path: str) -> dict[str, Any] | None:
        return self.docs.get(path)


class Reply:
    def __init__(self, answer: Answer) -> None:
        self.status_code = answer.status
        self.headers = {"content-type": answer.content_type, **answer.headers}
        self._body = answer.body

    def __enter__(self) -> Reply:
        return self

    def __exit__(self, *_: Any) -> None:
        return None

    def iter_content(self, size: int) -> Iterator[bytes]:
        for i in range(0, len(self._body), size):
            yield self._body[i : i + size]


class Direct:
    """A transport double: the member's POSTs go straight to the agent's `handle`."""

    def __init__(self, responder: LiveResponder) -> None:
        self.responder = responder

    def post(self, url: str, *, data: bytes, headers: Mapping[str, str], **_: Any) -> Reply:
        path = "/" + url.split("/", 3)[3]
        return Reply(self.responder.handle("POST", path, dict(headers), data))


def machine(
    members: list[str] | None = None, status: str = "open", responder: type[LiveResponder] = LiveResponder
):
    key = SigningKey.generate()
    rounds = PublishedRounds(key.public_hex, [MEMBER.public_hex] if members is None else members, status)
    return key, responder(key, rounds, NumpyExecutor())


def transcript(machine_id: str) -> dict[str, Any]:
    return {
        "round": {"machine_id": machine_id, "round": 1},
        "machine": {"live_endpoint": "http://127.0.0.1:8421"},
        "challenge": {"params": challenge_params(Claim(None, 0))},
    }


class Ticks:
    """The member's clock in these tests: each reading `step` seconds after the last, so what is
    tested is the protocol, not how busy the test host is (the e2e tests use real clocks)."""

    def __init__(self, step: float = 0.001) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def check(responder: LiveResponder, machine_id: str) -> L.LiveCheck:
    options = LiveOptions(allow_private=True)
    return live_check(MEMBER, transcript(machine_id), options, http=Direct(responder), clock=Ticks())  # type: ignore[arg-type]


def post(responder: LiveResponder, key: SigningKey, what: str, doc: Any, **sign: Any) -> tuple[Answer, str]:
    path = f"/live/{responder.machine_id}/{what}"
    body = json.dumps(doc).encode()
    headers = sign_request(key, "POST", path, body, **sign)
    nonce = headers["signature-input"].split('nonce="', 1)[1].split('"', 1)[0]
    return responder.handle("POST", path, headers, body), nonce


def challenge_doc(machine_id: str, params: list[ProofParams] = PARAMS) -> dict[str, Any]:
    return L.LiveChallenge(
        machine_id=machine_id,
        round=1,
        challenge_id="live-" + secrets.token_hex(16),
        nonce=secrets.token_hex(32),
        params=params,
    ).model_dump(mode="json")


def code(answer: Answer) -> str:
    return str(json.loads(answer.body)["code"])


# ----------------------------------------------------------------------------- wire rules
@pytest.mark.parametrize("url", ["http://1.2.3.4:8421", "http://[2001:db8::1]:80", "http://127.0.0.1:1"])
def test_endpoint_accepts_an_ip_literal_and_port(url: str) -> None:
    L.parse_endpoint(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://host.example:80",
        "https://1.2.3.4:80",
        "http://1.2.3.4",
        "http://1.2.3.4:0",
        "http://1.2.3.4:65536",
        "http://999.1.1.1:80",
        "http://1.2.3.4:80/x",
        "http://[::1]:" + "1" * 60,
    ],
)
def test_endpoint_refuses_anything_else(url: str) -> None:
    with pytest.raises(ValueError):
        L.parse_endpoint(url)


def test_only_global_addresses_are_public() -> None:
    assert L.endpoint_is_public("http://8.8.8.8:80")
    for private in (
        "http://127.0.0.1:80",
        "http://10.0.0.1:80",
        "http://192.168.1.2:80",
        "http://[::1]:80",
        "http://169.254.1.1:80",
    ):
        assert not L.endpoint_is_public(private), private


def test_member_deadline_adds_the_measured_rtt_up_to_the_cap() -> None:
    derived = max(p.deadline_s for p in PARAMS)
    assert L.live_deadline(PARAMS, None) == derived
    assert L.live_deadline(PARAMS, 0.08) == pytest.approx(derived + 0.08)
    assert L.live_deadline(PARAMS, 30.0) == pytest.approx(derived + L.MAX_RTT_ALLOWANCE_S)
    assert L.live_deadline(PARAMS, -1.0) == derived
    assert L.live_deadline(PARAMS, float("nan")) == derived


def test_a_response_answers_one_request_and_only_the_machine_signs_it() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    body, path = b'{"ok": true}', "/live/x/ping"
    headers = L.sign_response(key, "POST", path, body, "n" * 24)
    ok = {"machine_id": key.public_hex, "request_nonce": "n" * 24, "now": time.time()}
    assert L.response_reasons("POST", path, headers, body, **ok) == []  # type: ignore[arg-type]
    assert L.response_reasons("POST", path, headers, body + b" ", **ok)  # type: ignore[arg-type]
    assert L.response_reasons("POST", path, headers, body, **{**ok, "request_nonce": "m" * 24})  # type: ignore[arg-type]
    forged = L.sign_response(other, "POST", path, body, "n" * 24)
    (reason,) = L.response_reasons("POST", path, forged, body, **ok)  # type: ignore[arg-type]
    assert reason.code == L.RESPONSE_SIGNATURE_INVALID


def test_live_check_figures_are_bounded() -> None:
    with pytest.raises(ValueError):
        L.LiveCheck(verified=True, commitment_s=float("inf"))
    with pytest.raises(ValueError):
        L.LiveCheck(verified=False, reasons=[L.LiveReason(code="x", message="y")] * (L.MAX_REASONS + 1))


# ----------------------------------------------------------------------------- the agent
def test_agent_refuses_whoever_is_not_drawn_and_signs_its_refusal() -> None:
    key, responder = machine()
    stranger = SigningKey.generate()
    answer, nonce = post(responder, stranger, "challenges", challenge_doc(key.public_hex))
    assert (answer.status, code(answer)) == (403, L.NOT_DRAWN)
    path = f"/live/{key.public_hex}/challenges"
    assert (
        L.response_reasons(
            "POST",
            path,
            answer.headers,
            answer.body,
            machine_id=key.public_hex,
            request_nonce=nonce,
            now=time.time(),
        )
        == []
    )


def test_agent_refuses_a_closed_round_other_parameters_and_replays() -> None:
    key, closed = machine(status="closed")
    assert (
        code(post(closed, MEMBER, "ping", {"machine_id": key.public_hex, "round": 1})[0]) == L.ROUND_NOT_OPEN
    )
    key, responder = machine()
    bigger = [p.model_copy(update={"steps": p.steps * 8}) for p in PARAMS]
    answer, _ = post(responder, MEMBER, "challenges", challenge_doc(key.public_hex, bigger))
    assert (answer.status, code(answer)) == (422, L.PARAMS_MISMATCH)
    doc = {"machine_id": key.public_hex, "round": 1}
    first, _ = post(responder, MEMBER, "ping", doc, nonce="r" * 24)
    again, _ = post(responder, MEMBER, "ping", doc, nonce="r" * 24)
    assert first.status == 200 and (again.status, code(again)) == (409, "replayed_nonce")
    assert post(responder, MEMBER, "ping", {"machine_id": "ab" * 32, "round": 1})[0].status == 422
    unsigned = responder.handle("POST", f"/live/{key.public_hex}/ping", {}, b"{}")
    assert (unsigned.status, code(unsigned)) == (401, "signature_missing") and not unsigned.headers


def test_agent_answers_one_challenge_at_a_time_and_a_few_per_member() -> None:
    key, responder = machine()
    with responder._proving:  # another member's challenge is being answered
        answer, _ = post(responder, MEMBER, "challenges", challenge_doc(key.public_hex))
        assert (answer.status, code(answer)) == (503, L.BUSY)
    for _ in range(L.MAX_CHALLENGES_PER_MEMBER - 1):  # the busy refusal counted nothing
        assert post(responder, MEMBER, "challenges", challenge_doc(key.public_hex))[0].status == 200
    assert post(responder, MEMBER, "challenges", challenge_doc(key.public_hex))[0].status == 200
    answer, _ = post(responder, MEMBER, "challenges", challenge_doc(key.public_hex))
    assert (answer.status, code(answer)) == (429, L.LIMIT)


def test_only_the_challenger_gets_the_openings() -> None:
    other = SigningKey.generate()
    key, responder = machine([MEMBER.public_hex, other.public_hex])
    doc = challenge_doc(key.public_hex)
    assert post(responder, MEMBER, "challenges", doc)[0].status == 200
    openings = {
        "machine_id": key.public_hex,
        "round": 1,
        "challenge_id": doc["challenge_id"],
        "pairs_secret": "00" * 32,
    }
    answer, _ = post(responder, other, "openings", openings)
    assert (answer.status, code(answer)) == (404, L.UNKNOWN_CHALLENGE)
    answer, _ = post(responder, MEMBER, "openings", openings)
    assert answer.status == 200 and answer.content_type == "application/octet-stream"


# ----------------------------------------------------------------------------- the member against agents
def test_honest_agent_verifies() -> None:
    key, responder = machine()
    result = check(responder, key.public_hex)
    assert result.verified, result.reasons
    assert result.commitment_s is not None and result.deadline_s is not None and result.rtt_s is not None
    assert result.commitment_s <= result.deadline_s
    assert result.rtt_s == pytest.approx(0.001)
    assert result.deadline_s == pytest.approx(L.live_deadline(PARAMS, 0.001))


def test_the_timing_rule_is_the_members_own_clock() -> None:
    """Readings: 2 per ping (3 pings), then the challenge's start and end. A reply read one
    millisecond past the deadline is late, and its openings are never asked for."""
    key, responder = machine()
    derived = max(p.deadline_s for p in PARAMS)
    rtt = 0.1
    for late in (False, True):
        elapsed = L.live_deadline(PARAMS, rtt) + (0.001 if late else -0.001)
        readings = iter([0.0, rtt, 1.0, 1.0 + rtt, 2.0, 2.0 + rtt, 10.0, 10.0 + elapsed] + [20.0] * 10)
        unopened = len(responder._sessions)
        result = live_check(
            MEMBER,
            transcript(key.public_hex),
            LiveOptions(allow_private=True),
            http=Direct(responder),  # type: ignore[arg-type]
            clock=lambda: next(readings),
        )
        assert result.verified is not late, result.reasons
        assert result.deadline_s == pytest.approx(derived + rtt)
        assert result.commitment_s == pytest.approx(elapsed)
        if late:
            assert [r.code for r in result.reasons] == [L.DEADLINE_MISSED]
            assert len(responder._sessions) == unopened + 1  # the late challenge was never opened


class ReplayingAgent(LiveResponder):
    """Answers every challenge with a commitment it computed once, for another nonce."""

    stored: tuple[Prover, SignedCommitment] | None = None

    def prove(
        self, nonce: bytes, challenge_id: str, params: list[ProofParams]
    ) -> tuple[Prover, SignedCommitment]:
        if self.stored is None:
            self.stored = super().prove(secrets.token_bytes(32), challenge_id, params)
        return self.stored


class OtherKeyAgent(LiveResponder):
    """Proves with another machine's key (the hardware answering is someone else's)."""

    def prove(
        self, nonce: bytes, challenge_id: str, params: list[ProofParams]
    ) -> tuple[Prover, SignedCommitment]:
        prover = Prover(nonce, self.machine_id, challenge_id, params, self.executor, parallel=True)
        return prover, SignedCommitment.sign(prover.run(), SigningKey.generate())


class TamperingAgent(LiveResponder):
    """Proves honestly, then changes one opened entry."""

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        answer = super().handle(method, path, headers, body)
        if path.endswith("/openings") and answer.status == 200:
            data = bytearray(answer.body)
            data[len(data) // 2] ^= 0x01
            answer = Answer(200, bytes(data), answer.content_type)
            answer.headers.update(L.sign_response(self.key, method, path, answer.body, _nonce(headers)))
        return answer


def _nonce(headers: Mapping[str, str]) -> str:
    return headers["signature-input"].split('nonce="', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize(
    ("agent", "codes"),
    [
        (ReplayingAgent, {"proof_nonce_mismatch"}),
        (OtherKeyAgent, {"proof_commitment_signature_invalid"}),
    ],
)
def test_member_refuses_an_unbound_commitment(agent: type[LiveResponder], codes: set[str]) -> None:
    key, responder = machine(responder=agent)
    result = check(responder, key.public_hex)
    assert not result.verified
    assert codes <= {r.code for r in result.reasons}, result.reasons


def test_member_refuses_tampered_openings() -> None:
    key, responder = machine(responder=TamperingAgent)
    result = check(responder, key.public_hex)
    assert not result.verified and result.reasons
    assert all(r.code.startswith(("proof_", "live_response")) for r in result.reasons), result.reasons


def test_member_refuses_a_machine_without_an_endpoint_and_a_private_one() -> None:
    key, responder = machine()
    doc = {**transcript(key.public_hex), "machine": {"live_endpoint": None}}
    result = live_check(MEMBER, doc, http=Direct(responder))  # type: ignore[arg-type]
    assert [r.code for r in result.reasons] == [L.ENDPOINT_MISSING]
    result = live_check(MEMBER, transcript(key.public_hex), http=Direct(responder))  # type: ignore[arg-type]
    assert [r.code for r in result.reasons] == [L.ENDPOINT_PRIVATE]


def test_shadow_mode_records_a_failed_check_without_refusing() -> None:
    key, responder = machine(responder=OtherKeyAgent)
    result = live_check(
        MEMBER,
        transcript(key.public_hex),
        LiveOptions(allow_private=True, shadow=True),
        http=Direct(responder),  # type: ignore[arg-type]
        clock=Ticks(),
    )
    assert not result.verified and result.shadow
    inspection = Inspection(key.public_hex, 1, [], {"calc_point": 1}, [], None, "verified")
    assert inspection.supports
    apply_live_check(inspection, result)
    assert (
        inspection.supports and inspection.live_check is not None and inspection.live_check["shadow"] is True
    )
    assert any("shadow mode" in n for n in inspection.notes)
    counted = Inspection(key.public_hex, 1, [], {"calc_point": 1}, [], None, "verified")
    apply_live_check(counted, result.model_copy(update={"shadow": False}))
    assert not counted.supports and counted.problems[0].startswith("live_check: ")


def test_strangers_naming_rounds_cost_a_bounded_number_of_service_reads() -> None:
    key, responder = machine()
    reads: list[str] = []
    published = responder.rounds.get
    responder.rounds.get = lambda path: reads.append(path) or published(path)  # type: ignore[method-assign]
    stranger = SigningKey.generate()
    codes = [
        code(post(responder, stranger, "ping", {"machine_id": key.public_hex, "round": r})[0])
        for r in range(2, 2 + MAX_ROUND_READS_PER_MIN + 5)
    ]
    assert codes[:MAX_ROUND_READS_PER_MIN] == [L.ROUND_NOT_OPEN] * MAX_ROUND_READS_PER_MIN
    assert set(codes[MAX_ROUND_READS_PER_MIN:]) == {L.ROUND_UNAVAILABLE}
    assert len(reads) == MAX_ROUND_READS_PER_MIN  # unknown rounds: one read each, then none
    assert not responder._nonces  # nothing of a stranger's is kept
