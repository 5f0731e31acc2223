"""What the benchmarks share: throwaway databases, the machine's description, the doc."""

from __future__ import annotations

import os
import platform
import re
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg

from payguard.db.migrate import upgrade

PG_DSN = os.environ.get("PAYGUARD_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="payguard-bench-") as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade(url)
        yield url


@contextmanager
def postgres_database() -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    base = PG_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}?options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as connection:
            row = connection.execute("SHOW server_version").fetchone()
            postgres = str(row[0]) if row else "unknown"
    except psycopg.OperationalError:
        postgres = "not reachable"
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "RAM": ram,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": postgres,
    }


def write_section(section: str, body: str, notes_mark: str) -> None:
    """Replace one section's measured part; keep hand-written notes after ``notes_mark``."""
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Performance\n\n"
    pattern = re.compile(rf"^{re.escape(section)}\n(.*?)(?=^## |\Z)", re.S | re.M)
    match = pattern.search(text)
    notes = ""
    if match and notes_mark in match.group(1):
        notes = match.group(1)[match.group(1).index(notes_mark) :].rstrip("\n") + "\n"
    new = f"{section}\n\n{body}" + (f"\n{notes}" if notes else "") + "\n"
    if match:
        text = text[: match.start()] + new + text[match.end() :]
    else:
        text = text.rstrip("\n") + "\n\n" + new
    DOC.write_text(text, encoding="utf-8")
