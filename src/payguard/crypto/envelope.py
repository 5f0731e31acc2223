"""Envelope encryption of personal data, blind indexes and crypto-shredding.

Each owner (a customer, or a staff member as ``staff:<id>``) has its own data-encryption
key (DEK, AES-256), stored only wrapped by the key-encryption key (KEK) of the key
provider. A field is sealed as ``pg1.<dek id>.<base64 nonce ‖ AES-256-GCM or SM4-GCM ciphertext>``
(the suite of ``PAYGUARD_CRYPTO_SUITE`` when the key was made)
with associated data ``<table>.<column>.<row id>``: moved to another row or column, a
ciphertext no longer decrypts.

Erasing an owner destroys their DEK (the wrapped key is deleted): everything sealed under
it becomes unreadable at once, while rows that must be kept (ledger entries) stay.

Lookups without decrypting use blind indexes: HMAC-SHA256 under the index key of a
normalised value, per kind (``phone``, ``email``), so equal values meet and nothing else
is revealed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.crypto.keyring import Keyring, load_keyring
from payguard.crypto.models import DataKey
from payguard.crypto.pkcs11 import Pkcs11Kek, hsm_for
from payguard.crypto.suites import DecryptionFailed, Suite, suite
from payguard.settings import Settings

PREFIX = "pg1"
ERASED = "[erased]"
PLATFORM_OWNER = "platform:"
# How long a process keeps using an owner's active key without looking it up again: a
# rotation reaches every process within this, and retirement waits twice as long.
KEY_CACHE_TTL = 60.0
KEY_CACHE_SIZE = 50_000
NEW_KEYS = "payguard_new_data_keys"  # session.info: keys made in this (uncommitted) transaction


class KeyDestroyed(Exception):
    """The owner's key was destroyed (crypto-shredded): the value is gone for good."""


