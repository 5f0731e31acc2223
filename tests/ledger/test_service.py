"""The ledger service on both backends: postings, refusals, holds, reversals, statements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from payguard.db.engine import Database
from payguard.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotFound,
    Conflict,
    CurrencyMismatch,
    HoldNotPending,
    InsufficientFunds,
    InvalidAmount,
    NotFound,
    ReversalExceedsRemainder,
    UnknownCurrency,
)
from payguard.ledger import service as ledger
from payguard.ledger.models import (
    AccountKind,
    AccountStatus,
    HoldStatus,
    LedgerEntry,
    LedgerTransfer,
    SystemAccount,
)
from payguard.money import MAX_AMOUNT
from tests.ledger.helpers import (
    CURRENCY,
    balance,
    bank,
    frozen_clock,
    fund,
    invariants_ok,
    open_wallet,
    transfer,
)

LATER = datetime(2030, 1, 1, tzinfo=UTC)


def counts(db: Database) -> tuple[int, int]:
    with db.read() as session:
        transfers = session.scalar(select(func.count()).select_from(LedgerTransfer))
        entries = session.scalar(select(func.count()).select_from(LedgerEntry))
    return int(transfers or 0), int(entries or 0)


def set_status(db: Database, account_id: str, status: AccountStatus) -> None:
    with db.write() as session:
        ledger.set_status(session, account_id, status, reason="test")


# ---------------------------------------------------------------- transfers


def test_transfer_is_balanced_and_records_balance_after(db: Database) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 10_000)
    posted = transfer(db, alice, bob, 2_500)

    assert posted.amount == 2_500
    assert posted.balances_after == {alice: 7_500, bob: 2_500}
    assert balance(db, alice).ledger == 7_500
    assert balance(db, bob).ledger == 2_500
    with db.read() as session:
        entries = ledger.entries_of_transfer(session, posted.id)
        stored = ledger.get_transfer(session, posted.id)
    assert sorted((e.account_id, e.amount, e.balance_after) for e in entries) == sorted(
        [(alice, -2_500, 7_500), (bob, 2_500, 2_500)]
    )
    assert sum(e.amount for e in entries) == 0
    assert stored.debit_account_id == alice and stored.credit_account_id == bob
    report = invariants_ok(db)
    assert report.currency_sums == {CURRENCY: 0}


def test_balance_after_follows_each_posting(db: Database) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    for _ in range(3):
        transfer(db, alice, bob, 100)
    with db.read() as session:
        rows = session.execute(
            select(LedgerEntry.amount, LedgerEntry.balance_after)
            .where(LedgerEntry.account_id == alice)
            .order_by(LedgerEntry.id)
        ).all()
    assert [tuple(row) for row in rows] == [(1_000, 1_000), (-100, 900), (-100, 800), (-100, 700)]


def test_extra_legs_post_in_the_same_transfer(db: Database) -> None:
    alice, merchant = open_wallet(db), open_wallet(db, kind=AccountKind.MERCHANT)
    with db.write() as session:
        fees = ledger.system_account_id(session, SystemAccount.FEES_REVENUE, CURRENCY)
    fund(db, alice, 1_000)
    with db.write() as session:
        posted = ledger.post_transfer(
            session,
            debit_account_id=alice,
            credit_account_id=merchant,
            amount=500,
            currency=CURRENCY,
            extra_legs=[ledger.Leg(alice, -10), ledger.Leg(fees, 10)],
        )
    assert posted.balances_after == {alice: 490, merchant: 500, fees: 10}
    with pytest.raises(InvalidAmount), db.write() as session:
        ledger.post_transfer(
            session,
            debit_account_id=alice,
            credit_account_id=merchant,
            amount=5,
            currency=CURRENCY,
            extra_legs=[ledger.Leg(alice, -1)],
        )
    invariants_ok(db)


def test_insufficient_funds_refused_and_nothing_written(db: Database) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 100)
    before = counts(db)
    with pytest.raises(InsufficientFunds):
        transfer(db, alice, bob, 101)
    assert counts(db) == before
    assert balance(db, alice).ledger == 100
    assert balance(db, bob).ledger == 0
    transfer(db, alice, bob, 100)  # exactly everything is fine
    assert balance(db, alice).available == 0
    invariants_ok(db)


def test_unknown_account_refused(db: Database) -> None:
    alice = open_wallet(db)
    fund(db, alice, 100)
    with pytest.raises(AccountNotFound):
        transfer(db, alice, "acc_missing", 1)
    with pytest.raises(AccountNotFound):
        balance(db, "acc_missing")


def test_frozen_account_cannot_be_debited_but_can_be_credited(db: Database) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    fund(db, bob, 1_000)
    set_status(db, alice, AccountStatus.FROZEN)
    before = counts(db)
    with pytest.raises(AccountFrozen):
        transfer(db, alice, bob, 1)
    assert counts(db) == before
    transfer(db, bob, alice, 300)  # credits still arrive
    assert balance(db, alice).ledger == 1_300
    assert balance(db, alice).status == AccountStatus.FROZEN
    with pytest.raises(AccountFrozen), db.write() as session:
        ledger.create_hold(
            session,
            account_id=alice,
            credit_account_id=bob,
            amount=1,
            currency=CURRENCY,
            expires_at=LATER,
        )
    set_status(db, alice, AccountStatus.ACTIVE)
    transfer(db, alice, bob, 1_300)
    assert balance(db, alice).ledger == 0
    invariants_ok(db)


def test_closed_account_takes_no_part(db: Database) -> None:
    alice, bob, carol = open_wallet(db), open_wallet(db), open_wallet(db)
    fund(db, alice, 100)
    with pytest.raises(Conflict):  # a balance left: cannot close
        set_status(db, alice, AccountStatus.CLOSED)
    set_status(db, carol, AccountStatus.CLOSED)
    before = counts(db)
    with pytest.raises(AccountClosed):
        transfer(db, alice, carol, 1)
    with pytest.raises(AccountClosed):
        transfer(db, carol, bob, 1)
    with pytest.raises(AccountClosed):  # closed is final
        set_status(db, carol, AccountStatus.ACTIVE)
    assert counts(db) == before
    assert balance(db, carol).status == AccountStatus.CLOSED


def test_currency_mismatch_refused(db: Database) -> None:
    cny, usd = open_wallet(db), open_wallet(db, currency="USD")
    other_cny = open_wallet(db)
    fund(db, cny, 100)
    before = counts(db)
    with pytest.raises(CurrencyMismatch), db.write() as session:
        ledger.post_transfer(
            session, debit_account_id=cny, credit_account_id=usd, amount=1, currency="CNY"
        )
    with pytest.raises(CurrencyMismatch), db.write() as session:
        ledger.post_transfer(
            session,
            debit_account_id=cny,
            credit_account_id=other_cny,
            amount=1,
            currency="USD",
        )
    assert counts(db) == before


@pytest.mark.parametrize("code", ["ZZZ", "XY", "cnyy", "12A"])
def test_unknown_currency_refused(db: Database, code: str) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 100)
    with pytest.raises(UnknownCurrency), db.write() as session:
        ledger.open_account(session, kind=AccountKind.CUSTOMER_WALLET, currency=code, name="bad")
    with pytest.raises(UnknownCurrency), db.write() as session:
        ledger.post_transfer(
            session, debit_account_id=alice, credit_account_id=bob, amount=1, currency=code
        )
    assert balance(db, alice).ledger == 100


@pytest.mark.parametrize("amount", [0, -1, -(10**6), MAX_AMOUNT + 1, 2**63, True, False, 1.0])
def test_invalid_amounts_refused(db: Database, amount: Any) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    before = counts(db)
    with pytest.raises(InvalidAmount):
        transfer(db, alice, bob, amount)
    with pytest.raises(InvalidAmount), db.write() as session:
        ledger.create_hold(
            session,
            account_id=alice,
            credit_account_id=bob,
            amount=amount,
            currency=CURRENCY,
            expires_at=LATER,
        )
    assert counts(db) == before
    assert balance(db, alice).ledger == 1_000
    assert balance(db, alice).held == 0


def test_largest_amount_accepted_and_overflowing_balance_refused(db: Database) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, MAX_AMOUNT)
    assert balance(db, alice).ledger == MAX_AMOUNT
    with pytest.raises(InvalidAmount):  # a balance beyond the supported range
        fund(db, alice, 1)
    transfer(db, alice, bob, MAX_AMOUNT)
    assert balance(db, bob).ledger == MAX_AMOUNT
    invariants_ok(db)


def test_transfer_to_self_refused(db: Database) -> None:
    alice = open_wallet(db)
    fund(db, alice, 10)
    with pytest.raises(InvalidAmount):
        transfer(db, alice, alice, 1)


def test_overdraft_limit_is_the_floor(db: Database) -> None:
    alice, bob = open_wallet(db, overdraft_limit=500), open_wallet(db)
    fund(db, alice, 100)
    transfer(db, alice, bob, 600)
    assert balance(db, alice).ledger == -500
    with pytest.raises(InsufficientFunds):
        transfer(db, alice, bob, 1)
    assert balance(db, alice).ledger == -500
    invariants_ok(db)


def test_system_accounts_have_no_floor(db: Database) -> None:
    alice = open_wallet(db)
    settlement = bank(db)
    fund(db, alice, MAX_AMOUNT // 2)
    fund(db, alice, MAX_AMOUNT // 2)
    assert balance(db, settlement).ledger == -2 * (MAX_AMOUNT // 2)
    assert balance(db, settlement).available < 0
    with db.write() as session:
        assert ledger.system_account_id(session, SystemAccount.BANK_SETTLEMENT, "cny") == (
            settlement
        )
    invariants_ok(db)


# ---------------------------------------------------------------- holds


def create_hold(db: Database, account: str, credit: str, amount: int, expires: datetime) -> str:
    with db.write() as session:
        return ledger.create_hold(
            session,
            account_id=account,
            credit_account_id=credit,
            amount=amount,
            currency=CURRENCY,
            expires_at=expires,
        ).id


def hold_status(db: Database, hold_id: str) -> tuple[str, int]:
    with db.read() as session:
        hold = ledger.get_hold(session, hold_id)
        return hold.status, hold.posted_amount


def test_hold_reduces_available_not_ledger(db: Database) -> None:
    alice, shop = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    create_hold(db, alice, shop, 400, LATER)
    state = balance(db, alice)
    assert (state.ledger, state.held, state.available) == (1_000, 400, 600)
    with pytest.raises(InsufficientFunds):  # the held funds cannot be spent twice
        transfer(db, alice, shop, 601)
    with pytest.raises(InsufficientFunds):
        create_hold(db, alice, shop, 601, LATER)
    transfer(db, alice, shop, 600)
    assert balance(db, alice).available == 0
    invariants_ok(db)


def test_post_hold_in_full(db: Database) -> None:
    alice, shop = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    hold = create_hold(db, alice, shop, 400, LATER)
    with db.write() as session:
        posted = ledger.post_hold(session, hold)
    assert posted.amount == 400
    state = balance(db, alice)
    assert (state.ledger, state.held, state.available) == (600, 0, 600)
    assert balance(db, shop).ledger == 400
    assert hold_status(db, hold) == (HoldStatus.POSTED, 400)
    with db.read() as session:
        assert ledger.get_hold(session, hold).transfer_id == posted.id
        assert ledger.get_transfer(session, posted.id).hold_id == hold
    invariants_ok(db)


def test_post_hold_partially_releases_the_rest(db: Database) -> None:
    alice, shop = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    hold = create_hold(db, alice, shop, 400, LATER)
    with pytest.raises(InvalidAmount), db.write() as session:
        ledger.post_hold(session, hold, amount=401)
    with db.write() as session:
        ledger.post_hold(session, hold, amount=150)
    state = balance(db, alice)
    assert (state.ledger, state.held, state.available) == (850, 0, 850)
    assert balance(db, shop).ledger == 150
    assert hold_status(db, hold) == (HoldStatus.POSTED, 150)
    invariants_ok(db)


def test_void_hold_releases_everything(db: Database) -> None:
    alice, shop = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    hold = create_hold(db, alice, shop, 400, LATER)
    before = counts(db)
    with db.write() as session:
        ledger.void_hold(session, hold)
    state = balance(db, alice)
    assert (state.ledger, state.held, state.available) == (1_000, 0, 1_000)
    assert counts(db) == before  # a void moves no money
    assert hold_status(db, hold) == (HoldStatus.VOIDED, 0)
    invariants_ok(db)


def test_frozen_account_hold_can_still_be_posted(db: Database) -> None:
    alice, shop = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    hold = create_hold(db, alice, shop, 400, LATER)
    set_status(db, alice, AccountStatus.FROZEN)
    with db.write() as session:
        ledger.post_hold(session, hold)
    assert balance(db, alice).ledger == 600
    invariants_ok(db)


@pytest.mark.parametrize(
    ("first", "second"),
    [("post", "post"), ("post", "void"), ("void", "post"), ("void", "void")],
)
def test_hold_resolves_exactly_once(db: Database, first: str, second: str) -> None:
    alice, shop = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    hold = create_hold(db, alice, shop, 400, LATER)

    def resolve(action: str) -> None:
        with db.write() as session:
            if action == "post":
                ledger.post_hold(session, hold, amount=100)
            else:
                ledger.void_hold(session, hold)

    resolve(first)
    after_first = (balance(db, alice), balance(db, shop), counts(db))
    with pytest.raises(HoldNotPending):
        resolve(second)
    assert (balance(db, alice), balance(db, shop), counts(db)) == after_first
    with db.write() as session:
        assert ledger.expire_hold(session, hold) is False
    invariants_ok(db)


def test_unknown_hold(db: Database) -> None:
    with pytest.raises(NotFound), db.write() as session:
        ledger.post_hold(session, "hld_missing")
    with pytest.raises(NotFound), db.write() as session:
        ledger.void_hold(session, "hld_missing")


def test_hold_expires_when_the_clock_passes_it(db: Database) -> None:
    alice, shop = open_wallet(db), open_wallet(db)
    start = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    with frozen_clock(start) as moving:
        fund(db, alice, 1_000)
        hold = create_hold(db, alice, shop, 400, start + timedelta(minutes=30))
        with db.write() as session:
            assert ledger.expired_hold_ids(session) == []
            assert ledger.expire_hold(session, hold) is False  # not due yet
        assert hold_status(db, hold) == (HoldStatus.PENDING, 0)

        moving.advance(timedelta(minutes=31))
        with db.write() as session:
            assert ledger.expired_hold_ids(session) == [hold]
            assert ledger.expire_hold(session, hold) is True
        with db.write() as session:
            assert ledger.expire_hold(session, hold) is False  # only once
            assert ledger.expired_hold_ids(session) == []
        state = balance(db, alice)
        assert (state.ledger, state.held, state.available) == (1_000, 0, 1_000)
        assert hold_status(db, hold) == (HoldStatus.EXPIRED, 0)
        with pytest.raises(HoldNotPending), db.write() as session:
            ledger.post_hold(session, hold)
    invariants_ok(db)


def test_expired_but_unswept_hold_cannot_be_posted(db: Database) -> None:
    alice, shop = open_wallet(db), open_wallet(db)
    start = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    with frozen_clock(start) as moving:
        fund(db, alice, 1_000)
        hold = create_hold(db, alice, shop, 400, start + timedelta(seconds=10))
        moving.advance(timedelta(seconds=10))
        with pytest.raises(HoldNotPending), db.write() as session:
            ledger.post_hold(session, hold)
        assert balance(db, shop).ledger == 0


# ---------------------------------------------------------------- reversals


def reverse(db: Database, transfer_id: str, amount: int | None = None) -> ledger.PostedTransfer:
    with db.write() as session:
        return ledger.reverse_transfer(session, transfer_id, amount=amount)


def reversed_amount(db: Database, transfer_id: str) -> int:
    with db.read() as session:
        return ledger.get_transfer(session, transfer_id).reversed_amount


def test_full_reversal_restores_balances_once(db: Database) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    original = transfer(db, alice, bob, 400)
    compensating = reverse(db, original.id)
    assert compensating.amount == 400
    assert balance(db, alice).ledger == 1_000
    assert balance(db, bob).ledger == 0
    assert reversed_amount(db, original.id) == 400
    with db.read() as session:
        stored = ledger.get_transfer(session, compensating.id)
    assert stored.reverses_transfer_id == original.id
    assert (stored.debit_account_id, stored.credit_account_id) == (bob, alice)
    with pytest.raises(ReversalExceedsRemainder):
        reverse(db, original.id)
    with pytest.raises(ReversalExceedsRemainder):
        reverse(db, original.id, 1)
    assert balance(db, alice).ledger == 1_000
    invariants_ok(db)


def test_partial_reversals_up_to_the_remainder(db: Database) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    original = transfer(db, alice, bob, 100)
    reverse(db, original.id, 30)
    assert reversed_amount(db, original.id) == 30
    with pytest.raises(ReversalExceedsRemainder):
        reverse(db, original.id, 71)
    assert reversed_amount(db, original.id) == 30
    reverse(db, original.id, 70)
    assert reversed_amount(db, original.id) == 100
    with pytest.raises(ReversalExceedsRemainder):
        reverse(db, original.id, 1)
    assert balance(db, alice).ledger == 1_000
    assert balance(db, bob).ledger == 0
    invariants_ok(db)


def test_reversal_amount_validated(db: Database) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    original = transfer(db, alice, bob, 100)
    for bad in (0, -5):
        with pytest.raises(InvalidAmount):
            reverse(db, original.id, bad)
    assert reversed_amount(db, original.id) == 0


def test_a_reversal_cannot_be_reversed(db: Database) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    original = transfer(db, alice, bob, 100)
    compensating = reverse(db, original.id, 40)
    before = counts(db)
    with pytest.raises(Conflict):
        reverse(db, compensating.id)
    assert counts(db) == before
    assert reversed_amount(db, compensating.id) == 0


def test_reversal_of_unknown_transfer(db: Database) -> None:
    with pytest.raises(NotFound):
        reverse(db, "trf_missing")


def test_reversal_may_debit_a_frozen_account(db: Database) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    original = transfer(db, alice, bob, 100)
    set_status(db, bob, AccountStatus.FROZEN)
    reverse(db, original.id)
    assert balance(db, bob).ledger == 0


def test_reversal_refused_when_payee_spent_the_money(db: Database) -> None:
    alice, bob, carol = open_wallet(db), open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    original = transfer(db, alice, bob, 100)
    transfer(db, bob, carol, 100)
    with pytest.raises(InsufficientFunds):
        reverse(db, original.id)
    assert reversed_amount(db, original.id) == 0  # the whole reversal rolled back
    invariants_ok(db)


# ---------------------------------------------------------------- reading


def test_statement_opening_and_closing_balance(db: Database) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    day1 = datetime(2032, 3, 1, 9, 0, tzinfo=UTC)
    with frozen_clock(day1) as moving:
        fund(db, alice, 1_000)  # before the period
        moving.advance(timedelta(days=1))
        transfer(db, alice, bob, 100)  # inside
        moving.advance(timedelta(hours=1))
        transfer(db, bob, alice, 30)  # inside
        moving.advance(timedelta(days=1))
        transfer(db, alice, bob, 500)  # after
    period_from = day1 + timedelta(hours=12)
    period_to = day1 + timedelta(days=1, hours=12)
    with db.read() as session:
        result = ledger.statement(session, alice, period_from, period_to)
        empty = ledger.statement(session, alice, day1 - timedelta(days=9), day1)
        everything = ledger.statement(session, alice, day1, day1 + timedelta(days=30))
    assert result.opening_balance == 1_000
    assert result.closing_balance == 930
    assert [(line.amount, line.balance_after) for line in result.lines] == [(-100, 900), (30, 930)]
    assert [line.counterparty_account_id for line in result.lines] == [bob, bob]
    assert result.currency == CURRENCY
    assert (empty.opening_balance, empty.closing_balance, empty.lines) == (0, 0, [])
    assert everything.opening_balance == 0
    assert everything.closing_balance == balance(db, alice).ledger == 430
    with pytest.raises(InvalidAmount), db.read() as session:
        ledger.statement(session, alice, period_to, period_from)


def test_check_invariants_reports_a_clean_ledger(db: Database) -> None:
    alice, bob = open_wallet(db), open_wallet(db, currency="USD")
    fund(db, alice, 500)
    fund(db, bob, 700, currency="USD")
    create_hold(db, alice, open_wallet(db), 100, LATER)
    report = invariants_ok(db)
    assert report.currency_sums == {"CNY": 0, "USD": 0}
    assert not report.drifted_accounts and not report.held_mismatches
