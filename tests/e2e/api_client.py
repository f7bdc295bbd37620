"""A raw signed-HTTP client for tests: full control over headers, bodies and signatures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
import requests
from boto3.dynamodb.conditions import Attr, Key

from gpuproof.protocol.httpsig import sign_request
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.machine import bond_message

OWNER = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


@dataclass
class Reply:
    status: int
    body: Any


class RawApi:
    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")
        self.session = requests.Session()

    def send(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Reply:
        hdrs = {"content-type": "application/json", **(headers or {})}
        r = self.session.request(method, self.base + path, data=body, headers=hdrs, timeout=30)
        try:
            doc = r.json()
        except ValueError:
            doc = r.text
        return Reply(r.status_code, doc)

    def signed(
        self,
        key: SigningKey,
        method: str,
        path: str,
        doc: Any = None,
        *,
        raw: bytes | None = None,
        **sign_kw: Any,
    ) -> tuple[Reply, dict[str, str], bytes]:
        body = raw if raw is not None else (json.dumps(doc).encode() if doc is not None else b"")
        headers = sign_request(key, method, path, body, **sign_kw)
        return self.send(method, path, body, headers), headers, body

    def register(self, key: SigningKey, owner: str = OWNER, region: str = "europe") -> Reply:
        doc = registration(key, owner, region)
        return self.signed(key, "POST", "/machines", doc)[0]

    def challenge(self, key: SigningKey, machine_id: str | None = None, **doc: Any) -> Reply:
        mid = machine_id or key.public_hex
        return self.signed(key, "POST", f"/machines/{mid}/challenges", doc or {"gpu_count": 0})[0]


def registration(key: SigningKey, owner: str = OWNER, region: str = "europe") -> dict[str, Any]:
    mid = key.public_hex
    return {
        "machine_id": mid,
        "owner": owner,
        "region": region,
        "bond_signature": key.sign(bond_message(mid, owner)).hex(),
    }


def scan_all(table: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item a filtered scan matches, over all pages (a scan page stops at 1 MB, before the
    filter: the session's tables outgrow one page)."""
    items: list[dict[str, Any]] = []
    while True:
        page = table.scan(ConsistentRead=True, **kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class Tables:
    """Reads the stack's real tables to show what was (not) stored for one machine."""

    def __init__(self, names: dict[str, str]) -> None:
        ddb = boto3.resource("dynamodb")
        self.t = {k: ddb.Table(v) for k, v in names.items()}

    def footprint(self, machine_id: str) -> dict[str, Any]:
        machine = self.t["machines"].get_item(Key={"machine_id": machine_id}, ConsistentRead=True).get("Item")
        challenges = scan_all(self.t["challenges"], FilterExpression=Attr("machine_id").eq(machine_id))
        reports = self.t["reports"].query(
            KeyConditionExpression=Key("machine_id").eq(machine_id), ConsistentRead=True
        )["Items"]
        nonces = scan_all(self.t["nonces"], FilterExpression=Attr("nonce_key").begins_with(machine_id))
        return {
            "machine": machine,
            "challenges": sorted((c["challenge_id"], c["status"]) for c in challenges),
            "reports": sorted(r["challenge_id"] for r in reports),
            "nonces": sorted(n["nonce_key"] for n in nonces),
        }
