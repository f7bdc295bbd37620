"""Signed HTTP requests: the RFC 9421 (HTTP Message Signatures) profile gpuproof uses.

Covered components, always in this order: "@method", "@path", "content-digest" (RFC 9530,
sha-256). Parameters: created (unix seconds), keyid (signer's public key hex), nonce (random,
single use), alg="ed25519" or "sr25519". Label "sig1". Anything else is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gpuproof.protocol.keys import Scheme, SigningKey, is_public_key_hex, verify
from gpuproof.protocol.reasons import Reason

COMPONENTS = ('"@method"', '"@path"', '"content-digest"')
LABEL = "sig1"
DEFAULT_MAX_SKEW_S = 300

_INPUT_RE = re.compile(
    r'^sig1=\("@method" "@path" "content-digest"\)'
    r";created=(?P<created>[0-9]{1,12})"
    r';keyid="(?P<keyid>[0-9a-f]{64})"'
    r';nonce="(?P<nonce>[A-Za-z0-9_-]{16,64})"'
    r';alg="(?P<alg>ed25519|sr25519)"$'
)
_SIG_RE = re.compile(r"^sig1=:(?P<sig>[A-Za-z0-9+/]{86}==):$")
_DIGEST_RE = re.compile(r"^sha-256=:(?P<digest>[A-Za-z0-9+/]{43}=):$")


class RequestSignatureError(Exception):
    """The request's signature envelope is missing, malformed, forged or stale."""

    def __init__(self, reasons: list[Reason]) -> None:
        super().__init__("; ".join(r.message for r in reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class SignedRequest:
    """What a verified signature tells: who signed, when, and the single-use nonce."""

    keyid: str
    created: int
    nonce: str


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def signature_params(created: int, keyid: str, nonce: str, alg: str = Scheme.ed25519.value) -> str:
    return f'({" ".join(COMPONENTS)});created={created};keyid="{keyid}";nonce="{nonce}";alg="{alg}"'


def signature_base(method: str, path: str, digest: str, params: str) -> bytes:
    lines = [
        f'"@method": {method.upper()}',
        f'"@path": {path}',
        f'"content-digest": {digest}',
        f'"@signature-params": {params}',
    ]
    return "\n".join(lines).encode("ascii")


def sign_request(
    key: SigningKey,
    method: str,
    path: str,
    body: bytes,
    *,
    created: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Headers that sign this request with `key`."""
    created = int(time.time()) if created is None else created
    nonce = secrets.token_urlsafe(18) if nonce is None else nonce
    digest = content_digest(body)
    params = signature_params(created, key.public_hex, nonce, key.scheme.value)
    sig = key.sign(signature_base(method, path, digest, params))
    return {
        "content-digest": digest,
        "signature-input": f"{LABEL}={params}",
        "signature": f"{LABEL}=:{base64.b64encode(sig).decode()}:",
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def verify_request(
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    max_skew_s: int = DEFAULT_MAX_SKEW_S,
) -> SignedRequest:
    """Verify the signature, then the body digest, then freshness; nothing of the body is parsed.

    Raises RequestSignatureError with every reason that applies. A missing or forged
    signature stops the checks there: nothing else about an unauthenticated request is trusted.
    """
    sig_input = _header(headers, "signature-input")
    sig_value = _header(headers, "signature")
    digest = _header(headers, "content-digest")
    missing = [
        n
        for n, v in (("signature-input", sig_input), ("signature", sig_value), ("content-digest", digest))
        if v is None
    ]
    if missing:
        raise RequestSignatureError(
            [
                Reason("signature_missing", f"header {name} is required on this request", name)
                for name in missing
            ]
        )
    assert sig_input is not None and sig_value is not None and digest is not None
    m_input = _INPUT_RE.match(sig_input.strip())
    m_sig = _SIG_RE.match(sig_value.strip())
    m_digest = _DIGEST_RE.match(digest.strip())
    malformed = []
    if m_input is None:
        malformed.append(
            Reason(
                "signature_malformed",
                "signature-input is not the gpuproof RFC 9421 profile",
                "signature-input",
            )
        )
    if m_sig is None:
        malformed.append(
            Reason("signature_malformed", "signature is not one base64 Ed25519 signature", "signature")
        )
    if m_digest is None:
        malformed.append(
            Reason("signature_malformed", "content-digest must be sha-256=:<base64>:", "content-digest")
        )
    if malformed:
        raise RequestSignatureError(malformed)
    assert m_input is not None and m_sig is not None and m_digest is not None
    keyid = m_input["keyid"]
    created = int(m_input["created"])
    nonce = m_input["nonce"]
    alg = Scheme(m_input["alg"])
    params = signature_params(created, keyid, nonce, alg.value)
    base = signature_base(method, path, digest.strip(), params)
    if not is_public_key_hex(keyid) or not verify(keyid, base, base64.b64decode(m_sig["sig"]), alg):
        raise RequestSignatureError(
            [Reason("signature_invalid", "the signature does not verify for keyid", "signature")]
        )
    if not hmac.compare_digest(content_digest(body), digest.strip()):
        raise RequestSignatureError(
            [Reason("content_digest_mismatch", "the body does not match content-digest", "content-digest")]
        )
    if abs(now - created) > max_skew_s:
        raise RequestSignatureError(
            [
                Reason(
                    "timestamp_stale",
                    f"created={created} is {int(now - created)} s from the service clock "
                    f"(allowed ±{max_skew_s} s)",
                    "signature-input",
                )
            ]
        )
    return SignedRequest(keyid=keyid, created=created, nonce=nonce)
