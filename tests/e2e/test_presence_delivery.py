# ruff: noqa: F811 - pytest fixtures imported from sibling modules are redefined as parameters
"""A presence check's openings at an 8 x H100 host's real size, through the local path: the
commitment's answer hands out a presigned POST for the check's transcript key, the agent uploads
the binary transcript (about 7.4 MB: far over the API's 1 MiB body bound) to S3 (moto, from
template.yaml), the proof request carries its TranscriptRef, and the machine API reads the object
back (HEAD, streamed GET, size and SHA-256), decodes it with the check's params and verifies it.

No host here can pass an 8 x H100 verification, so the machine is a CPU machine published through
the whole path whose stored claim is then set to 8 x H100 in the machines table (the one write
this test makes itself): the sweeper then sizes its next presence check from that claim, exactly
as for a machine verified at that claim. The transcript is `shaped_transcript` (random rows and
roots in the exact layout for the check's params and drawn pairs, as test_transcript_delivery.py):
the verdict must come from verifying it (proof_* reasons, delivered: true), never from a
body-size refusal. Delivery refusals the agent can put right (nothing uploaded) leave the check
open."""

from __future__ import annotations

import json
import secrets
import time
import tracemalloc
from typing import Any

import boto3
import numpy as np
import pytest

from benchmark_probe.client import ServiceClient, ServiceError, upload_transcript
from benchmark_probe.presence import OPEN_MARGIN_S, PresenceResponder
from gpuproof.claim import make_claim
from gpuproof.local.stack import LocalStack
from gpuproof.protocol.delivery import MEDIA_TYPES, TranscriptRef
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.proof import (
    GpuCommitment,
    GpuPairs,
    ProofParams,
    SignedCommitment,
    ThroughputCommitment,
    ThroughputProof,
)
from tests.e2e.h100_host import shaped_transcript
from tests.e2e.test_attacks import H100
from tests.e2e.test_chain import chain, reader, service_key  # noqa: F401 - fixtures
from tests.e2e.test_committee_flow import Bot, bots  # noqa: F401
from tests.e2e.test_presence import agent_until, frequent_presence  # noqa: F401
from tests.e2e.test_presence import pytestmark as presence_marks
from tests.e2e.test_revocation import publish, revoked_item

pytestmark = presence_marks

API_BODY_LIMIT = 1024 * 1024


