"""Signed payment instructions: canonical bytes, device signatures, timestamps, nonces.

The app builds the instruction as a JSON object and signs its RFC 8785 (JCS)
canonical bytes with the device key. The signed object is the request body as sent,
minus ``signature`` and ``challenge_id``, plus the ``idempotency_key`` from the
header: so amount, currency, payer, payee, kind, memo, nonce, client timestamp and
the idempotency key are all covered, and any change breaks the signature.

Two hashes are kept apart on purpose:

- the *canonical bytes* (with nonce and timestamp) are what the signature covers and
  what is stored as evidence;
- the *instruction hash* covers the same object without nonce and timestamp. It names
  "this payment instruction" across a re-signed retry, so a step-up challenge can be
  bound to it and an idempotent retry can be recognised.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, cast

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import Table, delete, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from payguard import clock
from payguard.crypto.envelope import envelope_for
from payguard.errors import (
    BadSignature,
    InstructionReplayed,
    StaleInstruction,
    UnknownDevice,
    ValidationProblem,
)
from payguard.identity.models import Device, InstructionEvidence, SeenNonce
from payguard.settings import Settings

SEEN_NONCES = cast(Table, SeenNonce.__table__)
DEVICES = cast(Table, Device.__table__)
UNSIGNED_FIELDS = frozenset({"signature", "challenge_id"})
VOLATILE_FIELDS = frozenset({"nonce", "client_timestamp"})
ALGORITHMS = ("ed25519", "p256")


@dataclass(frozen=True)
class SignedInstruction:
    """What the client sent, split into the parts the checks need."""

    device_id: str
    nonce: str
    client_timestamp: datetime
    signature: bytes
    canonical: bytes
    instruction_hash: str
    challenge_id: str | None


def b64url_decode(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as error:
        raise ValidationProblem("expected base64url text") from error


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_FLAT_VALUE_TYPES = (str, int, bool, type(None))


def _flat_ascii_keys(document: dict[str, Any]) -> bool:
    return all(
        isinstance(key, str)
        and key.isascii()
        and type(value) in _FLAT_VALUE_TYPES
        and (type(value) is not int or abs(value) < 2**53)
        and (type(value) is not str or not _has_surrogate(value))
        for key, value in document.items()
    )


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text) if not text.isascii() else False


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of ``document``.

    A payment instruction is a flat object of ASCII keys with string, integer, boolean
    or null values. For that shape RFC 8785 and ``json.dumps`` with sorted keys, no
    whitespace and no ASCII escaping produce the same bytes (same escapes, same integer
    form, and code-point order equals UTF-16 order for ASCII keys), and the standard
    library's C encoder is ten times faster than the pure-Python ``rfc8785``. Anything
    else goes through ``rfc8785``; a property test holds the two equal.
    """
    if _flat_ascii_keys(document):
        return json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    try:
        return rfc8785.dumps(document)
    except rfc8785.CanonicalizationError as error:
        raise ValidationProblem(f"the instruction cannot be canonicalised: {error}") from error


def instruction_hash(document: dict[str, Any]) -> str:
    """SHA-256 of the instruction without its nonce and timestamp (see the module doc)."""
    stable = {key: value for key, value in document.items() if key not in VOLATILE_FIELDS}
    return hashlib.sha256(canonical_bytes(stable)).hexdigest()


