"""Recovery codes: shown once, stored as SHA-256 digests, each usable once."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.identity.models import RecoveryCode
from payguard.settings import Settings

ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud and typed by hand


def _digest(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").lower().encode()).hexdigest()


def generate(session: Session, settings: Settings, subject_kind: str, subject_id: str) -> list[str]:
    """Replace the subject's codes with fresh ones; returns them (the only time in clear)."""
    session.execute(
        delete(RecoveryCode).where(
            RecoveryCode.subject_kind == subject_kind, RecoveryCode.subject_id == subject_id
        )
    )
    codes = []
    now = clock.now()
    for _ in range(settings.recovery_code_count):
        raw = "".join(secrets.choice(ALPHABET) for _ in range(10))
        code = f"{raw[:5]}-{raw[5:]}"
        codes.append(code)
        session.add(
            RecoveryCode(
                id=ids.new_id("recovery_code"),
                subject_kind=subject_kind,
                subject_id=subject_id,
                code_hash=_digest(code),
                created_at=now,
            )
        )
    session.flush()
    return codes


def use_code(session: Session, subject_kind: str, subject_id: str, code: str) -> bool:
    """Spend one unused code; True if it matched."""
    wanted = _digest(code)
    unused = session.scalars(
        select(RecoveryCode).where(
            RecoveryCode.subject_kind == subject_kind,
            RecoveryCode.subject_id == subject_id,
            RecoveryCode.used_at.is_(None),
        )
    ).all()
    for candidate in unused:
        if hmac.compare_digest(candidate.code_hash, wanted):
            candidate.used_at = clock.now()
            return True
    return False


def remaining(session: Session, subject_kind: str, subject_id: str) -> int:
    return len(
        session.scalars(
            select(RecoveryCode.id).where(
                RecoveryCode.subject_kind == subject_kind,
                RecoveryCode.subject_id == subject_id,
                RecoveryCode.used_at.is_(None),
            )
        ).all()
    )
