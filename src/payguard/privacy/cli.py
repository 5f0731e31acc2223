"""``payguard privacy``: export a customer's personal data, or erase it (crypto-shredding)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

privacy_app = typer.Typer(help="Data subject rights: access and erasure", no_args_is_help=True)
console = Console()


def _run(work: Any) -> Any:
    from payguard.db.engine import Database
    from payguard.settings import get_settings

    settings = get_settings()
    database = Database(settings.database_url)
    try:
        return database.transact(lambda session: work(session, settings))
    finally:
        database.dispose()


@privacy_app.command("export")
def export(
    customer_id: str,
    out: Annotated[Path | None, typer.Option(help="Write the JSON here (default: stdout)")] = None,
) -> None:
    """Everything we hold about a customer, as JSON (the right of access)."""
    from payguard.privacy import service

    document = _run(lambda session, settings: service.export(session, settings, customer_id))
    text = json.dumps(document, indent=2, ensure_ascii=False)
    if out is None:
        print(text)
        return
    out.write_text(text + "\n", encoding="utf-8")
    out.chmod(0o600)  # it is personal data
    console.print(f"wrote the personal data of {customer_id} to {out}")


@privacy_app.command("erase")
def erase(
    customer_id: str,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone")] = False,
) -> None:
    """Destroy a customer's key: their personal data becomes unreadable for good."""
    from payguard.privacy import service

    if not yes:
        console.print("[red]refused:[/red] erasure cannot be undone; add --yes to confirm")
        raise typer.Exit(2)
    result = _run(lambda session, settings: service.erase(session, settings, customer_id))
    console.print(
        f"erased {customer_id}: {result['keys_destroyed']} key(s) destroyed, "
        f"{result['sessions_ended']} session(s) ended; ledger records are kept"
    )
