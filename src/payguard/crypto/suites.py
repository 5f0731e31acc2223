"""The two cipher suites: ``standard`` and ``gm`` (the Chinese commercial cryptography).

| suite | authenticated encryption | hash | signature |
| --- | --- | --- | --- |
| standard | AES-256-GCM | SHA-256 | Ed25519 |
| gm | SM4-GCM (GB/T 32907) | SM3 (GB/T 32905) | SM2 with SM3 (GB/T 32918) |

AES, SM4, SHA-256, SM3 and Ed25519 come from OpenSSL through ``cryptography``; SM2 from
``gmssl`` (the only maintained Python SM2), fed with nonces from ``secrets`` rather than
its own generator. Known-answer tests hold each primitive to its published vectors
(``tests/crypto/test_suites.py``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SuiteName = Literal["standard", "gm"]
SM2_ORDER = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
TAG_BYTES = 16


class DecryptionFailed(Exception):
    """Wrong key, wrong associated data, or altered ciphertext."""


def sm4_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    encryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    return encryptor.update(plaintext) + encryptor.finalize() + encryptor.tag


def sm4_gcm_decrypt(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    body, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
    decryptor = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(aad)
    try:
        return decryptor.update(body) + decryptor.finalize()
    except InvalidTag as error:
        raise DecryptionFailed from error


def sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


@dataclass(frozen=True)
class Suite:
    name: SuiteName
    data_key_bytes: int  # 32 for AES-256, 16 for SM4

    def encrypt(self, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        if self.name == "gm":
            return sm4_gcm_encrypt(key, nonce, plaintext, aad)
        return AESGCM(key).encrypt(nonce, plaintext, aad)

    def decrypt(self, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        if self.name == "gm":
            return sm4_gcm_decrypt(key, nonce, sealed, aad)
        try:
            return AESGCM(key).decrypt(nonce, sealed, aad)
        except InvalidTag as error:
            raise DecryptionFailed from error

    def hash(self, data: bytes) -> bytes:
        return sm3(data) if self.name == "gm" else sha256(data)

    def kek_for(self, master: bytes) -> bytes:
        """The wrapping key of this suite from a 256-bit KEK (SM4 takes 128 bits)."""
        if self.name == "standard":
            return master
        return HKDF(algorithm=hashes.SM3(), length=16, salt=None, info=b"payguard kek sm4").derive(
            master
        )

    def new_data_key(self) -> bytes:
        return secrets.token_bytes(self.data_key_bytes)


SUITES: dict[str, Suite] = {
    "standard": Suite("standard", 32),
    "gm": Suite("gm", 16),
}


def suite(name: str) -> Suite:
    try:
        return SUITES[name]
    except KeyError:
        raise ValueError(f"unknown cipher suite {name!r}; standard or gm") from None


# ---------------------------------------------------------------- signatures


def ed25519_sign(private: bytes, message: bytes) -> bytes:
    return ed25519.Ed25519PrivateKey.from_private_bytes(private).sign(message)


def ed25519_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _sm2(private_hex: str = "", public_hex: str = "") -> object:
    from gmssl import sm2

    return sm2.CryptSM2(private_key=private_hex, public_key=public_hex)


def sm2_keypair() -> tuple[bytes, bytes]:
    """(private 32 bytes, public 64 bytes x ‖ y) on the SM2 recommended curve."""
    from gmssl import sm2

    private = 1 + secrets.randbelow(SM2_ORDER - 2)
    crypt = sm2.CryptSM2(private_key=f"{private:064x}", public_key="")
    public_hex = crypt._kg(private, sm2.default_ecc_table["g"])
    return private.to_bytes(32, "big"), bytes.fromhex(public_hex)


def sm2_sign(private: bytes, public: bytes, message: bytes, k: int | None = None) -> bytes:
    """SM2 signature with SM3 and the default user id, r ‖ s (64 bytes)."""
    crypt = _sm2(private.hex(), public.hex())
    nonce = k if k is not None else 1 + secrets.randbelow(SM2_ORDER - 2)
    signature = crypt.sign_with_sm3(message, f"{nonce:064x}")  # type: ignore[attr-defined]
    if signature is None:  # r = 0 or r + k = n: vanishingly rare, try another nonce
        return sm2_sign(private, public, message)
    return bytes.fromhex(signature)


def sm2_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    if len(signature) != 64:
        return False
    crypt = _sm2("", public.hex())
    try:
        return bool(crypt.verify_with_sm3(signature.hex(), message))  # type: ignore[attr-defined]
    except (ValueError, ZeroDivisionError):
        return False
