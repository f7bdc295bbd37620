"""The operator's signed calls to the committee API: admit (or revoke) members, settle disputes.

Every request is signed by the operator key, whose public key the stack names in its template
parameter `CommitteeOperatorKey`; `gpuproof-ops admit` / `resolve`, `make demo` and the tests use
this one client, so the bots of the local stack are admitted the way an operator admits a member.
"""

from __future__ import annotations

from typing import Any

from gpuproof.protocol.client import SignedClient
from gpuproof.protocol.ss58 import account_key


class OperatorClient(SignedClient):
    def admit(self, account: str, admitted: bool = True) -> Any:
        """Admit a registered member (SS58 or hex) into the draw; admitted=False revokes."""
        return self.request("POST", f"/members/{account_key(account)}/admission", {"admitted": admitted})

    def resolve(self, machine_id: str, round_no: int, accept: str, note: str = "") -> Any:
        """Settle a disputed round: accept the committee's majority or the service's findings."""
        body = {"accept": accept, "note": note}
        return self.request("POST", f"/rounds/{machine_id}/{round_no}/resolution", body)

    def machine(self, machine_id: str) -> Any:
        return self.request("GET", f"/machines/{machine_id}")

    def round(self, machine_id: str, round_no: int) -> Any:
        return self.request("GET", f"/rounds/{machine_id}/{round_no}")
