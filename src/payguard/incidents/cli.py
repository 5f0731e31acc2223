"""``payguard incidents``: open, grade, move, organise and report incidents; run intake.

Commands that change an incident prove who acts with ``--as`` and a TOTP code, as the
approvals and risk commands do; reading commands need no identity."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from payguard import clock
from payguard.errors import ValidationProblem
from payguard.identity import service as identity
from payguard.identity.cli import AsOption, OtpOption, _with_services
from payguard.incidents import grading, intake, reports, service
from payguard.incidents.models import Incident
from payguard.incidents.schemas import LANGUAGES, IncidentMetrics, Language

incidents_app = typer.Typer(help="Incidents: grades, flow, roles, tasks, timeline, reports",
                            no_args_is_help=True)  # fmt: skip
console = Console(soft_wrap=True)  # ids and titles stay whole, for copy and paste
T = TypeVar("T")


def _as_staff(acting: str, otp: str, work: Callable[[Any, Session, str], T]) -> T:
    """In one transaction, prove the staff member with their TOTP code, then run
    ``work(services, session, actor)`` and return what it returns."""

    def run(services: Any) -> T:
        def inside(session: Session) -> T:
            principal = identity.staff_by_totp(session, services.settings, acting, otp)
            return work(services, session, principal.subject_id)

        result: T = services.db.transact(inside)
        return result

    result: T = _with_services(run)
    return result


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise ValidationProblem(f"{option}: not an ISO time: {text!r}") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _impact(
    people: int | None, money: int | None, hours: float | None, regions: int | None
) -> dict[str, Any]:
    given = {
        "people_affected": people,
        "money_at_risk": money,
        "hours_interrupted": hours,
        "regions_affected": regions,
    }
    return {key: value for key, value in given.items() if value is not None}


def _links(items: list[str] | None) -> list[tuple[str, str]]:
    found = []
    for item in items or []:
        kind, separator, ref = item.partition(":")
        if not separator or not ref:
            raise ValidationProblem(f"--link {item!r}: write kind:ref (account:acc_...)")
        found.append((kind.strip(), ref.strip()))
    return found


def _show_line(incident: Incident) -> None:
    console.print(
        f"{incident.id}  [bold]{incident.status}[/bold]  grade {incident.grade}  "
        f"{incident.category} {grading.category_name(incident.category)}: {incident.title}"
    )


PeopleOption = Annotated[int | None, typer.Option("--people", help="People affected")]
MoneyOption = Annotated[
    int | None, typer.Option("--money", help="Money at risk, minor units (fen)")
]
HoursOption = Annotated[float | None, typer.Option("--hours", help="Hours of interruption")]
RegionsOption = Annotated[
    int | None, typer.Option("--regions", help="Provincial-level regions affected")
]


@incidents_app.command("open")
def open_(
    title: Annotated[str, typer.Argument(help="What happened, no personal data")],
    category: Annotated[str, typer.Option(help="GB/T 20986-2023 class code, e.g. 02")],
    acting: AsOption,
    otp: OtpOption,
    people: PeopleOption = None,
    money: MoneyOption = None,
    hours: HoursOption = None,
    regions: RegionsOption = None,
    link: Annotated[
        list[str] | None, typer.Option("--link", help="kind:ref, repeatable (account:acc_...)")
    ] = None,
) -> None:
    """Open an incident by hand; its grade is computed from the impact facts."""
    links = _links(link)

    def work(services: Any, session: Session, actor: str) -> Incident:
        return service.open_incident(
            session,
            services.settings,
            title=title,
            category=category,
            impact=_impact(people, money, hours, regions),
            created_by=actor,
            links=links,
        )

    _show_line(_as_staff(acting, otp, work))


@incidents_app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only this status")] = None,
    grade: Annotated[str | None, typer.Option(help="Only this grade (I-IV)")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only incidents not closed")] = False,
    drill: Annotated[str | None, typer.Option(help="Only incidents of this drill run")] = None,
    limit: int = 50,
) -> None:
    """Incidents, newest first."""

    def work(services: Any) -> list[Incident]:
        with services.db.read() as session:
            return service.list_incidents(
                session,
                status=status,
                grade=grade,
                open_only=open_only,
                drill_run_id=drill,
                limit=limit,
            )

    found: list[Incident] = _with_services(work)
    table = Table(title="incidents")
    table.add_column("id", no_wrap=True)
    for column in ("reported", "status", "grade", "category", "title"):
        table.add_column(column)
    for incident in found:
        table.add_row(
            incident.id,
            incident.reported_at.strftime("%m-%d %H:%M"),
            incident.status,
            incident.grade,
            incident.category,
            incident.title,
        )
    console.print(table)


@incidents_app.command("show")
def show(incident_id: str) -> None:
    """One incident: facts, roles, tasks and links."""

    def work(services: Any) -> None:
        with services.db.read() as session:
            incident = service.get_incident(session, incident_id)
            _show_line(incident)
            console.print(
                f"  source {incident.source}"
                + (f" · drill {incident.drill_run_id}" if incident.drill_run_id else "")
                + f" · computed grade {incident.grade_computed}"
                + (
                    f" · override: {incident.grade_override_reason}"
                    if incident.grade_override_reason
                    else ""
                )
            )
            console.print(f"  impact {incident.impact}")
            for label in ("reported", "detected", "acknowledged", "contained", "recovered"):
                moment = getattr(incident, f"{label}_at")
                if moment is not None:
                    console.print(f"  {label:<12} {moment.isoformat(timespec='seconds')}")
            if incident.closed_at:
                console.print(f"  closed       {incident.closed_at.isoformat(timespec='seconds')}")
            roles = Table("role", "staff", "assigned", title="roles")
            for role in service.roles_of(session, incident.id):
                roles.add_row(role.role, role.staff_id, role.assigned_at.isoformat("T", "seconds"))
            console.print(roles)
            for task in service.tasks_of(session, incident.id):
                due = task.due_at.isoformat(timespec="minutes") if task.due_at else "-"
                console.print(
                    f"  {task.kind} {task.id} [{task.status}] owner {task.owner_staff_id or '-'}"
                    f" due {due}: {task.title}"
                )
            links = ", ".join(
                f"{ln.kind}:{ln.ref}" for ln in service.links_of(session, incident.id)
            )
            console.print(f"  links: {links or '-'}")
            for name in ("summary", "root_cause", "measures", "lessons"):
                value = getattr(incident, name)
                if value:
                    console.print(f"  {name}: {value}")

    _with_services(work)


@incidents_app.command("grade")
def grade(
    incident_id: str,
    acting: AsOption,
    otp: OtpOption,
    to: Annotated[str | None, typer.Option("--grade", help="Override to I, II, III or IV")] = None,
    reason: Annotated[str | None, typer.Option(help="Why (required with --grade)")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the override")] = False,
    people: PeopleOption = None,
    money: MoneyOption = None,
    hours: HoursOption = None,
    regions: RegionsOption = None,
) -> None:
    """New impact facts (the grade follows), or override the grade with a reason."""
    impact = _impact(people, money, hours, regions)
    if not impact and to is None and not clear:
        raise ValidationProblem("give --grade with --reason, --clear, or impact facts")

    def work(services: Any, session: Session, actor: str) -> Incident:
        if impact:
            service.update_impact(session, services.settings, incident_id, impact, actor=actor)
        if clear:
            service.clear_grade_override(session, incident_id, actor=actor)
        if to is not None:
            service.override_grade(session, incident_id, to, reason=reason or "", actor=actor)
        return service.get_incident(session, incident_id)

    _show_line(_as_staff(acting, otp, work))


@incidents_app.command("status")
def status(
    incident_id: str,
    to: Annotated[str, typer.Argument(help="confirmed | contained | recovered | closed")],
    acting: AsOption,
    otp: OtpOption,
    note: Annotated[str | None, typer.Option(help="Goes on the timeline")] = None,
    summary: Annotated[str | None, typer.Option(help="Required to close")] = None,
    root_cause: Annotated[str | None, typer.Option("--root-cause")] = None,
    measures: Annotated[str | None, typer.Option()] = None,
    lessons: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Move the incident one step: reported → confirmed → contained → recovered → closed."""

    def work(services: Any, session: Session, actor: str) -> Incident:
        return service.set_status(
            session,
            incident_id,
            to,
            actor=actor,
            note=note,
            summary=summary,
            root_cause=root_cause,
            measures=measures,
            lessons=lessons,
        )

    _show_line(_as_staff(acting, otp, work))


