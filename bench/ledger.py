"""Transfers per second of the ledger service alone (no HTTP, no payments layer).

Run: ``.venv/bin/python -m bench.ledger [--backend sqlite|postgresql|both]
[--seconds 10] [--workers 1,4] [--no-write]``.

Each worker is a thread calling ``ledger.service.post_transfer`` through
``Database.transact`` (one transaction per transfer, retried on a lost race)
between random pairs of 50 customer wallets. SQLite runs on a fresh file in a
temporary directory; PostgreSQL on a fresh schema in database ``test`` that is
dropped afterwards. The figures go into the "Ledger" section of
``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.orm import Session

from bench import common
from bench.common import DOC, machine, postgres_database, sqlite_database
from payguard.db.engine import Database
from payguard.errors import InsufficientFunds
from payguard.ledger import service as ledger
from payguard.ledger.models import AccountKind, SystemAccount

ACCOUNTS = 50
CURRENCY = "CNY"
OPENING_BALANCE = 10**12
SECTION = "## Ledger (`bench/ledger.py`)"

console = Console()


@dataclass
class Result:
    backend: str
    workers: int
    seconds: float
    transfers: int
    refused: int
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.transfers / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        return common.percentile(self.latencies_ms, fraction)


def open_accounts(database: Database) -> list[str]:
    def work(session: Session) -> list[str]:
        bank = ledger.system_account_id(session, SystemAccount.BANK_SETTLEMENT, CURRENCY)
        wallets = []
        for number in range(ACCOUNTS):
            account = ledger.open_account(
                session,
                kind=AccountKind.CUSTOMER_WALLET,
                currency=CURRENCY,
                name=f"bench wallet {number}",
            )
            ledger.post_transfer(
                session,
                debit_account_id=bank,
                credit_account_id=account.id,
                amount=OPENING_BALANCE,
                currency=CURRENCY,
                kind="top_up",
            )
            wallets.append(account.id)
        return wallets

    return database.transact(work)


def run_config(
    backend: str,
    url: str,
    workers: int,
    seconds: float,
    tick: Callable[[float], None],
    synchronous: str = "FULL",
) -> Result:
    database = Database(url, pool_size=max(workers, 2), sqlite_synchronous=synchronous)
    try:
        wallets = open_accounts(database)
        # Warm up the pool, the statement caches and the SQLite page cache.
        warm = random.Random(0)
        for _ in range(50):
            debit, credit = warm.sample(wallets, 2)
            database.transact(
                functools.partial(
                    ledger.post_transfer,
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=1,
                    currency=CURRENCY,
                )
            )
        start_barrier = threading.Barrier(workers + 1)
        stop = threading.Event()
        counts = [0] * workers
        refused = [0] * workers
        latencies: list[list[float]] = [[] for _ in range(workers)]
        errors: list[BaseException] = []

        def worker(number: int) -> None:
            rng = random.Random(number)
            mine = latencies[number]
            start_barrier.wait()
            try:
                while not stop.is_set():
                    debit, credit = rng.sample(wallets, 2)
                    amount = rng.randint(1, 10_000)

                    work = functools.partial(
                        ledger.post_transfer,
                        debit_account_id=debit,
                        credit_account_id=credit,
                        amount=amount,
                        currency=CURRENCY,
                    )
                    began = time.perf_counter()
                    try:
                        database.transact(work)
                    except InsufficientFunds:
                        refused[number] += 1
                        continue
                    mine.append((time.perf_counter() - began) * 1000)
                    counts[number] += 1
            except BaseException as error:  # report, do not hide
                errors.append(error)
                stop.set()

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
        for thread in threads:
            thread.start()
        start_barrier.wait()
        began = time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds and not stop.is_set():
            tick(elapsed)
            time.sleep(0.1)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        tick(seconds)
        if errors:
            raise RuntimeError(f"a worker failed on {backend}") from errors[0]
        with database.read() as session:
            report = ledger.check_invariants(session)
        if not report.ok:
            raise RuntimeError(f"ledger invariants broken after the run: {report}")
        return Result(
            backend=backend,
            workers=workers,
            seconds=elapsed,
            transfers=sum(counts),
            refused=sum(refused),
            latencies_ms=[value for chunk in latencies for value in chunk],
        )
    finally:
        database.dispose()


def render(results: list[Result], seconds: float, command: str) -> str:
    info = machine()
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}`.",
        "",
        "Machine: " + "; ".join(f"{key} {value}" for key, value in info.items()) + ".",
        "",
        "Each worker is a thread calling `post_transfer` through `Database.transact`, one",
        "transaction per transfer, between random pairs of 50 wallets; "
        f"{seconds:g} s per configuration.",
        "SQLite runs in WAL mode; `synchronous=FULL` is payguard's default setting (an fsync",
        "per commit), `NORMAL` syncs the WAL only at checkpoints (a power cut may lose the",
        "last commits, never consistency).",
        "",
        "| backend | workers | transfers/s | p50 ms | p99 ms | transfers | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for result in results:
        target = "≥ 3,000/s" if result.workers == 4 else ""
        if target:
            target += " met" if result.rate >= 3000 else f" — {result.rate / 3000:.0%} of it"
        lines.append(
            f"| {result.backend} | {result.workers} | {result.rate:,.0f} | "
            f"{result.percentile(0.5):.2f} | {result.percentile(0.99):.2f} | "
            f"{result.transfers:,} | {target} |"
        )
    return "\n".join(lines) + "\n"


NOTES_MARK = "<!-- ledger-notes -->"


def write_section(body: str) -> None:
    """Replace only the Ledger section's measured table; keep hand-written notes after it."""
    common.write_section(SECTION, body, NOTES_MARK)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", default="1,4", help="comma-separated worker counts")
    parser.add_argument(
        "--sqlite-synchronous",
        default="FULL",
        help="comma-separated SQLite synchronous modes to measure (FULL is the default setting)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update docs/performance.md")
    args = parser.parse_args(argv)
    workers = [int(part) for part in args.workers.split(",") if part.strip()]
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    makers = {"sqlite": sqlite_database, "postgresql": postgres_database}
    results: list[Result] = []
    modes = [m.strip().upper() for m in args.sqlite_synchronous.split(",") if m.strip()]
    configs: list[tuple[str, str, int]] = []
    for backend in backends:
        for mode in modes if backend == "sqlite" else [""]:
            configs.extend((backend, mode, count) for count in workers)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        overall = progress.add_task("all configurations", total=len(configs) * args.seconds)
        for index, (backend, mode, count) in enumerate(configs):
            label = f"{backend} (synchronous={mode})" if mode else backend
            task = progress.add_task(f"{label} × {count} workers", total=args.seconds)

            def tick(elapsed: float, task: TaskID = task, index: int = index) -> None:
                progress.update(task, completed=min(elapsed, args.seconds))
                progress.update(overall, completed=index * args.seconds + elapsed)

            with makers[backend]() as url:
                result = run_config(backend, url, count, args.seconds, tick, mode or "FULL")
                result.backend = label
                results.append(result)
    table = Table(title="ledger transfers")
    for column in ("backend", "workers", "transfers/s", "p50 ms", "p99 ms", "transfers"):
        table.add_column(column, justify="right" if column != "backend" else "left")
    for result in results:
        table.add_row(
            result.backend,
            str(result.workers),
            f"{result.rate:,.0f}",
            f"{result.percentile(0.5):.2f}",
            f"{result.percentile(0.99):.2f}",
            f"{result.transfers:,}",
        )
    console.print(table)
    if not args.no_write:
        command = ".venv/bin/python -m bench.ledger " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        write_section(render(results, args.seconds, command.strip()))
        console.print(f"written to {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
