"""HTTP client of the gpuproof machine API: the shared signed client plus the machine routes."""

from __future__ import annotations

from typing import Any

from gpuproof.protocol.client import ServiceError, SignedClient, Transport, error_from_response

__all__ = ["ServiceClient", "ServiceError", "Transport", "error_from_response"]


class ServiceClient(SignedClient):
    """`ServiceClient(api_url, key)`: the machine API, every request signed with the machine key."""

    def register(self, registration: dict[str, Any]) -> Any:
        return self.request("POST", "/machines", registration)

    def create_challenge(self, machine_id: str, request: dict[str, Any]) -> Any:
        return self.request("POST", f"/machines/{machine_id}/challenges", request)

    def submit_commitment(self, machine_id: str, challenge_id: str, signed_commitment: dict[str, Any]) -> Any:
        body = {"challenge_id": challenge_id, "signed_commitment": signed_commitment}
        return self.request("POST", f"/machines/{machine_id}/commitments", body)

    def submit_report(self, machine_id: str, challenge_id: str, signed_report: dict[str, Any]) -> Any:
        body = {"challenge_id": challenge_id, "signed_report": signed_report}
        return self.request("POST", f"/machines/{machine_id}/reports", body)

    def machine(self, machine_id: str) -> Any:
        return self.request("GET", f"/machines/{machine_id}")

    def heartbeat(self, machine_id: str, telemetry: dict[str, Any]) -> Any:
        return self.request("POST", f"/machines/{machine_id}/heartbeats", telemetry)
