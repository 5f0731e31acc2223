"""Engines and sessions for SQLite (default) and PostgreSQL.

SQLite runs in WAL mode with foreign keys on. Write transactions on SQLite start
with ``BEGIN IMMEDIATE`` so two writers queue on the database lock instead of
deadlocking when both try to upgrade a read lock. On PostgreSQL, callers lock
rows in a consistent order; a deadlock or serialisation failure that still
happens is retried by ``Database.transact`` and never surfaces as a 500.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from payguard.errors import WriteConflict

T = TypeVar("T")

# PostgreSQL SQLSTATEs that mean "a concurrent transaction won; try again".
RETRYABLE_SQLSTATES = {"40001", "40P01", "55P03"}


def _is_retryable(error: DBAPIError) -> bool:
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate in RETRYABLE_SQLSTATES:
        return True
    message = str(error.orig).lower()
    return "database is locked" in message or "database table is locked" in message


class Database:
    """One engine plus session factories; created once per process."""

    def __init__(self, url: str, *, pool_size: int = 10, sqlite_synchronous: str = "FULL") -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"future": True}
        if self.is_sqlite:
            ensure_sqlite_directory(url)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            kwargs["pool_size"] = pool_size
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
            # No pre-ping: it costs a round trip per transaction. A connection that died
            # (server restart) is invalidated on first use and the transaction retried.
            kwargs["pool_recycle"] = 1800
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine, sqlite_synchronous)
        self._write_engine = self.engine.execution_options(payguard_write=True)
        # SQLite admits one writer at a time anyway; queueing this process's writers on a
        # lock keeps them out of SQLite's busy handler, which sleeps in millisecond steps.
        self._sqlite_writer = threading.RLock() if self.is_sqlite else None
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(bind=self._write_engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading. Closing it ends the transaction without expiring the
        objects read, so callers may use them after the block."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on any error."""
        with self._writer_turn(), self._write_sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        if self._sqlite_writer is None:
            yield
            return
        with self._sqlite_writer:
            yield

    def transact(self, work: Callable[[Session], T], *, attempts: int = 8) -> T:
        """Run ``work`` in one write transaction, retrying when a concurrent one won."""
        for attempt in range(1, attempts + 1):
            try:
                with self.write() as session:
                    return work(session)
            except DBAPIError as error:
                if not (_is_retryable(error) or error.connection_invalidated):
                    raise
                if attempt == attempts:
                    raise WriteConflict(
                        "the database was busy with concurrent updates; retry the request"
                    ) from error
                time.sleep(min(0.002 * 2**attempt, 0.2))
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except OperationalError:
            return False

    def dispose(self) -> None:
        self.engine.dispose()


def ensure_sqlite_directory(url: str) -> None:
    """SQLite creates the file but not its folder (``var/`` on a fresh clone)."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("payguard_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
