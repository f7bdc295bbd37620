"""SERVICE TEST DOUBLE: an in-process stand-in for the machine API, for tests and demos only.

It is a `Transport` for `ServiceClient`: it verifies every request's RFC 9421 signature with the
same protocol code the service uses, routes like the machine API, and checks bond signatures and
signed reports. It is not the service and decides nothing about real machines.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gpuproof.protocol.httpsig import verify_request
from gpuproof.protocol.keys import verify
from gpuproof.protocol.machine import ChallengeRequest, MachineRegistration, bond_message
from gpuproof.protocol.report import SignedReport


@dataclass
class FakeResponse:
    status_code: int
    body: Any = None

    @property
    def content(self) -> bytes:
        return b"" if self.body is None else json.dumps(self.body).encode()

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return self.body


@dataclass
class FakeService:
    """Routes like the machine API; refuses any request whose signature does not verify."""

    registered: set[str] = field(default_factory=set)
    owners: dict[str, str] = field(default_factory=dict)
    reports: list[SignedReport] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    heartbeat_status: int = 404
    heartbeat_ack: dict[str, Any] = field(default_factory=lambda: {"state": "published", "reverify": False})

    def request(self, method: str, url: str, *, data: bytes, headers: dict[str, str], timeout: float) -> Any:
        path = urlsplit(url).path
        signed = verify_request(method, path, headers, data, now=time.time())
        self.paths.append(f"{method} {path}")
        body = json.loads(data) if data else None
        return self.route(method, path.removeprefix("/prod"), body, signed.keyid)

    def route(self, method: str, path: str, body: Any, keyid: str) -> FakeResponse:
        if (method, path) == ("POST", "/machines"):
            reg = MachineRegistration.model_validate(body)
            assert verify(
                reg.machine_id, bond_message(reg.machine_id, reg.owner), bytes.fromhex(reg.bond_signature)
            )
            known = self.owners.get(reg.machine_id, reg.owner if reg.machine_id in self.registered else None)
            if known is not None and known != reg.owner:
                message = f"machine {reg.machine_id} is registered to owner {known}; this names {reg.owner}"
                return FakeResponse(409, {"code": "machine_owner_mismatch", "message": message})
            if reg.machine_id in self.registered:
                return FakeResponse(409, {"code": "machine_exists", "message": "known machine"})
            self.registered.add(reg.machine_id)
            self.owners[reg.machine_id] = reg.owner
            return FakeResponse(201, {"machine_id": reg.machine_id})
        if path.endswith("/challenges"):
            ChallengeRequest.model_validate(body)
            return FakeResponse(
                201, {"challenge_id": "ch-9", "nonce": "7f" * 32, "expires_at": 1, "params": {}}
            )
        if path.endswith("/reports"):
            report = SignedReport.model_validate(body["signed_report"])
            if not report.verifies() or report.report.machine_id != keyid:
                return FakeResponse(
                    422, {"code": "report_rejected", "reasons": [{"code": "bad_signature", "message": "no"}]}
                )
            self.reports.append(report)
            return FakeResponse(202, {"status": "verifying"})
        if path.endswith("/heartbeats"):
            if self.heartbeat_status < 300:
                return FakeResponse(self.heartbeat_status, self.heartbeat_ack)
            return FakeResponse(self.heartbeat_status, {"code": "not_found", "message": "no route"})
        if method == "GET":
            return FakeResponse(200, {"machine_id": keyid, "state": "CommitteeVerifying"})
        return FakeResponse(404, {"code": "not_found", "message": path})
