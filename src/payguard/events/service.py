"""Write events to the outbox inside the caller's transaction; read them back in order.

Events carry identifiers and facts, never personal data, so consumers (incidents,
notifications, metrics, a NATS relay) can subscribe without widening who sees PII.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.orm import Session

from payguard import clock
from payguard.audit import service as audit
from payguard.events.models import OutboxEvent

# The Table, not the entity: a plain INSERT without the ORM's bulk-insert machinery.
_INSERT = insert(cast(Table, OutboxEvent.__table__))

# Every security-relevant event also goes to the tamper-evident audit log, in the same
# transaction. Payments are audited at their decisions, not at every step.
AUDITED_PREFIXES = (
    "identity.",
    "security.",
    "approval.",
    "ledger.account_",
    "console.",
    "keys.",
    "risk.alert_",
    "incident.",
    "playbook.",
    "drill.",
    "notify.",
    "controls.",
)
AUDITED_PAYMENT_STATUSES = frozenset({"rejected", "held_for_review", "confirmed", "failed"})
_REFUSED_WORDS = ("failed", "refused", "rejected", "reused", "locked", "expired")
_ACTOR_KEYS = (("by_staff_id", "staff"), ("staff_id", "staff"), ("customer_id", "customer"))
_OBJECT_KEYS = ("payment_id", "approval_id", "account_id", "device_id", "customer_id")


def emit(session: Session, topic: str, payload: dict[str, Any]) -> None:
    # Parameters passed separately keep the compiled statement cached across calls.
    session.execute(_INSERT, [{"topic": topic, "payload": payload, "created_at": clock.now()}])
    if topic.startswith(AUDITED_PREFIXES) or (
        topic == "payments.status_changed" and payload.get("status") in AUDITED_PAYMENT_STATUSES
    ):
        _audit(session, topic, payload)


def _audit(session: Session, topic: str, payload: dict[str, Any]) -> None:
    actor = str(payload.get("actor") or "system")
    for key, kind in _ACTOR_KEYS:
        if payload.get(key):
            actor = f"{kind}:{payload[key]}"
            break
    found = next((str(payload[key]) for key in _OBJECT_KEYS if payload.get(key)), None)
    if topic == "payments.status_changed":
        outcome = "refused" if payload.get("status") in ("rejected", "failed") else "ok"
    else:
        outcome = "refused" if any(word in topic for word in _REFUSED_WORDS) else "ok"
    audit.record(session, actor=actor, action=topic, object=found, outcome=outcome, details=payload)


def unpublished(session: Session, limit: int = 100) -> Sequence[OutboxEvent]:
    query = (
        select(OutboxEvent)
        .where(OutboxEvent.published_at.is_(None))
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    return session.scalars(query).all()


def events_after(session: Session, after_id: int, limit: int) -> Sequence[OutboxEvent]:
    """Up to ``limit`` outbox events with an id above ``after_id``, oldest first."""
    query = select(OutboxEvent).where(OutboxEvent.id > after_id).order_by(OutboxEvent.id)
    return session.scalars(query.limit(limit)).all()


def any_after(session: Session, after_id: int) -> bool:
    """Whether any outbox event has an id above ``after_id``."""
    query = select(OutboxEvent.id).where(OutboxEvent.id > after_id).limit(1)
    return session.scalar(query) is not None


def count_after(session: Session, after_id: int) -> int:
    """How many outbox events have an id above ``after_id``."""
    query = select(func.count(OutboxEvent.id)).where(OutboxEvent.id > after_id)
    return session.scalar(query) or 0


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
