"""The local HTTP front: API Gateway HTTP API (payload 2.0) in front of the functions' own handlers.

Routes come from the template's HttpApi events; requests become version 2.0 events and the
handlers' responses become HTTP responses, as API Gateway does.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from gpuproof.local.runtime import LocalFunction
from gpuproof.local.template import LOCAL_ACCOUNT

log = logging.getLogger("gpuproof_local")

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
API_ID = "localapi"
_DISCARD_LIMIT = 64 * 1024 * 1024
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded", "+json")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: LocalFunction
    pattern: re.Pattern[str]
    literal_segments: int

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    @classmethod
    def build(cls, method: str, path: str, function: LocalFunction) -> Route:
        parts = []
        literal = 0
        for segment in path.strip("/").split("/") if path != "/" else []:
            m = re.fullmatch(r"\{([A-Za-z0-9_]+)(\+?)\}", segment)
            if m and m.group(2):
                parts.append(f"(?P<{m.group(1)}>.+)")
            elif m:
                parts.append(f"(?P<{m.group(1)}>[^/]+)")
            else:
                parts.append(re.escape(segment))
                literal += 1
        pattern = re.compile("^/" + "/".join(parts) + "/?$") if parts else re.compile("^/?$")
        return cls(method.upper(), path, function, pattern, literal)


class Router:
    """Most specific match first, as API Gateway picks routes: more literal segments win."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: (-r.literal_segments, -len(r.path)))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            if route.method not in (method.upper(), "ANY"):
                continue
            m = route.pattern.match(path)
            if m:
                return route, {k: unquote(v) for k, v in m.groupdict().items()}
        return None


def _is_text(content_type: str) -> bool:
    ct = content_type.lower()
    return any(t in ct for t in _TEXT_TYPES)


def build_http_event(
    route: Route,
    path_params: dict[str, str],
    method: str,
    raw_path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload version 2.0 event."""
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    query: dict[str, str] = {}
    for k, v in parse_qsl(raw_query, keep_blank_values=True):
        query[k] = f"{query[k]},{v}" if k in query else v
    now = datetime.now(UTC)
    content_type = merged.get("content-type", "")
    is_b64 = False
    body_text: str | None = None
    if body:
        if not content_type or _is_text(content_type):
            try:
                body_text = body.decode("utf-8")
            except UnicodeDecodeError:
                body_text = None
        if body_text is None:
            body_text = base64.b64encode(body).decode("ascii")
            is_b64 = True
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": merged,
        "requestContext": {
            "accountId": LOCAL_ACCOUNT,
            "apiId": API_ID,
            "domainName": merged.get("host", "localhost"),
            "domainPrefix": merged.get("host", "localhost").split(".")[0],
            "http": {
                "method": method.upper(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route.route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": is_b64,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_params:
        event["pathParameters"] = path_params
    if body_text is not None:
        event["body"] = body_text
    return event


def translate_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A handler's return value as API Gateway (payload 2.0) turns it into HTTP."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # Payload 2.0 infers a 200 JSON response from anything without statusCode.
        body = result if isinstance(result, str) else json.dumps(result)
        return 200, [("content-type", "application/json")], body.encode("utf-8")
    status = int(result["statusCode"])
    headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    for k, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(k), str(v)) for v in values)
    headers.extend(("set-cookie", str(c)) for c in result.get("cookies") or [])
    raw = result.get("body")
    if raw is None:
        payload = b""
    elif result.get("isBase64Encoded"):
        payload = base64.b64decode(raw)
    else:
        payload = str(raw).encode("utf-8")
    if not any(k.lower() == "content-type" for k, _ in headers) and payload:
        headers.append(("content-type", "application/json"))
    return status, headers, payload


def _json(status: int, doc: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("content-type", "application/json")], json.dumps(doc).encode("utf-8")


def _error(
    status: int, code: str, message: str, field: str | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The API's error shape (gpuproof.api.errors): a stable code, every reason."""
    reason: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        reason["field"] = field
    return _json(status, {"code": code, "message": message, "reasons": [reason]})


def _route_not_found(method: str, raw_path: str) -> tuple[int, list[tuple[str, str]], bytes]:
    return _error(404, "route_not_found", f"no route for {method} {raw_path}", "path")


class _TooLarge(Exception):
    pass


class _FrontHandler(BaseHTTPRequestHandler):
    server: LocalHttpServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms on Linux) on every keep-alive response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("front: " + format, *args)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    raise _TooLarge
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            # Read (and drop) what the client sends, so it sees the 413 rather than a broken pipe.
            remaining = min(length, _DISCARD_LIMIT)
            while remaining > 0:
                got = self.rfile.read(min(remaining, 1 << 20))
                if not got:
                    break
                remaining -= len(got)
            raise _TooLarge
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        started = time.perf_counter()
        split = urlsplit(self.path)
        raw_path = split.path or "/"
        try:
            body = self._read_body()
        except _TooLarge:
            self.close_connection = True
            self._send(
                *_error(
                    413,
                    "body_too_large",
                    f"the body is over {MAX_BODY_BYTES} bytes (API Gateway's limit)",
                    "body",
                )
            )
            return
        matched = self.server.router.match(self.command, raw_path)
        if matched is None:
            # HTTP API answers 404 for a method and path no route has (the method is part of the
            # route key): TRACE, CONNECT and any other verb outside the API included.
            self._send(*_route_not_found(self.command, raw_path))
            return
        route, params = matched
        event = build_http_event(
            route,
            params,
            self.command,
            raw_path,
            split.query,
            list(self.headers.items()),
            body,
            self.client_address[0],
        )
        try:
            result = route.function.invoke(event)
            status, headers, payload = translate_response(result)
        except Exception:
            log.exception("%s raised for %s", route.function.spec.logical_id, route.route_key)
            status, headers, payload = _json(500, {"message": "Internal Server Error"})
        self._send(status, headers, payload)
        log.info(
            "%s %s -> %s %s (%.1f ms)",
            self.command,
            raw_path,
            route.function.spec.logical_id,
            status,
            (time.perf_counter() - started) * 1000,
        )

    def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("content-length", str(len(payload)))
        self.send_header("apigw-requestid", str(uuid.uuid4()))
        if self.close_connection:
            self.send_header("connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def __getattr__(self, name: str) -> Any:
        # BaseHTTPRequestHandler looks up do_<METHOD> and answers 501 with an HTML page where there
        # is none: every method goes to the router instead, which answers the API's JSON 404.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the front refuses before routing (a malformed request line, a header too long):
        the API's JSON error shape, never http.server's HTML page."""
        text = message or self.responses.get(code, ("error",))[0]
        self.close_connection = True
        # A request line that does not parse leaves http.server at HTTP/0.9 (no status line).
        self.request_version = self.protocol_version
        status, headers, payload = _error(code, "request_malformed", text)
        with contextlib.suppress(OSError):  # the client may be gone already
            self._send(status, headers, payload)


class LocalHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog: socketserver's default of 5 resets connections when 50 machines connect
    # at once; API Gateway queues them. (The kernel caps it at net.core.somaxconn.)
    request_queue_size = 1024

    def __init__(self, host: str, port: int, router: Router) -> None:
        self.router = router
        super().__init__((host, port), _FrontHandler)


class HttpFront:
    """Serves the router on host:port (0 = a free port) in a background thread."""

    def __init__(self, router: Router, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = LocalHttpServer(host, port, router)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="gpuproof-front", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
