"""Ledger tables.

Sign convention: an entry's amount is positive for a credit and negative for a
debit, and an account's balance is the sum of its entries. Every transfer's
entries sum to zero, so the sum of all balances in one currency is always zero.
Customer wallets hold positive balances; the bank-settlement account mirrors
the money that came in from outside and is therefore negative.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from payguard.crypto.sealed import register_sealed
from payguard.db.base import Base, BigIntPK, UTCDateTime


class AccountKind(StrEnum):
    CUSTOMER_WALLET = "customer_wallet"
    MERCHANT = "merchant"
    SYSTEM = "system"


class SystemAccount(StrEnum):
    """The platform's own accounts, one per currency."""

    BANK_SETTLEMENT = "bank_settlement"  # money held at partner banks (external side)
    CLEARING = "clearing"  # in flight between the wallet and a rail
    FEES_REVENUE = "fees_revenue"
    SUSPENSE = "suspense"  # funds secured during an incident or unexplained
    CUSTOMER_RESERVE = "customer_reserve"  # 备付金: the reserve backing customer balances


class AccountStatus(StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"  # no debits, credits allowed
    CLOSED = "closed"


class HoldStatus(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("currency = upper(currency) AND length(currency) = 3", name="currency"),
        CheckConstraint("held >= 0", name="held_non_negative"),
        CheckConstraint("overdraft_limit IS NULL OR overdraft_limit >= 0", name="overdraft"),
        Index("ix_ledger_accounts_owner", "owner_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    # System accounts carry a code such as ``bank_settlement:CNY``; others have none.
    code: Mapped[str | None] = mapped_column(String(64), unique=True)
    owner_id: Mapped[str | None] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(120))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(10), default=AccountStatus.ACTIVE)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    # None: no floor at all (system accounts); 0: may not go below zero.
    overdraft_limit: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerTransfer(Base):
    __tablename__ = "ledger_transfers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("reversed_amount >= 0 AND reversed_amount <= amount", name="reversed"),
        Index("ix_ledger_transfers_reference", "reference"),
        Index("ix_ledger_transfers_reverses", "reverses_transfer_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    # The principal: what moved from debit_account to credit_account (fees are extra legs).
    amount: Mapped[int] = mapped_column(BigInteger)
    debit_account_id: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.id"))
    credit_account_id: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.id"))
    reference: Mapped[str | None] = mapped_column(String(64))
    memo: Mapped[str | None] = mapped_column(String(140))
    hold_id: Mapped[str | None] = mapped_column(String(40))
    reverses_transfer_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_transfers.id"))
    reversed_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerEntry(Base):
    """One leg of a transfer. Immutable: the database refuses UPDATE and DELETE."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_non_zero"),
        Index("ix_ledger_entries_account_seq", "account_id", "id"),
        Index("ix_ledger_entries_transfer", "transfer_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("ledger_transfers.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerHold(Base):
    """A two-phase transfer: funds reserved now, posted (in part) or released later."""

    __tablename__ = "ledger_holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("posted_amount >= 0 AND posted_amount <= amount", name="posted"),
        Index("ix_ledger_holds_status_expiry", "status", "expires_at"),
        Index("ix_ledger_holds_account", "account_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.id"))
    credit_account_id: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    posted_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(10), default=HoldStatus.PENDING)
    reference: Mapped[str | None] = mapped_column(String(64))
    transfer_id: Mapped[str | None] = mapped_column(String(40))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# A transfer's memo is its payment's sealed memo (reference = payment id); ledger rows are
# immutable, so it keeps its key version, and an erasure still shreds it.
register_sealed("ledger_transfers", "memo", "reference", aad_prefix="memo", immutable=True)
