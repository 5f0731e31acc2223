"""``payguard notify``: deliver the queue, list what was sent, test the webhook, draft the
regulator report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from payguard import clock
from payguard.db.engine import Database
from payguard.notify import channels, service
from payguard.settings import get_settings

notify_app = typer.Typer(help="Notifications: outbox, webhook, SMTP", no_args_is_help=True)
console = Console()


def _database() -> Database:
    return Database(get_settings().database_url)


@notify_app.command("dispatch")
def dispatch(
    limit: Annotated[int, typer.Option(help="At most this many messages")] = 100,
) -> None:
    """Deliver the queued webhook and SMTP messages that are due.

    The server's sweeper does this every sweep; this is for cron jobs and the impatient."""
    settings = get_settings()
    db = _database()
    try:
        sent = service.dispatch_pending(db, settings, limit=limit)
        with db.read() as session:
            waiting = len(service.list_notifications(session, status="queued", limit=10_000))
    finally:
        db.dispose()
    console.print(f"sent {sent}; {waiting} still queued")


@notify_app.command("list")
def list_command(
    incident: Annotated[str | None, typer.Option(help="Only this incident's")] = None,
    status: Annotated[str | None, typer.Option(help="queued, sent or failed")] = None,
    audience: Annotated[str | None, typer.Option(help="internal, customer or external")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first")] = 50,
) -> None:
    """Notifications, newest first (recipients masked)."""
    db = _database()
    try:
        with db.read() as session:
            rows = service.list_notifications(
                session, incident_id=incident, status=status, audience=audience, limit=limit
            )
            table = Table(
                "id",
                "created",
                "audience",
                "template",
                "to",
                "channel",
                "status",
                "tries",
                "incident",
            )
            for row in rows:
                to = row.recipient_masked or row.recipient_ref or row.recipient_kind
                status_text = row.status + (f" ({row.last_error})" if row.last_error else "")
                table.add_row(
                    row.id,
                    row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    row.audience,
                    row.template,
                    to,
                    row.channel,
                    status_text,
                    str(row.attempts),
                    row.incident_id or "-",
                )
    finally:
        db.dispose()
    Console().print(table)  # a fresh console: the terminal's width now


@notify_app.command("test-webhook")
def test_webhook(
    url: Annotated[str | None, typer.Option(help="Another URL than the configured one")] = None,
) -> None:
    """POST a signed test message to the webhook now, and say what came back."""
    settings = get_settings()
    payload: dict[str, object] = {
        "id": "ntf_test",
        "audience": "internal",
        "template": "notify_test",
        "subject": "[payguard] Test notification",
        "body": "This is a test notification from payguard.",
        "created_at": clock.now().isoformat(),
        "attempt": 1,
    }
    outcome = channels.post_webhook(
        settings,
        payload,
        notification_id="ntf_test",
        attempt=1,
        timestamp=int(clock.now().timestamp()),
        url=url,
    )
    if outcome.ok:
        console.print(f"[green]ok[/green]: HTTP {outcome.status_code} in {outcome.duration_ms} ms")
        return
    console.print(f"[red]failed[/red]: {outcome.error}")
    raise typer.Exit(1)


@notify_app.command("draft")
def draft(
    incident_id: str,
    language: Annotated[str | None, typer.Option("--lang", help="zh-CN or en")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write Markdown + PDF here")] = None,
) -> None:
    """The regulator report draft of an incident and its deadline clock."""
    settings = get_settings()
    db = _database()
    try:
        with db.read() as session:
            report = service.regulator_report_draft(
                session, settings, incident_id, language=language
            )
    finally:
        db.dispose()
    console.print(f"[bold]{report.subject}[/bold]\n")
    console.print(report.text, markup=False, highlight=False)
    left = report.deadline.seconds_left
    clock_text = (
        f"[red]overdue by {-left // 60} min[/red]" if left < 0 else f"{left // 60} min left"
    )
    console.print(f"initial report due {report.deadline.report_due_at.isoformat()}: {clock_text}")
    if out is not None:
        files = report.write(out)
        console.print(f"wrote {files.markdown} and {files.pdf}")
