"""The envelope refuses bodies no parser should see: not UTF-8, nested too deep, non-finite numbers.

Before these checks a signed request with such a body answered 500 on every POST route
(json and pydantic recurse; canonical encoding refuses NaN and lone surrogates).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from gpuproof.api.body import body_reasons, json_depth
from gpuproof.api.signing import check_envelope
from gpuproof.errors import Rejection
from gpuproof.protocol.httpsig import sign_request
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.limits import MAX_BODY_BYTES, MAX_JSON_DEPTH

KEY = SigningKey.from_seed(bytes([3]) * 32)


def codes(body: bytes) -> list[str]:
    return [r.code for r in body_reasons(body)]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def event(body: bytes, *, binary: bool = False, path: str = "/machines") -> dict[str, Any]:
    headers = sign_request(KEY, "POST", path, body)
    return {
        "rawPath": path,
        "headers": headers,
        "requestContext": {"http": {"method": "POST"}},
        "body": base64.b64encode(body).decode() if binary else body.decode("utf-8", "surrogateescape"),
        "isBase64Encoded": binary,
    }


def envelope_code(ev: dict[str, Any]) -> str | None:
    try:
        check_envelope(ev, time.time(), 300)
    except Rejection as rejection:
        return rejection.code
    return None


def test_valid_json_passes() -> None:
    assert codes(json.dumps({"a": [1, 2.5, {"b": "[[[{{"}], "c": "\\ud83d\\ude00"}).encode()) == []
    assert codes(b"") == []
    assert codes(nested(MAX_JSON_DEPTH)) == []


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe{}", b'{"a": "\xc3"}', b'{"cpu_model": "\xed\xa0\x80"}'],
)
def test_invalid_utf8_is_refused(body: bytes) -> None:
    assert codes(body) == ["body_not_utf8"]


def test_escaped_lone_surrogate_is_refused() -> None:
    assert codes(b'{"cpu_model": "\\ud800"}') == ["body_not_utf8"]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 100_000])
def test_deep_nesting_is_refused(depth: int) -> None:
    assert codes(nested(depth)) == ["json_too_deep"]
    assert codes(b'{"a":' * depth + b"1" + b"}" * depth) == ["json_too_deep"]


def test_brackets_inside_strings_do_not_count() -> None:
    assert json_depth(json.dumps({"a": "[" * 5000, "b": '\\"[[['}).encode()) == 1


def test_depth_check_is_flat_and_cheap_on_a_full_body() -> None:
    worst = [
        b"[" * MAX_BODY_BYTES,
        b'"' + b"\\\\" * (MAX_BODY_BYTES // 2 - 1) + b'"',
        b"[{" * (MAX_BODY_BYTES // 2),
    ]
    for body in worst:
        started = time.perf_counter()
        body_reasons(body)
        assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1E309"])
def test_non_finite_numbers_are_refused(literal: bytes) -> None:
    assert codes(b'{"median": ' + literal + b"}") == ["json_non_finite"]


def test_malformed_json_keeps_its_code() -> None:
    assert codes(b'{"machine_id": ') == ["malformed_json"]
    assert codes(b"[" + b"9" * 5000 + b"]") == ["malformed_json"]  # past int's digit limit


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\xff\xfe{}", "body_not_utf8"),
        (nested(1000), "json_too_deep"),
        (b'{"a": NaN}', "json_non_finite"),
        (b'{"a": "\\udfff"}', "body_not_utf8"),
    ],
)
def test_check_envelope_refuses_signed_bodies(body: bytes, code: str) -> None:
    assert envelope_code(event(body, binary=True)) == code


def test_check_envelope_refuses_a_str_body_with_surrogates() -> None:
    # A non-base64 body that is not Unicode text reaches the UTF-8 check, not an exception.
    text = '{"a": "\udcff"}'
    ev = event(text.encode("utf-8", "surrogatepass"))
    ev["body"] = text
    assert envelope_code(ev) == "body_not_utf8"
    ev["headers"] = sign_request(KEY, "POST", "/machines", b"other")
    assert envelope_code(ev) == "content_digest_mismatch"


def test_unsigned_bad_bodies_are_refused_by_the_signature_first() -> None:
    ev = event(nested(1000), binary=True)
    ev["headers"] = {}
    assert envelope_code(ev) == "signature_missing"


def test_check_envelope_passes_a_good_signed_body() -> None:
    assert envelope_code(event(json.dumps({"gpu_count": 0}).encode(), binary=True)) is None
