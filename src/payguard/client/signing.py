"""The device side of signed payment instructions: the key pair and the signature.

What a mobile app keeps in its secure enclave / keystore, here in a PEM file or memory.
The signed bytes are the RFC 8785 canonical JSON of the request body (without
``signature`` and ``challenge_id``) plus the ``idempotency_key``; see
docs/authentication.md for the exact rule, which the server re-applies.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import rfc8785
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

Algorithm = Literal["ed25519", "p256"]
UNSIGNED_FIELDS = ("signature", "challenge_id")


class DeviceKey:
    """An Ed25519 (default) or ECDSA P-256 device key pair."""

    def __init__(
        self,
        private_key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey,
    ) -> None:
        self.private_key = private_key
        self.algorithm: Algorithm = (
            "ed25519" if isinstance(private_key, ed25519.Ed25519PrivateKey) else "p256"
        )

    @classmethod
    def generate(cls, algorithm: Algorithm = "ed25519") -> DeviceKey:
        if algorithm == "ed25519":
            return cls(ed25519.Ed25519PrivateKey.generate())
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load(cls, path: Path) -> DeviceKey:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} holds neither an Ed25519 nor a P-256 key")
        return cls(key)

    def save(self, path: Path) -> None:
        """Write the private key, readable by the owner only."""
        path.write_bytes(
            self.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    @property
    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def sign(self, message: bytes) -> bytes:
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(message)
        return self.private_key.sign(message, ec.ECDSA(hashes.SHA256()))


def canonical_instruction(body: dict[str, Any], idempotency_key: str) -> bytes:
    document = {key: value for key, value in body.items() if key not in UNSIGNED_FIELDS}
    document["idempotency_key"] = idempotency_key
    return rfc8785.dumps(document)


def sign_instruction(
    instruction: dict[str, Any],
    *,
    key: DeviceKey,
    device_id: str,
    idempotency_key: str,
    challenge_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The request body for ``instruction``: device, fresh nonce, time and signature."""
    body = {
        **instruction,
        "device_id": device_id,
        "nonce": secrets.token_urlsafe(24),
        "client_timestamp": (now or datetime.now(UTC)).isoformat(),
    }
    signature = key.sign(canonical_instruction(body, idempotency_key))
    body["signature"] = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    if challenge_id is not None:
        body["challenge_id"] = challenge_id
    return body
