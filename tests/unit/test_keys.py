"""Machine and member keys: both schemes, key files, and signatures that do not cross schemes."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gpuproof.protocol.httpsig import RequestSignatureError, sign_request, verify_request
from gpuproof.protocol.keys import KeyFileError, Scheme, SigningKey, verify


@pytest.mark.parametrize("scheme", list(Scheme))
def test_sign_verify_and_file_round_trip(scheme: Scheme, tmp_path: Path) -> None:
    key = SigningKey.generate(scheme)
    sig = key.sign(b"message")
    assert verify(key.public_hex, b"message", sig)
    assert verify(key.public_hex, b"message", sig, scheme)
    assert not verify(key.public_hex, b"massage", sig)
    path = tmp_path / "key"
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = SigningKey.load(path)
    assert (again.scheme, again.public_hex) == (scheme, key.public_hex)
    assert key.seed().hex() not in repr(key)


def test_a_signature_does_not_verify_under_the_other_scheme() -> None:
    ed, sr = SigningKey.generate(Scheme.ed25519), SigningKey.generate(Scheme.sr25519)
    assert not verify(ed.public_hex, b"m", ed.sign(b"m"), Scheme.sr25519)
    assert not verify(sr.public_hex, b"m", sr.sign(b"m"), Scheme.ed25519)


def test_same_seed_different_schemes_are_different_keys() -> None:
    seed = bytes(range(32))
    assert SigningKey.from_seed(seed).public_hex != SigningKey.from_seed(seed, Scheme.sr25519).public_hex


def test_key_files_readable_by_others_or_malformed_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "key"
    SigningKey.generate().save(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="0600"):
        SigningKey.load(path)
    bad = tmp_path / "bad"
    bad.write_text("rsa:" + "00" * 32)
    bad.chmod(0o600)
    with pytest.raises(KeyFileError, match="unknown scheme"):
        SigningKey.load(bad)


def test_sr25519_signed_request_and_alg_is_covered() -> None:
    key = SigningKey.generate(Scheme.sr25519)
    headers = sign_request(key, "POST", "/machines", b"{}", created=100, nonce="N" * 16)
    assert 'alg="sr25519"' in headers["signature-input"]
    assert verify_request("POST", "/machines", headers, b"{}", now=100).keyid == key.public_hex
    swapped = headers | {"signature-input": headers["signature-input"].replace("sr25519", "ed25519")}
    with pytest.raises(RequestSignatureError) as exc:
        verify_request("POST", "/machines", swapped, b"{}", now=100)
    assert [r.code for r in exc.value.reasons] == ["signature_invalid"]
