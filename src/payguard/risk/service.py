"""Decision receipts, alerts and the review queue.

Every decision is stored as a receipt in the transaction of the payment it decided, with
its inputs, features, rule hits, model score and versions, so that it can be explained
and replayed later (``payguard risk explain PAYMENT_ID``, backtests).

A review, block or fallback opens an alert; its ``risk.alert_opened`` event is what the
incident domain subscribes to. Closing an alert on a payment with a fraud or legitimate
disposition labels the payment for the next model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.errors import Conflict, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.risk.engine import Decision, RiskContext
from payguard.risk.models import RiskAlert, RiskLabel, RiskReceipt

SEVERITIES = ("low", "medium", "high", "critical")
DISPOSITIONS = ("fraud", "legitimate", "false_positive", "duplicate", "no_action")
LABEL_OF_DISPOSITION = {
    "fraud": "fraud",
    "legitimate": "legitimate",
    "false_positive": "legitimate",
}


def record_receipt(
    session: Session,
    context: RiskContext,
    decision: Decision,
    *,
    source: str = "pipeline",
    went_ahead: bool = True,
) -> RiskReceipt:
    """Store the decision. ``went_ahead=False``: an attempt that stopped for step-up and
    rolled back; its receipt is kept for explanation, but no payment exists to alert on."""
    receipt = RiskReceipt(
        id=ids.new_id("decision"),
        payment_id=context.payment_id if source == "pipeline" else None,
        source=source,
        customer_id=context.customer_id,
        kind=context.kind,
        payer=context.payer_account_id,
        payee=context.payee_account_id,
        amount=context.amount,
        currency=context.currency,
        at=context.at,
        context=context.as_record(),
        features=decision.features,
        action=decision.action,
        score=decision.score,
        reasons=[asdict(reason) for reason in decision.reasons],
        rule_hits=list(decision.rule_hits),
        ruleset_version=decision.ruleset_version,
        model_version=decision.model_version,
        model_score=decision.model_score,
        contributions=list(decision.contributions) or None,
        elapsed_ms=decision.elapsed_ms,
        fallback=decision.fallback is not None,
    )
    session.add(receipt)
    alert = _alert_for(context, decision) if went_ahead else None
    if alert is not None:
        open_alert(session, **alert)
    return receipt


def _alert_for(context: RiskContext, decision: Decision) -> dict[str, Any] | None:
    codes = [reason.code for reason in decision.reasons]
    common = {
        "payment_id": context.payment_id,
        "account_id": context.payer_account_id,
        "customer_id": context.customer_id,
        "amount": context.amount,
        "currency": context.currency,
        "reason_codes": codes,
    }
    if decision.fallback:
        return {
            **common,
            "kind": "fallback",
            "severity": "medium",
            "title": f"risk check fell back ({decision.fallback}): {decision.action} applied",
        }
    if decision.action == "review":
        return {
            **common,
            "kind": "review",
            "severity": "high" if decision.score >= 85 else "medium",
            "title": f"payment held for review: {', '.join(codes) or 'score'}",
        }
    if decision.action == "block":
        return {
            **common,
            "kind": "block",
            "severity": "critical" if decision.severe else "high",
            "title": f"payment blocked: {', '.join(codes) or 'score'}",
        }
    return None


def open_alert(
    session: Session,
    *,
    kind: str,
    severity: str,
    title: str,
    reason_codes: Sequence[str],
    payment_id: str | None = None,
    account_id: str | None = None,
    customer_id: str | None = None,
    amount: int | None = None,
    currency: str | None = None,
) -> RiskAlert:
    if severity not in SEVERITIES:
        raise ValidationProblem(f"severity: one of {', '.join(SEVERITIES)}")
    alert = RiskAlert(
        id=ids.new_id("alert"),
        kind=kind,
        severity=severity,
        status="open",
        title=title[:500],
        reason_codes=list(reason_codes),
        payment_id=payment_id,
        account_id=account_id,
        customer_id=customer_id,
        amount=amount,
        currency=currency,
        created_at=clock.now(),
    )
    session.add(alert)
    session.flush()
    events.emit(session, "risk.alert_opened", _alert_event(alert))
    return alert


def _alert_event(alert: RiskAlert) -> dict[str, Any]:
    return {
        "alert_id": alert.id,
        "kind": alert.kind,
        "severity": alert.severity,
        "status": alert.status,
        "disposition": alert.disposition,
        "reason_codes": alert.reason_codes,
        "payment_id": alert.payment_id,
        "account_id": alert.account_id,
        "customer_id": alert.customer_id,
    }


def get_alert(session: Session, alert_id: str) -> RiskAlert:
    alert = session.get(RiskAlert, alert_id)
    if alert is None:
        raise NotFound(f"no alert '{alert_id}'")
    return alert


def list_alerts(
    session: Session,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[RiskAlert], str | None]:
    query = select(RiskAlert).order_by(RiskAlert.id.desc()).limit(limit + 1)
    if status == "active":
        query = query.where(RiskAlert.status != "closed")
    elif status:
        query = query.where(RiskAlert.status == status)
    if kind:
        query = query.where(RiskAlert.kind == kind)
    if cursor:
        query = query.where(RiskAlert.id < cursor)
    rows = list(session.scalars(query))
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)


def acknowledge(session: Session, alert_id: str, staff_id: str) -> RiskAlert:
    alert = get_alert(session, alert_id)
    if alert.status == "closed":
        raise Conflict("the alert is closed")
    if alert.status == "open":
        alert.status = "acknowledged"
        alert.acknowledged_at = clock.now()
    if alert.assignee is None:
        alert.assignee = staff_id
    events.emit(
        session, "risk.alert_acknowledged", {**_alert_event(alert), "by_staff_id": staff_id}
    )
    return alert


def assign(session: Session, alert_id: str, staff_id: str, assignee: str) -> RiskAlert:
    alert = get_alert(session, alert_id)
    if alert.status == "closed":
        raise Conflict("the alert is closed")
    alert.assignee = assignee
    events.emit(
        session,
        "risk.alert_assigned",
        {**_alert_event(alert), "assignee": assignee, "by_staff_id": staff_id},
    )
    return alert


def close(
    session: Session, alert_id: str, staff_id: str, disposition: str, note: str | None
) -> RiskAlert:
    if disposition not in DISPOSITIONS:
        raise ValidationProblem(f"disposition: one of {', '.join(DISPOSITIONS)}")
    alert = get_alert(session, alert_id)
    if alert.status == "closed":
        raise Conflict(f"the alert was already closed as {alert.disposition}")
    now = clock.now()
    alert.status = "closed"
    alert.disposition = disposition
    alert.note = (note or "")[:2000] or None
    alert.closed_at = now
    alert.closed_by = staff_id
    if alert.acknowledged_at is None:
        alert.acknowledged_at = now
    label = LABEL_OF_DISPOSITION.get(disposition)
    if alert.payment_id and label:
        set_label(session, alert.payment_id, label, source="alert", by=f"staff:{staff_id}")
    events.emit(session, "risk.alert_closed", {**_alert_event(alert), "by_staff_id": staff_id})
    return alert


def close_alerts_of_payment(
    session: Session, payment_id: str, staff_id: str, disposition: str, note: str
) -> None:
    for alert in session.scalars(
        select(RiskAlert).where(RiskAlert.payment_id == payment_id, RiskAlert.status != "closed")
    ):
        close(session, alert.id, staff_id, disposition, note)


def set_label(session: Session, payment_id: str, label: str, *, source: str, by: str) -> RiskLabel:
    if label not in ("fraud", "legitimate"):
        raise ValidationProblem("label: fraud or legitimate")
    existing = session.get(RiskLabel, payment_id)
    if existing is None:
        existing = RiskLabel(payment_id=payment_id, label=label, source=source, by=by)
        session.add(existing)
    existing.label, existing.source, existing.by, existing.at = label, source, by, clock.now()
    return existing


def receipt_of_payment(session: Session, payment_id: str) -> RiskReceipt:
    receipt = session.scalar(
        select(RiskReceipt)
        .where(RiskReceipt.payment_id == payment_id)
        .order_by(RiskReceipt.at.desc(), RiskReceipt.id.desc())
        .limit(1)
    )
    if receipt is None:
        raise NotFound(f"no risk decision for payment '{payment_id}'")
    return receipt


def get_receipt(session: Session, receipt_id: str) -> RiskReceipt:
    receipt = session.get(RiskReceipt, receipt_id)
    if receipt is None:
        raise NotFound(f"no risk decision '{receipt_id}'")
    return receipt


def receipts_between(session: Session, start: datetime, end: datetime) -> list[RiskReceipt]:
    return list(
        session.scalars(
            select(RiskReceipt)
            .where(RiskReceipt.at >= start, RiskReceipt.at < end)
            .order_by(RiskReceipt.at, RiskReceipt.id)
        )
    )


def decisions_per_day(
    session: Session, start: datetime, end: datetime
) -> dict[tuple[date, str], int]:
    """How many decisions of each action per UTC day, counted by the database."""
    day = func.date(RiskReceipt.at)
    rows = session.execute(
        select(day, RiskReceipt.action, func.count())
        .where(RiskReceipt.at >= start, RiskReceipt.at < end)
        .group_by(day, RiskReceipt.action)
    )
    return {(date.fromisoformat(str(when)[:10]), action): int(n) for when, action, n in rows}


def went_ahead_since(session: Session, since: datetime, *, limit: int) -> list[dict[str, Any]]:
    """Contexts of the recent decisions whose payment went ahead, oldest first: outside
    systems' decisions that were not blocks, and this platform's payments that exist and
    were not rejected (a challenged attempt that rolled back left a receipt only)."""
    rows = session.execute(
        select(RiskReceipt.source, RiskReceipt.payment_id, RiskReceipt.action, RiskReceipt.context)
        .where(RiskReceipt.at >= since)
        .order_by(RiskReceipt.at.desc())
        .limit(limit)
    ).all()
    from payguard.payments.service import payment_statuses

    statuses = payment_statuses(session, [row.payment_id for row in rows if row.payment_id])
    kept = [
        row.context
        for row in rows
        if (row.source == "api" and row.action != "block")
        or (row.payment_id in statuses and statuses[row.payment_id] != "rejected")
    ]
    kept.reverse()
    return kept


def pipeline_decision_times_ms(session: Session, start: datetime, end: datetime) -> list[float]:
    """How long (ms) each of this platform's own decisions in [start, end) took."""
    return [
        float(value)
        for value in session.scalars(
            select(RiskReceipt.elapsed_ms).where(
                RiskReceipt.at >= start,
                RiskReceipt.at < end,
                RiskReceipt.source == "pipeline",
            )
        )
    ]


def alerts_closed_between(
    session: Session, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """(opened, closed) of the alerts closed in [start, end)."""
    rows = session.execute(
        select(RiskAlert.created_at, RiskAlert.closed_at).where(
            RiskAlert.closed_at.is_not(None),
            RiskAlert.closed_at >= start,
            RiskAlert.closed_at < end,
        )
    )
    return [(created, closed) for created, closed in rows if closed is not None]


def labels_for(session: Session, payment_ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    wanted = list(payment_ids)
    for start in range(0, len(wanted), 500):
        rows = session.execute(
            select(RiskLabel.payment_id, RiskLabel.label).where(
                RiskLabel.payment_id.in_(wanted[start : start + 500])
            )
        )
        found.update({payment_id: label for payment_id, label in rows})
    return found
