"""Routes whose use case lands with a later issue answer 501 with a stable code, loudly."""

from __future__ import annotations

import json

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

from gpuproof.protocol.reasons import Reason


class NotImplementedYet(Exception):
    """The route exists in the contract; its use case is not written yet."""

    def __init__(self, what: str, issue: str) -> None:
        self.reason = Reason("not_implemented", f"{what} lands with {issue}")
        super().__init__(self.reason.message)

    def body(self) -> dict[str, object]:
        return {"code": self.reason.code, "message": self.reason.message, "reasons": [self.reason.as_dict()]}


def install_not_implemented_handler(app: APIGatewayHttpResolver) -> None:
    @app.exception_handler(NotImplementedYet)  # type: ignore[untyped-decorator]
    def _not_implemented(exc: NotImplementedYet) -> Response[str]:
        return Response(
            status_code=501, content_type=content_types.APPLICATION_JSON, body=json.dumps(exc.body())
        )
