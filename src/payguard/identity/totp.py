"""TOTP (RFC 6238) second factor: enrolment with an otpauth URI and QR code, verification.

A code is accepted once: the accepted time step is stored and only a later step passes
(RFC 6238 §5.2). One step of clock drift either way is allowed.
"""

from __future__ import annotations

import hmac
import io
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.crypto.envelope import envelope_for
from payguard.errors import Conflict, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.identity import recovery
from payguard.identity.models import TotpCredential
from payguard.settings import Settings

DIGITS = 6
INTERVAL = 30
VALID_WINDOW = 1


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    uri: str
    qr_png: bytes


def code_at(secret: str, moment: datetime, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    """The code for ``moment``: the same function the verification path uses."""
    import hashlib

    algorithm = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
    return pyotp.TOTP(secret, digits=digits, digest=algorithm[digest], interval=INTERVAL).at(moment)


def matching_step(
    secret: str,
    code: str,
    moment: datetime,
    *,
    digits: int = DIGITS,
    digest: str = "sha1",
    after_step: int | None = None,
) -> int | None:
    """The time step within the drift window whose code is ``code`` (and newer than
    ``after_step``), or None. Constant-time comparison of each candidate."""
    if not code.isdigit() or len(code) != digits:
        return None
    current = int(moment.timestamp()) // INTERVAL
    found = None
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        expected = code_at(secret, _at_step(step), digits=digits, digest=digest)
        if hmac.compare_digest(expected, code) and (after_step is None or step > after_step):
            found = step
    return found


def _at_step(step: int) -> datetime:
    from datetime import UTC

    return datetime.fromtimestamp(step * INTERVAL, UTC)


def _credential(session: Session, subject_kind: str, subject_id: str) -> TotpCredential | None:
    return session.scalar(
        select(TotpCredential).where(
            TotpCredential.subject_kind == subject_kind, TotpCredential.subject_id == subject_id
        )
    )


def _owner(subject_kind: str, subject_id: str) -> str:
    return subject_id if subject_kind == "customer" else f"{subject_kind}:{subject_id}"


def _seal(session: Session, settings: Settings, credential: TotpCredential, secret: str) -> None:
    """Seal the shared secret with the subject's own key, bound to this row."""
    credential.secret = envelope_for(settings).seal(
        session,
        _owner(credential.subject_kind, credential.subject_id),
        f"totp_credentials.secret.{credential.id}",
        secret,
    )


def _secret(session: Session, settings: Settings, credential: TotpCredential) -> str:
    return envelope_for(settings).open(
        session, f"totp_credentials.secret.{credential.id}", credential.secret
    )


def has_totp(session: Session, subject_kind: str, subject_id: str) -> bool:
    credential = _credential(session, subject_kind, subject_id)
    return credential is not None and credential.confirmed_at is not None


def enrol(
    session: Session, settings: Settings, subject_kind: str, subject_id: str, account_name: str
) -> TotpEnrolment:
    """Start (or restart) an enrolment; refused while a confirmed credential exists."""
    credential = _credential(session, subject_kind, subject_id)
    if credential is not None and credential.confirmed_at is not None:
        raise Conflict("TOTP is already enrolled; remove it first to enrol a new authenticator")
    secret = pyotp.random_base32()
    if credential is None:
        credential = TotpCredential(
            id=ids.new_id("totp"),
            subject_kind=subject_kind,
            subject_id=subject_id,
            created_at=clock.now(),
        )
        _seal(session, settings, credential, secret)  # before add: sealing may autoflush
        session.add(credential)
    else:
        _seal(session, settings, credential, secret)
    credential.last_step = None
    session.flush()
    return pending(settings, secret, account_name)


def pending(settings: Settings, secret: str, account_name: str) -> TotpEnrolment:
    uri = pyotp.TOTP(secret).provisioning_uri(name=account_name, issuer_name=settings.totp_issuer)
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="png", scale=6, border=4)
    return TotpEnrolment(secret=secret, uri=uri, qr_png=buffer.getvalue())


def pending_secret(session: Session, settings: Settings, subject_kind: str, subject_id: str) -> str:
    credential = _credential(session, subject_kind, subject_id)
    if credential is None or credential.confirmed_at is not None:
        raise NotFound("no TOTP enrolment is pending; start one first")
    return _secret(session, settings, credential)


def confirm(
    session: Session, settings: Settings, subject_kind: str, subject_id: str, code: str
) -> list[str]:
    """Confirm the enrolment with a first code; returns fresh recovery codes (shown once)."""
    credential = _credential(session, subject_kind, subject_id)
    if credential is None or credential.confirmed_at is not None:
        raise NotFound("no TOTP enrolment is pending; start one first")
    step = matching_step(_secret(session, settings, credential), code, clock.now())
    if step is None:
        raise ValidationProblem("the code does not match; check the authenticator's clock")
    credential.confirmed_at = clock.now()
    credential.last_step = step
    events.emit(
        session,
        "identity.totp_enrolled",
        {"subject_kind": subject_kind, "subject_id": subject_id},
    )
    return recovery.generate(session, settings, subject_kind, subject_id)


def verify_code(
    session: Session, settings: Settings, subject_kind: str, subject_id: str, code: str
) -> bool:
    """True once per time step for a confirmed credential's valid code."""
    credential = _credential(session, subject_kind, subject_id)
    if credential is None or credential.confirmed_at is None:
        return False
    step = matching_step(
        _secret(session, settings, credential), code, clock.now(), after_step=credential.last_step
    )
    if step is None:
        return False
    # Conditional on the step we read: of two racing requests with one code, one wins.
    previous = TotpCredential.last_step
    won = session.execute(
        update(TotpCredential)
        .where(
            TotpCredential.id == credential.id,
            previous.is_(None) if credential.last_step is None else previous < step,
        )
        .values(last_step=step)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        return False
    credential.last_step = step
    return True


def remove(session: Session, subject_kind: str, subject_id: str) -> None:
    credential = _credential(session, subject_kind, subject_id)
    if credential is None:
        raise NotFound("TOTP is not enrolled")
    session.delete(credential)
    events.emit(
        session, "identity.totp_removed", {"subject_kind": subject_kind, "subject_id": subject_id}
    )


def enrol_confirmed(
    session: Session, settings: Settings, subject_kind: str, subject_id: str, secret: str
) -> None:
    """Provision a confirmed credential (staff created by an admin, who hands over the
    otpauth URI out of band); customers enrol themselves through ``enrol``/``confirm``."""
    credential = TotpCredential(
        id=ids.new_id("totp"),
        subject_kind=subject_kind,
        subject_id=subject_id,
        created_at=clock.now(),
        confirmed_at=clock.now(),
    )
    _seal(session, settings, credential, secret)
    session.add(credential)
    session.flush()
    events.emit(
        session, "identity.totp_enrolled", {"subject_kind": subject_kind, "subject_id": subject_id}
    )


def provisioning_uri(settings: Settings, secret: str, account_name: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account_name, issuer_name=settings.totp_issuer)
