"""Generates docs/openapi.json from the routers themselves: `python -m gpuproof.api.openapi`."""

from __future__ import annotations

import json
import sys

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from gpuproof import __version__
from gpuproof.api import committee, feed_app, machines

ROUTERS = [machines.router, committee.router, feed_app.router]

SIGNATURE_NOTE = (
    "Every POST is signed with RFC 9421 HTTP Message Signatures (gpuproof profile: components "
    '"@method" "@path" "content-digest"; parameters created, keyid, nonce, alg="ed25519"). '
    "See docs/protocol.md. Rejections carry a stable `code` and every reason in `reasons`."
)


def document() -> str:
    app = APIGatewayHttpResolver(enable_validation=True)
    for router in ROUTERS:
        app.include_router(router)
    return app.get_openapi_json_schema(
        title="gpuproof service API",
        version=__version__,
        description=SIGNATURE_NOTE,
    )


def rendered() -> str:
    """The document exactly as committed in docs/openapi.json."""
    return json.dumps(json.loads(document()), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    sys.stdout.write(rendered())


if __name__ == "__main__":
    main()
