from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from payguard.crypto.sealed import register_sealed
from payguard.db.base import Base, BigIntPK, UTCDateTime


class PaymentKind(StrEnum):
    P2P = "p2p"
    MERCHANT = "merchant"
    TOP_UP = "top_up"
    WITHDRAWAL = "withdrawal"
    REFUND = "refund"


class PaymentStatus(StrEnum):
    RECEIVED = "received"
    VERIFIED = "verified"
    ASSESSED = "assessed"
    POSTED = "posted"
    HELD_FOR_REVIEW = "held_for_review"
    CHALLENGED = "challenged"
    REJECTED = "rejected"
    CONFIRMED = "confirmed"
    FAILED = "failed"


# Statuses after which a payment never changes again.
FINAL_STATUSES = frozenset({PaymentStatus.CONFIRMED, PaymentStatus.FAILED, PaymentStatus.REJECTED})


class Merchant(Base):
    __tablename__ = "merchants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    account_id: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.id"))
    owner_customer_id: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Payment(Base):
    """One payment instruction with its decision and ledger transfer kept together."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("fee >= 0", name="fee_non_negative"),
        Index("ix_payments_customer_created", "customer_id", "created_at"),
        Index("ix_payments_status", "status"),
        Index("ix_payments_original", "original_payment_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[str | None] = mapped_column(String(40))
    payer_account_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_accounts.id"))
    payee_account_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    memo: Mapped[str | None] = mapped_column(String(140))
    instruction: Mapped[dict[str, Any]] = mapped_column(JSON)
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    transfer_id: Mapped[str | None] = mapped_column(String(40))
    hold_id: Mapped[str | None] = mapped_column(String(40))
    rail_reference: Mapped[str | None] = mapped_column(String(64))
    original_payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"))
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PaymentEvent(Base):
    """One recorded state change of a payment, with its time."""

    __tablename__ = "payment_events"
    __table_args__ = (Index("ix_payment_events_payment", "payment_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"))
    status: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdempotencyRecord(Base):
    """The first response to a (scope, key) pair, replayed for every retry."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        UniqueConstraint("scope", "key", name="uq_idempotency_records_scope_key"),
        Index("ix_idempotency_records_expires", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # in_progress | completed
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LimitUsage(Base):
    """Outgoing amount and count of one customer on one UTC day, per currency."""

    __tablename__ = "payment_limit_usage"
    __table_args__ = (
        UniqueConstraint("customer_id", "day", "currency", name="uq_payment_limit_usage_key"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(40))
    day: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    count: Mapped[int] = mapped_column(Integer, default=0)


class RailOperation(Base):
    """One request to an external bank rail and its outcome."""

    __tablename__ = "rail_operations"
    __table_args__ = (Index("ix_rail_operations_day", "rail", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    rail: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(8))  # in | out
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12))  # succeeded | failed
    rail_reference: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LimitOverride(Base):
    """A customer's temporarily raised limits, granted through four-eyes approval.

    Each field is the new maximum; the tier's limit applies where it is higher."""

    __tablename__ = "payment_limit_overrides"

    customer_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    per_payment_max: Mapped[int] = mapped_column(BigInteger)
    daily_amount_max: Mapped[int] = mapped_column(BigInteger)
    daily_count_max: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    approval_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# Memos are free text a customer may fill with personal data: sealed with the customer's
# key, bound to the payment (crypto/envelope.py memo_aad).
register_sealed("payments", "memo", "id", aad_prefix="memo")


class BankInstrument(Base):
    """A bank card or account number as a token: sealed number, blind index, mask."""

    __tablename__ = "bank_instruments"
    __table_args__ = (Index("ix_bank_instruments_number_index", "number_index"),)

    token: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(40), index=True)
    number_index: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(Text)  # sealed with the customer's key
    masked: Mapped[str] = mapped_column(String(40))  # first 6, last 4
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


register_sealed("bank_instruments", "number", "token")


class PaymentChannelSuspension(Base):
    """A payment channel stopped during an incident (payments/channels.py).

    ``scope`` is ``withdrawals``, ``merchant_payouts:<merchant id>`` or ``kind:<kind>``;
    a merchant scope also keeps the merchant's ledger account, so the payment path finds
    every suspension that concerns a payment in one indexed query."""

    __tablename__ = "payment_channel_suspensions"
    __table_args__ = (
        Index("ix_payment_channel_suspensions_active", "lifted_at", "scope"),
        Index("ix_payment_channel_suspensions_account", "account_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    scope: Mapped[str] = mapped_column(String(80))
    account_id: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(500))
    incident_id: Mapped[str | None] = mapped_column(String(40))
    suspended_by: Mapped[str] = mapped_column(String(64))
    suspended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_by: Mapped[str | None] = mapped_column(String(64))
    lift_reason: Mapped[str | None] = mapped_column(String(500))
