"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL tests use the server at 127.0.0.1:5432 (database ``test``), in a schema
of their own per test run and worker, so runs never collide. When the server is
unreachable they skip with a reason, unless PAYGUARD_REQUIRE_SERVICES=1 (CI),
where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from payguard.app import create_app
from payguard.db.engine import Database
from payguard.db.migrate import upgrade
from payguard.db.registry import metadata
from payguard.events.models import OutboxEvent
from payguard.settings import Settings

REQUIRE_SERVICES = os.environ.get("PAYGUARD_REQUIRE_SERVICES") == "1"
PG_DSN = os.environ.get("PAYGUARD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def service_unavailable(what: str, error: Exception) -> None:
    """Fail in CI, skip with a reason on a laptop."""
    message = f"{what} is not reachable ({error.__class__.__name__}: {error})"
    if REQUIRE_SERVICES:
        pytest.fail(message + "; PAYGUARD_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(message + "; set PAYGUARD_REQUIRE_SERVICES=1 to make this a failure")


def sqlalchemy_pg_url(schema: str) -> str:
    base = PG_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    schema = f"pgt_{worker}_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3) as connection:
            connection.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as error:
        service_unavailable("PostgreSQL at 127.0.0.1:5432", error)
    url = sqlalchemy_pg_url(schema)
    upgrade(url)
    yield url
    with psycopg.connect(PG_DSN, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def reset_postgres(url: str) -> None:
    """Empty every table. Replica mode lets TRUNCATE pass the immutability triggers."""
    tables = ", ".join(table.name for table in metadata.sorted_tables)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "payguard.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_schema_url")
    reset_postgres(url)
    return url


def make_settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "database_url": database_url,
        "var_dir": tmp_path / "var",
        # Cheap Argon2 parameters keep the suite fast; production defaults are documented.
        "argon2_time_cost": 1,
        "argon2_memory_kib": 64,
        "argon2_parallelism": 1,
        "idempotency_wait_seconds": 10.0,
        # Tests send many one-time codes per customer; the production default is 5 an hour.
        "otp_sends_per_hour": 1000,
        # Login delays are tested on their own (tests/identity/test_sessions.py); elsewhere
        # a test's deliberate wrong password must not make its next login wait.
        "login_delay_base_ms": 0,
        # A test machine's stalls (two xdist workers, a server thread, a GC pause) must not
        # turn a payment into the risk engine's fallback challenge; the budget itself is
        # tested in tests/risk/test_engine.py with a budget of zero.
        "risk_time_budget_ms": 2000.0,
        # Incident intake runs on demand in tests (intake.process_events); a background
        # thread would open incidents in other domains' tests (tests/incidents turn it on).
        "incident_intake_seconds": 0,
        # Rate limits are tested on their own (tests/test_rate_limits.py) and in the
        # request_flood drill; elsewhere a test's burst from one client must not get 429.
        "rate_limit_enabled": False,
        # So is the staff watch (tests/identity/test_staff_watch.py, the data_scraping and
        # insider_abuse drills): a test probing every route with every role is refused on
        # purpose, and must not have intake end its own staff sessions.
        "staff_read_alert_records": 10**9,
        "staff_read_block_records": 10**9,
        "staff_refusal_alert_count": 10**9,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def app_client(
    database_url: str, tmp_path: Path, defaults: dict[str, object], **overrides: object
) -> TestClient:
    """A client of an app with ``defaults`` (then ``overrides``) over the test settings."""
    values = {**defaults, **overrides}
    return TestClient(create_app(make_settings(database_url, tmp_path, **values)))


def outbox_payloads(db: Database, topic: str) -> list[dict[str, Any]]:
    """The payloads of the outbox events on ``topic``, oldest first."""
    with db.read() as session:
        rows = session.scalars(
            select(OutboxEvent).where(OutboxEvent.topic == topic).order_by(OutboxEvent.id)
        ).all()
        return [dict(row.payload) for row in rows]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(settings: Settings, **extra_env: str) -> Iterator[str]:
    """Run a real `uvicorn` server process on the test database; yields its base URL."""
    port = _free_port()
    env = {
        **os.environ,
        "PAYGUARD_DATABASE_URL": settings.database_url,
        "PAYGUARD_ENV": "test",
        "PAYGUARD_ACCESS_LOG": "false",
        "PAYGUARD_ARGON2_TIME_COST": "1",
        "PAYGUARD_ARGON2_MEMORY_KIB": "64",
        "PAYGUARD_ARGON2_PARALLELISM": "1",
        "PAYGUARD_IDEMPOTENCY_WAIT_SECONDS": "10",
        "PAYGUARD_DATABASE_POOL_SIZE": "12",
        "PAYGUARD_OTP_SENDS_PER_HOUR": "1000",
        "PAYGUARD_LOGIN_DELAY_BASE_MS": "0",
        "PAYGUARD_RISK_TIME_BUDGET_MS": "2000",
        "PAYGUARD_RATE_LIMIT_ENABLED": "false",  # as in make_settings
        "PAYGUARD_STAFF_READ_ALERT_RECORDS": str(10**9),
        "PAYGUARD_STAFF_READ_BLOCK_RECORDS": str(10**9),
        "PAYGUARD_STAFF_REFUSAL_ALERT_COUNT": str(10**9),
        # The test's keyring, so the test reads what the server sealed (and the server
        # never writes into the checkout's var/).
        "PAYGUARD_VAR_DIR": str(settings.var_dir),
        **extra_env,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "payguard.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def live_server(settings: Settings) -> Iterator[str]:
    """A real `uvicorn` server process on the test database; yields its base URL."""
    with serve(settings) as base:
        yield base


@pytest.fixture
def redis_url() -> str:
    """Redis at 127.0.0.1:6379: skip on a laptop without it, fail in CI."""
    url = os.environ.get("PAYGUARD_TEST_REDIS", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        service_unavailable("Redis at 127.0.0.1:6379", error)
    return url
