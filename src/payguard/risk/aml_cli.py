"""``payguard aml``: large-value and suspicious-transaction reports for compliance officers.

``payguard aml report --from 2026-01-01 --to 2026-01-31 --out var/aml`` writes
``aml-report-2026-01-01-2026-01-31.csv`` and ``.json`` and prints a summary. Dates are
Beijing-time calendar days, both included (docs/aml.md)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from payguard.errors import ProblemError
from payguard.money import format_amount
from payguard.risk import aml
from payguard.risk.aml_schemas import AmlReport

aml_app = typer.Typer(help="Anti-money-laundering reports", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

FORMATS = ("csv", "json")


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"'{value}' is not a date; write it as YYYY-MM-DD, e.g. 2026-01-31",
            param_hint=option,
        ) from None


def _formats(value: str) -> list[str]:
    chosen = [part.strip().lower() for part in value.split(",") if part.strip()]
    unknown = sorted(set(chosen) - set(FORMATS))
    if not chosen or unknown:
        raise typer.BadParameter(
            f"{', '.join(unknown) or 'nothing'}: choose csv, json or csv,json",
            param_hint="--format",
        )
    return [name for name in FORMATS if name in chosen]


def _summary(report: AmlReport, first: date, last: date) -> Table:
    """Cases and money per typology."""
    table = Table(
        "report",
        "typology",
        "cases",
        "amount",
        title=f"AML report {first} → {last} ({report.timezone}), "
        f"{report.transactions:,} completed transactions",
    )
    counts: Counter[tuple[str, str]] = Counter()
    totals: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for case in [*report.large_value, *report.suspicious]:
        key: tuple[str, str] = (case.report, case.typology)
        counts[key] += 1
        totals[key][case.currency] += case.total_amount
    for group in sorted(counts):
        amounts = ", ".join(
            format_amount(amount, currency) for currency, amount in sorted(totals[group].items())
        )
        table.add_row(group[0], group[1], str(counts[group]), amounts)
    if not counts:
        table.add_row("-", "nothing to report", "0", "")
    return table


@aml_app.command("report")
def report(
    period_from: Annotated[
        str, typer.Option("--from", help="First day, YYYY-MM-DD (Beijing time)")
    ],
    period_to: Annotated[
        str, typer.Option("--to", help="Last day, YYYY-MM-DD (Beijing time), included")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the report files in")],
    file_format: Annotated[
        str, typer.Option("--format", help="csv, json or csv,json")
    ] = "csv,json",
) -> None:
    """Large-value reports and suspicious cases of the payments completed in a period."""
    from payguard.db.engine import Database
    from payguard.settings import get_settings

    first = _day(period_from, "--from")
    last = _day(period_to, "--to")
    formats = _formats(file_format)
    try:
        start, end = aml.period_bounds(first, last)
    except ProblemError as problem:
        raise typer.BadParameter(problem.detail, param_hint="--from/--to") from None
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file, not a folder", param_hint="--out")

    settings = get_settings()
    database = Database(settings.database_url)
    try:
        with database.read() as session:
            made = aml.build_report(session, settings, start, end)
    except SQLAlchemyError as error:
        # The connection URL may hold credentials: name the failure, not the URL.
        reason = str(getattr(error, "orig", None) or type(error).__name__).splitlines()[0]
        err_console.print(
            f"[red]error:[/red] database error: {escape(reason)} (has `payguard db upgrade` run?)",
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    finally:
        database.dispose()

    out.mkdir(parents=True, exist_ok=True)
    stem = aml.file_stem(made)
    written = []
    if "csv" in formats:
        written.append(aml.write_csv(made, out / f"{stem}.csv"))
    if "json" in formats:
        written.append(aml.write_json(made, out / f"{stem}.json"))
    console.print(_summary(made, first, last))
    for note in made.notes:
        console.print(f"[dim]note: {escape(note)}[/dim]", soft_wrap=True)
    for path in written:
        console.print(f"wrote {escape(str(path))}", soft_wrap=True)
