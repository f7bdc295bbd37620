"""TranscriptStore on S3: presigned POST uploads (policy: exact key, size range, SHA-256 checksum),
streamed reads checked against the signed report's reference, presigned GETs for members."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from gpuproof.protocol.delivery import (
    TranscriptRef,
    TranscriptUpload,
    parts_size_reasons,
    read_verified,
    ref_parts,
    transcript_key,
)
from gpuproof.protocol.reasons import Reason

# A streamed GET reads this much at a time: the worker holds the transcript plus one chunk.
READ_CHUNK_BYTES = 1024 * 1024
_ABSENT = {"404", "NoSuchKey", "NotFound"}


class S3TranscriptStore:
    def __init__(self, bucket: str, region: str, client: Any = None) -> None:
        self.bucket = bucket
        # SigV4 everywhere: presigned POST policies and GETs signed the way every region accepts.
        self._s3 = client or boto3.client("s3", region_name=region, config=Config(signature_version="s3v4"))

    def upload_target(
        self,
        machine_id: str,
        challenge_id: str,
        max_bytes: int,
        expires_at: float,
        now: float,
        suffix: str = "",
    ) -> TranscriptUpload:
        key = transcript_key(machine_id, challenge_id) + suffix
        fields = {"x-amz-checksum-algorithm": "SHA256"}
        conditions: list[Any] = [
            {"x-amz-checksum-algorithm": "SHA256"},
            ["starts-with", "$x-amz-checksum-sha256", ""],
            ["content-length-range", 1, max_bytes],
        ]
        expires_in = max(1, math.ceil(expires_at - now))
        post = self._s3.generate_presigned_post(
            self.bucket, key, Fields=fields, Conditions=conditions, ExpiresIn=expires_in
        )
        return TranscriptUpload(
            url=post["url"],
            fields={str(k): str(v) for k, v in post["fields"].items()},
            key=key,
            max_bytes=max_bytes,
            expires_at=now + expires_in,
        )

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _ABSENT:
                return None
            raise
        return head

    def size(self, machine_id: str, challenge_id: str, suffix: str = "") -> int | None:
        head = self._head(transcript_key(machine_id, challenge_id) + suffix)
        return None if head is None else int(head["ContentLength"])

    def read(
        self, machine_id: str, challenge_id: str, ref: TranscriptRef, max_bytes: int, suffix: str = ""
    ) -> tuple[bytearray | None, list[Reason]]:
        base = transcript_key(machine_id, challenge_id)
        parts = [(base + part, size) for part, size in ref_parts(ref, suffix)]
        heads = [self._head(key) for key, _size in parts]
        sizes = [None if head is None else int(head["ContentLength"]) for head in heads]
        reasons = parts_size_reasons(sizes, ref, max_bytes)
        if reasons:
            return None, reasons  # refused on its size alone: nothing is read
        bodies: list[Any] = []

        def chunks() -> Iterator[bytes]:
            # The objects HEAD measured, never replacements; never more bytes than each declared.
            for (key, size), head in zip(parts, heads, strict=True):
                assert head is not None
                got = self._s3.get_object(
                    Bucket=self.bucket, Key=key, IfMatch=head["ETag"], Range=f"bytes=0-{size - 1}"
                )
                bodies.append(got["Body"])
                yield from got["Body"].iter_chunks(READ_CHUNK_BYTES)

        try:
            return read_verified(chunks(), ref, max_bytes)
        finally:
            for body in bodies:
                body.close()

    def download_url(self, machine_id: str, challenge_id: str, expires_in_s: int, suffix: str = "") -> str:
        url: str = self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": transcript_key(machine_id, challenge_id) + suffix},
            ExpiresIn=expires_in_s,
        )
        return url
