"""``payguard risk rules`` (list, show, save, export) and ``payguard risk backtest``.

A saved rule set is a draft: it is put in force by a four-eyes approval,
``payguard approvals request risk.ruleset_publish VERSION ...`` and a second person's
``payguard approvals approve``. Every server picks it up within
``PAYGUARD_RISK_RELOAD_SECONDS``."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from payguard import clock
from payguard.errors import ProblemError
from payguard.risk import rules

T = TypeVar("T")

rules_app = typer.Typer(help="Rule sets of the risk engine (CEL rules)", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def _run(work: Callable[[Any, Any], T]) -> T:
    """``work(settings, database)``; a refused input or a database failure is a message
    and exit code 1, never a traceback."""
    from payguard.db.engine import Database
    from payguard.settings import get_settings

    settings = get_settings()
    database = Database(settings.database_url)
    try:
        return work(settings, database)
    except ProblemError as problem:
        _fail(problem.detail)
    except SQLAlchemyError as error:
        # The connection URL may hold credentials: name the failure, not the URL.
        reason = str(getattr(error, "orig", None) or type(error).__name__).splitlines()[0]
        _fail(f"database error: {reason} (has `payguard db upgrade` run?)")
    finally:
        database.dispose()


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else ""


def _read_file(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_bytes()
    except OSError as error:
        _fail(f"{path}: cannot read it ({error.strerror or type(error).__name__})")
    try:
        return rules.load_rules_text(text, str(path))
    except ProblemError as problem:
        _fail(problem.detail)


@rules_app.command("list")
def list_rulesets() -> None:
    """Rule set versions, newest first, and what is in force."""

    def work(_settings: Any, database: Any) -> tuple[Table, str]:
        with database.read() as session:
            table = Table("version", "status", "rules", "created by", "created", "published")
            table.add_column("note", overflow="fold")
            for record in rules.list_rulesets(session):
                table.add_row(
                    str(record.version), record.status, str(len(record.rules)),
                    escape(record.created_by), _when(record.created_at),
                    _when(record.published_at), escape(record.note),
                )  # fmt: skip
            ruleset, _record = rules.active_ruleset(session)
            return table, ruleset.version

    table, in_force = _run(work)
    console.print(table)
    console.print(f"in force: {in_force}")


def _resolve(reference: str) -> Callable[[Any], rules.CompiledRuleSet]:
    """A version number, 'builtin', 'active', or a YAML file of rules."""
    path = Path(reference)
    if reference.lower().endswith((".yaml", ".yml", ".json")) or path.is_file():
        loaded = _read_file(path)
        return lambda _session: rules.compile_ruleset(f"file:{path.name}"[:32], loaded)
    return lambda session: rules.resolve_ruleset(session, reference)


@rules_app.command("show")
def show(
    version: Annotated[str, typer.Argument(help="a version number, builtin or active")],
) -> None:
    """The rules of one version."""

    def work(_settings: Any, database: Any) -> rules.CompiledRuleSet:
        with database.read() as session:
            return rules.resolve_ruleset(session, version)

    ruleset = _run(work)
    table = Table("id", "mode", "action", "points", "reason", title=f"rules {ruleset.version}")
    table.add_column("expression", overflow="fold")
    for definition in ruleset.definitions:
        mode = definition.mode if definition.enabled else "disabled"
        table.add_row(
            definition.id, mode, definition.action or "", str(definition.score),
            definition.reason_code + (" (severe)" if definition.severe else ""),
            escape(definition.expression),
        )  # fmt: skip
    console.print(table)


@rules_app.command("save")
def save(
    file: Annotated[Path, typer.Argument(metavar="FILE.yaml", help="the rules (YAML or JSON)")],
    note: Annotated[str, typer.Option(help="what changed and why")],
    by: Annotated[
        str | None, typer.Option("--by", help="who saves it (default: cli:<your login>)")
    ] = None,
) -> None:
    """Check a rule file and save it as a new draft version (not in force until published)."""
    loaded = _read_file(file)
    author = by or f"cli:{getpass.getuser()}"

    def work(_settings: Any, database: Any) -> tuple[int, int]:
        def change(session: Any) -> tuple[int, int]:
            record = rules.save_draft(session, loaded, note, author)
            return record.version, len(record.rules)

        result: tuple[int, int] = database.transact(change)
        return result

    version, count = _run(work)
    console.print(f"saved draft version {version} ({count} rules)", soft_wrap=True)
    console.print(
        f"to put it in force: payguard approvals request {rules.RULESET_PUBLISH} {version} "
        '--reason "..." --as YOU --otp CODE; then a second person approves it',
        soft_wrap=True,
        markup=False,
    )


@rules_app.command("export")
def export(
    version: Annotated[
        str, typer.Argument(help="a version number, builtin, or active (the default)")
    ] = "active",
) -> None:
    """Print a rule set as YAML (edit it and `save` it as the next draft)."""
    if version.strip().lower() == "builtin":
        print(rules.default_rules_text().decode(), end="")
        return

    def work(_settings: Any, database: Any) -> str:
        with database.read() as session:
            ruleset = rules.resolve_ruleset(session, version)
            header: dict[str, Any] = {"version": ruleset.version}
            if ruleset.version.isdigit():
                record = rules.get_ruleset(session, int(ruleset.version))
                header.update(status=record.status, note=record.note)
            return rules.dump_rules_yaml(ruleset.definitions, header)

    print(_run(work), end="")


def _aware(moment: datetime | None) -> datetime | None:
    """A time typed without a zone is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def backtest(
    ruleset: Annotated[
        str,
        typer.Argument(help="a version number, builtin, active, or a YAML file of rules"),
    ],
    from_: Annotated[
        datetime | None,
        typer.Option("--from", help="first decision time (UTC; default 7 days ago)"),
    ] = None,
    to: Annotated[
        datetime | None, typer.Option("--to", help="end, exclusive (default now)")
    ] = None,
    show_changed: Annotated[
        int, typer.Option("--show", min=0, max=1000, help="changed decisions listed")
    ] = 20,
) -> None:
    """Replay stored decisions through a rule set: what would change, precision, recall."""
    end = _aware(to) or clock.now()
    start = _aware(from_) or end - timedelta(days=7)
    compiled = _resolve(ruleset)

    def work(settings: Any, database: Any) -> rules.BacktestReport:
        with database.read() as session:
            return rules.backtest(session, compiled(session), start, end, settings)

    report = _run(work)
    summary = Table("", "as decided", f"rules {report.ruleset_version}", title="backtest")
    summary.add_row("decisions", str(report.receipts - report.skipped), "")
    for action in rules.VERDICTS:
        summary.add_row(
            action, str(report.old_actions.get(action, 0)), str(report.new_actions.get(action, 0))
        )
    summary.add_row(
        "precision (review+block)", _share(report.old_precision), _share(report.precision)
    )
    summary.add_row("recall (review+block)", _share(report.old_recall), _share(report.recall))
    console.print(summary)
    console.print(
        f"{report.start.isoformat()} .. {report.end.isoformat()}: {report.receipts} decisions, "
        f"{report.labelled} labelled, {report.skipped} without features (skipped); "
        f"[bold]{report.changed_count} changed decisions[/bold]",
        soft_wrap=True,
    )
    days = sorted(set(report.alerts_per_day) | set(report.old_alerts_per_day))
    if days:
        volume = Table("day (UTC)", "alerts as decided", "alerts replayed", title="alert volume")
        for day in days:
            volume.add_row(
                day,
                str(report.old_alerts_per_day.get(day, 0)),
                str(report.alerts_per_day.get(day, 0)),
            )
        console.print(volume)
    if report.changed and show_changed:
        changed = Table("payment", "at", "before", "after", title="changed decisions")
        for item in report.changed[:show_changed]:
            changed.add_row(
                item.payment_id,
                _when(item.at),
                f"{item.old_action} ({item.old_score})",
                f"{item.new_action} ({item.new_score})",
            )
        console.print(changed)
