"""Login throttling per account and per source IP, and the record of every attempt.

Each failure grows the wait before the next attempt on that key (exponential, capped);
after ``login_max_failures`` an account is locked for ``login_lock_seconds`` (an IP
after ``login_ip_max_failures``), unlocked by time or by staff. Keys are the *username*
digest, not the account id, so an unknown username is throttled exactly like a real
one and the replies do not tell an attacker which accounts exist. Failures older than
the lock window are forgotten.

Waits are answered with 429 and Retry-After rather than slept on the server, so a
throttled attacker does not hold a worker.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.errors import TooManyAttempts
from payguard.events import service as events
from payguard.identity.models import LoginAttempt, LoginThrottle
from payguard.settings import Settings

THROTTLES = cast(Table, LoginThrottle.__table__)
TRY_LATER = "too many attempts; try again later"


def username_digest(subject_kind: str, username: str) -> str:
    return hashlib.sha256(f"{subject_kind}:{username.strip().lower()}".encode()).hexdigest()


def account_key(subject_kind: str, username: str) -> str:
    return f"account:{username_digest(subject_kind, username)}"


def ip_key(source_ip: str) -> str:
    return f"ip:{source_ip}"


@dataclass(frozen=True)
class Gate:
    """Whether an attempt may proceed now, and if not, for how long to wait."""

    allowed: bool
    retry_after_seconds: int = 0
    reason: str = "ok"


def _delay(settings: Settings, failures: int) -> timedelta:
    if failures <= 0:
        return timedelta(0)
    millis = min(settings.login_delay_base_ms * 2 ** (failures - 1), settings.login_delay_max_ms)
    return timedelta(milliseconds=millis)


def _wait(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))


def check(session: Session, settings: Settings, keys: list[str]) -> Gate:
    """May an attempt on these keys go ahead now?"""
    now = clock.now()
    window = timedelta(seconds=settings.login_lock_seconds)
    rows = session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys))).all()
    for row in rows:
        if row.locked_until is not None and row.locked_until > now:
            return Gate(False, _wait(row.locked_until, now), "locked")
        if row.last_failure_at is None or row.last_failure_at <= now - window:
            continue
        ready_at = row.last_failure_at + _delay(settings, row.failures)
        if ready_at > now:
            return Gate(False, _wait(ready_at, now), "throttled")
    return Gate(True)


def refuse(gate: Gate) -> TooManyAttempts:
    return TooManyAttempts(TRY_LATER, retry_after_seconds=gate.retry_after_seconds)


def _upsert(insert: Any) -> Any:
    """failures + 1, or 1 when the last failure is older than the window (atomic)."""
    statement = insert(THROTTLES).values(
        key=bindparam("key"), failures=1, last_failure_at=bindparam("now")
    )
    stale = THROTTLES.c.last_failure_at.is_(None) | (
        THROTTLES.c.last_failure_at <= bindparam("window_start")
    )
    return statement.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "failures": case((stale, 1), else_=THROTTLES.c.failures + 1),
            "last_failure_at": statement.excluded.last_failure_at,
        },
    ).returning(THROTTLES.c.failures)


_UPSERTS = {"postgresql": _upsert(pg_insert), "sqlite": _upsert(sqlite_insert)}


def record_failure(
    session: Session, settings: Settings, key: str, *, limit: int, subject: dict[str, Any]
) -> None:
    """Count one failure on ``key``; at ``limit`` failures lock it and raise an alert."""
    now = clock.now()
    window_start = now - timedelta(seconds=settings.login_lock_seconds)
    statement = _UPSERTS[session.get_bind().dialect.name]
    failures = int(
        session.execute(
            statement, {"key": key, "now": now, "window_start": window_start}
        ).scalar_one()
    )
    if failures >= limit:
        row = session.get(LoginThrottle, key)
        assert row is not None
        row.locked_until = now + timedelta(seconds=settings.login_lock_seconds)
        row.failures = 0
        events.emit(
            session,
            "security.login_locked",
            {**subject, "key_kind": key.split(":", 1)[0], "failures": failures},
        )


def reset(session: Session, key: str) -> bool:
    """Forget the failures and lock of ``key`` (success, or a staff unlock)."""
    result = session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def record_attempt(
    session: Session,
    *,
    subject_kind: str,
    subject_id: str | None,
    username: str,
    source_ip: str | None,
    succeeded: bool,
    reason: str,
) -> None:
    session.add(
        LoginAttempt(
            id=ids.new_id("login_attempt"),
            subject_kind=subject_kind,
            subject_id=subject_id,
            username_digest=username_digest(subject_kind, username),
            source_ip=source_ip,
            succeeded=succeeded,
            reason=reason,
            at=clock.now(),
        )
    )


def recent_attempts(
    session: Session, subject_kind: str, username: str, limit: int = 50
) -> list[LoginAttempt]:
    return list(
        session.scalars(
            select(LoginAttempt)
            .where(LoginAttempt.username_digest == username_digest(subject_kind, username))
            .order_by(LoginAttempt.at.desc())
            .limit(limit)
        )
    )
