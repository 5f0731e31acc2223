"""``payguard risk lists``: block, watch and allow list entries, and their CSV files.

Changes take effect in every running server within ``PAYGUARD_RISK_RELOAD_SECONDS``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from payguard import clock
from payguard.errors import ProblemError
from payguard.risk import lists

T = TypeVar("T")

lists_app = typer.Typer(help="Block, watch and allow lists", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

ByOption = Annotated[
    str, typer.Option("--by", help="Who makes the change (your staff username or id)")
]


def _say(message: str) -> None:
    """One line, never wrapped, never read as Rich markup (values are the user's)."""
    console.print(escape(message), soft_wrap=True)


def _error(message: str) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)


def _fail(message: str, code: int) -> NoReturn:
    _error(message)
    raise typer.Exit(code)


def _run(work: Callable[[Any, Any], T]) -> T:
    """``work(settings, database)``; problems become one line and an exit code, never a
    traceback (2: the input was refused, 1: the database failed)."""
    from payguard.db.engine import Database
    from payguard.settings import get_settings

    settings = get_settings()
    database = Database(settings.database_url)
    try:
        return work(settings, database)
    except ProblemError as problem:
        _error(f"{problem.detail} ({problem.code})")
        for row in problem.extra.get("rows", []):
            err_console.print(escape(f"  row {row['row']}: {row['error']}"), soft_wrap=True)
        raise typer.Exit(2) from None
    except SQLAlchemyError as error:
        # The connection URL may hold credentials: name the failure, not the URL.
        reason = str(getattr(error, "orig", None) or type(error).__name__).splitlines()[0]
        _fail(f"database error: {reason} (has `payguard db upgrade` run?)", 1)
    finally:
        database.dispose()


def _describe(entry: Any) -> str:
    expiry = f", until {entry.expires_at:%Y-%m-%d %H:%M} UTC" if entry.expires_at else ""
    shown = lists.shown_value(entry)
    return f"{entry.id}: {entry.subject} {shown} on the {entry.list_name} list{expiry}"


@lists_app.command("add")
def add(
    list_name: Annotated[str, typer.Argument(metavar="LIST", help="block, watch or allow")],
    subject: Annotated[str, typer.Argument(help="account, payee, device, ip, cidr or phone")],
    value: Annotated[str, typer.Argument(help="the id, address, range or phone (+86…)")],
    reason: Annotated[str, typer.Option(help="Why (the next analyst reads it)")],
    by: ByOption,
    expires: Annotated[
        str | None,
        typer.Option(help="30d, 12h, 2w or an ISO time (UTC without an offset); default never"),
    ] = None,
) -> None:
    """Put a subject on a list."""

    def work(settings: Any, database: Any) -> str:
        expires_at = lists.parse_expiry(expires, clock.now())

        def change(session: Session) -> str:
            entry = lists.add_entry(
                session,
                settings,
                list_name=list_name.strip().lower(),
                subject=subject.strip().lower(),
                value=value,
                reason=reason,
                expires_at=expires_at,
                by=by,
            )
            return _describe(entry)

        return str(database.transact(change))

    _say(f"added {_run(work)}")


@lists_app.command("remove")
def remove(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="the entry's id (lst_…)")],
    by: ByOption,
) -> None:
    """Take an entry off its list (the entry is kept, marked removed)."""

    def work(_settings: Any, database: Any) -> str:
        return str(
            database.transact(lambda session: _describe(lists.remove_entry(session, entry_id, by)))
        )

    _say(f"removed {_run(work)}")


@lists_app.command("show")
def show(
    list_name: Annotated[str | None, typer.Option("--list", help="block, watch or allow")] = None,
    subject: Annotated[
        str | None, typer.Option(help="account, payee, device, ip, cidr or phone")
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="also removed and expired entries")
    ] = False,
) -> None:
    """Entries, newest first (phones as the start of their blind index)."""

    def work(_settings: Any, database: Any) -> Table:
        now = clock.now()
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("id", no_wrap=True)  # copied into `remove`
        table.add_column("list", no_wrap=True)
        table.add_column("subject", no_wrap=True)
        table.add_column("value", overflow="fold")
        table.add_column("expires (UTC)")
        if everything:
            table.add_column("status", no_wrap=True)
        table.add_column("by", overflow="fold")
        table.add_column("reason", ratio=1)
        with database.read() as session:
            entries = lists.list_entries(session, list_name, subject, everything)
            for entry in entries:
                cells = [
                    entry.id, entry.list_name, entry.subject, lists.shown_value(entry),
                    f"{entry.expires_at:%Y-%m-%d %H:%M}" if entry.expires_at else "never",
                    *([lists.status_of(entry, now)] if everything else []),
                    entry.created_by, entry.reason,
                ]  # fmt: skip
                table.add_row(*(escape(cell) for cell in cells))
        table.title = f"list entries: {len(entries)}"
        return table

    console.print(_run(work))


@lists_app.command("import")
def import_file(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE.csv",
            exists=True,
            dir_okay=False,
            readable=True,
            help="columns list,subject,value,reason,expires_at",
        ),
    ],
    by: ByOption,
) -> None:
    """Add the entries of a CSV file, all or nothing; rows already listed are skipped."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        _fail(f"{file}: cannot read it as UTF-8 text ({type(error).__name__})", 2)

    def work(settings: Any, database: Any) -> lists.ImportResult:
        result: lists.ImportResult = database.transact(
            lambda session: lists.import_csv(session, settings, text, by)
        )
        return result

    result = _run(work)
    _say(f"imported {len(result.added)} entries, skipped {len(result.skipped)}")
    for note in result.skipped:
        _say(f"  row {note.row} skipped: {note.message}")


@lists_app.command("export")
def export(
    out: Annotated[
        Path | None, typer.Option(help="Write to this file instead of standard output")
    ] = None,
) -> None:
    """Active entries as CSV (phones as their blind index)."""

    def work(_settings: Any, database: Any) -> str:
        with database.read() as session:
            return lists.export_csv(session)

    text = _run(work)
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as error:
        _fail(f"{out}: cannot write it ({error.strerror or type(error).__name__})", 1)
    err_console.print(escape(f"wrote {out}"), soft_wrap=True)