class H100Host:
    """`on_presence` of a host that claims 8 x H100: a check sized for the CPU claim (opened before
    the claim was set) is answered honestly; a check with 8 GPUs' params gets a fabricated
    commitment (a random chained value per GPU: accepted on receipt, in time), and its openings
    are uploaded as a shaped transcript and named by reference."""

    def __init__(self, api: str, key: SigningKey, swap: bool = False) -> None:
        self.client = ServiceClient(api, key)
        self.key = key
        self.swap = swap  # upload other bytes of the same size than the reference names
        self.honest = PresenceResponder(self.client, key)
        self.delivered: dict[str, Any] = {}

    def __call__(self, announcement: dict[str, Any], service_offset_s: float = 0.0) -> Any:
        mid, check_id = self.key.public_hex, str(announcement["check_id"])
        wait = float(announcement["opens_at"]) - (time.time() + service_offset_s)
        if wait > -OPEN_MARGIN_S:
            time.sleep(wait + OPEN_MARGIN_S)
        check = self.client.request("POST", f"/machines/{mid}/presence/{check_id}", {})
        params = [ProofParams.model_validate(p) for p in check["params"]]
        if len(params) != 8:
            return self.honest(announcement, service_offset_s)  # fetched again: same check
        commitment = ThroughputCommitment(
            machine_id=mid,
            challenge_id=check_id,
            nonce=check["nonce"],
            gpus=[GpuCommitment(gpu_index=p.gpu_index, chain=secrets.token_hex(32)) for p in params],
        )
        signed = SignedCommitment.sign(commitment, self.key)
        base = f"/machines/{mid}/presence/{check_id}"
        receipt = self.client.request(
            "POST", f"{base}/commitment", {"signed_commitment": signed.model_dump(mode="json")}
        )
        upload = receipt["transcript_upload"]
        pairs = [GpuPairs.model_validate(p) for p in receipt["pairs"]]
        data = shaped_transcript(params, pairs, np.random.default_rng(13))
        ref = TranscriptRef.of(
            2,
            data,
            ThroughputProof(
                commitment=signed.commitment, signature=signed.signature, pairs=pairs, openings=[]
            ),
        )
        self.delivered.update(check_id=check_id, bytes=len(data), upload=upload, params=params)
        # Nothing uploaded yet: refused as resendable, the check stays open.
        with pytest.raises(ServiceError) as missing:
            self.client.request("POST", f"{base}/proof", {"proof": ref.model_dump(mode="json")})
        self.delivered["before_upload"] = (missing.value.status, missing.value.code)
        sent = bytearray(data)
        if self.swap:
            sent[len(sent) // 2] ^= 0xFF
        upload_transcript(upload, bytes(sent), MEDIA_TYPES[2], backoff_s=0)
        with pytest.raises(ServiceError) as judged:
            self.client.request("POST", f"{base}/proof", {"proof": ref.model_dump(mode="json")})
        self.delivered["verdict"] = (judged.value.status, judged.value.code, judged.value.reasons)
        return None


def set_claim(local_stack: LocalStack, machine_id: str, claim: dict[str, Any]) -> None:
    table = boto3.resource("dynamodb").Table(local_stack.table_name("MachinesTable"))
    table.update_item(
        Key={"machine_id": machine_id},
        UpdateExpression="SET #c = :c",
        ExpressionAttributeNames={"#c": "claim"},
        ExpressionAttributeValues={":c": json.dumps(claim)},
    )


def test_an_8xh100_presence_proof_is_delivered_through_s3_and_judged_by_verifying_it(
    local_stack: LocalStack, chain: Any, bots: list[Bot], frequent_presence: None
) -> None:
    api = local_stack.api_url
    key, mid = publish(api, local_stack)
    # The claim as a verification at 8 x H100 stores it (the reference table's model name).
    set_claim(local_stack, mid, make_claim(H100, 8, allow_cpu_backend=False).as_dict())
    host = H100Host(api, key)
    tracemalloc.start()  # the machine API runs in this process on the local stack
    try:
        doc = agent_until(api, key, lambda m: m["state"] == "revoked", host, timeout=180.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"peak traced memory (agent, machine API, moto together): {peak / 2**20:.1f} MiB")

    got = host.delivered
    print(f"\n8xH100 presence transcript: {got['bytes']} bytes ({got['bytes'] // 8} per GPU)")
    assert {(p.n, p.d) for p in got["params"]} == {(1 << 18, 4096)} and len(got["params"]) == 8
    assert got["bytes"] > 7 * API_BODY_LIMIT  # could never travel inline
    upload = got["upload"]
    assert upload["key"] == f"transcripts/{mid}/presence-{got['check_id']}"
    assert upload["max_bytes"] == 8 * 4 * 1024 * 1024 >= got["bytes"]  # TranscriptMaxBytesPerGpu x 8
    assert got["before_upload"] == (422, "transcript_missing")
    status, code, reasons = got["verdict"]
    codes = {r["code"] for r in reasons}
    # Judged by verifying the delivered transcript: random roots fail the proof's own checks.
    assert (status, code) == (422, "presence_failed"), got["verdict"]
    assert "proof_root_chain_invalid" in codes, codes
    assert not codes & {"body_too_large", "transcript_too_large", "transcript_digest_mismatch"}, codes
    assert [r["code"] for r in doc["machine"]["state_reasons"]] == ["presence_failed"]
    evidence = revoked_item(local_stack, mid)["revocation"]["evidence"]
    assert evidence["check_id"] == got["check_id"]
    assert evidence["transcript"] == {
        "key": upload["key"],
        "version": 2,
        "bytes": got["bytes"],
        "sha256": evidence["transcript"]["sha256"],
        "limit_bytes": upload["max_bytes"],
        "delivered": True,
    }
    assert "proof_root_chain_invalid" in evidence["reasons"]


def test_a_presence_transcript_other_than_the_signed_one_fails_the_check(
    local_stack: LocalStack, chain: Any, bots: list[Bot], frequent_presence: None
) -> None:
    """Same size, one byte changed: the HEAD cannot tell, the streamed SHA-256 does, and the check
    fails (the machine signed a reference to bytes it did not upload) rather than waiting."""
    api = local_stack.api_url
    key, mid = publish(api, local_stack)
    set_claim(local_stack, mid, make_claim(H100, 8, allow_cpu_backend=False).as_dict())
    host = H100Host(api, key, swap=True)
    doc = agent_until(api, key, lambda m: m["state"] == "revoked", host, timeout=180.0)
    status, code, reasons = host.delivered["verdict"]
    assert (status, code) == (422, "presence_failed"), host.delivered["verdict"]
    assert {r["code"] for r in reasons} == {"presence_failed", "transcript_digest_mismatch"}
    assert [r["code"] for r in doc["machine"]["state_reasons"]] == ["presence_failed"]
    evidence = revoked_item(local_stack, mid)["revocation"]["evidence"]
    assert evidence["reasons"] == ["transcript_digest_mismatch"]
    assert evidence["transcript"]["delivered"] is False
