"""A signed JSON client of the gpuproof HTTP API, shared by the probe and the committee CLI.

Every request carries an RFC 9421 signature (gpuproof.protocol.httpsig) over exactly the body
bytes sent; a refusal becomes a ServiceError with the service's stable code and every reason.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

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

    @property
    def account(self) -> str:
        """The signer's id: the Ed25519 public key hex (machine_id or member account)."""
        return self.key.public_hex

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Sign `@path` as the server sees it (base path of the API URL included) and these body bytes."""
        data = b"" if body is None else canonical_bytes(body)
        headers = sign_request(self.key, method, self._base_path + path, data)
        if body is not None:
            headers["content-type"] = "application/json"
        response = self.transport.request(
            method, self.api_url + path, data=data, headers=headers, timeout=self.timeout_s
        )
        parsed = _json_or_none(response)
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.text, parsed)
        return parsed
