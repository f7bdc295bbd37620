"""One mapping from domain rejections and validation errors to HTTP responses."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from gpuproof.errors import Rejection
from gpuproof.protocol.proof.codes import VERSION_UNSUPPORTED
from gpuproof.protocol.reasons import Reason


def _loc(loc: Any) -> str:
    parts = [str(p) for p in loc if p != "body"] if isinstance(loc, (list, tuple)) else [str(loc)]
    return ".".join(parts) or "body"


def validation_rejection(exc: RequestValidationError) -> Rejection:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return Rejection([Reason("malformed_json", "the body is not valid JSON", "body")])
    return Rejection(
        [
            # A document of another protocol version keeps its own code (proof/models.py _only_v2).
            Reason(VERSION_UNSUPPORTED, str(e.get("msg", "")), _loc(e.get("loc", ())))
            if e.get("type") == VERSION_UNSUPPORTED
            else Reason(
                "schema_invalid", f"{e.get('msg', 'invalid')} ({e.get('type', '?')})", _loc(e.get("loc", ()))
            )
            for e in errors
        ]
    )


def rejection_response(rejection: Rejection) -> Response[str]:
    return Response(
        status_code=rejection.status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(rejection.body()),
    )


def install_error_handlers(app: APIGatewayHttpResolver) -> None:
    @app.exception_handler(Rejection)  # type: ignore[untyped-decorator]
    def _rejected(exc: Rejection) -> Response[str]:
        return rejection_response(exc)

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
    def _invalid(exc: RequestValidationError) -> Response[str]:
        return rejection_response(validation_rejection(exc))

    # API Gateway routed the request, the resolver's own routes did not match (a trailing slash):
    # the same 404 and shape as the HTTP front's, not Powertools' bare {"message": "Not found"}.
    @app.not_found
    def _unrouted(exc: NotFoundError) -> Response[str]:
        event = app.current_event
        where = f"{event.http_method} {event.path}"
        return rejection_response(Rejection([Reason("route_not_found", f"no route for {where}", "path")]))
