"""WebAuthn passkeys: the "biometric" factor, through the ``webauthn`` package.

User verification is required on every ceremony, so a passkey proves possession of
the authenticator *and* the fingerprint, face or PIN that unlocks it. The signature
counter is checked on every assertion: a counter that does not move forward means a
cloned authenticator, and the assertion is refused and recorded.

Challenges are server-issued and single use. For a payment step-up the challenge bytes
end with the instruction's SHA-256 (see ``stepup.create``), so the assertion signs
over the very instruction it approves (PSD2 dynamic linking).
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

import webauthn
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidRegistrationResponse,
    WebAuthnException,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from payguard import clock, ids
from payguard.errors import Conflict, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.identity.models import AuthChallenge, Passkey
from payguard.settings import Settings

REGISTER = "passkey_register"
CEREMONY_SECONDS = 300
MAX_PASSKEYS = 10


def _descriptors(session: Session, subject_kind: str, subject_id: str) -> list[Any]:
    rows = list_passkeys(session, subject_kind, subject_id)
    return [
        PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(row.credential_id))
        for row in rows
    ]


def list_passkeys(session: Session, subject_kind: str, subject_id: str) -> list[Passkey]:
    return list(
        session.scalars(
            select(Passkey)
            .where(Passkey.subject_kind == subject_kind, Passkey.subject_id == subject_id)
            .order_by(Passkey.created_at)
        )
    )


def begin_registration(
    session: Session,
    settings: Settings,
    subject_kind: str,
    subject_id: str,
    *,
    user_name: str,
    display_name: str,
) -> tuple[str, dict[str, Any]]:
    """Creation options for ``navigator.credentials.create``; returns (challenge id, options)."""
    if len(list_passkeys(session, subject_kind, subject_id)) >= MAX_PASSKEYS:
        raise Conflict(f"at most {MAX_PASSKEYS} passkeys; remove one first")
    challenge = _new_challenge(session, subject_kind, subject_id, REGISTER, secrets.token_bytes(32))
    options = webauthn.generate_registration_options(
        rp_id=settings.webauthn_rp_id,
        rp_name=settings.webauthn_rp_name,
        user_name=user_name,
        user_id=subject_id.encode(),
        user_display_name=display_name,
        challenge=challenge.challenge,
        timeout=CEREMONY_SECONDS * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(session, subject_kind, subject_id),
    )
    parsed: dict[str, Any] = json.loads(webauthn.options_to_json(options))
    return challenge.id, parsed


def finish_registration(
    session: Session,
    settings: Settings,
    subject_kind: str,
    subject_id: str,
    *,
    challenge_id: str,
    credential: dict[str, Any],
    name: str,
) -> Passkey:
    """Verify the attestation against the issued challenge and store the credential."""
    challenge = _take_challenge(session, subject_kind, subject_id, challenge_id, REGISTER)
    try:
        verified = webauthn.verify_registration_response(
            credential=credential,
            expected_challenge=challenge.challenge,
            expected_rp_id=settings.webauthn_rp_id,
            expected_origin=settings.webauthn_origin,
            require_user_verification=True,
        )
    except (InvalidRegistrationResponse, WebAuthnException, ValueError, KeyError) as error:
        events.emit(
            session,
            "identity.passkey_registration_failed",
            {"subject_kind": subject_kind, "subject_id": subject_id},
        )
        detail = f"credential: the attestation was not accepted ({error})"
        raise ValidationProblem(detail) from error
    response = credential.get("response") or {}
    transports = response.get("transports") if isinstance(response, dict) else None
    passkey = Passkey(
        id=ids.new_id("passkey"),
        subject_kind=subject_kind,
        subject_id=subject_id,
        credential_id=bytes_to_base64url(verified.credential_id),
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        name=name,
        aaguid=verified.aaguid,
        transports=[str(item) for item in transports] if isinstance(transports, list) else None,
        created_at=clock.now(),
    )
    session.add(passkey)
    try:
        session.flush()
    except IntegrityError as error:
        raise Conflict("this passkey is already registered") from error
    events.emit(
        session,
        "identity.passkey_registered",
        {"subject_kind": subject_kind, "subject_id": subject_id, "passkey_id": passkey.id},
    )
    return passkey


def begin_authentication(
    session: Session,
    settings: Settings,
    subject_kind: str,
    subject_id: str,
    *,
    challenge: bytes,
    purpose: str,
) -> dict[str, Any]:
    """Request options for ``navigator.credentials.get`` over the given challenge bytes."""
    allowed = _descriptors(session, subject_kind, subject_id)
    if not allowed:
        raise ValidationProblem("factor: no passkey is registered")
    options = webauthn.generate_authentication_options(
        rp_id=settings.webauthn_rp_id,
        challenge=challenge,
        timeout=CEREMONY_SECONDS * 1000,
        allow_credentials=allowed,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    parsed: dict[str, Any] = json.loads(webauthn.options_to_json(options))
    parsed["purpose"] = purpose
    return parsed


def finish_authentication(
    session: Session,
    settings: Settings,
    subject_kind: str,
    subject_id: str,
    credential: dict[str, Any],
    *,
    expected_challenge: bytes,
) -> bool:
    """Check an assertion made over ``expected_challenge`` by one of the subject's passkeys.

    False (and a security event) for a wrong challenge, origin, signature, missing user
    verification or a counter that did not move forward."""
    raw_id = credential.get("rawId") or credential.get("id")
    passkey = (
        session.scalar(
            select(Passkey).where(
                Passkey.subject_kind == subject_kind,
                Passkey.subject_id == subject_id,
                Passkey.credential_id == raw_id,
            )
        )
        if isinstance(raw_id, str)
        else None
    )
    if passkey is None:
        _refused(session, subject_kind, subject_id, None, "unknown credential")
        return False
    try:
        verified = webauthn.verify_authentication_response(
            credential=credential,
            expected_challenge=expected_challenge,
            expected_rp_id=settings.webauthn_rp_id,
            expected_origin=settings.webauthn_origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except (InvalidAuthenticationResponse, WebAuthnException, ValueError, KeyError) as error:
        _refused(session, subject_kind, subject_id, passkey.id, str(error))
        return False
    # Conditional update: two racing assertions with the same counter cannot both pass.
    moved = session.execute(
        update(Passkey)
        .where(Passkey.id == passkey.id, Passkey.sign_count == passkey.sign_count)
        .values(sign_count=verified.new_sign_count, last_used_at=clock.now())
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        _refused(session, subject_kind, subject_id, passkey.id, "counter raced")
        return False
    return True


def remove(session: Session, subject_kind: str, subject_id: str, passkey_id: str) -> None:
    passkey = session.get(Passkey, passkey_id)
    if passkey is None or (passkey.subject_kind, passkey.subject_id) != (subject_kind, subject_id):
        raise NotFound("no such passkey")
    session.delete(passkey)
    events.emit(
        session,
        "identity.passkey_removed",
        {"subject_kind": subject_kind, "subject_id": subject_id, "passkey_id": passkey_id},
    )


def _refused(
    session: Session, subject_kind: str, subject_id: str, passkey_id: str | None, why: str
) -> None:
    events.emit(
        session,
        "identity.passkey_assertion_refused",
        {
            "subject_kind": subject_kind,
            "subject_id": subject_id,
            "passkey_id": passkey_id,
            "reason": why[:200],
        },
    )


def _new_challenge(
    session: Session, subject_kind: str, subject_id: str, purpose: str, challenge: bytes
) -> AuthChallenge:
    now = clock.now()
    row = AuthChallenge(
        id=ids.new_id("challenge"),
        subject_kind=subject_kind,
        subject_id=subject_id,
        purpose=purpose,
        challenge=challenge,
        status="pending",
        created_at=now,
        expires_at=now + timedelta(seconds=CEREMONY_SECONDS),
    )
    session.add(row)
    session.flush()
    return row


def _take_challenge(
    session: Session, subject_kind: str, subject_id: str, challenge_id: str, purpose: str
) -> AuthChallenge:
    """The pending, unexpired ceremony challenge, marked used so it cannot serve twice."""
    challenge = session.get(AuthChallenge, challenge_id)
    if (
        challenge is None
        or (challenge.subject_kind, challenge.subject_id, challenge.purpose)
        != (subject_kind, subject_id, purpose)
        or challenge.status != "pending"
    ):
        raise NotFound("no such pending passkey ceremony; start again")
    if challenge.expires_at <= clock.now():
        raise ValidationProblem("challenge_id: the ceremony expired; start again")
    challenge.status = "used"
    challenge.used_at = clock.now()
    return challenge