@dataclass
class Envelope:
    """Seals and opens fields with per-owner keys; unwrapped keys are cached per process."""

    keyring: Keyring
    suite_name: str = "standard"  # the suite of keys made from now on
    hsm: Pkcs11Kek | None = None  # when set, new data keys are wrapped inside the HSM

    @property
    def index_key(self) -> bytes:
        return self.keyring.index_key

    def __post_init__(self) -> None:
        self._plain_keys: dict[str, bytes] = {}
        # Active key of each owner, so that sealing on the payment path does not look the
        # key up every time. Keyed by database too: one keyring may serve several databases
        # (tests, tools), and a key id belongs to the database that stores its wrapped key.
        self._active_keys: dict[tuple[str, str], tuple[float, str, bytes]] = {}

    # ------------------------------------------------------------ keys

    @property
    def provider(self) -> str:
        return "pkcs11" if self.hsm is not None else "local"

    @property
    def active_kek_id(self) -> str:
        return self.hsm.active_kek_id if self.hsm is not None else self.keyring.active_kek_id

    def _wrap(self, key: bytes, key_id: str, suite_name: str) -> tuple[str, str]:
        """``key`` wrapped under the active KEK; returns (wrapped, KEK id). With an HSM the
        wrapping happens inside it (AES-256-GCM); locally with the suite's cipher."""
        if self.hsm is not None:
            wrapped_in_hsm, hsm_kek = self.hsm.wrap(key, f"dek:{key_id}".encode())
            return base64.b64encode(wrapped_in_hsm).decode(), hsm_kek
        kek_id = self.keyring.active_kek_id
        cipher = suite(suite_name)
        nonce = os.urandom(12)
        wrapping_key = cipher.kek_for(self.keyring.kek(kek_id))
        wrapped = cipher.encrypt(wrapping_key, nonce, key, f"dek:{key_id}".encode())
        return base64.b64encode(nonce + wrapped).decode(), kek_id

    def _unwrap(self, row: Any) -> bytes:
        """``row``: a DataKey, or a row with its id, wrapped, kek_id, suite and provider."""
        assert row.wrapped is not None
        raw = base64.b64decode(row.wrapped)
        if row.provider == "pkcs11":
            if self.hsm is None:
                raise ValueError(
                    "this data key is wrapped in the HSM; configure the pkcs11 provider"
                )
            return self.hsm.unwrap(raw, f"dek:{row.id}".encode(), row.kek_id)
        cipher = suite(row.suite)
        wrapping_key = cipher.kek_for(self.keyring.kek(row.kek_id))
        return cipher.decrypt(wrapping_key, raw[:12], raw[12:], f"dek:{row.id}".encode())

    def key_for(self, session: Session, owner: str) -> tuple[str, bytes]:
        """The owner's active DEK, made on first use."""
        bind = session.get_bind()
        slot = (str(bind.engine.url), owner)
        cached = self._active_keys.get(slot)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], cached[2]
        key_id, key, stored = self._active_key(session, owner)
        # Only a key already committed is cached: a key made in this transaction could
        # still roll back, and values sealed under a key that was never stored are lost.
        if stored:
            if len(self._active_keys) >= KEY_CACHE_SIZE:
                self._active_keys.clear()
            self._active_keys[slot] = (time.monotonic() + KEY_CACHE_TTL, key_id, key)
        return key_id, key

    def _active_key(self, session: Session, owner: str) -> tuple[str, bytes, bool]:
        # Plain columns, not the ORM entity: this runs on the payment path.
        row = session.execute(
            _ACTIVE_KEY, {"owner": owner}, execution_options={"prebuffer_rows": True}
        ).first()
        if row is not None and row.wrapped is not None:
            plain = self._plain_keys.get(row.id)
            if plain is None:
                plain = self._plain_keys[row.id] = self._unwrap(row)
            return row.id, plain, row.id not in session.info.get(NEW_KEYS, ())
        if session.scalar(select(DataKey.id).where(DataKey.owner == owner)) is not None:
            raise KeyDestroyed(f"the data of {owner} was erased")
        return (*self._new_key(session, owner, version=1), False)

    def _new_key(self, session: Session, owner: str, *, version: int) -> tuple[str, bytes]:
        cipher = suite(self.suite_name)
        key, key_id = cipher.new_data_key(), ids.new_id("data_key")
        wrapped, kek_id = self._wrap(key, key_id, cipher.name)
        session.add(
            DataKey(
                id=key_id,
                owner=owner,
                version=version,
                wrapped=wrapped,
                kek_id=kek_id,
                suite=cipher.name,
                provider=self.provider,
                created_at=clock.now(),
            )
        )
        session.flush()
        self._plain_keys[key_id] = key
        session.info.setdefault(NEW_KEYS, set()).add(key_id)
        return key_id, key

    def _key(self, session: Session, key_id: str) -> bytes:
        cached = self._plain_keys.get(key_id)
        row = session.get(DataKey, key_id)
        # The row is read every time so that an erasure in another process takes effect
        # at once; only the unwrap (the KEK operation) is cached.
        if row is None or row.wrapped is None:
            self._plain_keys.pop(key_id, None)
            raise KeyDestroyed("the key of this value was destroyed")
        if cached is None:
            cached = self._unwrap(row)
            self._plain_keys[key_id] = cached
        return cached

    def forget_cached_keys(self) -> None:
        """After a rotation: the next seal looks up each owner's newest key again."""
        self._active_keys.clear()

    # ------------------------------------------------------------ fields

    def seal(self, session: Session, owner: str, where: str, plaintext: str) -> str:
        """``where`` is ``table.column.row_id``: the associated data of the ciphertext."""
        key_id, key = self.key_for(session, owner)
        nonce = os.urandom(12)
        sealed = _cipher_of(key).encrypt(key, nonce, plaintext.encode(), where.encode())
        return f"{PREFIX}.{key_id}.{base64.b64encode(nonce + sealed).decode()}"

    def open(self, session: Session, where: str, sealed: str) -> str:
        """The plaintext, or ``[erased]`` when the owner's key was destroyed."""
        try:
            prefix, key_id, body = sealed.split(".", 2)
            raw = base64.b64decode(body)
        except (ValueError, binascii.Error) as error:
            raise ValueError("not a sealed value") from error
        if prefix != PREFIX:
            raise ValueError("not a sealed value")
        try:
            key = self._key(session, key_id)
        except KeyDestroyed:
            return ERASED
        try:
            return _cipher_of(key).decrypt(key, raw[:12], raw[12:], where.encode()).decode()
        except DecryptionFailed as error:
            raise ValueError(f"the sealed value does not belong to {where}") from error

    def blind_index(self, kind: str, value: str) -> str:
        normalised = value.strip().lower()
        return hmac.new(self.index_key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()

    # ------------------------------------------------------------ erasure

    def erase(self, session: Session, owner: str) -> int:
        """Destroy every key of ``owner`` (crypto-shredding); returns how many."""
        destroyed = session.execute(
            update(DataKey)
            .where(DataKey.owner == owner, DataKey.wrapped.is_not(None))
            .values(wrapped=None, destroyed_at=clock.now())
        )
        self._plain_keys.clear()
        self._active_keys.clear()
        return int(destroyed.rowcount)  # type: ignore[attr-defined]


_KEYS = DataKey.__table__
_ACTIVE_KEY = (
    select(_KEYS.c.id, _KEYS.c.wrapped, _KEYS.c.kek_id, _KEYS.c.suite, _KEYS.c.provider)
    .where(_KEYS.c.owner == bindparam("owner"), _KEYS.c.destroyed_at.is_(None))
    .order_by(_KEYS.c.version.desc())
    .limit(1)
)

_ENVELOPES: dict[str, Envelope] = {}


def envelope_for(settings: Settings) -> Envelope:
    """The envelope of this installation's keyring (one per keyring file and process)."""
    keyring = load_keyring(settings)
    slot = f"{keyring.path}:{settings.crypto_suite}:{settings.key_provider}"
    found = _ENVELOPES.get(slot)
    if found is None:
        hsm = hsm_for(settings) if settings.key_provider == "pkcs11" else None
        found = _ENVELOPES[slot] = Envelope(keyring, settings.crypto_suite, hsm)
    return found


def memo_aad(payment_id: str) -> str:
    """A memo is bound to its payment: the same sealed text sits in the payment and in its
    ledger transfer (whose ``reference`` is the payment id)."""
    return f"memo.{payment_id}"


def seal_memo(
    session: Session, settings: Settings, owner: str, payment_id: str, memo: str | None
) -> str | None:
    if not memo:
        return None
    return envelope_for(settings).seal(session, owner, memo_aad(payment_id), memo)


def open_memo(
    session: Session, settings: Settings, payment_id: str | None, memo: str | None
) -> str | None:
    """The memo in clear; values written before memos were sealed pass through."""
    if not memo or not is_sealed(memo) or payment_id is None:
        return memo
    return envelope_for(settings).open(session, memo_aad(payment_id), memo)


def _cipher_of(key: bytes) -> Suite:
    """The suite of a data key, from its length: 32 bytes AES-256, 16 bytes SM4."""
    return suite("gm" if len(key) == 16 else "standard")


def is_sealed(value: str | None) -> bool:
    return bool(value) and str(value).startswith(PREFIX + ".")
