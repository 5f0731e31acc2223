"""KYC-tier limits, consumed in the same transaction as the posting.

The usage row of (customer, day, currency) is locked before the ledger accounts,
in every transaction, so parallel payments of one customer queue on it and the
check and the increment cannot be separated: a limit is never overshot.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Table, and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from payguard.errors import LimitExceeded
from payguard.money import format_amount
from payguard.payments.models import LimitUsage
from payguard.settings import Settings

USAGE = cast(Table, LimitUsage.__table__)


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
    limits = settings.tier_limits.get(tier)
    if limits is None:
        raise LimitExceeded(f"no limits are configured for KYC tier {tier}")
    if amount > limits.per_payment_max:
        raise LimitExceeded(
            f"a single payment at KYC tier {tier} may be at most "
            f"{format_amount(limits.per_payment_max, currency)}",
            limit="per_payment_max",
        )
    day = at.date()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(USAGE)
        .values(customer_id=customer_id, day=day, currency=currency, amount=0, count=0)
        .on_conflict_do_nothing(index_elements=["customer_id", "day", "currency"])
    )
    key = and_(USAGE.c.customer_id == customer_id, USAGE.c.day == day, USAGE.c.currency == currency)
    usage = session.execute(
        select(USAGE.c.amount.label("used_amount"), USAGE.c.count.label("used_count"))
        .where(key)
        .with_for_update()
    ).one()
    if usage.used_amount + amount > limits.daily_amount_max:
        raise LimitExceeded(
            f"this payment would take today's total past the KYC tier {tier} daily limit of "
            f"{format_amount(limits.daily_amount_max, currency)}",
            limit="daily_amount_max",
        )
    if usage.used_count + 1 > limits.daily_count_max:
        raise LimitExceeded(
            f"KYC tier {tier} allows {limits.daily_count_max} payments a day",
            limit="daily_count_max",
        )
    session.execute(
        update(USAGE).where(key).values(amount=USAGE.c.amount + amount, count=USAGE.c.count + 1)
    )
