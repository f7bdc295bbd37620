"""Wire models of a machine's registration and challenge, and DBC's bonding message."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field

from gpuproof.protocol.limits import MAX_CAPACITY_BYTES, PROTOCOL_MAX_GPUS
from gpuproof.protocol.report import Hex64, Hex128, WireModel
from gpuproof.protocol.ss58 import decode


def _checked_ss58(address: str) -> str:
    decode(address)  # Ss58Error (a ValueError) names what is wrong: pydantic reports it on the field
    return address


# SS58 address of a 32-byte account (any network prefix), its checksum verified (protocol/ss58.py).
Ss58 = Annotated[str, Field(pattern=r"^[1-9A-HJ-NP-Za-km-z]{47,50}$"), AfterValidator(_checked_ss58)]


class Region(StrEnum):
    """DBC's regions with a published coefficient (reference/dbc.md)."""

    china = "china"
    north_america = "north_america"
    south_america = "south_america"
    europe = "europe"
    middle_east = "middle_east"
    korea = "korea"
    japan = "japan"
    taiwan = "taiwan"
    hong_kong_macau = "hong_kong_macau"
    malaysia = "malaysia"
    indonesia = "indonesia"
    singapore = "singapore"
    vietnam = "vietnam"


def bond_message(machine_id: str, owner: str) -> bytes:
    """DBC's bonding message: machine_id hex (64 bytes) then the stash's SS58 address."""
    return (machine_id + owner).encode("ascii")


class MachineRegistration(WireModel):
    """Body of POST /machines: the machine key proves possession by signing the bond message."""

    machine_id: Hex64
    owner: Ss58
    region: Region
    bond_signature: Hex128


class ChallengeRequest(WireModel):
    """Body of POST /machines/{machine_id}/challenges: what the host claims to have."""

    claimed_gpu_model: str | None = Field(default=None, max_length=64)
    # The wire ceiling; the service's configured limit (MaxGpusPerMachine) is checked in logic.
    gpu_count: int = Field(default=0, strict=True, ge=0, le=PROTOCOL_MAX_GPUS)
    claimed_ram_bytes: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=MAX_CAPACITY_BYTES,
        description="host RAM the host claims; the capacity phase proves it (docs/protocol.md §17)",
    )
