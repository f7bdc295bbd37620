"""The agent's live-check endpoint (docs/protocol.md "Live check"): committee members drawn for
this machine's open round challenge it directly, and only they.

Three routes, each a POST signed by the member (RFC 9421, gpuproof.protocol.httpsig) and each
answer signed by the machine key (gpuproof.protocol.live.sign_response):

  POST /live/{machine_id}/ping        LivePing       → {"machine_id", "round"}  (the member's RTT)
  POST /live/{machine_id}/challenges  LiveChallenge  → a SignedCommitment to the member's nonce
  POST /live/{machine_id}/openings    LiveOpenings   → the binary transcript of the drawn pairs

Who may call: the signer must be in `members` of the round named in the body, as the service
publishes it (GET /rounds/{machine_id}/{round}, public), and that round must be open. The
challenge's parameters must be those the service derives for the round's claim
(gpuproof.committee.live.round_params): no one makes the machine run another job. One proof runs
at a time (a second challenge meanwhile answers 503 `live_busy` at once, so its sender's timer
restarts); each member gets at most MAX_CHALLENGES_PER_MEMBER challenges per round.

`prove_commitment` (run the chains, sign the commitment) is the one proving step; other answer
paths of the agent (presence checks) reuse it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import requests
from pydantic import BaseModel, ValidationError

from gpuproof.claim import ClaimError
from gpuproof.committee.live import round_params
from gpuproof.protocol import live as L
from gpuproof.protocol.httpsig import DEFAULT_MAX_SKEW_S, RequestSignatureError, verify_request
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import (
    GpuPairs,
    ProofExecutor,
    ProofParams,
    Prover,
    SignedCommitment,
    draw_all_pairs,
    encode_transcript,
)
from gpuproof.protocol.reasons import Reason

ROUND_CACHE_S = 5.0  # a round's members and params are read from the service at most this often
MAX_ROUND_READS_PER_MIN = 60  # reads of rounds not cached (strangers naming random rounds), all told
SESSION_TTL_S = 120.0  # an unopened live challenge is forgotten after this long
OPENINGS_WAIT_S = 30.0
_MODELS: dict[str, type[BaseModel]] = {
    "ping": L.LivePing,
    "challenges": L.LiveChallenge,
    "openings": L.LiveOpenings,
}
_ROUTE = re.compile(r"^/live/(?P<machine_id>[0-9a-f]{64})/(?P<what>ping|challenges|openings)$")
Log = Callable[[str], None]
M = TypeVar("M", bound=BaseModel)


def prove_commitment(
    key: SigningKey, executor: ProofExecutor, nonce: bytes, challenge_id: str, params: Sequence[ProofParams]
) -> tuple[Prover, SignedCommitment]:
    """Run every GPU's chain for (nonce, this machine, challenge_id, params) at once and sign the
    commitment with the machine key; the prover keeps what it needs to open drawn pairs."""
    prover = Prover(nonce, key.public_hex, challenge_id, params, executor, parallel=True)
    return prover, SignedCommitment.sign(prover.run(), key)


class RoundSource:
    """The service's public committee routes: a round's published data and its transcript."""

    def __init__(
        self, api_url: str, session: requests.Session | None = None, timeout_s: float = 10.0
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.http = session or requests.Session()
        self.timeout_s = timeout_s

    def get(self, path: str) -> dict[str, Any] | None:
        """The JSON document, None on 404; raises requests.RequestException otherwise."""
        r = self.http.get(self.api_url + path, timeout=self.timeout_s)
        if r.status_code == 404:
            return None
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc


@dataclass
class RoundView:
    status: str
    members: frozenset[str]
    params: list[ProofParams] | None
    fetched_at: float


@dataclass
class Session:
    account: str
    round: int
    prover: Prover
    signed: SignedCommitment
    params: list[ProofParams]
    created: float


class Refusal(Exception):
    def __init__(self, status: int, reasons: list[Reason]) -> None:
        super().__init__("; ".join(r.message for r in reasons))
        self.status = status
        self.reasons = reasons


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class LiveResponder:
    """The endpoint's logic, independent of the HTTP server (tests call `handle` directly too)."""

    def __init__(
        self,
        key: SigningKey,
        rounds: RoundSource,
        executor: ProofExecutor,
        *,
        clock: Callable[[], float] = time.time,
        log: Log = lambda _m: None,
    ) -> None:
        self.key = key
        self.machine_id = key.public_hex
        self.rounds = rounds
        self.executor = executor
        self.clock = clock
        self.log = log
        self._proving = threading.Lock()
        self._state = threading.Lock()
        self._views: dict[int, RoundView] = {}
        self._sessions: dict[str, Session] = {}
        self._nonces: dict[str, float] = {}
        self._counts: dict[tuple[int, str], int] = {}
        self._reads: list[float] = []

    # ------------------------------------------------------------------ HTTP-independent entry
    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        nonce = ""
        try:
            m = _ROUTE.match(path)
            if method != "POST" or m is None or m["machine_id"] != self.machine_id:
                raise Refusal(404, [Reason("route_not_found", "no such live route on this machine", "path")])
            if len(body) > L.MAX_REQUEST_BYTES:
                raise Refusal(413, [Reason("body_too_large", f"over {L.MAX_REQUEST_BYTES} bytes")])
            try:
                signed = verify_request(method, path, headers, body, now=self.clock())
            except RequestSignatureError as exc:
                raise Refusal(401, exc.reasons) from exc
            nonce = signed.nonce
            what = m["what"]
            doc = self._parse(_MODELS[what], body)
            assert isinstance(doc, L.LivePing | L.LiveChallenge | L.LiveOpenings)
            view = self._authorize(signed.keyid, doc.machine_id, doc.round, need_params=what == "challenges")
            # Only a drawn member's nonces are kept (a flood of strangers' requests stores nothing).
            self._consume_nonce(signed.nonce, signed.created)
            if isinstance(doc, L.LiveChallenge):
                answer = self._challenge(signed.keyid, doc, view)
            elif isinstance(doc, L.LiveOpenings):
                answer = self._openings(signed.keyid, doc)
            else:
                answer = Answer(200, json.dumps({"machine_id": self.machine_id, "round": doc.round}).encode())
        except Refusal as exc:
            self.log(f"live request refused: {exc}")
            refused = {
                "code": exc.reasons[0].code,
                "message": str(exc),
                "reasons": [{"code": r.code, "message": r.message, "field": r.field} for r in exc.reasons],
            }
            answer = Answer(exc.status, json.dumps(refused).encode())
        if nonce:  # signed answers to authenticated requests; an unauthenticated one gets none
            answer.headers.update(L.sign_response(self.key, method, path, answer.body, nonce))
        return answer

    # ------------------------------------------------------------------ checks
    @staticmethod
    def _parse(model: type[M], body: bytes) -> M:
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            raise Refusal(
                422,
                [
                    Reason(
                        L.REQUEST_INVALID, f"the body is not a {model.__name__}: {exc.error_count()} errors"
                    )
                ],
            ) from exc

    def _consume_nonce(self, nonce: str, created: int) -> None:
        now = self.clock()
        with self._state:
            for n, expiry in list(self._nonces.items()):
                if expiry < now:
                    del self._nonces[n]
            if nonce in self._nonces:
                raise Refusal(
                    409, [Reason("replayed_nonce", "the request nonce was already used", "signature")]
                )
            self._nonces[nonce] = created + DEFAULT_MAX_SKEW_S + 1

    def _view(self, round_no: int, *, need_params: bool) -> RoundView:
        now = self.clock()
        with self._state:
            view = self._views.get(round_no)
        if view is None or now - view.fetched_at > ROUND_CACHE_S or (need_params and view.params is None):
            with self._state:
                self._reads = [t for t in self._reads if now - t < 60.0]
                if len(self._reads) >= MAX_ROUND_READS_PER_MIN:
                    raise Refusal(
                        503, [Reason(L.ROUND_UNAVAILABLE, "too many round reads this minute; retry later")]
                    )
                self._reads.append(now)
            mid = self.machine_id
            try:
                doc = self.rounds.get(f"/rounds/{mid}/{round_no}")
                transcript = self.rounds.get(f"/rounds/{mid}/{round_no}/transcript") if doc else None
            except (requests.RequestException, ValueError) as exc:
                raise Refusal(
                    503, [Reason(L.ROUND_UNAVAILABLE, f"the service's round could not be read: {exc}")]
                ) from exc
            if doc is None:
                raise Refusal(
                    403, [Reason(L.ROUND_NOT_OPEN, f"the service has no round {round_no} of this machine")]
                )
            params = None
            if transcript is not None:
                try:
                    params = round_params(transcript)
                except ClaimError:
                    params = None
            view = RoundView(str(doc.get("status")), frozenset(doc.get("members") or []), params, now)
            with self._state:
                for r, v in list(self._views.items()):
                    if now - v.fetched_at > ROUND_CACHE_S:
                        del self._views[r]
                self._views[round_no] = view
        return view

    def _authorize(
        self, account: str, machine_id: str, round_no: int, *, need_params: bool = False
    ) -> RoundView:
        if machine_id != self.machine_id:
            raise Refusal(422, [Reason(L.MACHINE_MISMATCH, "the body names another machine", "machine_id")])
        view = self._view(round_no, need_params=need_params)
        if account not in view.members:
            raise Refusal(
                403, [Reason(L.NOT_DRAWN, "the signer is not drawn for this machine's round", "keyid")]
            )
        if view.status != "open":
            raise Refusal(403, [Reason(L.ROUND_NOT_OPEN, f"round {round_no} is {view.status}", "round")])
        return view

    # ------------------------------------------------------------------ the two proof steps
    def _challenge(self, account: str, c: L.LiveChallenge, view: RoundView) -> Answer:
        if view.params is None or list(c.params) != view.params:
            raise Refusal(
                422,
                [
                    Reason(
                        L.PARAMS_MISMATCH,
                        "the parameters are not those the service derives for this round's claim",
                    )
                ],
            )
        key = (c.round, account)
        with self._state:
            if self._counts.get(key, 0) >= L.MAX_CHALLENGES_PER_MEMBER:
                raise Refusal(
                    429, [Reason(L.LIMIT, f"at most {L.MAX_CHALLENGES_PER_MEMBER} live challenges per round")]
                )
            if c.challenge_id in self._sessions:
                raise Refusal(
                    409, [Reason(L.REQUEST_INVALID, "this challenge_id was already used", "challenge_id")]
                )
        if not self._proving.acquire(blocking=False):
            raise Refusal(503, [Reason(L.BUSY, "another live challenge is being answered; retry shortly")])
        try:
            with self._state:
                self._counts[key] = self._counts.get(key, 0) + 1
            prover, signed = self.prove(bytes.fromhex(c.nonce), c.challenge_id, list(c.params))
        finally:
            self._proving.release()
        now = self.clock()
        with self._state:
            for cid, s in list(self._sessions.items()):
                if now - s.created > SESSION_TTL_S:
                    del self._sessions[cid]
            self._sessions[c.challenge_id] = Session(account, c.round, prover, signed, list(c.params), now)
        self.log(f"live challenge {c.challenge_id} of {account[:12]}… committed")
        return Answer(200, signed.model_dump_json().encode())

    def prove(
        self, nonce: bytes, challenge_id: str, params: list[ProofParams]
    ) -> tuple[Prover, SignedCommitment]:
        """The proving step (subclasses in tests model slower or delayed agents)."""
        return prove_commitment(self.key, self.executor, nonce, challenge_id, params)

    def _openings(self, account: str, o: L.LiveOpenings) -> Answer:
        with self._state:
            session = self._sessions.get(o.challenge_id)
            if session is None or session.account != account or session.round != o.round:
                raise Refusal(
                    404, [Reason(L.UNKNOWN_CHALLENGE, "no live challenge of this member with this id")]
                )
            del self._sessions[o.challenge_id]
        pairs: list[GpuPairs] = draw_all_pairs(session.signed, bytes.fromhex(o.pairs_secret), session.params)
        if not self._proving.acquire(timeout=OPENINGS_WAIT_S):
            raise Refusal(503, [Reason(L.BUSY, "the prover stayed busy; the openings were not computed")])
        try:
            openings = session.prover.open(pairs)
        finally:
            self._proving.release()
        data = encode_transcript(openings, session.params)
        return Answer(200, data, "application/octet-stream")


class LiveServer:
    """A ThreadingHTTPServer in a daemon thread in front of a LiveResponder."""

    def __init__(self, responder: LiveResponder, host: str, port: int) -> None:
        self.responder = responder

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                try:
                    length = int(self.headers.get("content-length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= L.MAX_REQUEST_BYTES:
                    body = json.dumps({"code": "body_too_large", "message": "bad or too large body"}).encode()
                    self._send(Answer(413, body))
                    return
                data = self.rfile.read(length)
                self._send(responder.handle("POST", self.path, dict(self.headers.items()), data))

            def _send(self, answer: Answer) -> None:
                self.send_response(answer.status)
                self.send_header("content-type", answer.content_type)
                self.send_header("content-length", str(len(answer.body)))
                for k, v in answer.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> LiveServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
