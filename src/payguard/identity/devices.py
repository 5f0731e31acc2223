"""Device binding: the app's key pair, registered after a password and a second factor.

A registered device signs payment instructions. It starts as *new* (no payment yet):
its first payment needs step-up, and the risk engine sees it as new. Registering a
device notifies the customer, so a takeover that adds a device does not go unseen.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.crypto.envelope import envelope_for, is_sealed
from payguard.errors import Conflict, NotFound, SecondFactorRequired, ValidationProblem
from payguard.events import service as events
from payguard.identity import instructions
from payguard.identity.models import AuthSession, Device
from payguard.settings import Settings

MAX_ACTIVE_DEVICES = 10


def prove_second_factor(
    session: Session,
    settings: Settings,
    *,
    subject_kind: str,
    subject_id: str,
    factor: str,
    code: str,
    purpose: str,
    challenge_id: str | None = None,
) -> bool:
    """Check a TOTP, one-time or recovery code of the subject; each is single use."""
    from payguard.identity import otp, recovery, totp

    if factor == "totp":
        return totp.verify_code(session, settings, subject_kind, subject_id, code)
    if factor == "recovery_code":
        return recovery.use_code(session, subject_kind, subject_id, code)
    if factor in ("otp", "sms", "email"):
        return otp.verify_code(
            session, settings, subject_kind, subject_id, code, purpose, challenge_id=challenge_id
        )
    raise ValidationProblem("factor: one of totp, otp, recovery_code")


def prove_for_device(
    session: Session, settings: Settings, customer_id: str, factor: str, code: str
) -> bool:
    """The second-factor check of a device registration, in a transaction of its own so a
    wrong guess is counted (and recorded) even though the registration is refused."""
    proven = prove_second_factor(
        session,
        settings,
        subject_kind="customer",
        subject_id=customer_id,
        factor=factor,
        code=code,
        purpose="device",
    )
    if not proven:
        events.emit(
            session, "identity.second_factor_failed", {"customer_id": customer_id, "for": "device"}
        )
    return proven


def refuse_unproven() -> SecondFactorRequired:
    return SecondFactorRequired(
        "registering a device needs a valid second factor (a TOTP, one-time or recovery code)"
    )


def register(
    session: Session,
    settings: Settings,
    *,
    customer_id: str,
    session_id: str,
    name: str,
    algorithm: str,
    public_key: str,
    platform: dict[str, Any] | None,
    factor: str,
) -> Device:
    """Register a device key (after ``prove_for_device``); the session becomes bound to it."""
    if algorithm not in instructions.ALGORITHMS:
        raise ValidationProblem(f"algorithm: one of {', '.join(instructions.ALGORITHMS)}")
    fingerprint = instructions.key_fingerprint(public_key, algorithm)
    active = session.scalars(
        select(Device.id).where(Device.customer_id == customer_id, Device.status == "active")
    ).all()
    if len(active) >= MAX_ACTIVE_DEVICES:
        raise Conflict(f"at most {MAX_ACTIVE_DEVICES} active devices; revoke one first")
    now = clock.now()
    device_id = ids.new_id("device")
    device = Device(
        id=device_id,
        customer_id=customer_id,
        name=seal_name(session, settings, customer_id, device_id, name),
        algorithm=algorithm,
        public_key=public_key.strip() + "\n",
        key_fingerprint=fingerprint,
        platform=platform,
        status="active",
        created_at=now,
    )
    session.add(device)
    try:
        session.flush()
    except IntegrityError as error:
        raise Conflict("this public key is already registered; generate a new key pair") from error
    session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id)
        .values(device_id=device.id, auth_level=f"password+{factor}")
    )
    events.emit(
        session,
        "identity.device_registered",
        {"customer_id": customer_id, "device_id": device.id, "algorithm": algorithm},
    )
    _notify(session, settings, customer_id, f"A new device '{name}' was added to your account.")
    return device


def _notify(session: Session, settings: Settings, customer_id: str, text: str) -> None:
    from payguard.identity.notifications import notify_customer

    notify_customer(session, settings, customer_id, text)


def list_devices(session: Session, customer_id: str) -> list[Device]:
    return list(
        session.scalars(
            select(Device).where(Device.customer_id == customer_id).order_by(Device.created_at)
        ).all()
    )


def find_device(session: Session, device_id: str) -> Device | None:
    """The device with this id, whoever owns it, or ``None``."""
    return session.get(Device, device_id)


def get_device(session: Session, customer_id: str, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None or device.customer_id != customer_id:
        raise NotFound(f"no device '{device_id}' of yours")
    return device


def seal_name(
    session: Session, settings: Settings, customer_id: str, device_id: str, name: str
) -> str:
    """Device names are chosen by the customer ("Dora's phone"): sealed like personal data."""
    return envelope_for(settings).seal(session, customer_id, f"devices.name.{device_id}", name)


def name_of(session: Session, settings: Settings, device: Device) -> str:
    if not is_sealed(device.name):
        return device.name
    return envelope_for(settings).open(session, f"devices.name.{device.id}", device.name)


def rename(
    session: Session, settings: Settings, customer_id: str, device_id: str, name: str
) -> Device:
    device = get_device(session, customer_id, device_id)
    device.name = seal_name(session, settings, customer_id, device_id, name)
    return device


def revoke(
    session: Session, settings: Settings, customer_id: str, device_id: str, *, actor: str
) -> Device:
    """Revoke the device and every session bound to it."""
    device = get_device(session, customer_id, device_id)
    if device.status == "revoked":
        return device
    now = clock.now()
    device.status = "revoked"
    device.revoked_at = now
    session.execute(
        update(AuthSession)
        .where(AuthSession.device_id == device_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, end_reason="device_revoked")
    )
    events.emit(
        session,
        "identity.device_revoked",
        {"customer_id": customer_id, "device_id": device_id, "actor": actor},
    )
    removed = name_of(session, settings, device)
    _notify(session, settings, customer_id, f"The device '{removed}' was removed.")
    return device


def mark_used(session: Session, device: Device, *, payment: bool) -> None:
    now = clock.now()
    device.last_used_at = now
    if payment and device.first_payment_at is None:
        device.first_payment_at = now


def is_new(device: Device) -> bool:
    return device.first_payment_at is None
