"""``payguard drill``: run drills, read their history, plans, schedules and records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from payguard.db.engine import Database
from payguard.drills import controls as controls_module
from payguard.drills import runner, scenarios, schedule
from payguard.drills import service as drills
from payguard.drills.context import StepRecord
from payguard.drills.schemas import DrillPlanIn, Participant
from payguard.errors import ValidationProblem
from payguard.settings import Settings, get_settings

drill_app = typer.Typer(help="Security drills that attack the platform", no_args_is_help=True)
plan_app = typer.Typer(help="Drill plans", no_args_is_help=True)
schedule_app = typer.Typer(help="Scheduled drills (cron)", no_args_is_help=True)
drill_app.add_typer(plan_app, name="plan")
drill_app.add_typer(schedule_app, name="schedule")


def _console() -> Console:
    # Made per call: the terminal's width is read when the console is made.
    return Console()


DEFAULT_OUT = Path("var/drills")


def _settings() -> Settings:
    return get_settings()


def _read(work: Any) -> Any:
    db = Database(_settings().database_url)
    try:
        return db.transact(work)
    finally:
        db.dispose()


class LiveSteps:
    """The live table of a running drill: one row per step, updated as it goes."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.phase = "starting the sandbox"
        self.rows: dict[str, dict[str, str]] = {}
        self.actors = 0
        self.live: Live | None = None

    def __call__(self, what: str, step: StepRecord | None, detail: str) -> None:
        if what == "phase":
            self.phase = detail
        elif what == "actor":
            self.actors += 1
        elif step is not None:
            row = self.rows.setdefault(
                step.key, {"title": step.title_en, "state": "", "refused": "", "payments": ""}
            )
            if what == "step":
                row["state"] = "running" if detail == "started" else "done"
            elif what == "refused":
                row["refused"] = f"{len(step.refusals)} ({detail})"
            elif what == "payment":
                row["payments"] = ", ".join(payment.status for payment in step.payments)[-40:]
            elif what == "breach":
                row["state"] = "[red]breach[/red]"
        if self.live is not None:
            self.live.update(self.render())

    def render(self) -> Group:
        table = Table(title=f"drill {self.scenario}", expand=False)
        for column in ("step", "what the attacker does", "state", "refused", "payments"):
            table.add_column(column)
        for key, row in self.rows.items():
            table.add_row(key, row["title"], row["state"], row["refused"], row["payments"])
        status = Text(f"phase: {self.phase}   drill actors: {self.actors}", style="dim")
        return Group(table, status)


def _show_result(result: dict[str, Any]) -> None:
    table = Table(title=f"{result['scenario']}  {result['run_id']}")
    for column in ("step", "detected", "by", "t detect", "contained", "t contain", "lost"):
        table.add_column(column)
    for step in result["steps"]:
        if not step["attack"]:
            continue
        table.add_row(
            step["key"],
            "[green]yes[/green]" if step["detected"] else "[red]no[/red]",
            step["detected_by"][:40],
            "-" if step["time_to_detect_s"] is None else f"{step['time_to_detect_s']:.2f} s",
            "[green]yes[/green]" if step["contained"] else "[red]no[/red]",
            "-" if step["time_to_contain_s"] is None else f"{step['time_to_contain_s']:.2f} s",
            str(step["money_lost"]),
        )
    _console().print(table)
    integrity = result["integrity"]
    _console().print(
        f"money at risk {result['money_at_risk']}, lost {result['money_lost']}; ledger "
        f"{'balanced' if integrity['invariants_ok'] else 'BROKEN'}; acknowledged payments "
        f"{integrity['acknowledged_payments']}, lost {len(integrity['acknowledged_lost'])}; "
        f"duplicate debits {len(integrity['duplicate_debits'])}; incidents "
        f"{len(result['incidents'])}; playbook steps {len(result['playbook_steps'])}"
    )
    if result.get("disabled_controls"):
        _console().print(f"controls switched off: {', '.join(result['disabled_controls'])}")
    for failure in result["failures"]:
        _console().print(f"[red]- {failure}[/red]")
    verdict = "[green]PASSED[/green]" if result["passed"] else "[red]FAILED[/red]"
    _console().print(f"{verdict}  score {result['score']}/100")
    for path in result.get("record_files", []):
        _console().print(f"record: {path}")


