"""The RFC 9421 profile: the published test vector, and every way a signature is refused."""

from __future__ import annotations

import base64

import pytest

from gpuproof.protocol.httpsig import RequestSignatureError, sign_request, verify_request
from gpuproof.protocol.keys import SigningKey

KEY = SigningKey.from_seed(bytes(range(32)))
PATH = f"/machines/{KEY.public_hex}/challenges"
BODY = b'{"gpu_count":0}'
CREATED = 1795000000
NONCE = "A" * 24


def signed() -> dict[str, str]:
    return sign_request(KEY, "POST", PATH, BODY, created=CREATED, nonce=NONCE)


def codes(headers: dict[str, str], body: bytes = BODY, now: float = CREATED, path: str = PATH) -> list[str]:
    with pytest.raises(RequestSignatureError) as exc:
        verify_request("POST", path, headers, body, now=now)
    return [r.code for r in exc.value.reasons]


def test_published_vector() -> None:
    h = signed()
    assert KEY.public_hex == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    assert h["content-digest"] == "sha-256=:jtMJvG9DBa5FSYooZC68pAW4SRv1pA8OfJWvhncufqY=:"
    assert h["signature"] == (
        "sig1=:PCnDfX2dj0MO1Oqacw53o2YSvqdUI2N2KZKX0NsmivxQh2RBCPF7pcKLDzB3qPvVMwMbOLw4CjN+TgezZ2l8Dw==:"
    )
    ok = verify_request("POST", PATH, h, BODY, now=CREATED + 10)
    assert (ok.keyid, ok.created, ok.nonce) == (KEY.public_hex, CREATED, NONCE)


def test_header_names_are_case_insensitive() -> None:
    h = {k.upper(): v for k, v in signed().items()}
    assert verify_request("POST", PATH, h, BODY, now=CREATED).keyid == KEY.public_hex


def test_every_missing_header_is_listed() -> None:
    assert codes({}) == ["signature_missing"] * 3


def test_malformed_profile_is_refused() -> None:
    h = signed()
    h["signature-input"] = h["signature-input"].replace('alg="ed25519"', 'alg="hmac-sha256"')
    assert codes(h) == ["signature_malformed"]


def test_any_changed_byte_of_the_signature_fails() -> None:
    h = signed()
    raw = bytearray(base64.b64decode(h["signature"][6:-1]))
    for i in (0, 31, 63):
        forged = bytearray(raw)
        forged[i] ^= 0x01
        assert codes(h | {"signature": "sig1=:" + base64.b64encode(bytes(forged)).decode() + ":"}) == [
            "signature_invalid"
        ]


def test_method_path_and_params_are_covered() -> None:
    h = signed()
    assert codes(h, path=PATH + "x") == ["signature_invalid"]
    assert codes(h | {"signature-input": h["signature-input"].replace(NONCE, "B" * 24)}) == [
        "signature_invalid"
    ]
    with pytest.raises(RequestSignatureError):
        verify_request("PUT", PATH, h, BODY, now=CREATED)


def test_body_must_match_the_digest() -> None:
    assert codes(signed(), body=BODY + b" ") == ["content_digest_mismatch"]


def test_stale_and_future_timestamps() -> None:
    assert codes(signed(), now=CREATED + 301) == ["timestamp_stale"]
    assert codes(signed(), now=CREATED - 301) == ["timestamp_stale"]
