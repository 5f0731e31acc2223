"""Step-up challenges bound to one payment instruction (dynamic linking, PSD2 RTS art. 5).

A challenge carries the instruction hash. A TOTP or one-time code is accepted for the
challenge only, and the challenge only for the instruction with that hash. For a passkey
the WebAuthn challenge bytes are 16 random bytes followed by the 32 bytes of the
instruction hash, so the authenticator's signature itself covers the instruction.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.errors import ChallengeFailed, ChallengeRequired, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.identity.models import AuthChallenge, Passkey
from payguard.settings import Settings

PURPOSE = "step_up"


def existing_factors(session: Session, subject_kind: str, subject_id: str) -> list[str]:
    """The second factors a customer or staff member has, strongest first."""
    from payguard.identity import totp
    from payguard.identity.service import get_customer

    factors: list[str] = []
    has_passkey = session.scalar(
        select(Passkey.id).where(
            Passkey.subject_kind == subject_kind, Passkey.subject_id == subject_id
        )
    )
    if has_passkey:
        factors.append("passkey")
    if totp.has_totp(session, subject_kind, subject_id):
        factors.append("totp")
    if subject_kind == "customer":
        customer = get_customer(session, subject_id)
        if customer.phone:
            factors.append("sms")
        if customer.email:
            factors.append("email")
    return factors


def allowed_factors(session: Session, customer_id: str) -> list[str]:
    """The factors this customer can complete a step-up challenge with."""
    return existing_factors(session, "customer", customer_id)


def create(
    session: Session,
    settings: Settings,
    *,
    customer_id: str,
    instruction_hash: str,
    reasons: list[str],
) -> AuthChallenge:
    now = clock.now()
    factors = allowed_factors(session, customer_id)
    challenge = AuthChallenge(
        id=ids.new_id("challenge"),
        subject_kind="customer",
        subject_id=customer_id,
        purpose=PURPOSE,
        challenge=secrets.token_bytes(16) + bytes.fromhex(instruction_hash),
        instruction_hash=instruction_hash,
        reason=",".join(reasons)[:64],
        allowed_factors=factors,
        status="pending",
        created_at=now,
        expires_at=now + timedelta(seconds=settings.step_up_ttl_seconds),
    )
    session.add(challenge)
    session.flush()
    events.emit(
        session,
        "identity.step_up_required",
        {"customer_id": customer_id, "challenge_id": challenge.id, "reasons": reasons},
    )
    return challenge


def required_problem(challenge: AuthChallenge, reasons: list[str]) -> ChallengeRequired:
    factors = challenge.allowed_factors or []
    hint = (
        "complete it with one of: " + ", ".join(factors)
        if factors
        else "enrol a second factor (TOTP or a passkey) first"
    )
    return ChallengeRequired(
        f"this payment needs step-up authentication; {hint}, then submit the same "
        "instruction again, re-signed, with challenge_id",
        challenge_id=challenge.id,
        allowed_factors=factors,
        reasons=reasons,
        instruction_hash=challenge.instruction_hash,
        expires_at=challenge.expires_at.isoformat(),
    )


def get(session: Session, customer_id: str, challenge_id: str) -> AuthChallenge:
    challenge = session.get(AuthChallenge, challenge_id)
    if (
        challenge is None
        or challenge.purpose != PURPOSE
        or challenge.subject_kind != "customer"
        or challenge.subject_id != customer_id
    ):
        raise NotFound(f"no challenge '{challenge_id}' of yours")
    return challenge


def _pending(session: Session, customer_id: str, challenge_id: str) -> AuthChallenge:
    challenge = get(session, customer_id, challenge_id)
    if challenge.status != "pending":
        raise ChallengeFailed("this challenge is already completed or used")
    if challenge.expires_at <= clock.now():
        raise ChallengeFailed("this challenge has expired; submit the instruction again")
    return challenge


def send_code(
    session: Session, settings: Settings, customer_id: str, challenge_id: str, channel: str
) -> str:
    """Send a one-time code for this challenge; returns the masked destination."""
    from payguard.identity import otp
    from payguard.identity.service import get_customer, personal_data

    challenge = _pending(session, customer_id, challenge_id)
    if channel not in ("sms", "email") or channel not in (challenge.allowed_factors or []):
        raise ValidationProblem("channel: sms or email, as offered by the challenge")
    contact = personal_data(session, settings, get_customer(session, customer_id))
    destination = contact.phone if channel == "sms" else contact.email
    assert destination is not None  # allowed_factors only offers channels on file
    otp.issue_code(
        session,
        settings,
        "customer",
        customer_id,
        channel,
        PURPOSE,
        destination,
        challenge_id=challenge.id,
    )
    return otp.mask_destination(destination)


def passkey_options(
    session: Session, settings: Settings, customer_id: str, challenge_id: str
) -> dict[str, Any]:
    from payguard.identity import passkeys

    challenge = _pending(session, customer_id, challenge_id)
    return passkeys.begin_authentication(
        session,
        settings,
        "customer",
        customer_id,
        challenge=challenge.challenge,
        purpose=PURPOSE,
    )


def complete(
    session: Session,
    settings: Settings,
    customer_id: str,
    challenge_id: str,
    *,
    factor: str,
    code: str | None = None,
    credential: dict[str, Any] | None = None,
) -> bool:
    """Check the proof; on success the challenge is passed (and usable once).

    A wrong proof returns False rather than raising, so the caller can commit the spent
    attempt before refusing."""
    from payguard.identity import otp, totp

    challenge = _pending(session, customer_id, challenge_id)
    if factor not in (challenge.allowed_factors or []):
        raise ValidationProblem(f"factor: one of {', '.join(challenge.allowed_factors or [])}")
    if factor == "passkey":
        from payguard.identity import passkeys

        if credential is None:
            raise ValidationProblem("credential: the WebAuthn assertion")
        ok = passkeys.finish_authentication(
            session,
            settings,
            "customer",
            customer_id,
            credential,
            expected_challenge=challenge.challenge,
        )
    elif code is None:
        raise ValidationProblem("code: the code from the app, SMS or e-mail")
    elif factor == "totp":
        ok = totp.verify_code(session, settings, "customer", customer_id, code)
    else:
        ok = otp.verify_code(
            session, settings, "customer", customer_id, code, PURPOSE, challenge_id=challenge.id
        )
    if not ok:
        events.emit(
            session,
            "identity.step_up_failed",
            {"customer_id": customer_id, "challenge_id": challenge.id, "factor": factor},
        )
        return False
    challenge.status = "passed"
    challenge.factor_used = factor
    challenge.passed_at = clock.now()
    events.emit(
        session,
        "identity.step_up_passed",
        {"customer_id": customer_id, "challenge_id": challenge.id, "factor": factor},
    )
    return True


def consume(session: Session, customer_id: str, challenge_id: str, instruction_hash: str) -> bool:
    """Use a passed challenge for this instruction, once. False if it does not fit."""
    result = session.execute(
        update(AuthChallenge)
        .where(
            AuthChallenge.id == challenge_id,
            AuthChallenge.subject_kind == "customer",
            AuthChallenge.subject_id == customer_id,
            AuthChallenge.purpose == PURPOSE,
            AuthChallenge.status == "passed",
            AuthChallenge.instruction_hash == instruction_hash,
            AuthChallenge.expires_at > clock.now(),
        )
        .values(status="used", used_at=clock.now())
    )
    return int(getattr(result, "rowcount", 0) or 0) == 1
