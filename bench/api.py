"""Payments per second through HTTP: authentication, idempotency and posting, end to end.

Run: ``.venv/bin/python -m bench.api [--backend sqlite|postgresql|both] [--seconds 15]
[--concurrency 32] [--workers 2] [--customers 50] [--signing signed|unsigned|both]``.

The server is ``payguard serve`` (uvicorn with uvloop and httptools, ``--workers`` worker
processes, access log off) on a fresh SQLite file or a fresh PostgreSQL schema. The
load generator is this process: ``--concurrency`` keep-alive HTTP/1.1 connections on
asyncio, each sending authenticated p2p payments with a fresh Idempotency-Key between
random pairs of funded customers, back to back, for ``--seconds``. It shares the two
cores with the server, which the figures include. Afterwards the ledger invariants are
checked and every acknowledged payment is counted in the database. The figures go into
the "API" section of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench import common
from payguard import clock, ids
from payguard.client.signing import DeviceKey, sign_instruction
from payguard.db.engine import Database
from payguard.identity import instructions
from payguard.identity import service as identity
from payguard.identity.models import Device
from payguard.ledger import service as ledger
from payguard.ledger.models import SystemAccount
from payguard.payments.models import Payment
from payguard.settings import Settings

SECTION = "## API (`bench/api.py`)"
NOTES_MARK = "<!-- api-notes -->"
PASSWORD = "bench-password-123"
console = Console()


@dataclass
class Result:
    backend: str
    workers: int
    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    stored_payments: int = 0
    invariants_ok: bool = False
    signed: bool = True

    @property
    def acknowledged(self) -> int:
        return self.statuses.get(201, 0)

    @property
    def rate(self) -> float:
        return self.acknowledged / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        return common.percentile(self.latencies_ms, fraction)


@dataclass(frozen=True)
class BenchCustomer:
    username: str
    wallet_id: str
    device_id: str
    key: DeviceKey


def seed(url: str, customers: int) -> list[BenchCustomer]:
    """Funded tier-3 customers, each with a device key that has paid before (no step-up)."""
    settings = Settings(database_url=url)
    database = Database(url)
    made: list[BenchCustomer] = []

    def work(session: Session) -> None:
        settlement = ledger.system_account_id(session, SystemAccount.BANK_SETTLEMENT, "CNY")
        for index in range(customers):
            username = f"bench{index:03d}"
            customer, wallet = identity.register_customer(
                session,
                settings,
                username=username,
                password=PASSWORD,
                display_name=username,
                kyc_tier=3,
            )
            ledger.post_transfer(
                session,
                debit_account_id=settlement,
                credit_account_id=wallet,
                amount=10**10,
                currency="CNY",
                kind="top_up",
                reference=f"seed-{index}",
            )
            key = DeviceKey.generate()
            device = Device(
                id=ids.new_id("device"),
                customer_id=customer.id,
                name="bench phone",
                algorithm=key.algorithm,
                public_key=key.public_pem,
                key_fingerprint=instructions.key_fingerprint(key.public_pem, key.algorithm),
                status="active",
                created_at=clock.now(),
                first_payment_at=clock.now(),
            )
            session.add(device)
            made.append(BenchCustomer(username, wallet, device.id, key))

    try:
        database.transact(work)
    finally:
        database.dispose()
    return made


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(url: str, workers: int, signed: bool) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PAYGUARD_REQUIRE_SIGNED_INSTRUCTIONS": "true" if signed else "false",
        "PAYGUARD_DATABASE_URL": url,
        "PAYGUARD_ENV": "production",
        "PAYGUARD_ID_DIGEST_KEY": "bench-only-id-digest-key",
        "PAYGUARD_ACCESS_LOG": "false",
        "PAYGUARD_LOG_LEVEL": "WARNING",
        "PAYGUARD_DATABASE_POOL_SIZE": "20",
        # The load comes from one address and few sessions: the write rate limits
        # (docs/rate-limits.md) would measure themselves, not the payment path.
        "PAYGUARD_RATE_LIMIT_ENABLED": "false",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "payguard", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("payguard serve did not start")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def login_all(base: str, users: list[BenchCustomer]) -> list[tuple[str, BenchCustomer]]:
    tokens = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for user in users:
            reply = client.post(
                "/v1/sessions", json={"username": user.username, "password": PASSWORD}
            )
            reply.raise_for_status()
            tokens.append((reply.json()["token"], user))
    return tokens


def payment_request_factory(
    port: int, tokens: list[tuple[str, BenchCustomer]], rng: random.Random, signed: bool
) -> Callable[[], bytes]:
    def make() -> bytes:
        (token, payer), (_, payee) = rng.sample(tokens, 2)
        key = str(uuid.uuid4())
        instruction = {
            "kind": "p2p",
            "amount": rng.randint(1, 100),
            "currency": "CNY",
            "payee_account_id": payee.wallet_id,
        }
        if signed:  # the device's work: RFC 8785 bytes and an Ed25519 signature
            instruction = sign_instruction(
                instruction, key=payer.key, device_id=payer.device_id, idempotency_key=key
            )
        body = json.dumps(instruction).encode()
        head = (
            f"POST /v1/payments HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {token}\r\nIdempotency-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    return make


async def connection_loop(
    port: int, make: Callable[[], bytes], deadline: float, result: Result
) -> None:
    """One keep-alive connection sending requests back to back (a closed loop)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            request = make()
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.statuses[status] += 1
    finally:
        writer.close()


