"""The database itself refuses to rewrite ledger history, whatever the client does.

These tests bypass the service and speak raw SQL on a plain connection, as a person
with SQL access (or a buggy code path) would.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from payguard.db.engine import Database
from tests.ledger.helpers import fund, open_wallet, transfer


def ledger_with_one_transfer(db: Database) -> str:
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 1_000)
    return transfer(db, alice, bob, 250).id


def refused(db: Database, statement: str, **params: object) -> str:
    """Run ``statement``; it must fail inside the database. Returns the error text."""
    with pytest.raises(DBAPIError) as caught, db.engine.begin() as connection:
        connection.execute(text(statement), params)
    return str(caught.value.orig)


def entries_snapshot(db: Database) -> list[tuple[object, ...]]:
    with db.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, transfer_id, account_id, amount, balance_after FROM ledger_entries")
        )
        return sorted(tuple(row) for row in rows)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET amount = amount * 2 WHERE transfer_id = :t",
        "UPDATE ledger_entries SET balance_after = 0 WHERE transfer_id = :t",
        "UPDATE ledger_entries SET account_id = account_id WHERE transfer_id = :t",
        "DELETE FROM ledger_entries WHERE transfer_id = :t",
        "DELETE FROM ledger_entries",
    ],
)
def test_entries_cannot_be_updated_or_deleted(db: Database, statement: str) -> None:
    transfer_id = ledger_with_one_transfer(db)
    before = entries_snapshot(db)
    message = refused(db, statement, t=transfer_id)
    assert "immutable" in message
    assert entries_snapshot(db) == before


def test_transfer_amount_and_parties_are_fixed(db: Database) -> None:
    transfer_id = ledger_with_one_transfer(db)
    for statement in (
        "UPDATE ledger_transfers SET amount = 1 WHERE id = :t",
        "UPDATE ledger_transfers SET credit_account_id = debit_account_id WHERE id = :t",
        "UPDATE ledger_transfers SET memo = 'rewritten' WHERE id = :t",
        "DELETE FROM ledger_transfers WHERE id = :t",
    ):
        assert "immutable" in refused(db, statement, t=transfer_id)
    with db.engine.connect() as connection:
        amount = connection.execute(
            text("SELECT amount FROM ledger_transfers WHERE id = :t"), {"t": transfer_id}
        ).scalar_one()
    assert amount == 250


def test_reversed_amount_may_change(db: Database) -> None:
    transfer_id = ledger_with_one_transfer(db)
    with db.engine.begin() as connection:
        connection.execute(
            text("UPDATE ledger_transfers SET reversed_amount = 100 WHERE id = :t"),
            {"t": transfer_id},
        )
    with db.engine.connect() as connection:
        value = connection.execute(
            text("SELECT reversed_amount FROM ledger_transfers WHERE id = :t"),
            {"t": transfer_id},
        ).scalar_one()
    assert value == 100


def test_new_entries_can_still_be_inserted(db: Database) -> None:
    """The triggers guard history, not the ledger's ability to grow."""
    ledger_with_one_transfer(db)
    count = len(entries_snapshot(db))
    alice, bob = open_wallet(db), open_wallet(db)
    fund(db, alice, 10)
    transfer(db, alice, bob, 5)
    assert len(entries_snapshot(db)) == count + 4


@pytest.mark.parametrize("table", ["ledger_entries", "ledger_transfers"])
def test_truncate_refused_on_postgresql(db: Database, backend: str, table: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no TRUNCATE; DELETE is covered above")
    ledger_with_one_transfer(db)
    before = entries_snapshot(db)
    assert "immutable" in refused(db, f"TRUNCATE {table} CASCADE")
    assert entries_snapshot(db) == before
