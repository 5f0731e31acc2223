"""Write events to the outbox inside the caller's transaction; read them back in order.

Events carry identifiers and facts, never personal data, so consumers (incidents,
notifications, metrics, a NATS relay) can subscribe without widening who sees PII.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from payguard import clock
from payguard.events.models import OutboxEvent


def emit(session: Session, topic: str, payload: dict[str, Any]) -> None:
    # Parameters passed separately keep the compiled statement cached across calls.
    session.execute(
        insert(OutboxEvent), [{"topic": topic, "payload": payload, "created_at": clock.now()}]
    )


def unpublished(session: Session, limit: int = 100) -> Sequence[OutboxEvent]:
    query = (
        select(OutboxEvent)
        .where(OutboxEvent.published_at.is_(None))
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    return session.scalars(query).all()


def mark_published(session: Session, event_ids: Sequence[int]) -> None:
    if event_ids:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(event_ids))
            .values(published_at=clock.now())
        )


def recent(session: Session, topic: str | None = None, limit: int = 50) -> Sequence[OutboxEvent]:
    query = select(OutboxEvent).order_by(OutboxEvent.id.desc()).limit(limit)
    if topic:
        query = query.where(OutboxEvent.topic == topic)
    return session.scalars(query).all()
