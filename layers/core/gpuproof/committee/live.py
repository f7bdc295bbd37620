"""The proof parameters a live check uses: those the service derives for the round's claim.

Both ends compute them the same way and neither trusts the other's: the member sends them with
its challenge (its deadline is theirs plus its measured round trip), the agent refuses a
challenge with any other parameters (no member can make a machine run a bigger job).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuproof.claim import Claim, claim_of, proof_params_for, verified_claim
from gpuproof.protocol.proof import ProofParams


def round_claim(transcript: Mapping[str, Any]) -> Claim:
    """The claim a round's evidence is held to: its challenge's, else (the challenge expired from
    the service's table) the one the verification recorded. Raises ClaimError."""
    challenge = transcript.get("challenge") or {}
    if challenge.get("params"):
        return claim_of(challenge["params"])
    return verified_claim((transcript.get("report") or {}).get("verification") or {})


def round_params(transcript: Mapping[str, Any]) -> list[ProofParams]:
    """`claim.proof_params_for` of the round's claim. Raises ClaimError."""
    return proof_params_for(round_claim(transcript))