@drill_app.command("run")
def run_drill(
    scenario: Annotated[str, typer.Argument(help="scenario name (payguard drill list)")],
    target: Annotated[
        str | None, typer.Option("--target", help="attack a running instance at this URL")
    ] = None,
    disable_control: Annotated[
        list[str] | None,
        typer.Option("--disable-control", help="switch a control off in the sandbox"),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="where the drill record goes")] = DEFAULT_OUT,
    no_record: Annotated[bool, typer.Option("--no-record", help="write no record")] = False,
    plan: Annotated[str | None, typer.Option("--plan", help="the drill plan id")] = None,
    keep_sandbox: Annotated[
        bool, typer.Option("--keep-sandbox", help="keep the sandbox's folder")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Run a drill (in its own sandbox unless --target); exit 1 when it fails."""
    options = runner.RunOptions(
        target=target,
        disabled=tuple(disable_control or ()),
        out_dir=None if no_record else out,
        plan_id=plan,
        keep_sandbox=keep_sandbox,
    )
    if as_json:
        result = runner.run(scenario, _settings(), options)
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        live_steps = LiveSteps(scenario)
        with Live(live_steps.render(), console=_console(), refresh_per_second=8) as live:
            live_steps.live = live
            result = runner.run(scenario, _settings(), options, on_progress=live_steps)
        _show_result(result)
    if not result["passed"]:
        raise typer.Exit(1)


@drill_app.command("list")
def list_scenarios() -> None:
    """The shipped scenarios and the controls they exercise."""
    table = Table(title="drill scenarios")
    for column in ("name", "title", "seed", "controls"):
        table.add_column(column)
    for item in scenarios.registry().values():
        table.add_row(item.name, item.title_en, item.seed, ", ".join(item.controls))
    _console().print(table)
    _console().print(
        "controls that --disable-control can switch off: "
        + ", ".join(sorted(controls_module.CONTROLS))
    )


def _change(value: int | None, better_when_higher: bool = True) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "="
    good = (value > 0) == better_when_higher
    return f"[{'green' if good else 'red'}]{value:+d}[/]"


@drill_app.command("history")
def history(
    scenario: Annotated[str | None, typer.Option("--scenario", help="one scenario")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 30,
) -> None:
    """Past runs with the trend: the difference to the previous run of each scenario."""
    rows = _read(lambda session: drills.history(session, scenario, limit))
    table = Table(title="drill history")
    for column in (
        "started (UTC)",
        "scenario",
        "result",
        "score",
        "Δ score",
        "defended",
        "Δ",
        "lost",
        "Δ lost",
        "off",
        "run",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.started_at.strftime("%Y-%m-%d %H:%M"),
            row.scenario,
            "[green]pass[/green]" if row.passed else "[red]fail[/red]",
            str(row.score),
            _change(row.score_change),
            f"{row.attacks_defended}/{row.attacks}",
            _change(row.defended_change),
            str(row.money_lost),
            _change(row.money_lost_change, better_when_higher=False),
            ", ".join(row.disabled_controls) or "",
            row.id,
        )
    _console().print(table)
    scores = [row.score for row in rows]
    if len(scores) >= 2:
        trend = (
            "improving" if scores[-1] > scores[0] else "worse" if scores[-1] < scores[0] else "flat"
        )
        _console().print(f"trend over {len(scores)} runs: {trend} ({scores[0]} → {scores[-1]})")


@drill_app.command("show")
def show(
    run_id: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One run: its steps, detections, containment and money checks."""
    run = _read(lambda session: drills.get_run(session, run_id))
    if as_json:
        print(run.model_dump_json(indent=2))
        return
    if "steps" not in run.result:
        _console().print(f"{run.id}: {run.status} {run.result.get('error', '')}")
        return
    _show_result(run.result)


@drill_app.command("record")
def record(
    run_id: str,
    out: Annotated[Path, typer.Option("--out", help="folder for the record")] = DEFAULT_OUT,
) -> None:
    """(Re)write a stored run's record: Markdown and PDF, zh-CN and en, timeline chart."""
    from payguard.drills import record as record_module

    run = _read(lambda session: drills.get_run(session, run_id))
    if "steps" not in run.result:
        raise ValidationProblem(f"run '{run_id}' has no result to write a record of")
    plan = None
    if run.plan_id:
        plan = _read(lambda session: drills.get_plan(session, str(run.plan_id))).model_dump()
    files = record_module.write_record(
        run.result,
        scenarios.get(run.scenario),
        out / run.id,
        plan=plan,
        timezone=_settings().risk_timezone,
    )
    for path in files:
        _console().print(f"record: {path}")


# ------------------------------------------------------------------ plans


def _participant(text: str) -> Participant:
    role, _, rest = text.partition(":")
    name, _, duty = rest.partition(":")
    if not role or not name:
        raise ValidationProblem("--participant: ROLE:NAME[:DUTY], e.g. commander:duty-manager")
    return Participant(role=role, name=name, duty=duty)


@plan_app.command("create")
def plan_create(
    scenario: str,
    purpose: Annotated[str, typer.Option("--purpose", help="what the drill is for")],
    participant: Annotated[
        list[str] | None,
        typer.Option("--participant", help="ROLE:NAME[:DUTY], repeatable (work roles)"),
    ] = None,
    when: Annotated[
        str | None, typer.Option("--schedule", help="cron expression or date/time")
    ] = None,
    environment: Annotated[str, typer.Option("--environment")] = "sandbox",
    method: Annotated[str, typer.Option("--method")] = "simulated, hands-on",
    by: Annotated[str, typer.Option("--by", help="who wrote the plan")] = "cli",
) -> None:
    """Record a drill plan: purpose, scenario, participants and roles, schedule,
    environment and method (seed 000)."""
    plan = DrillPlanIn(
        scenario=scenario,
        purpose=purpose,
        participants=[_participant(item) for item in participant or []],
        schedule=when,
        environment=environment,
        method=method,
    )
    made = _read(lambda session: drills.create_plan(session, plan, by))
    _console().print(f"plan {made.id} for {made.scenario}")


@plan_app.command("list")
def plan_list() -> None:
    plans = _read(drills.list_plans)
    table = Table(title="drill plans")
    for column in ("id", "scenario", "schedule", "environment", "method", "purpose"):
        table.add_column(column)
    for item in plans:
        table.add_row(
            item.id,
            item.scenario,
            item.schedule or "",
            item.environment,
            item.method,
            item.purpose[:60],
        )
    _console().print(table)


@plan_app.command("show")
def plan_show(plan_id: str) -> None:
    print(_read(lambda session: drills.get_plan(session, plan_id)).model_dump_json(indent=2))


# ------------------------------------------------------------------ schedules


@schedule_app.command("add")
def schedule_add(
    scenario: str, cron: Annotated[str, typer.Argument(help='e.g. "0 3 * * 1"')]
) -> None:
    """Run SCENARIO whenever CRON comes due (UTC), by `payguard drill schedule run-due`."""
    made = _read(lambda session: drills.add_schedule(session, scenario, cron))
    _console().print(f"schedule {made.id}: {made.scenario} '{made.cron}', next {made.next_run_at}")


@schedule_app.command("list")
def schedule_list() -> None:
    table = Table(title="drill schedules")
    for column in ("id", "scenario", "cron", "next run (UTC)", "enabled", "last run"):
        table.add_column(column)
    for item in _read(drills.list_schedules):
        table.add_row(
            item.id,
            item.scenario,
            item.cron,
            item.next_run_at.strftime("%Y-%m-%d %H:%M"),
            "yes" if item.enabled else "no",
            item.last_run_id or "",
        )
    _console().print(table)


@schedule_app.command("disable")
def schedule_disable(schedule_id: str) -> None:
    _read(lambda session: drills.set_schedule_enabled(session, schedule_id, False))
    _console().print(f"schedule {schedule_id} disabled")


@schedule_app.command("enable")
def schedule_enable(schedule_id: str) -> None:
    _read(lambda session: drills.set_schedule_enabled(session, schedule_id, True))
    _console().print(f"schedule {schedule_id} enabled")


@schedule_app.command("run-due")
def schedule_run_due(
    out: Annotated[Path, typer.Option("--out", help="where the records go")] = DEFAULT_OUT,
) -> None:
    """Run every scheduled drill that is due (call it from cron or a systemd timer)."""
    settings = _settings()

    def run_one(scenario: str) -> str | None:
        result = runner.run(scenario, settings, runner.RunOptions(out_dir=out))
        verdict = "passed" if result["passed"] else "FAILED"
        _console().print(f"{scenario}: {verdict} {result['score']}/100 ({result['run_id']})")
        return str(result["run_id"])

    db = Database(settings.database_url)
    try:
        done = schedule.run_due(db, run_one)
    finally:
        db.dispose()
    if not done:
        _console().print("no drill is due")
