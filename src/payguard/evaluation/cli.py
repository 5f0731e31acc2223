"""``payguard evaluate`` and ``payguard evaluation ...``: thin over evaluation.service."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from payguard.db.engine import Database
from payguard.evaluation import indicators, report, service
from payguard.evaluation.schemas import EvaluationOut, IndicatorResultOut
from payguard.settings import get_settings

evaluation_app = typer.Typer(help="The evaluation indicator system", no_args_is_help=True)
console = Console()

_STATE_STYLE = {
    "pass": "[green]PASS[/green]",
    "fail": "[bold red]FAIL[/bold red]",
    "no_data": "[yellow]NO DATA[/yellow]",
}
_TREND_STYLE = {
    "better": "[green]↑[/green]",
    "worse": "[red]↓[/red]",
    "same": "→",
    "none": "[dim]—[/dim]",
}


def _versus(item: IndicatorResultOut, value: float | None, trend: str) -> str:
    if value is None:
        return _TREND_STYLE["none"]
    return f"{_TREND_STYLE[trend]} {report.format_value(value, item.unit)}"


def show(evaluation: EvaluationOut) -> None:
    """The evaluation as a Rich table with pass / fail and the trends, then the scores."""
    table = Table(
        title=(
            f"Evaluation {evaluation.period}: {evaluation.period_start:%Y-%m-%d %H:%M} – "
            f"{evaluation.period_end:%Y-%m-%d %H:%M} UTC"
        )
    )
    for column in ("group", "indicator", "value", "threshold", "target", "better"):
        table.add_column(column)
    table.add_column("weight", justify="right")
    table.add_column("score", justify="right")
    table.add_column("result")
    table.add_column("vs previous evaluation")
    table.add_column("vs previous period")
    for item in evaluation.indicators:
        table.add_row(
            item.group,
            item.name_en,
            report.format_value(item.value, item.unit),
            report.format_value(item.threshold, item.unit),
            report.format_value(item.target, item.unit),
            "higher" if item.direction == "higher" else "lower",
            f"{item.weight:g}",
            "—" if item.score is None else f"{item.score:.1f}",
            _STATE_STYLE[item.state],
            _versus(item, item.previous_value, item.trend),
            _versus(item, item.previous_period_value, item.period_trend),
        )
    console.print(table)
    for group in evaluation.groups:
        score = "no data" if group.score is None else f"{group.score:.1f}"
        console.print(
            f"  {group.name_en} (weight {group.weight:g}): {score}  "
            f"[dim]coverage {group.coverage * 100:.0f}%[/dim]"
        )
    overall = "no data" if evaluation.overall_score is None else f"{evaluation.overall_score:.1f}"
    verdict = {"pass": "[green]pass[/green]", "fail": "[red]fail[/red]", "no_data": "no data"}
    before = (
        f"  (previous evaluation: {evaluation.previous_overall_score:.1f})"
        if evaluation.previous_overall_score is not None
        else ""
    )
    console.print(
        f"[bold]Overall {overall}[/bold] / pass score {evaluation.pass_score:g}: "
        f"{verdict[evaluation.verdict]}; {evaluation.passed} pass, {evaluation.failed} fail, "
        f"{evaluation.no_data} no data{before}"
    )


def evaluate(
    period: Annotated[str, typer.Option(help="the period evaluated: 30d, 12h, 2w ...")] = "30d",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="report folder (default: var/reports/evaluation/<time>)"),
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", formats=["%Y-%m-%d"], help="the period ends with this UTC day"),
    ] = None,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="only the table, no Markdown / PDF")
    ] = False,
    no_store: Annotated[
        bool, typer.Option("--no-store", help="do not keep this evaluation for the trend")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the evaluation as JSON")] = False,
) -> None:
    """Grade the platform against the indicator system (seed 001 §6) and write the report."""
    settings = get_settings()
    day: date | None = as_of.date() if as_of is not None else None
    service.parse_period(period)
    report_dir = None
    if not no_report:
        report_dir = out or service.default_report_dir(settings)
    database = Database(settings.database_url)
    try:
        evaluation = service.evaluate(
            database,
            settings,
            period=period,
            as_of=day,
            created_by="cli",
            save=not no_store,
            report_dir=report_dir,
        )
    finally:
        database.dispose()
    if as_json:
        print(evaluation.model_dump_json(indent=2))
        return
    show(evaluation)
    if evaluation.id:
        console.print(f"stored as {evaluation.id}")
    for path in evaluation.report_files:
        console.print(f"report: {path}")


@evaluation_app.command("history")
def history(
    limit: Annotated[int, typer.Option(min=1, max=200, help="how many, newest first")] = 20,
) -> None:
    """Stored evaluations, newest first, with their scores."""
    settings = get_settings()
    database = Database(settings.database_url)
    try:
        with database.read() as session:
            runs = service.history(session, limit=limit)
    finally:
        database.dispose()
    if not runs:
        console.print("no evaluation stored yet; run `payguard evaluate`")
        return
    table = Table(title="Evaluations")
    for column in ("id", "when", "period", "overall", "verdict", "pass", "fail", "no data"):
        table.add_column(column)
    groups = sorted({group for run in runs for group in run.group_scores})
    for group in groups:
        table.add_column(group, justify="right")
    for run in runs:
        table.add_row(
            run.id,
            f"{run.created_at:%Y-%m-%d %H:%M}",
            run.period,
            "—" if run.overall_score is None else f"{run.overall_score:.1f}",
            run.verdict,
            str(run.passed),
            str(run.failed),
            str(run.no_data),
            *[
                "—" if run.group_scores.get(group) is None else f"{run.group_scores[group]:.1f}"
                for group in groups
            ],
        )
    console.print(table)


@evaluation_app.command("show")
def show_run(
    run_id: Annotated[
        str | None, typer.Argument(help="an evaluation id; default the latest")
    ] = None,
) -> None:
    """One stored evaluation as the table `payguard evaluate` printed."""
    settings = get_settings()
    database = Database(settings.database_url)
    try:
        with database.read() as session:
            found = service.get_run(session, run_id) if run_id else service.latest(session)
    finally:
        database.dispose()
    show(found)


@evaluation_app.command("validate")
def validate(
    path: Annotated[Path, typer.Argument(help="an indicators YAML file")],
) -> None:
    """Check an indicators YAML file; every problem is named with its place in the file."""
    system = indicators.validate_file(path)
    console.print(
        f"[green]ok[/green]: {len(system.indicators)} indicators in "
        f"{len(system.config.groups)} groups (sha256 {system.sha256[:12]})"
    )
