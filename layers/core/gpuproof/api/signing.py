"""Request signatures are verified on the raw event, before the resolver parses anything.

Powertools validates bodies before any route middleware runs, so the check sits in the
handler's decorator stack, in front of `app.resolve`. Mutating methods must be signed. A GET is
verified only where its route asks for the signer (`signed_request`: the capacity session a drawn
member reads); a read consumes no nonce (it changes nothing; a replay inside the skew window
returns what the signer was already given).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from gpuproof.adapters.clock import SystemClock
from gpuproof.api.body import body_reasons
from gpuproof.config import MAX_BODY_BYTES
from gpuproof.errors import Rejection, raise_if
from gpuproof.observability import count_refusals
from gpuproof.protocol.httpsig import DEFAULT_MAX_SKEW_S, RequestSignatureError, SignedRequest, verify_request
from gpuproof.protocol.reasons import Reason

SIGNED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_current: ContextVar[SignedRequest | None] = ContextVar("gpuproof_signed_request", default=None)
_arrived: ContextVar[float | None] = ContextVar("gpuproof_request_arrived", default=None)
# An unsigned-method request's raw event, verified only if its route asks for the signer.
_unverified: ContextVar[dict[str, Any] | None] = ContextVar("gpuproof_unverified_event", default=None)
_clock = SystemClock()

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def _raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise Rejection([Reason("malformed_json", "the body is not valid base64", "body")]) from exc
    # surrogatepass: a str that is not Unicode text reaches the UTF-8 check, not an exception.
    return str(body).encode("utf-8", "surrogatepass")


def check_envelope(event: dict[str, Any], now: float, max_skew_s: int) -> SignedRequest | None:
    """Size first, then the signature, then the body as JSON (UTF-8, depth, finite numbers);
    raises Rejection. None for methods that need no signature (their bodies are not read)."""
    body = _raw_body(event)
    if len(body) > MAX_BODY_BYTES:
        raise Rejection(
            [
                Reason(
                    "body_too_large", f"the body has {len(body)} bytes; the limit is {MAX_BODY_BYTES}", "body"
                )
            ]
        )
    http = event.get("requestContext", {}).get("http", {})
    method = str(http.get("method", "")).upper()
    if method not in SIGNED_METHODS:
        return None
    try:
        signed = verify_request(
            method, event.get("rawPath", ""), event.get("headers") or {}, body, now=now, max_skew_s=max_skew_s
        )
    except RequestSignatureError as exc:
        raise Rejection(exc.reasons) from exc
    raise_if(body_reasons(body))
    return signed


def _response(rejection: Rejection) -> dict[str, Any]:
    count_refusals(r.code for r in rejection.reasons)
    return {
        "statusCode": rejection.status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(rejection.body()),
        "isBase64Encoded": False,
    }


def signature_first(handler: Handler) -> Handler:
    """Decorator for a lambda_handler: refuse oversize or unsigned/forged/stale requests up front."""

    @functools.wraps(handler)
    def wrapper(event: dict[str, Any], context: Any) -> dict[str, Any]:
        max_skew = int(os.environ.get("MAX_SKEW_S", DEFAULT_MAX_SKEW_S))
        try:
            signed = check_envelope(event, _clock.now(), max_skew)
        except Rejection as rejection:
            return _response(rejection)
        token = _current.set(signed)
        arrived = _arrived.set(edge_time(event))
        pending = _unverified.set(event if signed is None else None)
        try:
            return handler(event, context)
        finally:
            _current.reset(token)
            _arrived.reset(arrived)
            _unverified.reset(pending)

    return wrapper


def edge_time(event: dict[str, Any]) -> float | None:
    """When the API received the request (the HTTP API event's `requestContext.timeEpoch`, ms),
    in epoch seconds; None when the event has no usable one. Set by API Gateway, not the caller."""
    value = (event.get("requestContext") or {}).get("timeEpoch")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value) / 1000.0
    return seconds if 0 < seconds < 2**34 else None


def request_arrived() -> float | None:
    """Dependency: the current request's arrival time at the API's edge (see `edge_time`)."""
    return _arrived.get()


def signed_request() -> SignedRequest:
    """Dependency for routes that need the verified signer (set by `signature_first`; for a GET,
    verified here, on the raw event, the first time its route asks)."""
    signed = _current.get()
    event = _unverified.get()
    if signed is None and event is not None:
        method = str(event.get("requestContext", {}).get("http", {}).get("method", "")).upper()
        max_skew = int(os.environ.get("MAX_SKEW_S", DEFAULT_MAX_SKEW_S))
        try:
            signed = verify_request(
                method,
                event.get("rawPath", ""),
                event.get("headers") or {},
                _raw_body(event),
                now=_clock.now(),
                max_skew_s=max_skew,
            )
        except RequestSignatureError as exc:
            raise Rejection(exc.reasons) from exc
        _current.set(signed)
    if signed is None:
        raise Rejection([Reason("signature_missing", "this route needs a signed request", "signature")])
    return signed
