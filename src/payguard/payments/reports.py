"""Read-only aggregates of payments for dashboards and reports: day totals, an hourly
histogram, the stored instruction. Other domains (the console) call these, never the
payments tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from payguard.payments.models import Payment, PaymentEvent, PaymentStatus

# Statuses whose money has moved for good (posted is the instant before confirmed).
SETTLED = (PaymentStatus.CONFIRMED.value, PaymentStatus.POSTED.value)
UNSUCCESSFUL = (PaymentStatus.FAILED.value, PaymentStatus.REJECTED.value)


@dataclass(frozen=True)
class DayTotals:
    """Payments created in one window, in one currency."""

    currency: str
    count: int
    settled_count: int
    settled_amount: int
    unsuccessful_count: int


def day_totals(session: Session, start: datetime, end: datetime) -> list[DayTotals]:
    settled = Payment.status.in_(SETTLED)
    unsuccessful = Payment.status.in_(UNSUCCESSFUL)
    query = (
        select(
            Payment.currency,
            func.count(),
            func.sum(case((settled, 1), else_=0)),
            func.sum(case((settled, Payment.amount), else_=0)),
            func.sum(case((unsuccessful, 1), else_=0)),
        )
        .where(and_(Payment.created_at >= start, Payment.created_at < end))
        .group_by(Payment.currency)
        .order_by(Payment.currency)
    )
    return [
        DayTotals(
            currency=currency,
            count=int(count or 0),
            settled_count=int(settled_count or 0),
            settled_amount=int(settled_amount or 0),
            unsuccessful_count=int(failed or 0),
        )
        for currency, count, settled_count, settled_amount, failed in session.execute(query)
    ]


def _hour_key(session: Session) -> ColumnElement[Any]:
    """``YYYY-MM-DDTHH`` of ``created_at`` in UTC, computed by the database."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLite keeps UTC timestamps as ``YYYY-MM-DD HH:MM:SS.ffffff`` text.
        return func.strftime("%Y-%m-%dT%H", Payment.created_at)
    return func.to_char(func.timezone("UTC", Payment.created_at), 'YYYY-MM-DD"T"HH24')


def hourly_counts(session: Session, start: datetime, end: datetime) -> dict[datetime, int]:
    """Payments created per UTC hour in [start, end), keyed by the start of the hour."""
    key = _hour_key(session).label("hour")
    query = (
        select(key, func.count())
        .where(and_(Payment.created_at >= start, Payment.created_at < end))
        .group_by(key)
    )
    counts: dict[datetime, int] = {}
    for hour, count in session.execute(query):
        moment = datetime.strptime(str(hour), "%Y-%m-%dT%H").replace(tzinfo=UTC)
        counts[moment] = int(count)
    return counts


def payment_instruction(session: Session, payment_id: str) -> dict[str, Any] | None:
    """The instruction as stored (bank accounts are already masked there)."""
    found = session.scalar(select(Payment.instruction).where(Payment.id == payment_id))
    return dict(found) if found is not None else None


@dataclass(frozen=True)
class WindowPayment:
    """One payment created in a window, as the indicators read it."""

    id: str
    kind: str
    status: str
    failure_code: str | None
    decision: Any


class LifecycleStep(NamedTuple):
    """One lifecycle event of a payment."""

    payment_id: str
    status: str
    detail: str | None
    at: datetime


def payments_created_between(
    session: Session, start: datetime, end: datetime
) -> list[WindowPayment]:
    """The payments created in [start, end), with their outcome and risk decision."""
    rows = session.execute(
        select(
            Payment.id, Payment.kind, Payment.status, Payment.failure_code, Payment.decision
        ).where(Payment.created_at >= start, Payment.created_at < end)
    )
    return [
        WindowPayment(row.id, row.kind, row.status, row.failure_code, row.decision) for row in rows
    ]


def lifecycle_of_payments_created_between(
    session: Session, start: datetime, end: datetime
) -> list[LifecycleStep]:
    """The lifecycle events of the payments created in [start, end), in the order written."""
    rows = session.execute(
        select(PaymentEvent.payment_id, PaymentEvent.status, PaymentEvent.detail, PaymentEvent.at)
        .join(Payment, Payment.id == PaymentEvent.payment_id)
        .where(Payment.created_at >= start, Payment.created_at < end)
        .order_by(PaymentEvent.id)
    )
    return [
        LifecycleStep(payment_id, status, detail, at) for payment_id, status, detail, at in rows
    ]


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def last_hours(now: datetime, hours: int = 24) -> list[datetime]:
    """The starts of the last ``hours`` UTC hours, oldest first, ending with the current."""
    current = hour_floor(now.astimezone(UTC))
    return [current - timedelta(hours=hours - 1 - index) for index in range(hours)]