def signed_document(body: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
    """The object the device signed: the body minus the unsigned fields, plus the key."""
    document = {key: value for key, value in body.items() if key not in UNSIGNED_FIELDS}
    if idempotency_key is not None:
        document["idempotency_key"] = idempotency_key
    return document


def parse(body: dict[str, Any], idempotency_key: str | None) -> SignedInstruction:
    """Split a signed request body; raises a 4xx problem for a malformed one."""
    missing = [field for field in ("device_id", "nonce", "client_timestamp") if not body.get(field)]
    if missing or not body.get("signature"):
        raise ValidationProblem(
            "a signed instruction needs device_id, nonce, client_timestamp and signature"
        )
    nonce = body["nonce"]
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64:
        raise ValidationProblem("nonce: 16 to 64 characters of fresh randomness per instruction")
    try:
        stamp = datetime.fromisoformat(str(body["client_timestamp"]).replace("Z", "+00:00"))
    except ValueError as error:
        raise ValidationProblem("client_timestamp: an RFC 3339 time with a zone") from error
    if stamp.tzinfo is None:
        raise ValidationProblem("client_timestamp: an RFC 3339 time with a zone")
    document = signed_document(body, idempotency_key)
    challenge_id = body.get("challenge_id")
    return SignedInstruction(
        device_id=str(body["device_id"]),
        nonce=nonce,
        client_timestamp=stamp,
        signature=b64url_decode(str(body["signature"])),
        canonical=canonical_bytes(document),
        instruction_hash=instruction_hash(document),
        challenge_id=str(challenge_id) if challenge_id else None,
    )


# ------------------------------------------------------------ keys and signatures


def load_public_key(
    pem: str, algorithm: str
) -> ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey:
    """Parse a SubjectPublicKeyInfo PEM and check it is of the declared algorithm."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as error:
        raise ValidationProblem("public_key: a SubjectPublicKeyInfo PEM block") from error
    if algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if (
        algorithm == "p256"
        and isinstance(key, ec.EllipticCurvePublicKey)
        and isinstance(key.curve, ec.SECP256R1)
    ):
        return key
    raise ValidationProblem(f"public_key: not an {algorithm} key (use one of {ALGORITHMS})")


def key_fingerprint(pem: str, algorithm: str) -> str:
    der = load_public_key(pem, algorithm).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def signature_valid(pem: str, algorithm: str, signature: bytes, message: bytes) -> bool:
    """Ed25519, or ECDSA P-256 with SHA-256 and a DER-encoded signature."""
    key = load_public_key(pem, algorithm)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


# ------------------------------------------------------------ replay cache


class NonceCache(Protocol):
    def consume(self, session: Session, key: str, ttl_seconds: int) -> bool:
        """Record ``key``; False if it was already there (a replay)."""


class DatabaseNonceCache:
    """Nonces in ``seen_nonces``, written in the payment's own transaction.

    One ``INSERT … ON CONFLICT DO NOTHING`` on the driver connection: no savepoint, no ORM
    flush, no statement compilation on the payment hot path."""

    def consume(self, session: Session, key: str, ttl_seconds: int) -> bool:
        expires = clock.now() + timedelta(seconds=ttl_seconds)
        cursor = _driver_execute(session, _INSERT_NONCE, (key, expires))
        return int(cursor.rowcount) == 1


_INSERT_NONCE = (
    "INSERT INTO seen_nonces (key, expires_at) VALUES ({p}, {p}) ON CONFLICT (key) DO NOTHING"
)
_SELECT_DEVICE = (
    "SELECT customer_id, status, algorithm, public_key, first_payment_at IS NULL, "
    "(last_used_at IS NULL OR last_used_at < {p}) FROM devices WHERE id = {p}"
)
_TIME_BINDERS: dict[str, Any] = {}


def _driver_execute(session: Session, template: str, params: tuple[Any, ...]) -> Any:
    """Run a fixed statement on the transaction's driver connection (both dialects).

    Times are bound the way the ``UTCDateTime`` column type binds them, so SQLite text
    compares and sorts like the ORM's."""
    connection = session.connection()
    dialect = connection.dialect
    binder = _TIME_BINDERS.get(dialect.name)
    if binder is None:
        binder = SEEN_NONCES.c.expires_at.type.dialect_impl(dialect).bind_processor(dialect)
        binder = binder or (lambda value: value)
        _TIME_BINDERS[dialect.name] = binder
    placeholder = "%s" if dialect.name == "postgresql" else "?"
    bound = tuple(binder(value) if isinstance(value, datetime) else value for value in params)
    statement = template.format(p=placeholder)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(statement, bound)
    except dialect.dbapi.Error as error:  # type: ignore[union-attr]
        raise DBAPIError.instance(statement, bound, error, dialect.dbapi.Error) from error  # type: ignore[union-attr]
    return cursor


class RedisNonceCache:
    """Nonces in Redis (``SET NX EX``): shared by every server process, expired by Redis."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)

    def consume(self, session: Session, key: str, ttl_seconds: int) -> bool:
        return bool(self.client.set(f"payguard:nonce:{key}", b"1", nx=True, ex=ttl_seconds))


def nonce_cache_for(settings: Settings) -> NonceCache:
    """Redis when ``PAYGUARD_REDIS_URL`` is set (shared by all processes), else the database."""
    if settings.redis_url:
        return RedisNonceCache(settings.redis_url)
    return DatabaseNonceCache()


def purge_expired_nonces(session: Session) -> int:
    result = session.execute(delete(SeenNonce).where(SeenNonce.expires_at < clock.now()))
    return int(getattr(result, "rowcount", 0) or 0)


# ------------------------------------------------------------ the check on the payment path


@dataclass(frozen=True)
class VerifiedDevice:
    """The columns of the signing device the payment path needs (no ORM object)."""

    id: str
    algorithm: str
    public_key: str
    is_new: bool
    seen_recently: bool


class _DeviceRow(NamedTuple):
    customer_id: str
    status: str
    algorithm: str
    public_key: str
    is_new: int
    stale: int


def verify(
    session: Session,
    *,
    customer_id: str,
    bound_device_id: str | None,
    instruction: SignedInstruction,
    max_skew_seconds: int,
) -> VerifiedDevice:
    """Device known and active, signature good, timestamp fresh. The nonce is separate."""
    cutoff = clock.now() - timedelta(seconds=60)
    cursor = _driver_execute(session, _SELECT_DEVICE, (cutoff, instruction.device_id))
    found = cursor.fetchone()
    cursor.close()
    row = _DeviceRow(*found) if found is not None else None
    if (
        row is None
        or row.customer_id != customer_id
        or row.status != "active"
        or (bound_device_id is not None and bound_device_id != instruction.device_id)
    ):
        raise UnknownDevice(
            "the instruction was signed by a device that is not an active device of this "
            "session; register the device again"
        )
    if not signature_valid(
        row.public_key, row.algorithm, instruction.signature, instruction.canonical
    ):
        raise BadSignature(
            "the signature does not match the instruction: it was changed after signing or "
            "signed with another key"
        )
    skew = abs((clock.now() - instruction.client_timestamp).total_seconds())
    if skew > max_skew_seconds:
        raise StaleInstruction(
            f"client_timestamp is {int(skew)} s away from server time "
            f"(at most {max_skew_seconds} s); check the device clock and sign again"
        )
    return VerifiedDevice(
        id=instruction.device_id,
        algorithm=row.algorithm,
        public_key=row.public_key,
        is_new=bool(row.is_new),
        seen_recently=not row.stale,
    )


def mark_device_used(session: Session, device: VerifiedDevice) -> None:
    """First payment ends 'new'; last use is refreshed at most once a minute (not a write
    per payment)."""
    now = clock.now()
    if not device.is_new and device.seen_recently:
        return
    values: dict[str, Any] = {"last_used_at": now}
    if device.is_new:
        values["first_payment_at"] = now
    session.execute(update(DEVICES).where(DEVICES.c.id == device.id).values(**values))


def consume_nonce(
    session: Session, cache: NonceCache, instruction: SignedInstruction, ttl_seconds: int
) -> None:
    if not cache.consume(session, f"{instruction.device_id}:{instruction.nonce}", ttl_seconds):
        raise InstructionReplayed(
            "this instruction's nonce was already used; a new instruction needs a new nonce"
        )


EVIDENCE_OWNER = "platform:evidence"


def record_evidence(
    session: Session,
    settings: Settings,
    *,
    payment_id: str,
    customer_id: str,
    device: VerifiedDevice,
    instruction: SignedInstruction,
) -> None:
    session.add(
        InstructionEvidence(
            payment_id=payment_id,
            customer_id=customer_id,
            device_id=device.id,
            algorithm=device.algorithm,
            public_key=device.public_key,
            # Sealed: the signed bytes hold bank account numbers and memos. The key is the
            # platform's evidence key, not the customer's, so that erasure leaves the proof
            # of what was instructed for the legal retention period.
            canonical=envelope_for(settings)
            .seal(
                session,
                EVIDENCE_OWNER,
                f"instruction_evidence.canonical.{payment_id}",
                instruction.canonical.decode(),
            )
            .encode(),
            signature=b64url(instruction.signature),
            instruction_hash=instruction.instruction_hash,
            step_up_challenge_id=instruction.challenge_id,
            verified_at=clock.now(),
        )
    )


@dataclass(frozen=True)
class EvidenceCheck:
    payment_id: str
    device_id: str
    algorithm: str
    signature_valid: bool
    instruction: dict[str, Any]
    instruction_hash: str
    hash_matches: bool
    step_up_challenge_id: str | None
    verified_at: datetime


def check_evidence(session: Session, settings: Settings, payment_id: str) -> EvidenceCheck | None:
    """Re-verify the stored signature over the stored bytes, with the key of that time."""
    evidence = session.get(InstructionEvidence, payment_id)
    if evidence is None:
        return None
    import json

    try:
        canonical = (
            envelope_for(settings)
            .open(
                session,
                f"instruction_evidence.canonical.{payment_id}",
                evidence.canonical.decode(),
            )
            .encode()
        )
        document = json.loads(canonical)
    except (ValueError, UnicodeDecodeError):
        # The sealed bytes were altered or moved: nothing that was signed can be shown.
        canonical, document = b"", {}
    return EvidenceCheck(
        payment_id=payment_id,
        device_id=evidence.device_id,
        algorithm=evidence.algorithm,
        signature_valid=signature_valid(
            evidence.public_key,
            evidence.algorithm,
            b64url_decode(evidence.signature),
            canonical,
        ),
        instruction=document,
        instruction_hash=evidence.instruction_hash,
        hash_matches=bool(document) and instruction_hash(document) == evidence.instruction_hash,
        step_up_challenge_id=evidence.step_up_challenge_id,
        verified_at=evidence.verified_at,
    )
