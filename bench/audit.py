"""What the audit log costs: an append in the payment path, sealing, and a full verify.

Run: ``.venv/bin/python -m bench.audit [--appends 5000] [--records 1000000] [--no-write]``.

1. **Append**: one ``audit.record`` inside an open SQLite transaction (what a payment's
   decision adds), timed per call; the commit is the payment's.
2. **Seal and sign**: ``--records`` records are inserted in bulk, then sealed into the
   Merkle tree and a tree head signed (``make_tree_head``), with a head every 100,000
   records so that verification has heads to check.
3. **Verify**: ``payguard audit verify``'s work: read every record, recompute its leaf
   hash, the root at every signed head and every signature. Target: 1,000,000 records
   in at most 60 s.

Figures go into the "Audit log" section of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from sqlalchemy import insert
from sqlalchemy.orm import Session

from bench import common
from payguard import clock
from payguard.audit import service as audit
from payguard.audit.models import AuditRecord
from payguard.crypto.keyring import load_signer
from payguard.db.engine import Database
from payguard.settings import Settings

SECTION = "## Audit log (`bench/audit.py`)"
NOTES_MARK = "<!-- audit-notes -->"
console = Console()


def append_chunk(session: Session, samples: list[float], count: int = 1000) -> None:
    """``count`` appends in one transaction, each timed (the commit is not: it is the
    payment's, which commits its ledger rows in the same go)."""
    for number in range(count):
        started = time.perf_counter()
        audit.record(
            session,
            actor="system",
            action="payments.status_changed",
            object=f"pay_{number:026d}",
            details={"payment_id": f"pay_{number:026d}", "status": "confirmed", "amount": 1},
        )
        samples.append((time.perf_counter() - started) * 1_000_000)


def fill(url: str, records: int, settings: Settings, progress: Progress) -> tuple[float, int]:
    """Insert ``records`` in bulk, sealing and signing a head every 100,000; returns the
    seconds spent sealing and signing, and the number of heads."""
    database = Database(url)
    signer = load_signer(settings)
    task = progress.add_task("insert, seal, sign", total=records)
    sealing = 0.0
    heads = 0
    now = clock.now()
    try:
        for start in range(0, records, 100_000):
            size = min(100_000, records - start)
            rows = [
                {
                    "at": now,
                    "actor": f"staff:stf_{index % 97}",
                    "action": "payments.status_changed",
                    "object": f"pay_{index:026d}",
                    "outcome": "ok",
                    "details": {"payment_id": f"pay_{index:026d}", "status": "confirmed"},
                }
                for index in range(start, start + size)
            ]
            database.transact(lambda session, rows=rows: session.execute(insert(AuditRecord), rows))
            started = time.perf_counter()
            database.transact(lambda session: audit.make_tree_head(session, signer))
            sealing += time.perf_counter() - started
            heads += 1
            progress.advance(task, size)
    finally:
        database.dispose()
    return sealing, heads


def time_verify(
    url: str, settings: Settings, progress: Progress
) -> tuple[float, audit.VerifyReport]:
    database = Database(url)
    task = progress.add_task("verify", total=None)
    started = time.perf_counter()
    try:
        with database.read() as session:
            report = audit.verify(
                session,
                load_signer(settings).public_pem,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    finally:
        database.dispose()
    return time.perf_counter() - started, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--appends", type=int, default=5000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="payguard-bench-audit-") as folder:
        with common.sqlite_database() as url:
            database = Database(url)
            samples: list[float] = []
            try:
                for _ in range(max(1, args.appends // 1000)):
                    database.transact(lambda session: append_chunk(session, samples))
            finally:
                database.dispose()
            appends = samples[min(100, len(samples) // 10) :]  # drop the warm-up
        with (
            common.sqlite_database() as url,
            Progress(
                "{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
            ) as progress,
        ):
            settings = Settings(database_url=url, var_dir=Path(folder))
            sealing, heads = fill(url, args.records, settings, progress)
            seconds, report = time_verify(url, settings, progress)
    append_p50 = common.percentile(appends, 0.5)
    append_p99 = common.percentile(appends, 0.99)
    console.print(f"append: p50 {append_p50:.1f} µs, p99 {append_p99:.1f} µs ({len(appends)})")
    console.print(f"seal + sign {args.records:,} records in {heads} heads: {sealing:.1f} s")
    console.print(
        f"verify {report.records:,} records, {report.heads_checked} heads: {seconds:.1f} s "
        f"({'intact' if report.ok else 'NOT intact'})"
    )
    if not args.no_write:
        command = "python -m bench.audit " + " ".join(argv if argv is not None else sys.argv[1:])
        info = common.machine()
        body = "\n".join(
            [
                f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command.strip()}`.",
                "",
                "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
                "",
                "| what | figure | target |",
                "| --- | ---: | --- |",
                f"| append in the payment's transaction, p50 | {append_p50:.1f} µs | |",
                f"| append in the payment's transaction, p99 | {append_p99:.1f} µs | "
                f"≤ 100 µs: {'met' if append_p99 <= 100 else 'not met'} |",
                f"| seal and sign {args.records:,} records ({heads} tree heads) | "
                f"{sealing:.1f} s | |",
                f"| `payguard audit verify` of {report.records:,} records and {heads} heads | "
                f"{seconds:.1f} s | ≤ 60 s for 1,000,000: "
                f"{'met' if seconds <= 60 and report.records >= 1_000_000 else 'see notes'} |",
                "",
            ]
        )
        common.write_section(SECTION, body, NOTES_MARK)
        console.print(f"written to {common.DOC}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