@incidents_app.command("record")
def record(
    incident_id: str,
    acting: AsOption,
    otp: OtpOption,
    summary: Annotated[str | None, typer.Option()] = None,
    root_cause: Annotated[str | None, typer.Option("--root-cause")] = None,
    measures: Annotated[str | None, typer.Option()] = None,
    lessons: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Write the summary, root cause, measures and lessons of the record."""

    def work(services: Any, session: Session, actor: str) -> Incident:
        return service.update_record(
            session,
            incident_id,
            actor=actor,
            summary=summary,
            root_cause=root_cause,
            measures=measures,
            lessons=lessons,
        )

    _show_line(_as_staff(acting, otp, work))


@incidents_app.command("assign")
def assign(
    incident_id: str,
    role: Annotated[str, typer.Argument(help=", ".join(service.ROLES))],
    staff: Annotated[str, typer.Argument(help="Staff username or id")],
    acting: AsOption,
    otp: OtpOption,
) -> None:
    """Give a staff member a role on the incident."""

    def work(services: Any, session: Session, actor: str) -> str:
        done = service.assign_role(session, incident_id, role, staff, actor=actor)
        return f"{done.role} → {done.staff_id}"

    console.print(_as_staff(acting, otp, work))


@incidents_app.command("task")
def task(
    incident_id: str,
    title: str,
    acting: AsOption,
    otp: OtpOption,
    owner: Annotated[str | None, typer.Option(help="Staff username or id")] = None,
    due: Annotated[str | None, typer.Option(help="ISO time (UTC if no zone)")] = None,
    improvement: Annotated[
        bool, typer.Option("--improvement", help="An improvement item for the report")
    ] = False,
) -> None:
    """Add a task (or, with --improvement, an improvement item)."""
    due_at = _when(due, "--due")

    def work(services: Any, session: Session, actor: str) -> str:
        added = service.add_task(
            session,
            incident_id,
            title=title,
            owner=owner,
            due_at=due_at,
            kind="improvement" if improvement else "task",
            actor=actor,
        )
        return f"{added.id}  {added.kind}: {added.title}"

    console.print(_as_staff(acting, otp, work))


@incidents_app.command("task-status")
def task_status(
    task_id: str,
    to: Annotated[str, typer.Argument(help="done | cancelled")],
    acting: AsOption,
    otp: OtpOption,
) -> None:
    """Mark a task done or cancelled."""

    def work(services: Any, session: Session, actor: str) -> str:
        changed = service.set_task_status(session, task_id, to, actor=actor)
        return f"{changed.id}  {changed.status}"

    console.print(_as_staff(acting, otp, work))


@incidents_app.command("link")
def link(
    incident_id: str,
    kind: Annotated[str, typer.Argument(help=", ".join(service.LINK_KINDS))],
    ref: str,
    acting: AsOption,
    otp: OtpOption,
) -> None:
    """Link an alert, account, payment, customer, device or merchant."""

    def work(services: Any, session: Session, actor: str) -> str:
        added = service.link(session, incident_id, kind, ref, actor=actor)
        return f"{kind}:{ref} " + ("linked" if added else "was already linked")

    console.print(_as_staff(acting, otp, work))


@incidents_app.command("note")
def note(
    incident_id: str,
    text: Annotated[str, typer.Argument(help="The timeline entry (no personal data)")],
    acting: AsOption,
    otp: OtpOption,
) -> None:
    """Add a manual timeline entry."""

    def work(services: Any, session: Session, actor: str) -> str:
        entry = service.add_note(session, incident_id, text, actor=actor)
        return f"noted at {entry.at.isoformat(timespec='seconds')}"

    console.print(_as_staff(acting, otp, work))


@incidents_app.command("timeline")
def timeline(incident_id: str) -> None:
    """The incident's timeline, oldest first."""

    def work(services: Any) -> None:
        with services.db.read() as session:
            entries = service.timeline(session, incident_id)
        table = Table("at (UTC)", "kind", "actor", "text", title=f"timeline of {incident_id}")
        for entry in entries:
            table.add_row(entry.at.strftime("%m-%d %H:%M:%S"), entry.kind, entry.actor, entry.text)
        console.print(table)

    _with_services(work)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


@incidents_app.command("metrics")
def metrics(
    days: Annotated[int, typer.Option(help="The period: the last N days")] = 30,
    since: Annotated[str | None, typer.Option(help="ISO start (overrides --days)")] = None,
    until: Annotated[str | None, typer.Option(help="ISO end (default now)")] = None,
    drills: Annotated[
        bool | None, typer.Option("--drills/--no-drills", help="Only drills / only real ones")
    ] = None,
) -> None:
    """Time to detect, acknowledge, contain and recover (s) and counts, over a period."""
    end = _when(until, "--until") or clock.now()
    start = _when(since, "--since") or end - timedelta(days=days)

    def work(services: Any) -> IncidentMetrics:
        with services.db.read() as session:
            return service.metrics(session, start, end, drills=drills)

    found: IncidentMetrics = _with_services(work)
    console.print(
        f"{found.count} incident(s) reported {start.isoformat(timespec='seconds')} – "
        f"{end.isoformat(timespec='seconds')}, {found.open} open"
    )
    table = Table("measure", "count", "mean s", "p50 s", "max s", title="response times")
    for label, stats in (
        ("time to detect", found.time_to_detect),
        ("time to acknowledge", found.time_to_acknowledge),
        ("time to contain", found.time_to_contain),
        ("time to recover", found.time_to_recover),
    ):
        table.add_row(
            label, str(stats.count), _seconds(stats.mean), _seconds(stats.p50), _seconds(stats.max)
        )
    console.print(table)
    console.print(f"by grade: {found.by_grade or '-'} · by category: {found.by_category or '-'}")


@incidents_app.command("report")
def report(
    incident_id: str,
    out: Annotated[
        Path | None, typer.Option(help="Folder (default var/reports/incidents/ID)")
    ] = None,
    language: Annotated[
        list[str] | None, typer.Option("--lang", help="zh-CN and/or en (default both)")
    ] = None,
) -> None:
    """Write the post-incident report, Markdown and PDF, in zh-CN and en."""
    chosen: list[Language] = []
    for item in language or list(LANGUAGES):
        if item not in LANGUAGES:
            raise ValidationProblem(f"--lang {item!r}: zh-CN or en")
        chosen.append("zh-CN" if item == "zh-CN" else "en")

    def work(services: Any) -> reports.IncidentReport:
        with services.db.read() as session:
            return reports.write_incident_report(
                session, services.settings, incident_id, out_dir=out, languages=chosen
            )

    written: reports.IncidentReport = _with_services(work)
    for lang, files in written.files.items():
        console.print(f"{lang}: {files.markdown}  {files.pdf}")


@incidents_app.command("intake")
def run_intake() -> None:
    """Turn new outbox events into incidents and timeline entries now."""

    def work(services: Any) -> int:
        return intake.process_events(services)

    count: int = _with_services(work)
    console.print(f"{count} event(s) processed")
