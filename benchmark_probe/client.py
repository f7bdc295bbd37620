"""HTTP client of the gpuproof machine API: every request signed (RFC 9421 profile in httpsig)."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.httpsig import sign_request
from gpuproof.protocol.keys import SigningKey

DEFAULT_TIMEOUT_S = 30.0


class ServiceError(Exception):
    """The service refused a request: HTTP status, its machine-readable code and every reason."""

    def __init__(self, status: int, code: str, message: str, reasons: list[str]) -> None:
        detail = f" ({'; '.join(reasons)})" if reasons else ""
        super().__init__(f"HTTP {status} {code}: {message}{detail}")
        self.status = status
        self.code = code
        self.message = message
        self.reasons = reasons


class Transport(Protocol):
    """The slice of requests.Session the client uses (tests pass a fake)."""

    def request(
        self, method: str, url: str, *, data: bytes, headers: dict[str, str], timeout: float
    ) -> Any: ...


def _reason_text(reason: Any) -> str:
    if isinstance(reason, dict):
        code, message = reason.get("code", ""), reason.get("message", "")
        return f"{code}: {message}" if code and message else str(code or message or reason)
    return str(reason)


def error_from_response(status: int, text: str, body: Any) -> ServiceError:
    if not isinstance(body, dict):
        return ServiceError(status, "http_error", text[:300] or "no body", [])
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    code = str(inner.get("code") or "http_error")
    message = str(inner.get("message") or inner.get("detail") or "")
    reasons = [_reason_text(r) for r in inner.get("reasons") or []]
    return ServiceError(status, code, message, reasons)


class ServiceClient:
    """`ServiceClient(api_url, key)`: signed JSON requests; parsed JSON back or a ServiceError."""

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

    # -- machine API --------------------------------------------------------------------------
    def register(self, registration: dict[str, Any]) -> Any:
        return self.request("POST", "/machines", registration)

    def create_challenge(self, machine_id: str, request: dict[str, Any]) -> Any:
        return self.request("POST", f"/machines/{machine_id}/challenges", request)

    def submit_report(self, machine_id: str, challenge_id: str, signed_report: dict[str, Any]) -> Any:
        body = {"challenge_id": challenge_id, "signed_report": signed_report}
        return self.request("POST", f"/machines/{machine_id}/reports", body)

    def machine(self, machine_id: str) -> Any:
        return self.request("GET", f"/machines/{machine_id}")

    def heartbeat(self, machine_id: str, telemetry: dict[str, Any]) -> Any:
        return self.request("POST", f"/machines/{machine_id}/heartbeats", telemetry)


def _json_or_none(response: Any) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None
