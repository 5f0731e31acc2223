"""Idempotency keys: the first response to (scope, key) is stored and replayed.

The record is written in the same transaction as the work it guards. A concurrent
duplicate's insert waits on the unique index (PostgreSQL) or on the write lock
(SQLite) until the first commits, then finds the stored response and replays it;
so twenty parallel identical requests make exactly one payment. Work that spans
several transactions (withdrawals wait for a bank rail) leaves the record
``in_progress`` in between; a duplicate arriving then waits for the outcome.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from payguard import clock
from payguard.errors import IdempotencyKeyReused, ValidationProblem
from payguard.payments.models import IdempotencyRecord

RECORDS = cast(Table, IdempotencyRecord.__table__)
MAX_KEY_LENGTH = 128


def _claim_statement(insert: Any) -> Any:
    return (
        insert(RECORDS)
        .values(
            scope=bindparam("scope"),
            key=bindparam("key"),
            request_hash=bindparam("request_hash"),
            status="in_progress",
            created_at=bindparam("created_at"),
            expires_at=bindparam("expires_at"),
        )
        .on_conflict_do_nothing(index_elements=["scope", "key"])
        .returning(RECORDS.c.id)
    )


# Built once: a statement object reused across calls is compiled once.
_CLAIMS = {"postgresql": _claim_statement(pg_insert), "sqlite": _claim_statement(sqlite_insert)}


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: str


class StillInProgress(Exception):
    """The original request has not finished; the caller may wait and look again."""


def request_hash(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationProblem(
            f"the Idempotency-Key header must be 1 to {MAX_KEY_LENGTH} printable characters"
        )
    return key


def claim(
    session: Session, *, scope: str, key: str, fingerprint: str, ttl_hours: int
) -> tuple[int, StoredResponse | None]:
    """Claim (scope, key) for this request, or return the response stored for it.

    Returns (record id, None) when this request owns the key and must do the work.
    """
    now = clock.now()
    values = {
        "scope": scope,
        "key": key,
        "request_hash": fingerprint,
        "created_at": now,
        "expires_at": now + timedelta(hours=ttl_hours),
    }
    statement = _CLAIMS[session.get_bind().dialect.name]
    inserted = session.execute(statement, values).scalar_one_or_none()
    if inserted is not None:
        return inserted, None
    key_match = and_(RECORDS.c.scope == scope, RECORDS.c.key == key)
    # A record past its retention is forgotten, so the key may be used afresh.
    expired = session.execute(delete(RECORDS).where(and_(key_match, RECORDS.c.expires_at <= now)))
    if expired.rowcount:  # type: ignore[attr-defined]
        return session.execute(statement, values).scalar_one(), None
    existing = session.execute(select(RECORDS).where(key_match)).one()
    if existing.request_hash != fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used before with a different request; "
            "use a new key for a new request"
        )
    if existing.status != "completed":
        raise StillInProgress()
    return existing.id, StoredResponse(existing.response_status, existing.response_body)


def complete(session: Session, record_id: int, status_code: int, body: str) -> None:
    session.execute(
        update(RECORDS)
        .where(RECORDS.c.id == record_id)
        .values(status="completed", response_status=status_code, response_body=body)
    )


def release(session: Session, record_id: int) -> None:
    """Forget a claim whose work failed before anything was written."""
    session.execute(delete(RECORDS).where(RECORDS.c.id == record_id))


def purge_expired(session: Session) -> int:
    result = session.execute(delete(RECORDS).where(RECORDS.c.expires_at <= clock.now()))
    return int(result.rowcount)  # type: ignore[attr-defined]
