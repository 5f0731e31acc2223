"""``payguard audit``: sign tree heads, verify the whole log, export and check proofs.

``verify-proof`` is the auditor's tool: it reads a proof file and a public key and
touches neither the settings nor the database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

audit_app = typer.Typer(help="The tamper-evident audit log", no_args_is_help=True)
console = Console()


def _database_and_signer() -> tuple[Any, Any]:
    from payguard.crypto.keyring import load_signer
    from payguard.db.engine import Database
    from payguard.settings import get_settings

    settings = get_settings()
    return Database(settings.database_url), load_signer(settings)


@audit_app.command("head")
def head() -> None:
    """Seal new records and sign a tree head now."""
    from payguard.audit import service

    database, signer = _database_and_signer()
    try:
        made = database.transact(lambda session: service.make_tree_head(session, signer))
        with database.read() as session:
            latest = made or service.latest_head(session)
    finally:
        database.dispose()
    if latest is None:
        console.print("the audit log is empty")
        return
    print(json.dumps(latest.as_dict(), indent=2))


@audit_app.command("public-key")
def public_key() -> None:
    """Print the PEM public key that signs tree heads (give it to your auditor)."""
    _database, signer = _database_and_signer()
    _database.dispose()
    print(signer.public_pem, end="")


@audit_app.command("verify")
def verify() -> None:
    """Recompute every record's hash and the root at every signed head; exit 1 on tampering."""
    from payguard.audit import service

    database, signer = _database_and_signer()
    try:
        with (
            Progress(
                "{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
            ) as progress,
            database.read() as session,
        ):
            task = progress.add_task("verifying", total=None)
            report = service.verify(
                session,
                signer.public_pem,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    finally:
        database.dispose()
    console.print(f"{report.records:,} records, {report.heads_checked:,} signed tree heads checked")
    for problem in report.bad_records + report.bad_heads:
        console.print(f"[red]✗[/red] {problem}")
    if report.suspect_range and not report.bad_records:
        first, last = report.suspect_range
        console.print(f"[red]✗[/red] the change lies between leaf {first} and leaf {last}")
    if not report.ok:
        raise typer.Exit(1)
    console.print("[green]the audit log is intact[/green]")


@audit_app.command("proof")
def proof(
    kind: Annotated[str, typer.Argument(help="inclusion or consistency")],
    first: Annotated[int, typer.Argument(help="record seq (inclusion) or first tree size")],
    second: Annotated[int, typer.Argument(help="tree size")],
    out: Annotated[Path, typer.Option(help="Where to write the proof (JSON)")],
) -> None:
    """Export a proof for someone who has only the public key."""
    from payguard.audit import service

    database, _signer = _database_and_signer()
    try:
        with database.read() as session:
            if kind == "inclusion":
                document = service.inclusion(session, first, second)
            elif kind == "consistency":
                document = service.consistency(session, first, second)
            else:
                raise typer.BadParameter("inclusion or consistency", param_hint="KIND")
    finally:
        database.dispose()
    out.write_text(json.dumps(document, indent=2))
    console.print(f"wrote {kind} proof to {out}")


@audit_app.command("verify-proof")
def verify_proof(
    proof_file: Annotated[Path, typer.Argument(help="A proof from the API or `audit proof`")],
    public_key_file: Annotated[Path, typer.Option("--public-key", help="PEM public key")],
) -> None:
    """Check a proof offline, with the public key alone (no settings, no database)."""
    from payguard.audit.service import check_proof

    try:
        document = json.loads(proof_file.read_text())
        pem = public_key_file.read_text()
    except (OSError, json.JSONDecodeError) as error:
        console.print(f"[red]error:[/red] cannot read the input: {error}")
        raise typer.Exit(2) from None
    try:
        problems = check_proof(document, pem)
    except (KeyError, TypeError, ValueError) as error:
        console.print(f"[red]error:[/red] not a well-formed proof ({type(error).__name__})")
        raise typer.Exit(2) from None
    for problem in problems:
        console.print(f"[red]✗[/red] {problem}")
    if problems:
        raise typer.Exit(1)
    console.print(f"[green]the {document['kind']} proof holds against the signed tree head[/green]")


@audit_app.command("export-heads")
def export_heads(
    out: Annotated[Path, typer.Option(help="JSON Lines file of every signed tree head")],
) -> None:
    """Write every signed tree head, one JSON object a line, for a witness to keep."""
    from payguard.audit import service

    database, _signer = _database_and_signer()
    try:
        with database.read() as session:
            lines = [json.dumps(head.as_dict()) for head in service.heads(session)]
    finally:
        database.dispose()
    out.write_text("".join(line + "\n" for line in lines))
    console.print(f"wrote {len(lines)} tree heads to {out}")