async def drive(
    port: int, tokens: list[tuple[str, BenchCustomer]], result: Result, progress: Progress
) -> None:
    rng = random.Random(7)
    make = payment_request_factory(port, tokens, rng, result.signed)
    started = time.perf_counter()
    deadline = started + result.seconds
    task = progress.add_task(
        f"{result.backend}{'' if result.signed else ' unsigned'}, {result.workers} workers, "
        f"{result.concurrency} connections",
        total=result.seconds,
    )

    async def tick() -> None:
        while (now := time.perf_counter()) < deadline:
            progress.update(task, completed=now - started)
            await asyncio.sleep(0.25)
        progress.update(task, completed=result.seconds)

    loops = [connection_loop(port, make, deadline, result) for _ in range(result.concurrency)]
    await asyncio.gather(tick(), *loops)
    result.seconds = time.perf_counter() - started


def verify(url: str, result: Result) -> None:
    database = Database(url)
    try:
        with database.read() as session:
            result.invariants_ok = ledger.check_invariants(session).ok
            result.stored_payments = int(
                session.scalar(select(func.count()).select_from(Payment)) or 0
            )
    finally:
        database.dispose()


def run(backend: str, signed: bool, args: argparse.Namespace, progress: Progress) -> Result:
    databases = {"sqlite": common.sqlite_database, "postgresql": common.postgres_database}
    with databases[backend]() as url:
        users = seed(url, args.customers)
        with server(url, args.workers, signed) as base:
            tokens = login_all(base, users)
            result = Result(backend, args.workers, args.concurrency, args.seconds, signed=signed)
            port = int(base.rsplit(":", 1)[1])
            # Warm up connection pools and statement caches before measuring.
            warm = Result(backend, args.workers, args.concurrency, 2.0, signed=signed)
            asyncio.run(drive(port, tokens, warm, progress))
            asyncio.run(drive(port, tokens, result, progress))
        verify(url, result)
        result.stored_payments -= warm.acknowledged
    return result


def render(results: list[Result], command: str) -> str:
    info = common.machine()
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}`.",
        "",
        "Machine: " + "; ".join(f"{key} {value}" for key, value in info.items()) + ".",
        "",
        "Server: `payguard serve` (uvicorn, uvloop, httptools), access log off, JSON logs at",
        "WARNING. Load generator: `bench/api.py` itself, closed-loop keep-alive HTTP/1.1",
        "connections on asyncio in one process on the same machine (it takes CPU from the",
        "server). Every request is a p2p payment with a bearer session, a fresh",
        "Idempotency-Key, limit check, ledger posting, payment history and outbox event;",
        "unless marked unsigned, it is signed by the payer's Ed25519 device key (RFC 8785 bytes)",
        "and the server verifies device, signature, timestamp and nonce and stores the evidence.",
        "",
        "| backend | server workers | connections | payments/s | p50 ms | p95 ms | p99 ms "
        "| non-201 | ledger ok | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        met = r.rate >= 1000 and r.percentile(0.99) <= 50
        target = (
            "met" if met else f"{r.rate / 1000:.0%} of 1,000/s; p99 {r.percentile(0.99):.0f} ms"
        )
        others = sum(count for status, count in r.statuses.items() if status != 201)
        lines.append(
            f"| {r.backend}{'' if r.signed else ' (unsigned)'} | {r.workers} | "
            f"{r.concurrency} | {r.rate:,.0f} | "
            f"{r.percentile(0.5):.1f} | {r.percentile(0.95):.1f} | {r.percentile(0.99):.1f} | "
            f"{others} | {'yes' if r.invariants_ok else 'NO'} "
            f"({r.stored_payments:,} stored / {r.acknowledged:,} acknowledged) | {target} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument(
        "--signing",
        choices=["signed", "unsigned", "both"],
        default="both",
        help="unsigned is the baseline: the server is started with signatures not required",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=console
    ) as progress:
        modes = [True, False] if args.signing == "both" else [args.signing == "signed"]
        for backend in backends:
            for signed in modes:
                results.append(run(backend, signed, args, progress))
    table = Table(
        "backend", "signed", "payments/s", "p50 ms", "p95 ms", "p99 ms", "statuses", "ledger ok"
    )
    for r in results:
        table.add_row(
            r.backend,
            str(r.signed),
            f"{r.rate:,.0f}",
            f"{r.percentile(0.5):.1f}",
            f"{r.percentile(0.95):.1f}",
            f"{r.percentile(0.99):.1f}",
            str(dict(r.statuses)),
            str(r.invariants_ok),
        )
    console.print(table)
    if not args.no_write:
        command = "python -m bench.api " + " ".join(argv if argv is not None else sys.argv[1:])
        common.write_section(SECTION, render(results, command.strip()), NOTES_MARK)
        console.print(f"written to {common.DOC}")
    return 0 if all(r.invariants_ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
