"""HTTP client of the gpuproof machine API: the shared signed client plus the machine routes, and
the upload of a proof transcript to the presigned S3 POST the service hands out."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Mapping
from typing import Any

import requests

from gpuproof.protocol.client import (
    RETRY_SAFE,
    ServiceError,
    SignedClient,
    Transport,
    error_from_response,
)

__all__ = ["ServiceClient", "ServiceError", "Transport", "error_from_response", "upload_transcript"]


class ServiceClient(SignedClient):
    """`ServiceClient(api_url, key)`: the machine API, every request signed with the machine key.

    Registration and heartbeats are retried whatever happened to the first try (a second
    registration of the same key answers 409, which `submit` takes as registered; a heartbeat
    only refreshes); challenges, commitments and reports only when they were never sent or were
    throttled (429): a repeat of a delivered one is refused or supersedes it."""

    def register(self, registration: dict[str, Any]) -> Any:
        return self.request("POST", "/machines", registration, retry=RETRY_SAFE)

    def create_challenge(self, machine_id: str, request: dict[str, Any]) -> Any:
        return self.request("POST", f"/machines/{machine_id}/challenges", request)

    def submit_commitment(self, machine_id: str, challenge_id: str, signed_commitment: dict[str, Any]) -> Any:
        body = {"challenge_id": challenge_id, "signed_commitment": signed_commitment}
        return self.request("POST", f"/machines/{machine_id}/commitments", body)

    def open_capacity(self, machine_id: str, challenge_id: str) -> Any:
        return self.request("POST", f"/machines/{machine_id}/capacity", {"challenge_id": challenge_id})

    def submit_capacity_commitment(
        self, machine_id: str, challenge_id: str, signed_commitment: dict[str, Any]
    ) -> Any:
        body = {"challenge_id": challenge_id, "signed_commitment": signed_commitment}
        return self.request("POST", f"/machines/{machine_id}/capacity/commitments", body)

    def submit_capacity_answer(self, machine_id: str, challenge_id: str, answer: dict[str, Any]) -> Any:
        body = {"challenge_id": challenge_id, "answer": answer}
        return self.request("POST", f"/machines/{machine_id}/capacity/answers", body)

    def submit_capacity_openings(
        self,
        machine_id: str,
        challenge_id: str,
        openings: bytes | None = None,
        reference: dict[str, Any] | None = None,
    ) -> Any:
        """The binary openings inline (sent as base64) or a reference to the same bytes uploaded."""
        body: dict[str, Any] = {"challenge_id": challenge_id}
        if openings is not None:
            body["openings"] = base64.b64encode(openings).decode()
        if reference is not None:
            body["reference"] = reference
        return self.request("POST", f"/machines/{machine_id}/capacity/openings", body)

    def submit_report(self, machine_id: str, challenge_id: str, signed_report: dict[str, Any]) -> Any:
        body = {"challenge_id": challenge_id, "signed_report": signed_report}
        return self.request("POST", f"/machines/{machine_id}/reports", body)

    def machine(self, machine_id: str) -> Any:
        return self.request("GET", f"/machines/{machine_id}")

    def heartbeat(self, machine_id: str, telemetry: dict[str, Any]) -> Any:
        return self.request("POST", f"/machines/{machine_id}/heartbeats", telemetry, retry=RETRY_SAFE)


# Retried: the connection failing and S3 saying "try again"; any other refusal is final.
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def _s3_error(status: int, text: str) -> ServiceError:
    """S3 answers a refused upload with XML: <Error><Code>EntityTooLarge</Code><Message>…"""
    code = re.search(r"<Code>([^<]{1,100})</Code>", text)
    message = re.search(r"<Message>([^<]{1,500})</Message>", text)
    return ServiceError(
        status,
        code.group(1) if code else "upload_refused",
        message.group(1) if message else text[:300],
        [],
    )


def upload_transcript(
    upload: Mapping[str, Any],
    data: bytes,
    media_type: str,
    *,
    attempts: int = 4,
    backoff_s: float = 1.0,
    session: Any = None,
    timeout_s: float = 120.0,
) -> None:
    """POST `data` to the presigned upload the commitment's answer carries: the policy's fields,
    the SHA-256 checksum field S3 checks the body against, then the file. Retries transient
    failures with exponential backoff; raises ServiceError when S3 refuses."""
    max_bytes = int(upload["max_bytes"])
    if len(data) > max_bytes:
        raise ServiceError(
            413,
            "transcript_too_large",
            f"the transcript is {len(data)} bytes; the service takes {max_bytes}",
            [],
        )
    fields = dict(upload["fields"])
    fields[str(upload.get("checksum_field") or "x-amz-checksum-sha256")] = base64.b64encode(
        hashlib.sha256(data).digest()
    ).decode()
    http = session or requests.Session()
    for attempt in range(attempts):
        last = attempt == attempts - 1
        try:
            response = http.post(
                str(upload["url"]),
                data=fields,
                files={"file": ("transcript", data, media_type)},
                timeout=timeout_s,
            )
        except (requests.ConnectionError, requests.Timeout):
            if last:
                raise
        else:
            if response.status_code < 300:
                return
            if response.status_code not in RETRY_STATUS or last:
                raise _s3_error(response.status_code, response.text)
        time.sleep(backoff_s * 2**attempt)
