"""Parallel writers on the ledger service, on SQLite and on PostgreSQL.

Threads share one ``Database`` (as the API workers of one process do) and go through
``Database.transact``, which retries a lost race. Afterwards the ledger must be exactly
what the acknowledged operations say: nothing lost, nothing doubled, no unexpected error.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from payguard.db.engine import Database
from payguard.errors import HoldNotPending, InsufficientFunds, ReversalExceedsRemainder
from payguard.ledger import service as ledger
from payguard.ledger.models import HoldStatus, LedgerEntry, LedgerTransfer
from tests.ledger.helpers import (
    CURRENCY,
    balance,
    fund,
    invariants_ok,
    open_wallet,
    transfer,
)

THREADS = 8
TRANSFERS_PER_THREAD = 300
ACCOUNTS = 20


def run_in_threads(count: int, work: Callable[[int], None]) -> None:
    """Start ``count`` threads together; re-raise the first error any of them hit."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(number: int) -> None:
        try:
            barrier.wait()
            work(number)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), "a worker hung"
    if errors:
        raise errors[0]


def test_parallel_transfers_lose_nothing(db: Database) -> None:
    wallets = [open_wallet(db, name=f"wallet {n}") for n in range(ACCOUNTS)]
    for wallet in wallets:
        fund(db, wallet, 5_000)
    total_before = sum(balance(db, w).ledger for w in wallets)
    acknowledged: list[list[str]] = [[] for _ in range(THREADS)]
    refused = [0] * THREADS
    unexpected: list[BaseException] = []

    def worker(number: int) -> None:
        rng = random.Random(number)
        for _ in range(TRANSFERS_PER_THREAD):
            # A few hot accounts make the pairs overlap heavily between threads.
            debit, credit = rng.sample(wallets[:5] if rng.random() < 0.5 else wallets, 2)
            amount = rng.randint(1, 2_000)

            def work(session: Session, d: str = debit, c: str = credit, a: int = amount) -> str:
                return ledger.post_transfer(
                    session,
                    debit_account_id=d,
                    credit_account_id=c,
                    amount=a,
                    currency=CURRENCY,
                    kind="concurrent",
                ).id

            try:
                acknowledged[number].append(db.transact(work))
            except InsufficientFunds:
                refused[number] += 1
            except Exception as error:  # anything else is a failure of the test
                unexpected.append(error)

    run_in_threads(THREADS, worker)

    assert unexpected == [], unexpected[:3]
    ids = [transfer_id for chunk in acknowledged for transfer_id in chunk]
    assert len(ids) + sum(refused) == THREADS * TRANSFERS_PER_THREAD
    assert len(ids) > THREADS * TRANSFERS_PER_THREAD // 2  # most of them went through
    with db.read() as session:
        stored = set(
            session.scalars(select(LedgerTransfer.id).where(LedgerTransfer.kind == "concurrent"))
        )
        # Every entry of each account, in the order they were written.
        entries = session.execute(
            select(LedgerEntry.account_id, LedgerEntry.amount, LedgerEntry.balance_after)
            .where(LedgerEntry.account_id.in_(wallets))
            .order_by(LedgerEntry.account_id, LedgerEntry.id)
        ).all()
        entry_count = session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .join(LedgerTransfer, LedgerTransfer.id == LedgerEntry.transfer_id)
            .where(LedgerTransfer.kind == "concurrent")
        )
    # Every acknowledged transfer is in the ledger, and nothing else is.
    assert stored == set(ids)
    assert len(set(ids)) == len(ids)
    assert entry_count == 2 * len(ids)
    # No lost update: each entry's balance_after follows from the one before it.
    running: dict[str, int] = {}
    for account_id, amount, balance_after in entries:
        expected = running.get(account_id, 0) + amount
        assert balance_after == expected, (account_id, amount, balance_after, expected)
        running[account_id] = balance_after
    for wallet in wallets:
        state = balance(db, wallet)
        assert state.ledger == running[wallet]
        assert state.available >= 0
    assert sum(balance(db, w).ledger for w in wallets) == total_before
    invariants_ok(db)


def test_racing_post_and_void_of_one_hold(db: Database) -> None:
    payer, shop = open_wallet(db), open_wallet(db)
    fund(db, payer, 100_000)
    rounds = 12
    for round_number in range(rounds):
        with db.write() as session:
            hold_id = ledger.create_hold(
                session,
                account_id=payer,
                credit_account_id=shop,
                amount=1_000,
                currency=CURRENCY,
                expires_at=datetime(2099, 1, 1, tzinfo=UTC),
            ).id
        outcomes: list[str] = []
        lock = threading.Lock()
        # Odd rounds: two posts race; even rounds: a post races a void; plus two voids.
        actions: list[Callable[[Session], Any]] = [
            lambda s, h=hold_id: ledger.post_hold(s, h, amount=600),
            (lambda s, h=hold_id: ledger.post_hold(s, h))
            if round_number % 2
            else (lambda s, h=hold_id: ledger.void_hold(s, h)),
            lambda s, h=hold_id: ledger.void_hold(s, h),
        ]

        def worker(number: int, actions: list[Callable[[Session], Any]] = actions) -> None:
            try:
                db.transact(actions[number])
                outcome = f"won:{number}"
            except HoldNotPending:
                outcome = "lost"
            with lock:
                outcomes.append(outcome)

        run_in_threads(len(actions), worker)
        counted = Counter(o if o == "lost" else "won" for o in outcomes)
        assert counted == {"won": 1, "lost": len(actions) - 1}, outcomes
        with db.read() as session:
            hold = ledger.get_hold(session, hold_id)
            posts = session.scalar(
                select(func.count())
                .select_from(LedgerTransfer)
                .where(LedgerTransfer.hold_id == hold_id)
            )
        assert hold.status in (HoldStatus.POSTED, HoldStatus.VOIDED)
        assert posts == (1 if hold.status == HoldStatus.POSTED else 0)
    assert balance(db, payer).held == 0
    assert balance(db, payer).ledger + balance(db, shop).ledger == 100_000
    invariants_ok(db)


def test_racing_partial_reversals_never_exceed_the_remainder(db: Database) -> None:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 10_000)
    for amount, part in ((1_000, 300), (1_000, 250), (999, 1_000)):
        original = transfer(db, alice, bob, amount).id
        won: list[str] = []
        lost: list[str] = []
        lock = threading.Lock()

        def worker(_: int, original: str = original, part: int = part) -> None:
            try:
                posted = db.transact(lambda s: ledger.reverse_transfer(s, original, amount=part))
                with lock:
                    won.append(posted.id)
            except ReversalExceedsRemainder:
                with lock:
                    lost.append("lost")

        run_in_threads(THREADS, worker)
        expected_wins = amount // part
        assert len(won) == expected_wins
        assert len(lost) == THREADS - expected_wins
        with db.read() as session:
            reversed_amount = ledger.get_transfer(session, original).reversed_amount
            reversal_total = session.scalar(
                select(func.coalesce(func.sum(LedgerTransfer.amount), 0)).where(
                    LedgerTransfer.reverses_transfer_id == original
                )
            )
        assert reversed_amount == reversal_total == expected_wins * part <= amount
    assert balance(db, alice).ledger + balance(db, bob).ledger == 10_000
    invariants_ok(db)
