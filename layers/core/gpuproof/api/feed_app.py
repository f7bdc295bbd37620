"""The score feed's resolver (functions/score_feed): the signed batches published on chain, in
chain order, paged by `since` (the last `position` a consumer has seen).

Each batch is the exact payload that went on chain (service-signed header + records); the JSON
beside it is a convenience. Consumers verify with gpuproof.chain.consumer.verify_payload and the
`service_key` (also KMS GetPublicKey of the service key).
"""

from __future__ import annotations

import functools
import os
from typing import Annotated, Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel

from gpuproof.api.errors import install_error_handlers
from gpuproof.api.models import responses
from gpuproof.chain.payload import PPM, PayloadError, decode_record, split_payload
from gpuproof.chain.signer import KmsBatchSigner
from gpuproof.chain.store import PublishedBatch, PublishedBatchFeed
from gpuproof.protocol.limits import MAX_FEED_POSITION

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class FeedRevocation(BaseModel):
    reason: str  # a reason code (docs/reason-codes.md, stage liveness)
    revokes_round: int  # the round whose Confirmed score this withdraws


class FeedVerdict(BaseModel):
    machine_id: str
    round: int
    result: str
    calc_point: int
    gpu_type: str
    gpu_num: int
    performance_index: float | None
    evidence_digest: str
    leaf_index: int
    # Set on a Revoked verdict only: the score of round `revokes_round` no longer holds.
    revocation: FeedRevocation | None = None


class FeedBatch(BaseModel):
    position: int
    batch_id: str
    payload: str  # 0x-hex SCALE(SignedVerdictBatch), byte for byte what went on chain
    extrinsic_hash: str
    block_hash: str
    block_number: int
    extrinsic_index: int
    call: str
    verdict_ids: list[str]
    verdicts: list[FeedVerdict]


class FeedPage(BaseModel):
    service_key: str  # 0x-hex compressed P-256 public key that signs every batch header
    batches: list[FeedBatch]
    next: int | None  # pass as `since` for the next page; null when this page is empty


@functools.cache
def _feed() -> PublishedBatchFeed:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return PublishedBatchFeed(os.environ["PUBLISHED_BATCHES_TABLE"], region)


@functools.cache
def _service_key() -> str:
    signer = KmsBatchSigner(os.environ["SERVICE_KEY_ID"], boto3.client("kms"))
    return "0x" + signer.public_key().hex()


def _verdicts(batch: PublishedBatch) -> list[FeedVerdict]:
    try:
        _, _, records = split_payload(batch.payload)
    except PayloadError:
        return []
    out = []
    for n, raw in enumerate(records):
        v: dict[str, Any] = decode_record(raw)
        info = v["upload_info"]
        perf = v["performance_index_ppm"]
        out.append(
            FeedVerdict(
                machine_id=info["machine_id"].decode(),
                round=v["round"],
                result=v["result"],
                calc_point=info["calc_point"],
                gpu_type=info["gpu_type"].decode(errors="replace"),
                gpu_num=info["gpu_num"],
                performance_index=None if perf is None else perf / PPM,
                evidence_digest=v["evidence_digest"],
                leaf_index=n,
                revocation=None if v["revocation"] is None else FeedRevocation(**v["revocation"]),
            )
        )
    return out


def feed_page(since: int | None, limit: int) -> FeedPage:
    batches = _feed().batches_since(since, limit)
    return FeedPage(
        service_key=_service_key(),
        batches=[
            FeedBatch(
                position=b.position,
                batch_id=b.batch_id,
                payload="0x" + b.payload.hex(),
                extrinsic_hash=b.extrinsic_hash,
                block_hash=b.block_hash,
                block_number=b.block_number,
                extrinsic_index=b.extrinsic_index,
                call=b.call,
                verdict_ids=b.verdict_ids,
                verdicts=_verdicts(b),
            )
            for b in batches
        ],
        next=batches[-1].position if batches else None,
    )


router = Router()  # type: ignore[no-untyped-call]


@router.get(
    "/feed",
    tags=["feed"],
    summary="Signed verdict batches published on chain, after `since`",
    responses=responses(200, FeedPage),
)
def get_feed(
    since: Annotated[
        int | None, Query(ge=0, le=MAX_FEED_POSITION, description="the last position seen; omit to start")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> FeedPage:
    return feed_page(since, limit)


def build() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    app.include_router(router)
    install_error_handlers(app)
    return app


app = build()
