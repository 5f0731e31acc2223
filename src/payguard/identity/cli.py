"""``payguard approvals``: four-eyes requests from the command line.

Whoever runs the CLI has the database, so the acting staff member proves who they are
with ``--as`` and their current TOTP code (``--otp``): a second person's approval means
a second person's authenticator, not a second name typed by the first.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from payguard.identity import approvals
from payguard.identity import service as identity
from payguard.identity.schemas import ApprovalOut
from payguard.settings import get_settings

approvals_app = typer.Typer(help="Four-eyes approval requests", no_args_is_help=True)
console = Console()

AsOption = Annotated[str, typer.Option("--as", help="Your staff username")]
OtpOption = Annotated[str, typer.Option("--otp", help="Your current TOTP code")]


def _with_services(work: Any) -> Any:
    from payguard.app import build_services  # the app wires the action catalogue

    services = build_services(get_settings())
    try:
        return work(services)
    finally:
        services.db.dispose()


def _show(out: ApprovalOut) -> None:
    console.print(f"{out.id}  {out.action} on {out.target}: [bold]{out.status}[/bold]")
    if out.result:
        console.print(f"  result: {json.dumps(out.result, sort_keys=True)}")


@approvals_app.command("list")
def list_requests(
    status: Annotated[
        str | None, typer.Option(help="pending, executed, rejected, cancelled or expired")
    ] = "pending",
) -> None:
    """Approval requests, newest first."""

    def work(services: Any) -> list[ApprovalOut]:
        with services.db.read() as session:
            rows = approvals.list_requests(session, status=status)
            return [approvals.to_out(row) for row in rows]

    rows: list[ApprovalOut] = _with_services(work)
    table = Table("action", "target", "params", "reason", "status")
    table.add_column("id", no_wrap=True, min_width=36)  # copied into approve / reject
    for row in rows:
        table.add_row(
            row.action,
            row.target or "",
            json.dumps(row.params, sort_keys=True),
            row.reason,
            row.status,
            row.id,
        )
    console.print(table)


@approvals_app.command("request")
def request(
    action: Annotated[str, typer.Argument(help="e.g. account.unfreeze, kyc.tier_change")],
    target: Annotated[str, typer.Argument(help="customer, account or payment id")],
    reason: Annotated[str, typer.Option(help="Why (the approver reads it)")],
    acting: AsOption,
    otp: OtpOption,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="key=value, repeatable (tier=2)")
    ] = None,
) -> None:
    """Ask for a four-eyes operation; another staff member must approve it."""
    params: dict[str, Any] = {}
    for item in param or []:
        key, separator, value = item.partition("=")
        if not separator:
            raise typer.BadParameter(f"--param {item!r}: write key=value")
        params[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else value

    def work(services: Any) -> ApprovalOut:
        def inside(session: Session) -> ApprovalOut:
            principal = identity.staff_by_totp(session, services.settings, acting, otp)
            record = approvals.request(
                session,
                services.settings,
                services.approvals,
                principal,
                action=action,
                target=target,
                params=params,
                reason=reason,
            )
            return approvals.to_out(record)

        result: ApprovalOut = services.db.transact(inside)
        return result

    _show(_with_services(work))
    console.print("waiting for a second staff member: payguard approvals approve <id>")


@approvals_app.command("approve")
def approve(
    approval_id: str,
    acting: AsOption,
    otp: OtpOption,
    note: Annotated[str | None, typer.Option(help="Kept with the decision")] = None,
) -> None:
    """Approve someone else's request: the operation runs now, once."""

    def work(services: Any) -> ApprovalOut:
        principal = services.db.transact(
            lambda session: identity.staff_by_totp(session, services.settings, acting, otp)
        )
        return approvals.approve_and_finish(
            services.db, services.approvals, principal, approval_id, note
        )

    _show(_with_services(work))


@approvals_app.command("reject")
def reject(
    approval_id: str,
    acting: AsOption,
    otp: OtpOption,
    note: Annotated[str | None, typer.Option(help="Kept with the decision")] = None,
) -> None:
    """Reject a request (or withdraw your own)."""

    def work(services: Any) -> ApprovalOut:
        def inside(session: Session) -> ApprovalOut:
            principal = identity.staff_by_totp(session, services.settings, acting, otp)
            return approvals.to_out(
                approvals.reject(session, services.approvals, principal, approval_id, note)
            )

        result: ApprovalOut = services.db.transact(inside)
        return result

    _show(_with_services(work))
