"""Small helpers shared by the ledger tests: open wallets, fund them, read balances."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from payguard import clock
from payguard.db.engine import Database
from payguard.ledger import service as ledger
from payguard.ledger.models import AccountKind, SystemAccount

CURRENCY = "CNY"


def open_wallet(
    db: Database,
    *,
    currency: str = CURRENCY,
    overdraft_limit: int | None = 0,
    kind: AccountKind = AccountKind.CUSTOMER_WALLET,
    name: str = "wallet",
) -> str:
    with db.write() as session:
        account = ledger.open_account(
            session,
            kind=kind,
            currency=currency,
            name=name,
            overdraft_limit=overdraft_limit,
        )
        return account.id


def bank(db: Database, currency: str = CURRENCY) -> str:
    with db.write() as session:
        return ledger.system_account_id(session, SystemAccount.BANK_SETTLEMENT, currency)


def fund(db: Database, account_id: str, amount: int, currency: str = CURRENCY) -> None:
    source = bank(db, currency)
    with db.write() as session:
        ledger.post_transfer(
            session,
            debit_account_id=source,
            credit_account_id=account_id,
            amount=amount,
            currency=currency,
            kind="top_up",
        )


def balance(db: Database, account_id: str) -> ledger.Balance:
    with db.read() as session:
        return ledger.get_balance(session, account_id)


def transfer(db: Database, debit: str, credit: str, amount: int) -> ledger.PostedTransfer:
    with db.write() as session:
        return ledger.post_transfer(
            session,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=amount,
            currency=CURRENCY,
        )


def invariants_ok(db: Database) -> ledger.InvariantReport:
    with db.read() as session:
        report = ledger.check_invariants(session)
    assert report.ok, report
    return report


@contextmanager
def frozen_clock(start: datetime) -> Iterator[clock.FrozenClock]:
    """Install a FrozenClock for the block and restore the previous clock afterwards."""
    frozen = clock.FrozenClock(start)
    previous = clock.set_clock(frozen)
    try:
        yield frozen
    finally:
        clock.set_clock(previous)
