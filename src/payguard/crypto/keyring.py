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
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from payguard.crypto.suites import sm2_keypair, sm2_sign, sm2_verify
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


SM2_PEM = "SM2 PUBLIC KEY"


@dataclass(frozen=True)
class Sm2Signer:
    """The ``gm`` suite's signing key: SM2 with SM3 on the recommended curve."""

    private: bytes
    public: bytes  # x ‖ y, 64 bytes
    suite: str = "gm"

    @property
    def public_pem(self) -> str:
        body = base64.encodebytes(b"\x04" + self.public).decode()
        return f"-----BEGIN {SM2_PEM}-----\n{body}-----END {SM2_PEM}-----\n"

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.public).hexdigest()[:16]

    def sign(self, message: bytes) -> bytes:
        return sm2_sign(self.private, self.public, message)


AnySigner = Signer | Sm2Signer


def verify_signature(public_pem: str, signature: bytes, message: bytes) -> bool:
    """Check a signature with the public key alone (what an outside auditor has)."""
    if SM2_PEM in public_pem:
        body = "".join(line for line in public_pem.splitlines() if "-----" not in line)
        public_point = base64.b64decode(body)
        return len(public_point) == 65 and sm2_verify(public_point[1:], signature, message)
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


@dataclass
class Keyring:
    """The keys of one keyring file. KEKs are versioned (``kek-1``, ``kek-2``, …): one is
    active for wrapping, the older ones stay until no data key is wrapped under them."""

    signer: Signer
    sm2_signer: Sm2Signer
    index_key: bytes  # HMAC-SHA256 key of blind indexes
    path: Path
    keks: dict[str, bytes]  # AES-256: wrap data-encryption keys; never leave this process
    active_kek_id: str

    def kek(self, kek_id: str) -> bytes:
        """The KEK ``kek_id``; the file is re-read once when another process rotated."""
        if kek_id not in self.keks:
            self.reload()
        try:
            return self.keks[kek_id]
        except KeyError:
            raise ValueError(f"the keyring has no key-encryption key {kek_id!r}") from None

    def reload(self) -> None:
        data = _read(self.path)
        self.keks = {name: base64.b64decode(value) for name, value in data["keks"].items()}
        self.active_kek_id = data["active_kek"]


_LOADED: dict[Path, Keyring] = {}
_PASSPHRASES: dict[Path, bytes] = {}  # of sealed keyrings, from PAYGUARD_KEYRING_PASSPHRASE
SEALED_FORMAT = "scrypt+aes-256-gcm"


class KeyringLocked(Exception):
    """The keyring file is sealed and the passphrase is missing or wrong."""


def _kdf(passphrase: bytes, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passphrase)


def _seal_document(document: str, passphrase: bytes) -> str:
    salt, nonce = os.urandom(16), os.urandom(12)
    sealed = AESGCM(_kdf(passphrase, salt)).encrypt(
        nonce, document.encode(), SEALED_FORMAT.encode()
    )
    return json.dumps(
        {
            "sealed": SEALED_FORMAT,
            "salt": base64.b64encode(salt).decode(),
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(sealed).decode(),
        }
    )


def _open_document(outer: dict[str, Any], path: Path) -> dict[str, Any]:
    passphrase = _PASSPHRASES.get(path)
    if passphrase is None:
        raise KeyringLocked(f"{path} is sealed: set PAYGUARD_KEYRING_PASSPHRASE")
    key = _kdf(passphrase, base64.b64decode(outer["salt"]))
    try:
        plain = AESGCM(key).decrypt(
            base64.b64decode(outer["nonce"]),
            base64.b64decode(outer["ciphertext"]),
            SEALED_FORMAT.encode(),
        )
    except InvalidTag:
        raise KeyringLocked(f"{path}: the passphrase does not open the keyring") from None
    opened: dict[str, Any] = json.loads(plain)
    return opened


