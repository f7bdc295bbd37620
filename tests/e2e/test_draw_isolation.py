"""One machine's bad data never stops another machine's draw, through the local stack (issue 10).

Before the wire bounds a verified report could say host.ram_bytes = 10**400; the sweeper's draw
raised on it every tick and no machine after it was ever drawn. Such a report can no longer be
accepted (tests/e2e/test_bounded_input.py), so it is written here as stored data from before.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
import requests

from gpuproof.cli.member import CommitteeClient
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.keys import SigningKey
from tests.integration.test_committee_api import drawn_round, submit_machine

from .api_client import OWNER, new_members
from .test_machine_api import report_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def members(local_stack: Any, operator: Any) -> Iterator[list[CommitteeClient]]:
    clients = new_members(local_stack.api_url, 3, operator)
    yield clients
    for c in clients:
        c.retire()


@pytest.fixture
def poisoned(local_stack: Any) -> Iterator[str]:
    """A machine that passed the automated stage with ram_bytes = 10**400, older than any other."""
    ddb = boto3.resource("dynamodb")
    machines = ddb.Table(local_stack.table_name("MachinesTable"))
    reports = ddb.Table(local_stack.table_name("ReportsTable"))
    key = SigningKey.generate()
    mid = key.public_hex
    doc = report_for(key, {"challenge_id": "legacy", "nonce": "cd" * 32}).model_dump(mode="json")
    doc["report"]["inventory"]["host"]["ram_bytes"] = 10**400
    body = canonical_bytes(doc)
    reports.put_item(
        Item={
            "machine_id": mid,
            "challenge_id": "legacy",
            "received_at": Decimal(1),
            "report_sha256": "00" * 32,
            "body": zlib.compress(body),
            "verification": json.dumps(
                {
                    "passed": True,
                    "claim": {"claimed_gpu_model": None, "gpu_count": 0},
                    "verified_at": 1.0,
                    "reasons": [],
                    "checks": [],
                }
            ),
        }
    )
    machines.put_item(
        Item={
            "machine_id": mid,
            "owner": OWNER,
            "region": "europe",
            "state": "auto_verified",
            "registered_at": Decimal(1),
            "updated_at": Decimal(1),
            "last_challenge_id": "legacy",
        }
    )
    yield mid
    machines.update_item(
        Key={"machine_id": mid},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":s": "refused"},
    )


def test_a_poisoned_machine_does_not_stop_the_next_draw(
    local_stack: Any, members: list[CommitteeClient], poisoned: str
) -> None:
    api = local_stack.api_url
    honest = submit_machine(api)
    rnd = drawn_round(api, honest)
    assert rnd["round"] == 1 and len(rnd["members"]) == 3
    time.sleep(1.5)  # another sweeper tick: the poisoned machine is still not drawn
    assert requests.get(f"{api}/rounds/{poisoned}/1", timeout=10).status_code == 404
