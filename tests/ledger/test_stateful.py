"""A Hypothesis state machine drives the ledger service and checks it against a model.

Random top-ups, transfers, holds (post in full or in part, void), reversals (full or
partial), freezes and unfreezes among a handful of accounts, including operations that
must fail. For every operation the model predicts the outcome (success or the exact
error); after every step the database must agree with the model and the ledger's
promises must hold: every currency sums to zero, no available balance below its floor,
every hold resolved at most once, no transfer reversed beyond its amount, and
``check_invariants`` is clean.

Each example opens fresh accounts (including its own unlimited system account), so the
examples share one database without truncating it in between.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from payguard.db.engine import Database
from payguard.errors import (
    AccountFrozen,
    Conflict,
    HoldNotPending,
    InsufficientFunds,
    InvalidAmount,
    ProblemError,
    ReversalExceedsRemainder,
)
from payguard.ledger import service as ledger
from payguard.ledger.models import (
    AccountKind,
    AccountStatus,
    HoldStatus,
    LedgerAccount,
    LedgerHold,
    LedgerTransfer,
)
from payguard.money import MAX_AMOUNT

CURRENCY = "CNY"
WALLETS = 5
# Wallet 0 may go 5,000 below zero; the others may not go below zero at all.
OVERDRAFTS = [5_000, 0, 0, 0, 0]
FAR_FUTURE = datetime(2099, 1, 1, tzinfo=UTC)

T = TypeVar("T")

amounts = st.one_of(
    st.integers(min_value=1, max_value=4_000),
    st.sampled_from([0, -1, MAX_AMOUNT + 1]),  # always refused
)
wallet_index = st.integers(min_value=0, max_value=WALLETS - 1)


@dataclass
class ModelAccount:
    id: str
    overdraft: int | None
    balance: int = 0
    held: int = 0
    frozen: bool = False

    @property
    def available(self) -> int:
        return self.balance - self.held

    def can_pay(self, amount: int) -> bool:
        return self.overdraft is None or self.available - amount >= -self.overdraft


@dataclass
class ModelHold:
    account: int
    credit: int
    amount: int
    status: str = HoldStatus.PENDING
    resolutions: int = 0


@dataclass
class ModelTransfer:
    debit: str
    credit: str
    amount: int
    is_reversal: bool
    reversed: int = 0


@dataclass
class Model:
    accounts: list[ModelAccount] = field(default_factory=list)
    holds: dict[str, ModelHold] = field(default_factory=dict)
    transfers: dict[str, ModelTransfer] = field(default_factory=dict)

    def by_id(self, account_id: str) -> ModelAccount:
        return next(a for a in self.accounts if a.id == account_id)


def machine_for(db: Database) -> type[RuleBasedStateMachine]:
    class LedgerMachine(RuleBasedStateMachine):
        holds = Bundle("holds")
        transfers = Bundle("transfers")

        def __init__(self) -> None:
            super().__init__()
            self.model = Model()

        # ------------------------------------------------ helpers

        def attempt(
            self, expected: type[ProblemError] | None, work: Callable[[Session], T]
        ) -> T | None:
            """Run ``work`` in one transaction; it must fail with ``expected`` (or succeed)."""
            try:
                result = db.transact(work)
            except ProblemError as error:
                assert expected is not None, f"unexpected refusal: {error!r}"
                assert type(error) is expected, f"expected {expected.__name__}, got {error!r}"
                return None
            assert expected is None, f"expected {expected.__name__}, but it succeeded"
            return result

        def record_transfer(self, posted: ledger.PostedTransfer, debit: str, credit: str) -> None:
            self.model.transfers[posted.id] = ModelTransfer(
                debit=debit, credit=credit, amount=posted.amount, is_reversal=False
            )

        @property
        def bank(self) -> ModelAccount:
            return self.model.accounts[-1]

        # ------------------------------------------------ rules

        @initialize()
        def open_accounts(self) -> None:
            def work(session: Session) -> list[str]:
                opened = [
                    ledger.open_account(
                        session,
                        kind=AccountKind.CUSTOMER_WALLET,
                        currency=CURRENCY,
                        name=f"wallet {n}",
                        overdraft_limit=OVERDRAFTS[n],
                    ).id
                    for n in range(WALLETS)
                ]
                system = ledger.open_account(
                    session,
                    kind=AccountKind.SYSTEM,
                    currency=CURRENCY,
                    name="per-example bank settlement",
                    overdraft_limit=None,
                )
                return [*opened, system.id]

            ids = db.transact(work)
            self.model.accounts = [
                ModelAccount(account_id, OVERDRAFTS[n] if n < WALLETS else None)
                for n, account_id in enumerate(ids)
            ]

        @rule(target=transfers, to=wallet_index, amount=st.integers(1, 20_000))
        def top_up(self, to: int, amount: int) -> Any:
            payee = self.model.accounts[to]
            bank = self.bank
            posted = self.attempt(
                None,
                lambda s: ledger.post_transfer(
                    s,
                    debit_account_id=bank.id,
                    credit_account_id=payee.id,
                    amount=amount,
                    currency=CURRENCY,
                    kind="top_up",
                ),
            )
            assert posted is not None
            bank.balance -= amount
            payee.balance += amount
            self.record_transfer(posted, bank.id, payee.id)
            return posted.id

        @rule(target=transfers, frm=wallet_index, to=wallet_index, amount=amounts)
        def transfer(self, frm: int, to: int, amount: int) -> Any:
            payer, payee = self.model.accounts[frm], self.model.accounts[to]
            expected: type[ProblemError] | None = None
            if amount <= 0 or amount > MAX_AMOUNT or frm == to:
                expected = InvalidAmount
            elif payer.frozen:
                expected = AccountFrozen
            elif not payer.can_pay(amount):
                expected = InsufficientFunds
            posted = self.attempt(
                expected,
                lambda s: ledger.post_transfer(
                    s,
                    debit_account_id=payer.id,
                    credit_account_id=payee.id,
                    amount=amount,
                    currency=CURRENCY,
                ),
            )
            if posted is None:
                return multiple()
            payer.balance -= amount
            payee.balance += amount
            self.record_transfer(posted, payer.id, payee.id)
            assert posted.balances_after == {payer.id: payer.balance, payee.id: payee.balance}
            return posted.id

        @rule(
            target=transfers,
            frm=wallet_index,
            to=wallet_index,
            offset=st.sampled_from([-1, 0, 1]),
        )
        def transfer_to_the_floor(self, frm: int, to: int, offset: int) -> Any:
            """Spend exactly what is available (down to the overdraft floor), one less, or
            one more: the boundaries random amounts rarely hit."""
            if frm == to:
                to = (to + 1) % WALLETS
            payer = self.model.accounts[frm]
            spendable = payer.available + (payer.overdraft or 0)
            amount = spendable + offset
            if amount <= 0:
                return multiple()
            return self.transfer(frm, to, amount)

        @rule(target=holds, frm=wallet_index, to=wallet_index, amount=amounts)
        def create_hold(self, frm: int, to: int, amount: int) -> Any:
            if frm == to:
                to = (to + 1) % WALLETS
            payer, payee = self.model.accounts[frm], self.model.accounts[to]
            expected: type[ProblemError] | None = None
            if amount <= 0 or amount > MAX_AMOUNT:
                expected = InvalidAmount
            elif payer.frozen:
                expected = AccountFrozen
            elif not payer.can_pay(amount):
                expected = InsufficientFunds
            hold_id = self.attempt(
                expected,
                lambda s: (
                    ledger.create_hold(
                        s,
                        account_id=payer.id,
                        credit_account_id=payee.id,
                        amount=amount,
                        currency=CURRENCY,
                        expires_at=FAR_FUTURE,
                    ).id
                ),
            )
            if hold_id is None:
                return multiple()
            payer.held += amount
            self.model.holds[hold_id] = ModelHold(frm, to, amount)
            return hold_id

        @rule(
            target=transfers,
            hold_id=holds,
            part=st.one_of(st.none(), st.floats(min_value=0.01, max_value=1.0)),
        )
        def post_hold(self, hold_id: str, part: float | None) -> Any:
            hold = self.model.holds[hold_id]
            amount = None if part is None else max(1, int(hold.amount * part))
            expected = None if hold.status == HoldStatus.PENDING else HoldNotPending
            posted = self.attempt(expected, lambda s: ledger.post_hold(s, hold_id, amount=amount))
            if posted is None:
                return multiple()
            payer = self.model.accounts[hold.account]
            payee = self.model.accounts[hold.credit]
            moved = hold.amount if amount is None else amount
            assert posted.amount == moved
            payer.held -= hold.amount
            payer.balance -= moved
            payee.balance += moved
            hold.status = HoldStatus.POSTED
            hold.resolutions += 1
            self.record_transfer(posted, payer.id, payee.id)
            return posted.id

        @rule(hold_id=holds)
        def void_hold(self, hold_id: str) -> None:
            hold = self.model.holds[hold_id]
            expected = None if hold.status == HoldStatus.PENDING else HoldNotPending
            done = self.attempt(expected, lambda s: ledger.void_hold(s, hold_id) or True)
            if done:
                self.model.accounts[hold.account].held -= hold.amount
                hold.status = HoldStatus.VOIDED
                hold.resolutions += 1

        @rule(
            target=transfers,
            transfer_id=transfers,
            part=st.one_of(st.none(), st.floats(min_value=0.01, max_value=1.2)),
        )
        def reverse(self, transfer_id: str, part: float | None) -> Any:
            original = self.model.transfers[transfer_id]
            remaining = original.amount - original.reversed
            amount = None if part is None else max(1, int(original.amount * part))
            wanted = remaining if amount is None else amount
            # The reversal debits the original payee (frozen or not) and credits the payer.
            payee = self.model.by_id(original.credit)
            expected: type[ProblemError] | None = None
            if original.is_reversal:
                expected = Conflict
            elif remaining == 0 or wanted > remaining:
                expected = ReversalExceedsRemainder
            elif not payee.can_pay(wanted):
                expected = InsufficientFunds
            posted = self.attempt(
                expected, lambda s: ledger.reverse_transfer(s, transfer_id, amount=amount)
            )
            if posted is None:
                return multiple()
            assert posted.amount == wanted
            payer = self.model.by_id(original.debit)
            payee.balance -= wanted
            payer.balance += wanted
            original.reversed += wanted
            self.model.transfers[posted.id] = ModelTransfer(
                debit=payee.id, credit=payer.id, amount=wanted, is_reversal=True
            )
            return posted.id

        @rule(which=wallet_index, frozen=st.booleans())
        def set_frozen(self, which: int, frozen: bool) -> None:
            account = self.model.accounts[which]
            status = AccountStatus.FROZEN if frozen else AccountStatus.ACTIVE
            self.attempt(None, lambda s: ledger.set_status(s, account.id, status, reason="test"))
            account.frozen = frozen

        # ------------------------------------------------ invariants

        @invariant()
        def database_agrees_with_model(self) -> None:
            if not self.model.accounts:
                return
            ids = [a.id for a in self.model.accounts]
            with db.read() as session:
                rows = {
                    row.id: row
                    for row in session.execute(
                        select(
                            LedgerAccount.id,
                            LedgerAccount.balance,
                            LedgerAccount.held,
                            LedgerAccount.status,
                            LedgerAccount.overdraft_limit,
                        ).where(LedgerAccount.id.in_(ids))
                    )
                }
                holds = {
                    row.id: row
                    for row in session.execute(
                        select(LedgerHold.id, LedgerHold.status, LedgerHold.transfer_id).where(
                            LedgerHold.id.in_(list(self.model.holds))
                        )
                    )
                }
                posts_per_hold = dict(
                    session.execute(
                        select(LedgerTransfer.hold_id, func.count())
                        .where(LedgerTransfer.hold_id.in_(list(self.model.holds)))
                        .group_by(LedgerTransfer.hold_id)
                    ).all()
                )
                transfers = {
                    row.id: row
                    for row in session.execute(
                        select(
                            LedgerTransfer.id, LedgerTransfer.amount, LedgerTransfer.reversed_amount
                        ).where(LedgerTransfer.id.in_(list(self.model.transfers)))
                    )
                }
                reversal_sums = dict(
                    session.execute(
                        select(LedgerTransfer.reverses_transfer_id, func.sum(LedgerTransfer.amount))
                        .where(LedgerTransfer.reverses_transfer_id.in_(list(self.model.transfers)))
                        .group_by(LedgerTransfer.reverses_transfer_id)
                    ).all()
                )
                report = ledger.check_invariants(session)

            # Money is conserved within this example. check_invariants looks at the whole
            # database; its findings are narrowed to this example's accounts and transfers
            # so that a broken earlier example cannot make a later one fail (which would
            # confuse shrinking). The test checks the whole report once more at the end.
            assert sum(row.balance for row in rows.values()) == 0
            assert sum(a.balance for a in self.model.accounts) == 0
            mine = set(ids)
            assert not set(report.drifted_accounts) & mine, report
            assert not set(report.held_mismatches) & mine, report
            assert not set(report.below_floor) & mine, report
            assert not set(report.unbalanced_transfers) & set(self.model.transfers), report

            for account in self.model.accounts:
                row = rows[account.id]
                assert (row.balance, row.held) == (account.balance, account.held), account
                expected_status = AccountStatus.FROZEN if account.frozen else AccountStatus.ACTIVE
                assert row.status == expected_status
                if row.overdraft_limit is not None:  # no floor only for system accounts
                    assert row.balance - row.held >= -row.overdraft_limit, account
                    assert row.held >= 0

            assert len(holds) == len(self.model.holds)
            for hold_id, hold in self.model.holds.items():
                assert hold.resolutions <= 1
                assert holds[hold_id].status == hold.status
                posts = posts_per_hold.get(hold_id, 0)
                assert posts == (1 if hold.status == HoldStatus.POSTED else 0)
                assert (holds[hold_id].transfer_id is not None) == (posts == 1)

            assert len(transfers) == len(self.model.transfers)
            for transfer_id, model in self.model.transfers.items():
                row = transfers[transfer_id]
                assert row.amount == model.amount
                assert 0 <= row.reversed_amount <= row.amount
                assert row.reversed_amount == model.reversed
                assert int(reversal_sums.get(transfer_id) or 0) == model.reversed

    return LedgerMachine


def test_ledger_state_machine(db: Database) -> None:
    run_state_machine_as_test(
        machine_for(db),
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    with db.read() as session:
        report = ledger.check_invariants(session)
    assert report.ok, report
    assert all(total == 0 for total in report.currency_sums.values()), report
