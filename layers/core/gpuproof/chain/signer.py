"""The service signature on verdict batches: ECDSA P-256 / SHA-256, raw r‖s (64 bytes).

`BatchSigner` is the port; `KmsBatchSigner` signs RAW messages with the service's KMS key
(moto mis-handles DIGEST); `LocalBatchSigner` holds a key in memory (tests, measurements).
Public keys travel as 33-byte compressed SEC1 points.
"""

from __future__ import annotations

from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 33
KMS_MAX_RAW_MESSAGE = 4096


class BatchSigner(Protocol):
    def sign(self, message: bytes) -> bytes:
        """64-byte r‖s over SHA-256(message)."""

    def public_key(self) -> bytes:
        """33-byte compressed P-256 point."""


def raw_signature(der: bytes) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def compressed_public_key(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)


def public_key_from_der(der: bytes) -> bytes:
    """KMS GetPublicKey returns a DER SubjectPublicKeyInfo; the payload carries the compressed point."""
    key = serialization.load_der_public_key(der)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the service key is not an ECC_NIST_P256 key")
    return compressed_public_key(key)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when `signature` (r‖s) is the P-256 key's ECDSA/SHA-256 signature of `message`."""
    if len(signature) != SIGNATURE_BYTES or len(public_key) != PUBLIC_KEY_BYTES:
        return False
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


class LocalBatchSigner:
    """An in-memory P-256 key: unit tests and measurements (never the service)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self._key = key or ec.generate_private_key(ec.SECP256R1())

    def sign(self, message: bytes) -> bytes:
        return raw_signature(self._key.sign(message, ec.ECDSA(hashes.SHA256())))

    def public_key(self) -> bytes:
        return compressed_public_key(self._key.public_key())


class KmsBatchSigner:
    """Signs with the KMS key SERVICE_KEY_ID (ECC_NIST_P256, SIGN_VERIFY), RAW messages."""

    def __init__(self, key_id: str, kms_client: Any) -> None:
        self.key_id = key_id
        self._kms = kms_client
        self._public: bytes | None = None

    def sign(self, message: bytes) -> bytes:
        if len(message) > KMS_MAX_RAW_MESSAGE:
            raise ValueError(f"KMS signs RAW messages up to {KMS_MAX_RAW_MESSAGE} bytes, got {len(message)}")
        out = self._kms.sign(
            KeyId=self.key_id, Message=message, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256"
        )
        return raw_signature(bytes(out["Signature"]))

    def public_key(self) -> bytes:
        if self._public is None:
            der = bytes(self._kms.get_public_key(KeyId=self.key_id)["PublicKey"])
            self._public = public_key_from_der(der)
        return self._public
