"""The committee API's resolver (functions/committee_api)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from gpuproof.api import committee
from gpuproof.api.errors import install_error_handlers


def build() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    app.include_router(committee.router)
    install_error_handlers(app)
    return app


app = build()
