"""Where the simulation runs: an in-process server on a throwaway database, or a target URL."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from payguard.app import create_app
from payguard.client.sdk import PayguardClient
from payguard.db.engine import Database
from payguard.db.migrate import upgrade
from payguard.identity import notifications
from payguard.identity import service as identity
from payguard.ledger import service as ledger
from payguard.settings import Settings
from payguard.simulator.engine import SimulationSummary, run_simulation

Progress = Callable[[int, int], None]


def simulate_in_process(
    *, customers: int, days: int, seed: int, out_path: Path, on_progress: Progress | None
) -> tuple[SimulationSummary, bool]:
    """Run against a fresh SQLite database served in-process; returns (summary, ledger ok)."""
    with tempfile.TemporaryDirectory(prefix="payguard-sim-") as folder:
        url = f"sqlite:///{Path(folder) / 'simulation.db'}"
        upgrade(url)
        # Simulated users log in once each; cheap hashing keeps a large population quick.
        settings = Settings(
            database_url=url,
            var_dir=Path(folder),  # a throwaway keyring with the throwaway database
            access_log=False,
            log_level="WARNING",
            argon2_time_cost=1,
            argon2_memory_kib=1024,
            argon2_parallelism=1,
            # Hundreds of simulated phones share the one in-process address: the per-address
            # write limit (docs/rate-limits.md) would refuse most of them.
            rate_limit_enabled=False,
        )
        database = Database(url)
        try:
            _staff, issued = database.transact(
                lambda session: identity.create_staff(
                    session, settings, username="simulator", role="admin", password=None
                )
            )
            _checker, checker_issued = database.transact(
                lambda session: identity.create_staff(
                    session, settings, username="sim-checker", role="compliance", password=None
                )
            )
            with TestClient(create_app(settings)) as http:
                summary = simulate_with(
                    http,
                    issued.token,
                    checker_token=checker_issued.token,
                    customers=customers,
                    days=days,
                    seed=seed,
                    out_path=out_path,
                    on_progress=on_progress,
                    read_code=lambda phone: latest_code(database, settings, phone),
                )
            with database.read() as session:
                ok = ledger.check_invariants(session).ok
        finally:
            database.dispose()
    return summary, ok


def simulate_with(
    http: httpx.Client,
    staff_token: str | None,
    *,
    customers: int,
    days: int,
    seed: int,
    out_path: Path,
    on_progress: Progress | None,
    read_code: Callable[[str], str] | None = None,
    checker_token: str | None = None,
) -> SimulationSummary:
    staff = PayguardClient(http=http, token=staff_token) if staff_token else None
    checker = PayguardClient(http=http, token=checker_token) if checker_token else None
    return run_simulation(
        lambda: PayguardClient(http=http),
        staff,
        checker=checker,
        customers=customers,
        days=days,
        seed=seed,
        out_path=out_path,
        on_progress=on_progress,
        read_code=read_code,
    )


def latest_code(database: Database, settings: Settings, recipient: str) -> str:
    """The newest one-time code the outbox sender 'sent' to ``recipient``."""
    with database.read() as session:
        code = notifications.latest_sent_code(session, settings, recipient)
    if code is None:
        raise RuntimeError("no one-time code was sent to this simulated phone")
    return code


def simulate_against(
    target: str,
    staff_token: str | None,
    *,
    customers: int,
    days: int,
    seed: int,
    out_path: Path,
    on_progress: Progress | None,
    checker_token: str | None = None,
) -> tuple[SimulationSummary, bool | None]:
    """Run against a running server; ledger ok is known only with a staff token."""
    with httpx.Client(base_url=target, timeout=30) as http:
        summary = simulate_with(
            http,
            staff_token,
            checker_token=checker_token,
            customers=customers,
            days=days,
            seed=seed,
            out_path=out_path,
            on_progress=on_progress,
        )
        ok: bool | None = None
        if staff_token:
            reply = http.get(
                "/v1/ledger/invariants", headers={"Authorization": f"Bearer {staff_token}"}
            )
            ok = bool(reply.json().get("ok")) if reply.status_code == 200 else None
    return summary, ok