def _serialise(path: Path, data: dict[str, object]) -> str:
    passphrase = _PASSPHRASES.get(path)
    document = json.dumps(data)
    return _seal_document(document, passphrase) if passphrase else document


def _write(path: Path, data: dict[str, object]) -> None:
    """Replace the file whole (written aside, then renamed), mode 0600; sealed with the
    passphrase when one is configured."""
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(_serialise(path, data))
    os.replace(draft, path)


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    if "sealed" in data:
        data = _open_document(data, path)
    elif path in _PASSPHRASES:  # a passphrase was configured for a clear keyring: seal it
        _write(path, data)
    if "keks" not in data:  # an older keyring: one unversioned KEK, or none yet
        kek = data.pop("kek", None) or base64.b64encode(os.urandom(32)).decode()
        data["keks"], data["active_kek"] = {"kek-1": kek}, "kek-1"
        data.setdefault("index_key", base64.b64encode(os.urandom(32)).decode())
        data["version"] = 2
        _write(path, data)
    if "signing_sm2" not in data:  # a keyring from before the gm suite
        data["signing_sm2"] = _new_sm2()
        _write(path, data)
    return data


def _new_sm2() -> dict[str, str]:
    private, public = sm2_keypair()
    return {"private": private.hex(), "public": public.hex()}


def load_keyring(settings: Settings) -> Keyring:
    """The keyring of this installation, created on first use and cached per file."""
    path = keyring_path(settings).resolve()
    found = _LOADED.get(path)
    if found is not None:
        return found
    if settings.keyring_passphrase is not None:
        _PASSPHRASES[path] = settings.keyring_passphrase.get_secret_value().encode()
    if not path.exists():
        _create(path)
    data = _read(path)
    private = serialization.load_pem_private_key(data["signing"]["private_pem"].encode(), None)
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise ValueError(f"{path}: the signing key is not Ed25519")
    keyring = Keyring(
        signer=Signer(private),
        sm2_signer=Sm2Signer(
            bytes.fromhex(data["signing_sm2"]["private"]),
            bytes.fromhex(data["signing_sm2"]["public"]),
        ),
        index_key=base64.b64decode(data["index_key"]),
        path=path,
        keks={name: base64.b64decode(value) for name, value in data["keks"].items()},
        active_kek_id=data["active_kek"],
    )
    _LOADED[path] = keyring
    return keyring


def add_kek(keyring: Keyring) -> str:
    """Make a new KEK and make it the active one; returns its id (KEK rotation)."""
    data = _read(keyring.path)
    number = 1 + max(int(name.split("-")[1]) for name in data["keks"])
    new_id = f"kek-{number}"
    data["keks"][new_id] = base64.b64encode(os.urandom(32)).decode()
    data["active_kek"] = new_id
    _write(keyring.path, data)
    keyring.reload()
    return new_id


def drop_kek(keyring: Keyring, kek_id: str) -> None:
    """Remove a retired KEK from the file (the caller checked nothing uses it)."""
    data = _read(keyring.path)
    if kek_id == data["active_kek"]:
        raise ValueError("the active key-encryption key cannot be dropped")
    data["keks"].pop(kek_id, None)
    _write(keyring.path, data)
    keyring.reload()


def load_signer(settings: Settings) -> AnySigner:
    """The platform signing key of the configured suite, creating the keyring on first use."""
    keyring = load_keyring(settings)
    return keyring.sm2_signer if settings.crypto_suite == "gm" else keyring.signer


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    document = _serialise(
        path.resolve(),
        {
            "version": 2,
            "suite": "standard",
            "keks": {"kek-1": base64.b64encode(os.urandom(32)).decode()},
            "active_kek": "kek-1",
            "index_key": base64.b64encode(os.urandom(32)).decode(),
            "signing": {"algorithm": "ed25519", "private_pem": pem},
            "signing_sm2": _new_sm2(),
        },
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
