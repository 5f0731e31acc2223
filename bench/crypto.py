"""What envelope encryption of personal data costs.

Run: ``.venv/bin/python -m bench.crypto [--operations 3000] [--no-write]``.

1. **Registration**: seal a customer's legal name, phone and e-mail under their own key
   (made for the first field: one wrapped key written) plus the phone's blind index.
2. **Display**: open the three fields again (the key unwrapped once per process, the key
   row read in each transaction, as a profile page does).
3. **Payment path**: seal one signed instruction as evidence under the platform evidence
   key, what every signed payment adds; and, for a payment with a memo, seal the memo
   under the payer's own key (one key-row read in the payment's transaction). Target: at
   most 50 µs at p99.

Each sample is timed inside an open SQLite transaction; figures go into the "Personal
data encryption" section of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from bench import common
from payguard.crypto.envelope import envelope_for
from payguard.db.engine import Database
from payguard.identity.instructions import EVIDENCE_OWNER
from payguard.settings import Settings

SECTION = "## Personal data encryption (`bench/crypto.py`)"
NOTES_MARK = "<!-- crypto-notes -->"
console = Console()
INSTRUCTION = (
    '{"amount":12345,"bank_account":"6222020200112233","client_timestamp":'
    '"2026-11-23T12:00:00+00:00","currency":"CNY","device_id":"dev_01a2","idempotency_key":'
    '"6b1e","kind":"withdrawal","nonce":"q2Vt3nN8Jf0s1Lx4","memo":"rent"}'
)


def measure(url: str, settings: Settings, count: int) -> dict[str, list[float]]:
    envelope = envelope_for(settings)
    database = Database(url)
    samples: dict[str, list[float]] = {
        "registration": [],
        "display": [],
        "payment": [],
        "payment_memo": [],
    }
    sealed: list[tuple[str, list[str]]] = []

    def register(session: Session, start: int) -> None:
        for number in range(start, start + 100):
            owner = f"cus_{number:08d}"
            began = time.perf_counter()
            values = [
                envelope.seal(session, owner, f"customers.{field}.{owner}", value)
                for field, value in (
                    ("legal_name", f"Person {number}"),
                    ("phone", f"+86138{number:08d}"),
                    ("email", f"p{number}@example.com"),
                )
            ]
            envelope.blind_index("phone", f"+86138{number:08d}")
            samples["registration"].append((time.perf_counter() - began) * 1e6)
            sealed.append((owner, values))

    def display(session: Session, chunk: list[tuple[str, list[str]]]) -> None:
        for owner, values in chunk:
            began = time.perf_counter()
            for field, value in zip(("legal_name", "phone", "email"), values, strict=True):
                envelope.open(session, f"customers.{field}.{owner}", value)
            samples["display"].append((time.perf_counter() - began) * 1e6)

    def payments(session: Session, start: int) -> None:
        for number in range(start, start + 100):
            began = time.perf_counter()
            envelope.seal(
                session, EVIDENCE_OWNER, f"instruction_evidence.canonical.pay_{number}", INSTRUCTION
            )
            samples["payment"].append((time.perf_counter() - began) * 1e6)
            # A payment with a memo also seals it under the payer's own key.
            began = time.perf_counter()
            payer = f"cus_{number % count:08d}"
            envelope.seal(session, payer, f"memo.pay_{number}", "rent, room 1204")
            samples["payment_memo"].append((time.perf_counter() - began) * 1e6)

    try:
        for start in range(0, count, 100):
            database.transact(lambda session, start=start: register(session, start))
        for start in range(0, len(sealed), 100):
            chunk = sealed[start : start + 100]
            with database.read() as session:
                display(session, chunk)
        for start in range(0, count, 100):
            database.transact(lambda session, start=start: payments(session, start))
    finally:
        database.dispose()
    # Warm-up left out: the first transaction of each kind (100 samples), which for the
    # payment path is the one that creates the platform evidence key, once per installation.
    return {name: values[min(100, len(values) // 10) :] for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--operations", type=int, default=3000)
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="payguard-bench-crypto-") as folder,
        common.sqlite_database() as url,
    ):
        settings = Settings(database_url=url, var_dir=Path(folder))
        results = measure(url, settings, args.operations)
    table = Table("operation", "samples", "p50 µs", "p99 µs")
    rows = [
        ("registration: seal 3 fields + blind index", results["registration"], None),
        ("display: open 3 fields", results["display"], None),
        ("payment path: seal the instruction evidence", results["payment"], 50.0),
        ("payment path: seal a memo under the payer's key", results["payment_memo"], 50.0),
    ]
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with "
        f"`python -m bench.crypto {' '.join(argv if argv is not None else sys.argv[1:])}`.".replace(
            " `.", "`."
        ),
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in common.machine().items()) + ".",
        "",
        "AES-256-GCM (OpenSSL through `cryptography`), per-owner keys wrapped by the keyring's "
        "KEK; SQLite.",
        "",
        "| operation | samples | p50 µs | p99 µs | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, values, target in rows:
        p50, p99 = common.percentile(values, 0.5), common.percentile(values, 0.99)
        table.add_row(name, str(len(values)), f"{p50:.1f}", f"{p99:.1f}")
        verdict = (
            "" if target is None else f"≤ {target:.0f} µs: {'met' if p99 <= target else 'not met'}"
        )
        lines.append(f"| {name} | {len(values):,} | {p50:.1f} | {p99:.1f} | {verdict} |")
    console.print(table)
    if not args.no_write:
        common.write_section(SECTION, "\n".join(lines) + "\n", NOTES_MARK)
        console.print(f"written to {common.DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
