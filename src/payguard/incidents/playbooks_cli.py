"""``payguard playbooks``: list, show and validate playbooks; run, approve and recover.

Acting commands prove who acts with ``--as`` and a current TOTP code (``--otp``), like
``payguard approvals``: a guarded step's second person is a second authenticator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from payguard.identity import permissions
from payguard.identity import service as identity
from payguard.identity.permissions import Permission
from payguard.incidents import playbooks
from payguard.settings import get_settings

playbooks_app = typer.Typer(help="Containment playbooks", no_args_is_help=True)
console = Console()

AsOption = Annotated[str, typer.Option("--as", help="Your staff username")]
OtpOption = Annotated[str, typer.Option("--otp", help="Your current TOTP code")]


def _with_services(work: Any) -> Any:
    from payguard.app import build_services

    services = build_services(get_settings())
    try:
        return work(services)
    finally:
        services.db.dispose()


def _params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        key, separator, value = item.partition("=")
        if not separator:
            raise typer.BadParameter(f"--param {item!r}: write key=value (a,b for a list)")
        text = value.strip()
        params[key.strip()] = [part.strip() for part in text.split(",")] if "," in text else text
    return params


def _show_run(run: playbooks.RunOut) -> None:
    console.print(
        f"run {run.id}  {run.playbook} {run.phase}: [bold]{run.status}[/bold]"
        + (f"  ({run.error})" if run.error else "")
    )
    table = Table("#", "step", "action", "status", "result / error")
    for step in run.steps:
        outcome = step.error or (json.dumps(step.result, sort_keys=True) if step.result else "")
        if step.status == "waiting_approval":
            outcome = f"approval {step.approval_id}: payguard playbooks approve-step {run.id} "
            outcome += f"{step.position} --as <someone else> --otp <code>"
        table.add_row(str(step.position), step.name or "", step.action, step.status, outcome)
    console.print(table)


@playbooks_app.command("list")
def list_playbooks() -> None:
    """The shipped and custom playbooks (and the files that did not validate)."""
    found, problems = playbooks.load_report(get_settings())
    table = Table()
    table.add_column("name", no_wrap=True)  # typed into show / run
    for column in ("version", "steps", "title"):
        table.add_column(column)
    for name in sorted(found):
        book = found[name]
        table.add_row(name, book.version_tag, str(len(book.steps)), book.title)
    console.print(table)
    for detail in problems.values():
        console.print(f"[red]invalid:[/red] {detail}")


@playbooks_app.command("show")
def show(name: str) -> None:
    """One playbook: its steps, parameters and recoveries."""
    book = playbooks.get_playbook(get_settings(), name)
    console.print(f"[bold]{book.name}[/bold] {book.version_tag}: {book.title}")
    if book.title_zh:
        console.print(book.title_zh)
    console.print(book.description)
    for param, spec in book.params.items():
        console.print(
            f"  param {param}{' (required)' if spec.required else ''}: {spec.description}"
        )
    for index, step in enumerate(book.steps, start=1):
        line = f"{index:>2}. {step.id}: {step.action}"
        if step.for_each:
            line += f" for each {step.for_each}"
        if step.requires_approval:
            line += " [four-eyes]"
        if step.recovery:
            line += f"; recovery {step.recovery.action}"
        console.print(line, markup=False)
        console.print(f"      params {json.dumps(step.params, ensure_ascii=False)}", markup=False)


@playbooks_app.command("validate")
def validate(path: Path) -> None:
    """Validate a playbook file; every problem is named with its step and field."""
    book = playbooks.validate_file(path)
    console.print(f"[green]valid:[/green] {book.name} {book.version_tag}, {len(book.steps)} steps")


@playbooks_app.command("run")
def run(
    incident_id: str,
    playbook: str,
    acting: AsOption,
    otp: OtpOption,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="key=value, repeatable (ips=a,b)")
    ] = None,
) -> None:
    """Run a containment playbook on an incident; guarded steps wait for a second person."""
    params = _params(param)

    def work(services: Any) -> playbooks.RunOut:
        def inside(session: Session) -> playbooks.RunOut:
            principal = identity.staff_by_totp(session, services.settings, acting, otp)
            permissions.demand(principal, Permission.PLAYBOOKS_RUN)
            started = playbooks.start_run(
                session,
                services.settings,
                services,
                incident_id=incident_id,
                playbook=playbook,
                started_by=principal.subject_id,
                params=params,
            )
            return playbooks.run_out(session, started)

        result: playbooks.RunOut = services.db.transact(inside)
        return result

    _show_run(_with_services(work))


@playbooks_app.command("approve-step")
def approve_step(
    run_id: str,
    position: int,
    acting: AsOption,
    otp: OtpOption,
    note: Annotated[str | None, typer.Option(help="Kept with the decision")] = None,
) -> None:
    """Approve a guarded step of someone else's run: it runs now, and the run goes on."""

    def work(services: Any) -> playbooks.RunOut:
        def inside(session: Session) -> playbooks.RunOut:
            principal = identity.staff_by_totp(session, services.settings, acting, otp)
            approved = playbooks.approve_step(
                session,
                services.settings,
                services,
                run_id=run_id,
                position=position,
                approver=principal,
                note=note,
            )
            return playbooks.run_out(session, approved)

        result: playbooks.RunOut = services.db.transact(inside)
        return result

    _show_run(_with_services(work))


@playbooks_app.command("recover")
def recover(run_id: str, acting: AsOption, otp: OtpOption) -> None:
    """Undo a containment run (guarded undo steps wait for a second person)."""

    def work(services: Any) -> playbooks.RunOut:
        def inside(session: Session) -> playbooks.RunOut:
            principal = identity.staff_by_totp(session, services.settings, acting, otp)
            permissions.demand(principal, Permission.PLAYBOOKS_RUN)
            recovered = playbooks.run_recovery(
                session, services.settings, services, run_id=run_id, started_by=principal.subject_id
            )
            return playbooks.run_out(session, recovered)

        result: playbooks.RunOut = services.db.transact(inside)
        return result

    _show_run(_with_services(work))


@playbooks_app.command("runs")
def runs(incident_id: str) -> None:
    """The playbook runs of an incident, with their steps."""

    def work(services: Any) -> list[playbooks.RunOut]:
        with services.db.read() as session:
            return [
                playbooks.run_out(session, item) for item in playbooks.runs_of(session, incident_id)
            ]

    for item in _with_services(work):
        _show_run(item)
