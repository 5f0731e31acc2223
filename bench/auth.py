"""What strong authentication costs: instruction verification and Argon2id password checks.

Run: ``.venv/bin/python -m bench.auth [--instructions 3000] [--logins 20] [--no-write]``.

1. **Signed instruction check**, the work the payment path adds per payment: parse the
   envelope, RFC 8785 canonical bytes, device lookup, Ed25519 (and P-256) verification,
   timestamp skew and the nonce written to the replay cache (the database in the
   payment's transaction; Redis when one answers at 127.0.0.1:6379). Each sample is one
   instruction, timed inside an open SQLite transaction; the commit is the payment's.
2. **Argon2id** hash and verify with the production defaults from ``Settings`` (what a
   login costs the server, per attempt).

Figures go into the "Authentication" section of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy.orm import Session

from bench import common
from payguard import clock, ids
from payguard.client.signing import DeviceKey, sign_instruction
from payguard.db.engine import Database
from payguard.identity import instructions
from payguard.identity import service as identity
from payguard.identity.models import Device
from payguard.identity.passwords import hash_password, verify_password
from payguard.settings import Settings

SECTION = "## Authentication (`bench/auth.py`)"
NOTES_MARK = "<!-- auth-notes -->"
console = Console()


def _customer_with_device(database: Database, settings: Settings, key: DeviceKey) -> Device:
    def work(session: Session) -> Device:
        customer, _wallet = identity.register_customer(
            session,
            settings,
            username=f"bench-{key.algorithm}",
            password="bench-password-123",
            display_name="bench",
        )
        device = Device(
            id=ids.new_id("device"),
            customer_id=customer.id,
            name="bench phone",
            algorithm=key.algorithm,
            public_key=key.public_pem,
            key_fingerprint=instructions.key_fingerprint(key.public_pem, key.algorithm),
            status="active",
            created_at=clock.now(),
        )
        session.add(device)
        session.flush()
        session.expunge(device)
        return device

    return database.transact(work)


def time_instructions(
    url: str,
    algorithm: str,
    count: int,
    cache: instructions.NonceCache,
    progress: Progress,
) -> list[float]:
    settings = Settings(
        database_url=url, argon2_time_cost=1, argon2_memory_kib=64, argon2_parallelism=1
    )
    database = Database(url)
    key = DeviceKey.generate("ed25519" if algorithm == "ed25519" else "p256")
    device = _customer_with_device(database, settings, key)
    bodies = []
    for index in range(count):
        idempotency_key = f"bench-{algorithm}-{index}"
        body = sign_instruction(
            {"kind": "p2p", "amount": 100 + index, "currency": "CNY", "payee_username": "x"},
            key=key,
            device_id=device.id,
            idempotency_key=idempotency_key,
        )
        bodies.append((body, idempotency_key))
    samples: list[float] = []
    task = progress.add_task(f"{algorithm}, nonces in {type(cache).__name__}", total=count)

    def batch(session: Session, chunk: list[tuple[dict[str, object], str]]) -> None:
        for body, idempotency_key in chunk:
            started = time.perf_counter()
            parsed = instructions.parse(body, idempotency_key)
            instructions.verify(
                session,
                customer_id=device.customer_id,
                bound_device_id=device.id,
                instruction=parsed,
                max_skew_seconds=settings.instruction_max_skew_seconds,
            )
            instructions.consume_nonce(session, cache, parsed, settings.nonce_ttl_seconds)
            samples.append((time.perf_counter() - started) * 1000)
            progress.advance(task)

    try:
        for start in range(0, count, 100):
            chunk = bodies[start : start + 100]

            def run_chunk(
                session: Session, chunk: list[tuple[dict[str, object], str]] = chunk
            ) -> None:
                batch(session, chunk)

            database.transact(run_chunk)
    finally:
        database.dispose()
    return samples[min(50, len(samples) // 10) :]  # drop the warm-up


def time_argon2(count: int, progress: Progress) -> tuple[Settings, list[float], list[float]]:
    settings = Settings()  # the production defaults
    hashes: list[float] = []
    verifies: list[float] = []
    task = progress.add_task("argon2id hash + verify", total=count)
    stored = hash_password(settings, "correct horse battery staple")
    for _ in range(count):
        started = time.perf_counter()
        hash_password(settings, "correct horse battery staple")
        hashes.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        verify_password(settings, stored, "correct horse battery staple")
        verifies.append((time.perf_counter() - started) * 1000)
        progress.advance(task)
    return settings, hashes, verifies


def _redis_cache() -> instructions.NonceCache | None:
    try:
        cache = instructions.RedisNonceCache("redis://127.0.0.1:6379/15")
        cache.client.ping()
    except Exception:  # no Redis on this machine: that row is skipped
        return None
    return cache


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--instructions", type=int, default=3000)
    parser.add_argument("--logins", type=int, default=20)
    parser.add_argument("--no-write", action="store_true", help="do not update the doc")
    args = parser.parse_args(argv)
    rows: list[tuple[str, list[float]]] = []
    with Progress(console=console) as progress:
        caches: list[tuple[str, Callable[[], instructions.NonceCache | None]]] = [
            ("database", instructions.DatabaseNonceCache),
            ("redis", _redis_cache),
        ]
        for algorithm in ("ed25519", "p256"):
            for cache_name, make_cache in caches:
                cache = make_cache()
                if cache is None:
                    continue
                with common.sqlite_database() as url:
                    samples = time_instructions(url, algorithm, args.instructions, cache, progress)
                rows.append((f"{algorithm}, nonce in {cache_name}", samples))
        settings, hashes, verifies = time_argon2(args.logins, progress)
    table = Table("what", "samples", "p50 ms", "p99 ms", "max ms")
    for name, samples in [*rows, ("argon2id hash", hashes), ("argon2id verify", verifies)]:
        table.add_row(
            name,
            str(len(samples)),
            f"{common.percentile(samples, 0.5):.3f}",
            f"{common.percentile(samples, 0.99):.3f}",
            f"{max(samples):.3f}",
        )
    console.print(table)
    if not args.no_write:
        command = "python -m bench.auth " + " ".join(argv if argv is not None else sys.argv[1:])
        common.write_section(
            SECTION, render(rows, settings, hashes, verifies, command.strip()), NOTES_MARK
        )
        console.print(f"written to {common.DOC}")
    return 0


def render(
    rows: list[tuple[str, list[float]]],
    settings: Settings,
    hashes: list[float],
    verifies: list[float],
    command: str,
) -> str:
    info = common.machine()
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}`.",
        "",
        "Machine: " + "; ".join(f"{key} {value}" for key, value in info.items()) + ".",
        "",
        "**Signed instruction check per payment** (parse, RFC 8785 bytes, device lookup,",
        "signature, skew, nonce into the replay cache; SQLite, inside the payment's",
        "transaction). Target: at most 0.2 ms at p99.",
        "",
        "| check | samples | p50 ms | p99 ms | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name, samples in rows:
        p99 = common.percentile(samples, 0.99)
        lines.append(
            f"| {name} | {len(samples):,} | {common.percentile(samples, 0.5):.3f} | "
            f"{p99:.3f} | {'met' if p99 <= 0.2 else 'not met'} |"
        )
    lines += [
        "",
        f"**Argon2id** with the default parameters: time cost {settings.argon2_time_cost}, "
        f"memory {settings.argon2_memory_kib // 1024} MiB, parallelism "
        f"{settings.argon2_parallelism} (OWASP's minimum is m=19 MiB, t=2, p=1).",
        "",
        "| operation | samples | p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: |",
        f"| hash (registration, rehash) | {len(hashes)} | "
        f"{common.percentile(hashes, 0.5):.1f} | {common.percentile(hashes, 0.99):.1f} |",
        f"| verify (each login attempt) | {len(verifies)} | "
        f"{common.percentile(verifies, 0.5):.1f} | {common.percentile(verifies, 0.99):.1f} |",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
