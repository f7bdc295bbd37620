"""The committee API's resolver (functions/committee_api); its use cases land with issue 5."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from gpuproof.api.errors import install_error_handlers
from gpuproof.api.not_implemented import NotImplementedYet, install_not_implemented_handler

ISSUE = "issue 5 (committee)"


def build() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    install_error_handlers(app)
    install_not_implemented_handler(app)

    @app.post("/members")
    def register_member() -> None:
        raise NotImplementedYet("committee member registration", ISSUE)

    @app.get("/members/<account>/assignments")
    def get_assignments(account: str) -> None:
        raise NotImplementedYet("committee assignments", ISSUE)

    @app.get("/rounds/<machine_id>/<round_no>/transcript")
    def get_transcript(machine_id: str, round_no: str) -> None:
        raise NotImplementedYet("round transcripts", ISSUE)

    @app.post("/rounds/<machine_id>/<round_no>/commit")
    def commit_vote(machine_id: str, round_no: str) -> None:
        raise NotImplementedYet("committee commit", ISSUE)

    @app.post("/rounds/<machine_id>/<round_no>/reveal")
    def reveal_vote(machine_id: str, round_no: str) -> None:
        raise NotImplementedYet("committee reveal", ISSUE)

    return app


app = build()
