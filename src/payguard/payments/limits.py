"""KYC-tier limits, consumed in the same transaction as the posting.

The usage row of (customer, day, currency) is incremented (and so locked) before the
ledger accounts, in every transaction, so parallel payments of one customer queue on
it and the check and the increment cannot be separated: a limit is never overshot.

A customer's limits may be raised for a while by a four-eyes approved override
(``limits.override``); it is read only when a tier limit would refuse the payment, so
the common path costs no extra query.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from payguard.errors import LimitExceeded
from payguard.money import format_amount
from payguard.payments.models import LimitOverride, LimitUsage
from payguard.settings import Settings, TierLimits

USAGE = cast(Table, LimitUsage.__table__)


def _upsert(insert: Any) -> Any:
    statement = insert(USAGE).values(
        customer_id=bindparam("customer_id"),
        day=bindparam("day"),
        currency=bindparam("currency"),
        amount=bindparam("amount"),
        count=1,
    )
    return statement.on_conflict_do_update(
        index_elements=["customer_id", "day", "currency"],
        set_={"amount": USAGE.c.amount + statement.excluded.amount, "count": USAGE.c.count + 1},
    ).returning(USAGE.c.amount, USAGE.c.count)


# Built once: a statement object reused across calls is compiled once.
_UPSERTS = {"postgresql": _upsert(pg_insert), "sqlite": _upsert(sqlite_insert)}


def consume(
    session: Session,
    settings: Settings,
    *,
    customer_id: str,
    tier: int,
    amount: int,
    currency: str,
    at: datetime,
) -> None:
    tier_limits = settings.tier_limits.get(tier)
    if tier_limits is None:
        raise LimitExceeded(f"no limits are configured for KYC tier {tier}")
    limits = tier_limits
    if amount > limits.per_payment_max:
        limits = effective_limits(session, customer_id, tier_limits, at)
    if amount > limits.per_payment_max:
        raise LimitExceeded(
            f"a single payment at KYC tier {tier} may be at most "
            f"{format_amount(limits.per_payment_max, currency)}",
            limit="per_payment_max",
        )
    # One upsert adds this payment and returns the new totals under the row lock. Going
    # over a limit raises, which rolls the whole transaction back, the increment with it.
    statement = _UPSERTS[session.get_bind().dialect.name]
    used_amount, used_count = session.execute(
        statement,
        {"customer_id": customer_id, "day": at.date(), "currency": currency, "amount": amount},
    ).one()
    if limits is tier_limits and (
        used_amount > limits.daily_amount_max or used_count > limits.daily_count_max
    ):
        limits = effective_limits(session, customer_id, tier_limits, at)
    if used_amount > limits.daily_amount_max:
        raise LimitExceeded(
            f"this payment would take today's total past the KYC tier {tier} daily limit of "
            f"{format_amount(limits.daily_amount_max, currency)}",
            limit="daily_amount_max",
        )
    if used_count > limits.daily_count_max:
        raise LimitExceeded(
            f"KYC tier {tier} allows {limits.daily_count_max} payments a day",
            limit="daily_count_max",
        )


def effective_limits(
    session: Session, customer_id: str, tier_limits: TierLimits, at: datetime
) -> TierLimits:
    """The tier's limits, raised by the customer's live override if there is one."""
    override = session.get(LimitOverride, customer_id)
    if override is None or override.expires_at <= at:
        return tier_limits
    return TierLimits(
        per_payment_max=max(tier_limits.per_payment_max, override.per_payment_max),
        daily_amount_max=max(tier_limits.daily_amount_max, override.daily_amount_max),
        daily_count_max=max(tier_limits.daily_count_max, override.daily_count_max),
    )


def set_override(
    session: Session,
    *,
    customer_id: str,
    per_payment_max: int,
    daily_amount_max: int,
    daily_count_max: int,
    hours: int,
    approval_id: str,
    now: datetime,
) -> LimitOverride:
    """Grant (or replace) a customer's override; it lapses by itself after ``hours``."""
    session.execute(delete(LimitOverride).where(LimitOverride.customer_id == customer_id))
    override = LimitOverride(
        customer_id=customer_id,
        per_payment_max=per_payment_max,
        daily_amount_max=daily_amount_max,
        daily_count_max=daily_count_max,
        expires_at=now + timedelta(hours=hours),
        approval_id=approval_id,
        created_at=now,
    )
    session.add(override)
    session.flush()
    return override
