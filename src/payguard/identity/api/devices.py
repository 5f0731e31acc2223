"""Routes of identity: devices, step-up challenges and the evidence of signed instructions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from sqlalchemy.orm import Session

from payguard.errors import ChallengeFailed, NotFound
from payguard.identity import devices, instructions, stepup
from payguard.identity.models import AuthChallenge, Device
from payguard.identity.permissions import Permission
from payguard.identity.schemas import (
    ChallengeCodeRequest,
    ChallengeCodeSent,
    ChallengeOut,
    ChallengeProof,
    DeviceOut,
    DeviceRegistration,
    DeviceRename,
    EvidenceOut,
)
from payguard.settings import Settings
from payguard.web import CUSTOMERS, CustomerDep, ServicesDep, access

router = APIRouter(prefix="/v1", tags=["identity"])


def _device_out(session: Session, settings: Settings, device: Device) -> DeviceOut:
    return DeviceOut(
        id=device.id,
        name=devices.name_of(session, settings, device),
        algorithm=device.algorithm,
        key_fingerprint=device.key_fingerprint,
        platform=device.platform,
        status=device.status,
        is_new=devices.is_new(device),
        created_at=device.created_at,
        last_used_at=device.last_used_at,
        revoked_at=device.revoked_at,
    )


def _challenge_out(challenge: AuthChallenge) -> ChallengeOut:
    return ChallengeOut(
        id=challenge.id,
        status=challenge.status,
        reasons=[reason for reason in (challenge.reason or "").split(",") if reason],
        allowed_factors=challenge.allowed_factors or [],
        instruction_hash=challenge.instruction_hash,
        expires_at=challenge.expires_at,
        factor_used=challenge.factor_used,
    )


@router.post(
    "/devices",
    status_code=status.HTTP_201_CREATED,
    summary="Register this device's public key (needs a second factor)",
    **access(audience=CUSTOMERS),
)
def register_device(
    body: DeviceRegistration, principal: CustomerDep, svc: ServicesDep
) -> DeviceOut:
    instructions.key_fingerprint(body.public_key, body.algorithm)  # a bad key costs no code
    proven = svc.db.transact(
        lambda session: devices.prove_for_device(
            session, svc.settings, principal.subject_id, body.factor, body.code
        )
    )
    if not proven:
        raise devices.refuse_unproven()
    return svc.db.transact(
        lambda session: _device_out(
            session,
            svc.settings,
            devices.register(
                session,
                svc.settings,
                customer_id=principal.subject_id,
                session_id=principal.session_id,
                name=body.name,
                algorithm=body.algorithm,
                public_key=body.public_key,
                platform=body.platform,
                factor=body.factor,
            ),
        )
    )


@router.get("/devices", summary="Your devices", **access(audience=CUSTOMERS))
def list_devices(principal: CustomerDep, svc: ServicesDep) -> list[DeviceOut]:
    with svc.db.read() as session:
        return [
            _device_out(session, svc.settings, device)
            for device in devices.list_devices(session, principal.subject_id)
        ]


@router.patch("/devices/{device_id}", summary="Rename a device", **access(audience=CUSTOMERS))
def rename_device(
    device_id: str, body: DeviceRename, principal: CustomerDep, svc: ServicesDep
) -> DeviceOut:
    return svc.db.transact(
        lambda session: _device_out(
            session,
            svc.settings,
            devices.rename(session, svc.settings, principal.subject_id, device_id, body.name),
        )
    )


@router.delete(
    "/devices/{device_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a device and the sessions bound to it",
    **access(audience=CUSTOMERS),
)
def revoke_device(device_id: str, principal: CustomerDep, svc: ServicesDep) -> None:
    svc.db.transact(
        lambda session: devices.revoke(
            session, svc.settings, principal.subject_id, device_id, actor=principal.subject_id
        )
    )


@router.get(
    "/challenges/{challenge_id}",
    summary="A step-up challenge of yours",
    **access(audience=CUSTOMERS),
)
def get_challenge(challenge_id: str, principal: CustomerDep, svc: ServicesDep) -> ChallengeOut:
    with svc.db.read() as session:
        return _challenge_out(stepup.get(session, principal.subject_id, challenge_id))


@router.post(
    "/challenges/{challenge_id}/code",
    summary="Send a one-time code for this challenge by SMS or e-mail",
    **access(audience=CUSTOMERS),
)
def send_challenge_code(
    challenge_id: str, body: ChallengeCodeRequest, principal: CustomerDep, svc: ServicesDep
) -> ChallengeCodeSent:
    sent_to = svc.db.transact(
        lambda session: stepup.send_code(
            session, svc.settings, principal.subject_id, challenge_id, body.channel
        )
    )
    return ChallengeCodeSent(sent_to=sent_to)


@router.post(
    "/challenges/{challenge_id}/passkey-options",
    summary="WebAuthn request options whose challenge contains the instruction hash",
    **access(audience=CUSTOMERS),
)
def challenge_passkey_options(
    challenge_id: str, principal: CustomerDep, svc: ServicesDep
) -> dict[str, Any]:
    return svc.db.transact(
        lambda session: stepup.passkey_options(
            session, svc.settings, principal.subject_id, challenge_id
        )
    )


@router.post(
    "/challenges/{challenge_id}/verify",
    summary="Complete a step-up challenge",
    **access(audience=CUSTOMERS),
)
def verify_challenge(
    challenge_id: str, body: ChallengeProof, principal: CustomerDep, svc: ServicesDep
) -> ChallengeOut:
    # The proof is checked and a failure recorded (attempt counts, events) in one
    # transaction that commits either way; the refusal is raised after it.
    passed = svc.db.transact(
        lambda session: stepup.complete(
            session,
            svc.settings,
            principal.subject_id,
            challenge_id,
            factor=body.factor,
            code=body.code,
            credential=body.credential,
        )
    )
    if not passed:
        raise ChallengeFailed("the proof was not accepted; try again or use another factor")
    with svc.db.read() as session:
        return _challenge_out(stepup.get(session, principal.subject_id, challenge_id))


@router.get(
    "/payments/{payment_id}/evidence",
    summary="Re-verify the signed instruction of a payment (staff)",
    **access(Permission.EVIDENCE_READ),
)
def payment_evidence(payment_id: str, svc: ServicesDep) -> EvidenceOut:
    with svc.db.read() as session:
        check = instructions.check_evidence(session, svc.settings, payment_id)
    if check is None:
        raise NotFound(f"payment '{payment_id}' has no signed instruction on record")
    return EvidenceOut(**check.__dict__)
