"""``payguard risk``: decisions, rules, lists, models, alerts and the review queue.

Commands that change something prove who acts with ``--as`` and a TOTP code, as the
approvals commands do."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from payguard import ids
from payguard.identity import service as identity
from payguard.identity.cli import AsOption, OtpOption, _with_services
from payguard.risk import reviews, service
from payguard.risk.engine_schemas import AlertOut, ReceiptOut, ReviewOutcome
from payguard.risk.learning_cli import label, models_app, train
from payguard.risk.lists_cli import lists_app
from payguard.risk.rules_cli import backtest, rules_app

risk_app = typer.Typer(help="The risk engine", no_args_is_help=True)
alerts_app = typer.Typer(help="Risk alerts", no_args_is_help=True)
reviews_app = typer.Typer(help="The review queue of held payments", no_args_is_help=True)
risk_app.add_typer(alerts_app, name="alerts")
risk_app.add_typer(reviews_app, name="reviews")
risk_app.command("train")(train)
risk_app.add_typer(models_app, name="models")
risk_app.command("label")(label)
risk_app.add_typer(lists_app, name="lists")
risk_app.add_typer(rules_app, name="rules")
risk_app.command("backtest")(backtest)
console = Console()


@risk_app.command("explain")
def explain(
    payment_id: Annotated[str, typer.Argument(help="a payment id (or a decision id)")],
    as_json: Annotated[bool, typer.Option("--json", help="the whole receipt as JSON")] = False,
) -> None:
    """Why a payment got its decision: reasons, rule hits, features, model contributions."""

    def work(services: Any) -> ReceiptOut:
        with services.db.read() as session:
            receipt = (
                service.get_receipt(session, payment_id)
                if ids.has_prefix(payment_id, "decision")
                else service.receipt_of_payment(session, payment_id)
            )
            return ReceiptOut.model_validate(receipt)

    receipt: ReceiptOut = _with_services(work)
    if as_json:
        print(receipt.model_dump_json(indent=2))
        return
    console.print(
        f"[bold]{receipt.action.upper()}[/bold]  score {receipt.score}  "
        f"({receipt.kind} {receipt.amount} {receipt.currency} at {receipt.at.isoformat()})"
    )
    console.print(
        f"rules {receipt.ruleset_version} · model {receipt.model_version}"
        + (f" (p={receipt.model_score:.3f})" if receipt.model_score is not None else "")
        + f" · {receipt.elapsed_ms:.2f} ms"
        + (" · FALLBACK" if receipt.fallback else "")
    )
    for reason in receipt.reasons:
        console.print(f"  • {reason['code']}: {reason['text_en']} / {reason['text_zh']}")
    if receipt.rule_hits:
        hits = Table("rule", "mode", "action", "points", "reason", title="rule hits")
        for hit in receipt.rule_hits:
            hits.add_row(
                hit["rule_id"], hit["mode"], hit["action"] or "", str(hit["score"]),
                hit["reason_code"],
            )  # fmt: skip
        console.print(hits)
    if receipt.contributions:
        table = Table("feature", "value", "contribution", title="model: top contributions")
        for item in receipt.contributions:
            table.add_row(item["feature"], str(item["value"]), f"{item['contribution']:+.3f}")
        console.print(table)
    shown = {key: value for key, value in receipt.features.items() if value not in (0, -1.0, "")}
    table = Table("feature", "value", title="features (zero and unknown left out)")
    for key, value in sorted(shown.items()):
        table.add_row(key, json.dumps(value))
    console.print(table)


def _alert_table(rows: list[AlertOut], title: str) -> Table:
    table = Table("severity", "kind", "status", "title", "created", title=title)
    # Ids are copied into the next command: never cut them.
    table.add_column("payment", no_wrap=True, min_width=36)
    table.add_column("id", no_wrap=True, min_width=36)
    for row in rows:
        table.add_row(
            row.severity, row.kind, row.status, row.title,
            row.created_at.strftime("%Y-%m-%d %H:%M"), row.payment_id or "", row.id,
        )  # fmt: skip
    return table


@alerts_app.command("list")
def list_alerts(
    status: Annotated[str | None, typer.Option(help="open, acknowledged, closed or active")] = (
        "active"
    ),
    kind: Annotated[str | None, typer.Option(help="review, block, fallback, ...")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """Alerts, newest first."""

    def work(services: Any) -> list[AlertOut]:
        with services.db.read() as session:
            items, _ = service.list_alerts(session, status=status, kind=kind, limit=limit)
            return [AlertOut.model_validate(item) for item in items]

    console.print(_alert_table(_with_services(work), "alerts"))


def _as_staff(acting: str, otp: str, change: Any) -> Any:
    def work(services: Any) -> Any:
        def inside(session: Session) -> Any:
            principal = identity.staff_by_totp(session, services.settings, acting, otp)
            return change(session, principal, services)

        return services.db.transact(inside)

    return _with_services(work)


@alerts_app.command("ack")
def acknowledge(alert_id: str, acting: AsOption, otp: OtpOption) -> None:
    """Take an alert (acknowledged, assigned to you if nobody has it)."""
    out = _as_staff(
        acting,
        otp,
        lambda session, principal, _services: AlertOut.model_validate(
            service.acknowledge(session, alert_id, principal.subject_id)
        ),
    )
    console.print(f"{out.id}: {out.status}, assigned to {out.assignee}")


@alerts_app.command("close")
def close(
    alert_id: str,
    disposition: Annotated[
        str, typer.Argument(help="fraud, legitimate, false_positive, duplicate or no_action")
    ],
    acting: AsOption,
    otp: OtpOption,
    note: Annotated[str | None, typer.Option(help="What you found")] = None,
) -> None:
    """Close an alert; fraud / legitimate also label its payment for training."""
    out = _as_staff(
        acting,
        otp,
        lambda session, principal, _services: AlertOut.model_validate(
            service.close(session, alert_id, principal.subject_id, disposition, note)
        ),
    )
    console.print(f"{out.id}: closed as {out.disposition}")


@reviews_app.command("list")
def review_queue() -> None:
    """Payments held for review, oldest first."""

    def work(services: Any) -> list[AlertOut]:
        with services.db.read() as session:
            items, _ = service.list_alerts(session, status="active", kind="review", limit=500)
            return [AlertOut.model_validate(item) for item in reversed(items)]

    console.print(_alert_table(_with_services(work), "review queue"))


def _review(payment_id: str, acting: str, otp: str, reason: str, approve: bool) -> None:
    from payguard.web import request_approval

    def work(services: Any) -> ReviewOutcome:
        principal = services.db.transact(
            lambda session: identity.staff_by_totp(session, services.settings, acting, otp)
        )
        if not approve:
            return reviews.reject(services.payments, principal, payment_id, reason)
        return reviews.approve(
            services.payments,
            principal,
            payment_id,
            reason,
            lambda **request: request_approval(services, principal, **request),
        )

    outcome: ReviewOutcome = _with_services(work)
    console.print(f"{outcome.payment_id}: {outcome.outcome} ({outcome.payment_status})")
    if outcome.approval_id:
        second = f"payguard approvals approve {outcome.approval_id}"
        console.print(f"a second analyst approves: {second}")


@reviews_app.command("approve")
def approve(
    payment_id: str,
    acting: AsOption,
    otp: OtpOption,
    reason: Annotated[str, typer.Option(help="Why it is genuine")],
) -> None:
    """Post a held payment (a four-eyes request above the line)."""
    _review(payment_id, acting, otp, reason, approve=True)


@reviews_app.command("reject")
def reject(
    payment_id: str,
    acting: AsOption,
    otp: OtpOption,
    reason: Annotated[str, typer.Option(help="Why it is refused")],
) -> None:
    """Release a held payment's funds to the payer; the payment fails, labelled fraud."""
    _review(payment_id, acting, otp, reason, approve=False)
