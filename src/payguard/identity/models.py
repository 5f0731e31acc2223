"""Tables of the identity domain: who people are, how they prove it, what staff may do.

Secrets are never stored in a form that logs someone in: passwords as Argon2id hashes,
session and refresh tokens, recovery codes and one-time codes as SHA-256 digests.
TOTP secrets must be readable to verify codes; they move under envelope encryption
with the crypto issue.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from payguard.crypto.sealed import register_sealed
from payguard.db.base import Base, UTCDateTime


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(Text)  # sealed: names are personal data
    password_hash: Mapped[str] = mapped_column(String(255))
    kyc_tier: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Real-name data (KYC). The ID number is kept only masked plus a keyed digest
    # (uniqueness without the number). Name, phone and e-mail are sealed with the
    # customer's own key (crypto/envelope.py); the phone has a blind index for lookups.
    legal_name: Mapped[str | None] = mapped_column(Text)
    id_document_type: Mapped[str | None] = mapped_column(String(24))
    id_number_masked: Mapped[str | None] = mapped_column(String(40))
    id_number_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    phone: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)
    # Per-customer outgoing limits replacing the tier's (set through four-eyes approval).
    limits_override: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # When the password last changed: a fresh change before a payout is a takeover sign.
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by an incident playbook (force_password_reset): login is refused until the
    # password is reset through a second factor (identity/password_reset.py).
    password_reset_required_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Forced password reset (see Customer.password_reset_required_at).
    password_reset_required_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuthSession(Base):
    """An opaque bearer token (and its refresh token), stored only as SHA-256 digests."""

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_subject", "subject_kind", "subject_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    subject_kind: Mapped[str] = mapped_column(String(16))  # customer | staff
    subject_id: Mapped[str] = mapped_column(String(40))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # rotated (refreshed) | logout | revoked | signed_out_everywhere | refresh_reused | ...
    # Only a *rotated* session's refresh token coming back means it was copied.
    end_reason: Mapped[str | None] = mapped_column(String(24))
    refresh_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    refresh_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The device this session is bound to (set at login, or when the device is registered).
    device_id: Mapped[str | None] = mapped_column(String(40))
    # Factors proven for this session: "password", "password+totp", "password+otp", ...
    auth_level: Mapped[str] = mapped_column(String(40), default="password")
    source_ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(200))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginThrottle(Base):
    """Failure counter of one throttling key: an account or a source IP."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)  # account:… | ip:…
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginAttempt(Base):
    """Every login attempt, kept for investigation (no password, no raw username)."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_at", "at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str | None] = mapped_column(String(40))  # None: unknown username
    username_digest: Mapped[str] = mapped_column(String(64))
    source_ip: Mapped[str | None] = mapped_column(String(45))
    succeeded: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class TotpCredential(Base):
    __tablename__ = "totp_credentials"
    __table_args__ = (UniqueConstraint("subject_kind", "subject_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(40))
    secret: Mapped[str] = mapped_column(Text)  # base32, sealed with the subject's key
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last accepted time step: a code is accepted once (RFC 6238 §5.2).
    last_step: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"
    __table_args__ = (Index("ix_recovery_codes_subject", "subject_kind", "subject_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(40))
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OneTimeCode(Base):
    """An SMS or e-mail code: digest only, expires, single use, limited guesses."""

    __tablename__ = "one_time_codes"
    __table_args__ = (Index("ix_one_time_codes_subject", "subject_kind", "subject_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(8))  # sms | email
    purpose: Mapped[str] = mapped_column(String(32))  # login | step_up | enrol | ...
    # A step-up code is bound to one challenge (and through it to one instruction hash).
    challenge_id: Mapped[str | None] = mapped_column(String(40))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SentMessage(Base):
    """What the outbox sender 'sent': the developer console and tests read codes here."""

    __tablename__ = "sent_messages"
    __table_args__ = (Index("ix_sent_messages_recipient", "recipient"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Passkey(Base):
    """A WebAuthn credential (the 'biometric' factor: user verification is required)."""

    __tablename__ = "passkeys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(40), index=True)
    credential_id: Mapped[str] = mapped_column(String(512), unique=True)  # base64url
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(80))
    aaguid: Mapped[str | None] = mapped_column(String(40))
    transports: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuthChallenge(Base):
    """A server-issued challenge: WebAuthn ceremonies, and step-up of a payment instruction.

    A step-up challenge is bound to the SHA-256 of the instruction's canonical bytes, so
    its proof is good for that instruction only (PSD2 dynamic linking).
    """

    __tablename__ = "auth_challenges"
    __table_args__ = (Index("ix_auth_challenges_subject", "subject_kind", "subject_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(40))
    purpose: Mapped[str] = mapped_column(String(32))  # passkey_register | passkey_login | step_up
    challenge: Mapped[bytes] = mapped_column(LargeBinary)
    instruction_hash: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(64))
    allowed_factors: Mapped[list[str] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|passed|used
    factor_used: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    passed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Device(Base):
    """A customer's app installation, holding a key pair whose public half is here."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    name: Mapped[str] = mapped_column(Text)  # sealed: "Dora's phone" names its owner
    algorithm: Mapped[str] = mapped_column(String(16))  # ed25519 | p256
    public_key: Mapped[str] = mapped_column(Text)  # SubjectPublicKeyInfo, PEM
    key_fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    platform: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # None until the first signed payment: the risk engine treats such a device as new.
    first_payment_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SeenNonce(Base):
    """Database replay cache of instruction nonces (Redis takes over when configured)."""

    __tablename__ = "seen_nonces"
    __table_args__ = (Index("ix_seen_nonces_expires", "expires_at"),)

    key: Mapped[str] = mapped_column(String(128), primary_key=True)  # device id + nonce
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InstructionEvidence(Base):
    """The signed bytes of a payment instruction: non-repudiation, re-verifiable later."""

    __tablename__ = "instruction_evidence"

    payment_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40), index=True)
    device_id: Mapped[str] = mapped_column(String(40))
    algorithm: Mapped[str] = mapped_column(String(16))
    public_key: Mapped[str] = mapped_column(Text)  # the device key at signing time
    canonical: Mapped[bytes] = mapped_column(LargeBinary)
    signature: Mapped[str] = mapped_column(Text)  # base64url
    instruction_hash: Mapped[str] = mapped_column(String(64))
    step_up_challenge_id: Mapped[str | None] = mapped_column(String(40))
    verified_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApprovalRequest(Base):
    """Maker–checker: a sensitive operation waits here for a second staff member."""

    __tablename__ = "approval_requests"
    __table_args__ = (Index("ix_approval_requests_status", "status"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    action: Mapped[str] = mapped_column(String(48))
    target: Mapped[str | None] = mapped_column(String(80))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(500))
    requested_by: Mapped[str] = mapped_column(String(40))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # pending | approved→executed | rejected | expired | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(40))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_note: Mapped[str | None] = mapped_column(String(500))
    executed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# Columns holding values sealed with crypto/envelope.py (for the re-encryption job).
for _column in ("legal_name", "phone", "email", "display_name"):
    register_sealed("customers", _column, "id")
register_sealed("devices", "name", "id")
register_sealed("totp_credentials", "secret", "id")
register_sealed("sent_messages", "body", "id")
register_sealed("instruction_evidence", "canonical", "payment_id", binary=True)


class StepUpSegment(Base):
    """Payers who must pass step-up on every payment for a while (identity/stepup_segments.py).

    ``segment`` is ``all``, ``kyc_tier`` (value: the tier), ``new_devices`` (value: hours
    a device counts as young) or ``customer`` (value: the customer id)."""

    __tablename__ = "stepup_segments"
    __table_args__ = (Index("ix_stepup_segments_active", "lifted_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    segment: Mapped[str] = mapped_column(String(16))
    value: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(500))
    incident_id: Mapped[str | None] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_by: Mapped[str | None] = mapped_column(String(64))
