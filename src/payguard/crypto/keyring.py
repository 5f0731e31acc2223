"""The local key provider: a keyring file under ``var/``, created on first run, mode 0600.

It holds the key-encryption key (KEK, AES-256) that wraps every data-encryption key, the
blind-index key (HMAC-SHA256) and the platform's signing key (Ed25519), which signs audit
tree heads: the ``standard`` suite. The file is written aside and hard-linked into place,
so two server processes starting together end up with the same keys, never two sets, and
never read half a file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from payguard.settings import Settings

KEYRING_NAME = "keyring.json"


def key_id(public_pem: str) -> str:
    """A short, stable name for a public key: the first 16 hex of SHA-256 of its DER."""
    public = serialization.load_pem_public_key(public_pem.encode())
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    private_key: ed25519.Ed25519PrivateKey
    suite: str = "standard"

    @property
    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    @property
    def key_id(self) -> str:
        return key_id(self.public_pem)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def verify_signature(public_pem: str, signature: bytes, message: bytes) -> bool:
    """Check a signature with the public key alone (what an outside auditor has)."""
    public = serialization.load_pem_public_key(public_pem.encode())
    if not isinstance(public, ed25519.Ed25519PublicKey):
        return False
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def keyring_path(settings: Settings) -> Path:
    return settings.var_dir / KEYRING_NAME


@dataclass(frozen=True)
class Keyring:
    signer: Signer
    kek: bytes  # AES-256: wraps data-encryption keys; never leaves this process
    index_key: bytes  # HMAC-SHA256 key of blind indexes
    path: Path


_LOADED: dict[Path, Keyring] = {}


def load_keyring(settings: Settings) -> Keyring:
    """The keyring of this installation, created on first use and cached per file."""
    path = keyring_path(settings).resolve()
    found = _LOADED.get(path)
    if found is not None:
        return found
    if not path.exists():
        _create(path)
    data = json.loads(path.read_text())
    if "kek" not in data:  # a keyring from before envelope encryption: add its keys once
        data["kek"] = base64.b64encode(os.urandom(32)).decode()
        data["index_key"] = base64.b64encode(os.urandom(32)).decode()
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(data))
        os.replace(draft, path)
    private = serialization.load_pem_private_key(data["signing"]["private_pem"].encode(), None)
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise ValueError(f"{path}: the signing key is not Ed25519")
    keyring = Keyring(
        signer=Signer(private),
        kek=base64.b64decode(data["kek"]),
        index_key=base64.b64decode(data["index_key"]),
        path=path,
    )
    _LOADED[path] = keyring
    return keyring


def load_signer(settings: Settings) -> Signer:
    """The platform signing key, creating the keyring on first use."""
    return load_keyring(settings).signer


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    document = json.dumps(
        {
            "version": 1,
            "suite": "standard",
            "kek": base64.b64encode(os.urandom(32)).decode(),
            "index_key": base64.b64encode(os.urandom(32)).decode(),
            "signing": {"algorithm": "ed25519", "private_pem": pem},
        }
    )
    # Written whole under a private name, then linked into place: the link fails if
    # another process won, and nobody ever reads a half-written keyring.
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(document)
    try:
        os.link(draft, path)
    except FileExistsError:
        pass  # another process made it first; use theirs
    finally:
        draft.unlink()
