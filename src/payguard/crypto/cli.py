"""``payguard keys``: key status, rotation (four-eyes), re-encryption and retirement."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn

keys_app = typer.Typer(help="Key management: rotation and re-encryption", no_args_is_help=True)
console = Console()


def _services() -> Any:
    from payguard.app import build_services
    from payguard.settings import get_settings

    return build_services(get_settings())


@keys_app.command("status")
def status() -> None:
    """The active KEK, data keys per KEK, and values still under an old key."""
    from payguard.crypto import rotation
    from payguard.crypto.envelope import envelope_for

    services = _services()
    try:
        with services.db.read() as session:
            report = rotation.status(session, envelope_for(services.settings))
    finally:
        services.db.dispose()
    print(json.dumps(report, indent=2))


@keys_app.command("rotate")
def rotate(
    purpose: Annotated[
        str, typer.Option("--purpose", help="kek, customers, staff, evidence or outbox")
    ],
    reason: Annotated[str, typer.Option(help="Why (the approver reads it)")],
    acting: Annotated[str, typer.Option("--as", help="Your staff username")],
    otp: Annotated[str, typer.Option("--otp", help="Your current TOTP code")],
) -> None:
    """Ask for a rotation; a second staff member approves it (four-eyes)."""
    from payguard.identity.cli import request

    request("keys.rotate", purpose, reason=reason, acting=acting, otp=otp, param=None)


@keys_app.command("reencrypt")
def reencrypt(
    batch: Annotated[int, typer.Option(min=1, help="Values per transaction")] = 500,
) -> None:
    """Move every sealed value to its owner's newest key (resumable; reads keep working)."""
    from payguard.crypto import rotation
    from payguard.crypto.envelope import envelope_for
    from payguard.events import service as events

    services = _services()
    try:
        with services.db.read() as session:
            total = rotation.pending_reencryption(session)
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), console=console
        ) as progress:
            task = progress.add_task(f"re-encrypting 0 / {total}", total=total)

            def tick(done: int) -> None:
                progress.update(task, completed=done, description=f"re-encrypting {done} / {total}")

            moved = rotation.reencrypt(
                services.db, envelope_for(services.settings), batch=batch, on_progress=tick
            )
        services.db.transact(
            lambda session: events.emit(session, "keys.reencrypted", {"values_moved": moved})
        )
    finally:
        services.db.dispose()
    console.print(f"{moved} value(s) now under their owner's newest key")


@keys_app.command("retire")
def retire() -> None:
    """Destroy old data-key versions and drop KEKs that nothing uses any more."""
    from payguard.crypto import rotation
    from payguard.crypto.envelope import envelope_for
    from payguard.events import service as events

    services = _services()
    envelope = envelope_for(services.settings)
    try:
        data_keys = services.db.transact(lambda session: rotation.retire_data_keys(session))
        keks = services.db.transact(lambda session: rotation.retire_keks(session, envelope))
        services.db.transact(
            lambda session: events.emit(
                session, "keys.retired", {"data_keys": data_keys, "keks": keks}
            )
        )
    finally:
        services.db.dispose()
    console.print(f"retired {data_keys} data key(s); dropped KEK(s): {', '.join(keks) or 'none'}")
