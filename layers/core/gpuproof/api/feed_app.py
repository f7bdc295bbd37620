"""The score feed's resolver (functions/score_feed); the signed feed lands with issue 6."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from gpuproof.api.errors import install_error_handlers
from gpuproof.api.not_implemented import NotImplementedYet, install_not_implemented_handler

ISSUE = "issue 6 (chain and score feed)"


def build() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    install_error_handlers(app)
    install_not_implemented_handler(app)

    @app.get("/feed")
    def get_feed() -> None:
        raise NotImplementedYet("the signed score feed", ISSUE)

    return app


app = build()
