"""The engine survives a server-side disconnect, and SQLite runs in WAL with foreign keys."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from payguard.db.engine import Database
from tests.conftest import PG_DSN


def test_sqlite_pragmas(db: Database, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite only")
    with db.read() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_transaction_retried_after_the_server_dropped_the_connection(
    db: Database, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL only: a server restart drops pooled connections")
    with db.read() as session:
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    # The pooled connection is dead; the first use invalidates it and transact retries.
    assert db.transact(lambda session: session.execute(text("SELECT 41 + 1")).scalar()) == 42
