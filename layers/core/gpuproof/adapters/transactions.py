"""Conditional DynamoDB transactions shared by the stores: one call, every failed condition named."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from gpuproof.adapters.tables import RequestNonceModel
from gpuproof.errors import Rejection
from gpuproof.protocol.httpsig import SignedRequest
from gpuproof.protocol.reasons import Reason

# A used request nonce must outlive the signature window on both sides of the service clock.
NONCE_RETENTION_S = 3600
REPLAYED = Reason("replayed_nonce", "this request nonce was already used", "nonce")

TransactWriteBuilder = Callable[[TransactWrite], None]


def commit(connection: Connection, build: TransactWriteBuilder, reasons_by_item: Sequence[Reason]) -> None:
    """Run the transaction `build` describes; a failed condition raises Rejection with its reason.

    `reasons_by_item[i]` names what the i-th item's condition protects (the last one stands for
    any further items). Nothing is written unless every condition holds.
    """
    try:
        with TransactWrite(connection=connection) as tx:
            build(tx)
    except TransactWriteError as exc:
        failed = [
            reasons_by_item[min(i, len(reasons_by_item) - 1)]
            for i, reason in enumerate(exc.cancellation_reasons or [])
            if reason is not None and reason.code == "ConditionalCheckFailed"
        ]
        if failed:
            raise Rejection(failed) from exc
        raise


def nonce_item(request: SignedRequest) -> RequestNonceModel:
    """The used-nonce record a signed request's transaction puts (condition: not there yet)."""
    return RequestNonceModel(
        f"{request.keyid}#{request.nonce}",
        created_at=request.created,
        expires_ttl=request.created + NONCE_RETENTION_S,
    )


def consume_nonce(tx: TransactWrite, request: SignedRequest) -> None:
    tx.save(nonce_item(request), condition=RequestNonceModel.nonce_key.does_not_exist())
