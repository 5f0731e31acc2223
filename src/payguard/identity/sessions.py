"""Login (throttled, recorded, MFA for staff) and sessions: access plus refresh tokens.

Both tokens are opaque 256-bit strings, stored as SHA-256 digests only. The access
token is short-lived (``session_ttl_seconds``); the refresh token (``refresh_ttl_seconds``)
buys a new pair once: each refresh retires the old session row and issues a new one.
Presenting a retired refresh token again means it was copied: every session of that
subject is revoked and a security event raised (refresh-token reuse detection).

A customer session may be bound to a registered device at login; payment instructions
on it must then be signed by that device.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.errors import (
    NotAuthenticated,
    NotFound,
    PasswordResetRequired,
    ProblemError,
    SecondFactorRequired,
    ValidationProblem,
)
from payguard.events import service as events
from payguard.identity import throttle, totp
from payguard.identity.models import AuthSession, Customer, Device, StaffUser
from payguard.identity.passwords import hash_password, needs_rehash, verify_password
from payguard.settings import Settings

LOGIN_FAILED = "the username or password is not correct"


@dataclass(frozen=True)
class IssuedSession:
    token: str
    session_id: str
    expires_in: int
    refresh_token: str | None = None
    refresh_expires_in: int | None = None


@dataclass(frozen=True)
class LoginResult:
    """A login's outcome. A refusal is returned, not raised, so that the failure count
    and the attempt record commit with it; the API raises it afterwards."""

    issued: IssuedSession | None = None
    refusal: ProblemError | None = None


@dataclass(frozen=True)
class Attempt:
    subject_kind: str  # customer | staff
    username: str
    password: str
    source_ip: str | None = None
    user_agent: str | None = None
    device_id: str | None = None
    totp_code: str | None = None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(
    session: Session,
    settings: Settings,
    kind: str,
    subject_id: str,
    *,
    customer_id: str | None = None,
    device_id: str | None = None,
    auth_level: str = "password",
    source_ip: str | None = None,
    user_agent: str | None = None,
    with_refresh: bool = True,
) -> IssuedSession:
    token = secrets.token_urlsafe(32)
    refresh = secrets.token_urlsafe(32) if with_refresh else None
    now = clock.now()
    record = AuthSession(
        id=ids.new_id("session"),
        token_hash=token_digest(token),
        subject_kind=kind,
        subject_id=subject_id,
        customer_id=customer_id,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.session_ttl_seconds),
        refresh_hash=token_digest(refresh) if refresh else None,
        refresh_expires_at=now + timedelta(seconds=settings.refresh_ttl_seconds)
        if refresh
        else None,
        device_id=device_id,
        auth_level=auth_level,
        source_ip=source_ip,
        user_agent=(user_agent or "")[:200] or None,
        last_used_at=now,
    )
    session.add(record)
    session.flush()
    return IssuedSession(
        token=token,
        session_id=record.id,
        expires_in=settings.session_ttl_seconds,
        refresh_token=refresh,
        refresh_expires_in=settings.refresh_ttl_seconds if refresh else None,
    )


def login(session: Session, settings: Settings, attempt: Attempt) -> LoginResult:
    keys = [throttle.account_key(attempt.subject_kind, attempt.username)]
    if attempt.source_ip:
        keys.append(throttle.ip_key(attempt.source_ip))
    gate = throttle.check(session, settings, keys)
    if not gate.allowed:
        _record(session, attempt, None, succeeded=False, reason=gate.reason)
        return LoginResult(refusal=throttle.refuse(gate))

    subject: Customer | StaffUser | None
    if attempt.subject_kind == "customer":
        subject = session.scalar(
            select(Customer).where(Customer.username == attempt.username.strip().lower())
        )
    else:
        subject = session.scalar(
            select(StaffUser).where(StaffUser.username == attempt.username.strip().lower())
        )
    stored = subject.password_hash if subject is not None else None
    valid = verify_password(settings, stored, attempt.password)
    if subject is None or not valid or subject.status != "active":
        return _failed(session, settings, attempt, keys, subject, "bad_credentials")
    if subject.password_reset_required_at is not None:
        # Told only to whoever knows the password; the old password opens nothing.
        _record(session, attempt, subject.id, succeeded=False, reason="password_reset_required")
        return LoginResult(refusal=password_reset_refusal(attempt.subject_kind))

    auth_level = "password"
    if attempt.subject_kind == "staff":
        # Staff MFA is mandatory: no TOTP, no session.
        if not totp.has_totp(session, "staff", subject.id):
            _record(session, attempt, subject.id, succeeded=False, reason="mfa_not_enrolled")
            return LoginResult(
                refusal=SecondFactorRequired(
                    "staff sign-in needs a TOTP authenticator; ask an admin to enrol one"
                )
            )
        if attempt.totp_code is None:
            _record(session, attempt, subject.id, succeeded=False, reason="mfa_missing")
            return LoginResult(refusal=SecondFactorRequired("enter the code from your TOTP app"))
        if not totp.verify_code(session, settings, "staff", subject.id, attempt.totp_code):
            return _failed(session, settings, attempt, keys, subject, "bad_totp")
        auth_level = "password+totp"

    device_id = None
    if attempt.device_id is not None and attempt.subject_kind == "customer":
        device = session.get(Device, attempt.device_id)
        if device is None or device.customer_id != subject.id or device.status != "active":
            _record(session, attempt, subject.id, succeeded=False, reason="bad_device")
            return LoginResult(
                refusal=ValidationProblem("device_id: not an active device of yours")
            )
        device_id = device.id

    throttle.reset(session, keys[0])
    if stored is not None and needs_rehash(settings, stored):
        subject.password_hash = hash_password(settings, attempt.password)
    _record(session, attempt, subject.id, succeeded=True, reason="ok")
    issued = issue(
        session,
        settings,
        attempt.subject_kind,
        subject.id,
        customer_id=subject.id if attempt.subject_kind == "customer" else None,
        device_id=device_id,
        auth_level=auth_level,
        source_ip=attempt.source_ip,
        user_agent=attempt.user_agent,
    )
    actor_key = "customer_id" if attempt.subject_kind == "customer" else "staff_id"
    events.emit(
        session,
        "identity.login_succeeded",
        {
            actor_key: subject.id,
            "subject_kind": attempt.subject_kind,
            "session_id": issued.session_id,
            "auth_level": auth_level,
        },
    )
    return LoginResult(issued=issued)


def password_reset_refusal(subject_kind: str) -> PasswordResetRequired:
    if subject_kind == "staff":
        how = (
            "reset it with your TOTP code: POST /v1/password-reset/confirm with kind 'staff', "
            "your username, factor 'totp', the code and a new password"
        )
    else:
        how = (
            "ask for a code with POST /v1/password-reset (your username; the code goes to your "
            "registered phone or e-mail), then POST /v1/password-reset/confirm with the code "
            "and a new password; in the app: 'Forgot password'"
        )
    return PasswordResetRequired(
        "the security team requires a new password for this account, so the current one no "
        f"longer signs in; {how}. / 为保障账户安全，需重置密码后才能登录。"
    )


def _failed(
    session: Session,
    settings: Settings,
    attempt: Attempt,
    keys: list[str],
    subject: Customer | StaffUser | None,
    reason: str,
) -> LoginResult:
    subject_info = {"subject_kind": attempt.subject_kind}
    throttle.record_failure(
        session, settings, keys[0], limit=settings.login_max_failures, subject=subject_info
    )
    if len(keys) > 1:
        throttle.record_failure(
            session, settings, keys[1], limit=settings.login_ip_max_failures, subject=subject_info
        )
    _record(session, attempt, subject.id if subject else None, succeeded=False, reason=reason)
    events.emit(session, "identity.login_failed", {"subject_kind": attempt.subject_kind})
    # One text for unknown user, wrong password, wrong code and inactive account.
    return LoginResult(refusal=NotAuthenticated(LOGIN_FAILED))


def _record(
    session: Session, attempt: Attempt, subject_id: str | None, *, succeeded: bool, reason: str
) -> None:
    throttle.record_attempt(
        session,
        subject_kind=attempt.subject_kind,
        subject_id=subject_id,
        username=attempt.username,
        source_ip=attempt.source_ip,
        succeeded=succeeded,
        reason=reason,
    )


def refresh(session: Session, settings: Settings, refresh_token: str) -> LoginResult:
    """Trade a refresh token for a new pair; a reused one revokes every session."""
    now = clock.now()
    record = session.scalar(
        select(AuthSession).where(AuthSession.refresh_hash == token_digest(refresh_token))
    )
    if record is None:
        return LoginResult(refusal=NotAuthenticated("the refresh token is not valid; log in"))
    if record.end_reason == "rotated":
        revoked = revoke_all(
            session, record.subject_kind, record.subject_id, reason="refresh_reused"
        )
        events.emit(
            session,
            "security.refresh_token_reused",
            {
                "subject_kind": record.subject_kind,
                "subject_id": record.subject_id,
                "sessions_revoked": revoked,
            },
        )
        return LoginResult(
            refusal=NotAuthenticated("the refresh token was already used; all sessions ended")
        )
    if record.revoked_at is not None:
        return LoginResult(refusal=NotAuthenticated("the session has ended; log in"))
    if record.refresh_expires_at is None or record.refresh_expires_at <= now:
        return LoginResult(refusal=NotAuthenticated("the refresh token expired; log in"))
    record.revoked_at, record.end_reason = now, "rotated"
    issued = issue(
        session,
        settings,
        record.subject_kind,
        record.subject_id,
        customer_id=record.customer_id,
        device_id=record.device_id,
        auth_level=record.auth_level,
        source_ip=record.source_ip,
        user_agent=record.user_agent,
    )
    return LoginResult(issued=issued)


def resolve(session: Session, token: str) -> AuthSession:
    record = session.scalar(
        select(AuthSession).where(AuthSession.token_hash == token_digest(token))
    )
    if record is None or record.revoked_at is not None or record.expires_at <= clock.now():
        raise NotAuthenticated("the session is missing, expired or revoked; log in again")
    return record


def list_active(session: Session, subject_kind: str, subject_id: str) -> list[AuthSession]:
    now = clock.now()
    return list(
        session.scalars(
            select(AuthSession)
            .where(
                AuthSession.subject_kind == subject_kind,
                AuthSession.subject_id == subject_id,
                AuthSession.revoked_at.is_(None),
                (AuthSession.expires_at > now) | (AuthSession.refresh_expires_at > now),
            )
            .order_by(AuthSession.created_at.desc())
        )
    )


def revoke(
    session: Session,
    session_id: str,
    *,
    subject: tuple[str, str] | None = None,
    reason: str = "revoked",
) -> None:
    """End one session; with ``subject``, only if it is theirs."""
    record = session.get(AuthSession, session_id)
    if record is None or (
        subject is not None and (record.subject_kind, record.subject_id) != subject
    ):
        raise NotFound("no such session")
    if record.revoked_at is None:
        record.revoked_at, record.end_reason = clock.now(), reason


def revoke_all(
    session: Session, subject_kind: str, subject_id: str, *, reason: str = "signed_out_everywhere"
) -> int:
    """Sign out everywhere: every live session of the subject."""
    result = session.execute(
        update(AuthSession)
        .where(
            AuthSession.subject_kind == subject_kind,
            AuthSession.subject_id == subject_id,
            AuthSession.revoked_at.is_(None),
        )
        .values(revoked_at=clock.now(), end_reason=reason)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
