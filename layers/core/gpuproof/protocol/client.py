"""A signed JSON client of the gpuproof HTTP API, shared by the probe and the committee CLI.

Every request carries an RFC 9421 signature (gpuproof.protocol.httpsig) over exactly the body
bytes sent; a refusal becomes a ServiceError with the service's stable code and every reason.
What is safe to retry is retried with exponential backoff (`RetryPolicy`), each attempt signed
afresh (a new nonce: the service refuses a replayed one), and every retry is kept for a summary.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.httpsig import sign_request
from gpuproof.protocol.keys import SigningKey

DEFAULT_TIMEOUT_S = 30.0


def reason_text(reason: Any) -> str:
    if isinstance(reason, dict):
        code, message = reason.get("code", ""), reason.get("message", "")
        return f"{code}: {message}" if code and message else str(code or message or reason)
    return str(reason)


class ServiceError(Exception):
    """The service refused a request: HTTP status, its machine-readable code and every reason.

    `reasons` are as the service sent them ({"code", "message", "field"} objects).
    """

    def __init__(self, status: int, code: str, message: str, reasons: list[Any]) -> None:
        texts = [reason_text(r) for r in reasons]
        detail = f" ({'; '.join(texts)})" if texts else ""
        super().__init__(f"HTTP {status} {code}: {message}{detail}")
        self.status = status
        self.code = code
        self.message = message
        self.reasons = reasons


class Transport(Protocol):
    """The slice of requests.Session the client uses (tests may pass a double)."""

    def request(
        self, method: str, url: str, *, data: bytes, headers: dict[str, str], timeout: float
    ) -> Any: ...


def error_from_response(status: int, text: str, body: Any) -> ServiceError:
    if not isinstance(body, dict):
        return ServiceError(status, "http_error", text[:300] or "no body", [])
    nested = body.get("error")
    inner: dict[str, Any] = nested if isinstance(nested, dict) else body
    code = str(inner.get("code") or "http_error")
    message = str(inner.get("message") or inner.get("detail") or "")
    return ServiceError(status, code, message, list(inner.get("reasons") or []))


def _json_or_none(response: Any) -> Any:
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """When a request is tried again. `after_sent`: also after a failure once the request may have
    reached the service (a reset connection, a timeout, a 5xx) — only for requests whose repeat
    changes nothing (registration answers 409 the second time, reads, heartbeats)."""

    attempts: int = 5
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0
    statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
    after_sent: bool = True

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential with jitter (attempt 1 = the first retry); the server's Retry-After wins."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), 4 * self.max_delay_s)
        ceiling = min(self.max_delay_s, self.first_delay_s * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


# Safe whatever happened to the first try.
RETRY_SAFE = RetryPolicy()
# Only what certainly never reached the service: no connection made, or throttled (429).
RETRY_UNSENT = RetryPolicy(statuses=frozenset({429}), after_sent=False)
NO_RETRY = RetryPolicy(attempts=1)


def never_sent(exc: requests.RequestException) -> bool:
    """The request certainly did not reach the service: the connection was never made."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NewConnectionError | ConnectionRefusedError):
            return True
        nested = [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        current = current.__cause__ or current.__context__ or (nested[0] if nested else None)
    return False


def _retry_after(response: Any) -> float | None:
    value = (getattr(response, "headers", None) or {}).get("retry-after")
    try:
        return None if value is None else float(str(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class Retry:
    """One retry: the route, why, and which attempt follows."""

    route: str
    cause: str
    attempt: int


def retry_summary(retries: list[Retry]) -> str | None:
    """One line for the operator: what was retried and why; None when nothing was."""
    if not retries:
        return None
    counts = Counter((r.route, r.cause) for r in retries)
    parts = [f"{route} x{n} ({cause})" for (route, cause), n in sorted(counts.items())]
    return f"retried {len(retries)} time(s): " + "; ".join(parts)


class SignedClient:
    """`SignedClient(api_url, key)`: signed JSON requests; parsed JSON back or a ServiceError."""

    def __init__(
        self,
        api_url: str,
        key: SigningKey,
        transport: Transport | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.key = key
        self.transport: Transport = transport or requests.Session()
        self.timeout_s = timeout_s
        self._base_path = urlsplit(self.api_url).path.rstrip("/")
        self.retries: list[Retry] = []
        self.sleep: Callable[[float], None] = time.sleep

    @property
    def account(self) -> str:
        """The signer's id: the Ed25519 public key hex (machine_id or member account)."""
        return self.key.public_hex

    def retry_summary(self) -> str | None:
        return retry_summary(self.retries)

    def request(self, method: str, path: str, body: Any = None, retry: RetryPolicy | None = None) -> Any:
        """Sign `@path` as the server sees it (base path of the API URL included) and these body bytes.
        Default retry: reads (GET) whatever happened, anything else only when it was never sent."""
        policy = retry or (RETRY_SAFE if method == "GET" else RETRY_UNSENT)
        data = b"" if body is None else canonical_bytes(body)
        route = f"{method} {path}"
        for attempt in range(1, policy.attempts + 1):
            last = attempt == policy.attempts
            headers = sign_request(self.key, method, self._base_path + path, data)  # a fresh nonce
            if body is not None:
                headers["content-type"] = "application/json"
            try:
                response = self.transport.request(
                    method, self.api_url + path, data=data, headers=headers, timeout=self.timeout_s
                )
            except requests.RequestException as exc:
                if last or not (policy.after_sent or never_sent(exc)):
                    raise
                self.retries.append(Retry(route, type(exc).__name__, attempt + 1))
                self.sleep(policy.delay(attempt))
                continue
            parsed = _json_or_none(response)
            if response.status_code < 400:
                return parsed
            if last or response.status_code not in policy.statuses:
                raise error_from_response(response.status_code, response.text, parsed)
            self.retries.append(Retry(route, f"HTTP {response.status_code}", attempt + 1))
            self.sleep(policy.delay(attempt, _retry_after(response)))
        raise AssertionError("unreachable: the last attempt returns or raises")
