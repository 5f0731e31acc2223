"""Forced password reset, and the reset path that works while signed out.

When an incident shows a password is known to someone else (phishing, a leaked staff or
merchant password, credential stuffing), the security team *forces* a reset
(:func:`force`): every session of the subject ends and the password stops signing in —
login answers ``password-reset-required`` (only to whoever typed the right password, so
the flag does not reveal accounts) and says how to reset.

Why not "log in with the old password, then change it": whoever stole the password would
do exactly that and keep the account. The old password proves nothing any more, so the
reset is proven by a second factor the thief is not assumed to hold:

- customers: a one-time code sent to the phone (or e-mail) registered on the account
  (:func:`request_code`), or a TOTP code, or a recovery code;
- staff: their TOTP code (staff MFA is mandatory).

:func:`confirm` is throttled like a login (the same per-account lock), answers the same
refusal for an unknown user and a wrong code, refuses the old password as the new one,
ends every session, clears the flag and records ``identity.password_reset``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from payguard import clock
from payguard.errors import NotAuthenticated, NotFound, ProblemError, ValidationProblem
from payguard.events import service as events
from payguard.identity import devices, otp, sessions, throttle
from payguard.identity.models import Customer, StaffUser
from payguard.identity.passwords import check_password_policy, hash_password, verify_password
from payguard.settings import Settings

PURPOSE = "password_reset"
RESET_FAILED = "the username or code is not correct"
FACTORS = {"customer": ("otp", "totp", "recovery_code"), "staff": ("totp",)}


def _subject(session: Session, kind: str, subject_id: str) -> Customer | StaffUser:
    if kind == "customer":
        customer = session.get(Customer, subject_id)
        if customer is None:
            raise NotFound(f"no customer '{subject_id}'")
        return customer
    if kind == "staff":
        staff = session.get(StaffUser, subject_id)
        if staff is None:
            raise NotFound(f"no staff member '{subject_id}'")
        return staff
    raise ValidationProblem("subject: customer or staff")


def force(
    session: Session,
    *,
    subject_kind: str,
    subject_id: str,
    by: str,
    reason: str,
    incident_id: str | None = None,
) -> dict[str, object]:
    """Flag the password as compromised: it signs in no more, every session ends."""
    subject = _subject(session, subject_kind, subject_id)
    already = subject.password_reset_required_at is not None
    if not already:
        subject.password_reset_required_at = clock.now()
    ended = sessions.revoke_all(session, subject_kind, subject_id, reason="password_reset")
    key = "customer_id" if subject_kind == "customer" else "staff_id"
    events.emit(
        session,
        "controls.password_reset_forced",
        {
            key: subject_id,
            "subject_kind": subject_kind,
            "sessions_revoked": ended,
            "already_required": already,
            "reason": reason[:200],
            "incident_id": incident_id,
            "by_staff_id": by if by.startswith("stf_") else None,
            "actor": by,
        },
    )
    return {"already_required": already, "sessions_revoked": ended}


def is_required(session: Session, subject_kind: str, subject_id: str) -> bool:
    return _subject(session, subject_kind, subject_id).password_reset_required_at is not None


def request_code(session: Session, settings: Settings, *, username: str, channel: str) -> None:
    """Send a reset code to the customer's registered phone (sms) or e-mail.

    Says nothing about whether the account exists or has that contact: the caller always
    gets the same answer."""
    from payguard.identity import service as identity

    if channel not in ("sms", "email"):
        raise ValidationProblem("channel: sms or email")
    customer = session.scalar(select(Customer).where(Customer.username == username.lower()))
    if customer is None or customer.status != "active":
        return
    contact = identity.personal_data(session, settings, customer)
    destination = contact.phone if channel == "sms" else contact.email
    if not destination:
        return
    try:
        otp.issue_code(session, settings, "customer", customer.id, channel, PURPOSE, destination)
    except otp.TooManyCodes:
        return  # the same answer; the hourly cap still holds


@dataclass(frozen=True)
class ResetResult:
    """Returned, not raised, so that a failure's count commits with it (like a login)."""

    refusal: ProblemError | None = None
    sessions_ended: int = 0


def confirm(
    session: Session,
    settings: Settings,
    *,
    subject_kind: str,
    username: str,
    factor: str,
    code: str,
    new_password: str,
) -> ResetResult:
    if subject_kind not in FACTORS:
        raise ValidationProblem("kind: customer or staff")
    if factor not in FACTORS[subject_kind]:
        raise ValidationProblem(f"factor: one of {', '.join(FACTORS[subject_kind])}")
    check_password_policy(new_password, username=username.strip().lower())
    key = throttle.account_key(subject_kind, username)
    gate = throttle.check(session, settings, [key])
    if not gate.allowed:
        return ResetResult(refusal=throttle.refuse(gate))
    wanted = username.strip().lower()
    subject: Customer | StaffUser | None = (
        session.scalar(select(Customer).where(Customer.username == wanted))
        if subject_kind == "customer"
        else session.scalar(select(StaffUser).where(StaffUser.username == wanted))
    )
    proven = (
        subject is not None
        and subject.status == "active"
        and devices.prove_second_factor(
            session,
            settings,
            subject_kind=subject_kind,
            subject_id=subject.id,
            factor=factor,
            code=code,
            purpose=PURPOSE,
        )
    )
    if not proven or subject is None:
        throttle.record_failure(
            session,
            settings,
            key,
            limit=settings.login_max_failures,
            subject={"subject_kind": subject_kind},
        )
        events.emit(session, "identity.password_reset_failed", {"subject_kind": subject_kind})
        return ResetResult(refusal=NotAuthenticated(RESET_FAILED))
    if verify_password(settings, subject.password_hash, new_password):
        raise ValidationProblem("new_password: choose a password you have not used here before")
    forced = subject.password_reset_required_at is not None
    subject.password_hash = hash_password(settings, new_password)
    subject.password_reset_required_at = None
    if isinstance(subject, Customer):
        subject.password_changed_at = clock.now()
    ended = sessions.revoke_all(session, subject_kind, subject.id, reason="password_reset")
    throttle.reset(session, key)
    id_key = "customer_id" if subject_kind == "customer" else "staff_id"
    events.emit(
        session,
        "identity.password_reset",
        {id_key: subject.id, "subject_kind": subject_kind, "forced": forced, "factor": factor},
    )
    return ResetResult(sessions_ended=ended)


__all__ = ["FACTORS", "PURPOSE", "ResetResult", "confirm", "force", "is_required", "request_code"]
