"""Routes of identity: second factors (TOTP, recovery codes, one-time codes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from payguard.errors import NotAuthenticated, SecondFactorRequired, ValidationProblem
from payguard.identity import devices, otp, passkeys, recovery, stepup, totp
from payguard.identity.models import Passkey
from payguard.identity.schemas import (
    CodeBody,
    FactorsOut,
    OtpRequest,
    OtpSent,
    PasskeyOptionsOut,
    PasskeyOut,
    PasskeyRegistration,
    RecoveryCodesOut,
    TotpStarted,
)
from payguard.identity.service import get_customer, personal_data
from payguard.web import SIGNED_IN, PrincipalDep, ServicesDep, access

router = APIRouter(prefix="/v1", tags=["identity"])


@router.get("/factors", summary="Your second factors", **access(audience=SIGNED_IN))
def factors(principal: PrincipalDep, svc: ServicesDep) -> FactorsOut:
    with svc.db.read() as session:
        phone = email = None
        if principal.kind == "customer":
            contact = personal_data(
                session, svc.settings, get_customer(session, principal.subject_id)
            )
            phone = otp.mask_destination(contact.phone) if contact.phone else None
            email = otp.mask_destination(contact.email) if contact.email else None
        passkey_count = session.scalar(
            select(func.count())
            .select_from(Passkey)
            .where(
                Passkey.subject_kind == principal.kind, Passkey.subject_id == principal.subject_id
            )
        )
        return FactorsOut(
            totp=totp.has_totp(session, principal.kind, principal.subject_id),
            recovery_codes_left=recovery.remaining(session, principal.kind, principal.subject_id),
            passkeys=int(passkey_count or 0),
            phone=phone,
            email=email,
        )


@router.post(
    "/factors/totp",
    status_code=status.HTTP_201_CREATED,
    summary="Start TOTP enrolment",
    **access(audience=SIGNED_IN),
)
def start_totp(principal: PrincipalDep, svc: ServicesDep) -> TotpStarted:
    enrolment = svc.db.transact(
        lambda session: totp.enrol(
            session, svc.settings, principal.kind, principal.subject_id, principal.subject_id
        )
    )
    return TotpStarted(
        secret=enrolment.secret, otpauth_uri=enrolment.uri, qr_png_url="/v1/factors/totp/qr.png"
    )


@router.get(
    "/factors/totp/qr.png",
    summary="QR code (PNG) of the pending TOTP enrolment",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
    **access(audience=SIGNED_IN),
)
def totp_qr(principal: PrincipalDep, svc: ServicesDep) -> Response:
    with svc.db.read() as session:
        secret = totp.pending_secret(session, svc.settings, principal.kind, principal.subject_id)
    png = totp.pending(svc.settings, secret, principal.subject_id).qr_png
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post(
    "/factors/totp/confirm",
    summary="Confirm TOTP; returns recovery codes once",
    **access(audience=SIGNED_IN),
)
def confirm_totp(body: CodeBody, principal: PrincipalDep, svc: ServicesDep) -> RecoveryCodesOut:
    codes = svc.db.transact(
        lambda session: totp.confirm(
            session, svc.settings, principal.kind, principal.subject_id, body.code
        )
    )
    return RecoveryCodesOut(recovery_codes=codes)


@router.post(
    "/factors/recovery-codes",
    summary="New recovery codes (needs a TOTP code)",
    **access(audience=SIGNED_IN),
)
def regenerate_recovery_codes(
    body: CodeBody, principal: PrincipalDep, svc: ServicesDep
) -> RecoveryCodesOut:
    def work(session: Session) -> list[str] | None:
        if not totp.verify_code(
            session, svc.settings, principal.kind, principal.subject_id, body.code
        ):
            return None
        return recovery.generate(session, svc.settings, principal.kind, principal.subject_id)

    codes = svc.db.transact(work)
    if codes is None:
        raise NotAuthenticated("the TOTP code is not valid")
    return RecoveryCodesOut(recovery_codes=codes)


@router.post(
    "/factors/otp",
    summary="Send a one-time code to your phone or e-mail",
    **access(audience=SIGNED_IN),
)
def send_otp(body: OtpRequest, principal: PrincipalDep, svc: ServicesDep) -> OtpSent:
    if principal.kind != "customer":
        raise ValidationProblem("one-time codes go to customers' phones and e-mail")

    def work(session: Session) -> str:
        contact = personal_data(session, svc.settings, get_customer(session, principal.subject_id))
        destination = contact.phone if body.channel == "sms" else contact.email
        if not destination:
            raise ValidationProblem(
                f"no {'phone number' if body.channel == 'sms' else 'e-mail'} on file"
            )
        otp.issue_code(
            session,
            svc.settings,
            "customer",
            principal.subject_id,
            body.channel,
            body.purpose,
            destination,
        )
        return otp.mask_destination(destination)

    sent_to = svc.db.transact(work)
    return OtpSent(sent_to=sent_to, expires_in=svc.settings.otp_ttl_seconds)


@router.post(
    "/factors/passkeys/options",
    status_code=status.HTTP_201_CREATED,
    summary="Start registering a passkey (WebAuthn creation options)",
    **access(audience=SIGNED_IN),
)
def start_passkey(principal: PrincipalDep, svc: ServicesDep) -> PasskeyOptionsOut:
    def work(session: Session) -> tuple[str, dict[str, Any]]:
        name = _display_name(session, principal.kind, principal.subject_id)
        return passkeys.begin_registration(
            session,
            svc.settings,
            principal.kind,
            principal.subject_id,
            user_name=name,
            display_name=name,
        )

    challenge_id, options = svc.db.transact(work)
    return PasskeyOptionsOut(challenge_id=challenge_id, options=options)


@router.post(
    "/factors/passkeys",
    status_code=status.HTTP_201_CREATED,
    summary="Finish registering a passkey (the authenticator's attestation)",
    **access(audience=SIGNED_IN),
)
def finish_passkey(
    body: PasskeyRegistration, principal: PrincipalDep, svc: ServicesDep
) -> PasskeyOut:
    # Adding a factor with only a password would let a stolen password mint its own
    # step-up factor: once a subject has any second factor, the enrolment must prove one.
    needs_proof = svc.db.transact(
        lambda session: bool(stepup.existing_factors(session, principal.kind, principal.subject_id))
    )
    if needs_proof:
        if body.factor is None or body.code is None:
            raise SecondFactorRequired("adding a passkey needs factor and code of a current factor")
        factor, code = body.factor, body.code
        proven = svc.db.transact(
            lambda session: devices.prove_second_factor(
                session,
                svc.settings,
                subject_kind=principal.kind,
                subject_id=principal.subject_id,
                factor=factor,
                code=code,
                purpose="enrol",
            )
        )
        if not proven:
            raise SecondFactorRequired("the second-factor code is not valid")
    passkey = svc.db.transact(
        lambda session: passkeys.finish_registration(
            session,
            svc.settings,
            principal.kind,
            principal.subject_id,
            challenge_id=body.challenge_id,
            credential=body.credential,
            name=body.name,
        )
    )
    return PasskeyOut.model_validate(passkey, from_attributes=True)


@router.get("/factors/passkeys", summary="Your passkeys", **access(audience=SIGNED_IN))
def list_passkeys(principal: PrincipalDep, svc: ServicesDep) -> list[PasskeyOut]:
    with svc.db.read() as session:
        rows = passkeys.list_passkeys(session, principal.kind, principal.subject_id)
        return [PasskeyOut.model_validate(row, from_attributes=True) for row in rows]


@router.delete(
    "/factors/passkeys/{passkey_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a passkey",
    **access(audience=SIGNED_IN),
)
def remove_passkey(passkey_id: str, principal: PrincipalDep, svc: ServicesDep) -> Response:
    svc.db.transact(
        lambda session: passkeys.remove(session, principal.kind, principal.subject_id, passkey_id)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _display_name(session: Session, kind: str, subject_id: str) -> str:
    if kind == "customer":
        return get_customer(session, subject_id).username
    return subject_id
