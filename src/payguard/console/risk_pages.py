"""The console's Risk pages: the review queue, the active alerts, decisions per day, and
the explanation of one decision.

Thin like every console route: parse and check the form, authorise (``risk:read`` to
look, ``risk:review`` to approve or reject a held payment, ``risk:alerts-handle`` to
take or close an alert), call the risk services, render or redirect. Approving a held
payment at or above ``risk_review_four_eyes_amount`` files a four-eyes request instead
of posting it; the second analyst decides on the Approvals page.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from payguard import clock
from payguard.console import charts, security
from payguard.console.api import BadRequest
from payguard.console.rendering import ConsoleRoute, render
from payguard.console.security import StaffDep
from payguard.errors import Conflict, Forbidden, NotFound
from payguard.identity import approvals, permissions
from payguard.identity import service as identity
from payguard.identity.permissions import Permission
from payguard.identity.service import Principal
from payguard.payments.schemas import PaymentOut
from payguard.risk import reviews, service
from payguard.risk.engine_schemas import AlertOut, ReceiptOut, ReviewOutcome
from payguard.web import ServicesDep, request_approval

router = APIRouter(prefix="/console", tags=["console"], route_class=ConsoleRoute)

QUEUE_SIZE = 50  # held payments shown, oldest first
QUEUE_SCAN_PAGE = 200
QUEUE_SCAN_MAX = 2000  # active review alerts read to find the oldest
ALERT_PAGE = 25
CHART_DAYS = 14
ACTIONS = ["allow", "challenge", "review", "block"]
HELD = "held_for_review"
ALERT_CURSOR = re.compile(r"alr_[0-9a-f]{32}")
NOTICES = {
    "approved": "Approved: the held payment was posted and its alerts closed as legitimate.",
    "approval_requested": "The amount is at or above the four-eyes line: your approval was "
    "filed as a request, and the payment stays held until a second analyst approves it.",
    "rejected": "Rejected: the hold was released, the funds are back with the payer, and the "
    "payment is labelled fraud.",
    "acknowledged": "Alert acknowledged: it is assigned to you unless someone already had it.",
    "closed": "Alert closed with its disposition.",
}
UNKNOWN_FEATURE_VALUES = (0, -1.0, "")  # zero, "unknown" and empty: left out, as in the CLI


def _need(principal: Principal, permission: Permission) -> None:
    if not permissions.holds(principal, permission):
        raise Forbidden(f"this needs the permission '{permission.value}'")


def _held_payment(svc: ServicesDep, session: Session, payment_id: str) -> PaymentOut | None:
    try:
        payment: PaymentOut = svc.payments.held_payment(session, payment_id)
    except NotFound:
        return None
    return payment


def _oldest_reviews(session: Session) -> tuple[list[AlertOut], int]:
    """The active review alerts, oldest first (at most ``QUEUE_SIZE``), and how many."""
    found: list[AlertOut] = []
    cursor: str | None = None
    while True:
        page, cursor = service.list_alerts(
            session, status="active", kind="review", limit=QUEUE_SCAN_PAGE, cursor=cursor
        )
        found.extend(AlertOut.model_validate(alert) for alert in page)
        if cursor is None or len(found) >= QUEUE_SCAN_MAX:
            break
    found.reverse()
    return found[:QUEUE_SIZE], len(found)


def _decisions_per_day(session: Session) -> tuple[charts.StackedBarChart, dict[str, Any]]:
    today = clock.now().date()
    days = [today - timedelta(days=back) for back in range(CHART_DAYS - 1, -1, -1)]
    start = datetime.combine(days[0], time.min, tzinfo=UTC)
    counts = service.decisions_per_day(session, start, start + timedelta(days=CHART_DAYS))
    chart = charts.daily_stacked_chart(days, dict(counts), ACTIONS)
    others = sum(count for (_, action), count in counts.items() if action not in ACTIONS)
    total = chart.total + others
    flagged = total - chart.series_totals["allow"]
    summary = {
        "total": total,
        "by_action": chart.series_totals,
        "others": others,
        "non_allow": flagged,
        "non_allow_share": (100.0 * flagged / total) if total else 0.0,
    }
    return chart, summary


# ---------------------------------------------------------------- the risk page


@router.get("/risk", summary="Review queue, active alerts and decisions per day")
def risk_page(
    request: Request,
    principal: StaffDep,
    svc: ServicesDep,
    notice: str | None = None,
    alerts_after: str | None = None,
) -> Response:
    _need(principal, Permission.RISK_READ)
    if alerts_after and not ALERT_CURSOR.fullmatch(alerts_after):
        raise BadRequest("the alerts page cursor is not valid; go back to the first page")
    with svc.db.read() as session:
        reviews_found, reviews_total = _oldest_reviews(session)
        pending = {
            record.target: approvals.to_out(record)
            for record in approvals.list_requests(session, status="pending", limit=500)
            if record.action == reviews.REVIEW_RELEASE
        }
        payments: dict[str, PaymentOut | None] = {}
        for alert in reviews_found:
            if alert.payment_id and alert.payment_id not in payments:
                payments[alert.payment_id] = _held_payment(svc, session, alert.payment_id)
        active, next_alerts = service.list_alerts(
            session, status="active", limit=ALERT_PAGE, cursor=alerts_after or None
        )
        alerts = [AlertOut.model_validate(alert) for alert in active]
        for alert in alerts:
            if alert.kind == "review" and alert.payment_id and alert.payment_id not in payments:
                payments[alert.payment_id] = _held_payment(svc, session, alert.payment_id)
        chart, summary = _decisions_per_day(session)
        names = identity.staff_names(session)
    queue = [
        {
            "alert": alert,
            "payment": payments.get(alert.payment_id) if alert.payment_id else None,
            "pending": pending.get(alert.payment_id) if alert.payment_id else None,
        }
        for alert in reviews_found
    ]
    held = {
        payment_id
        for payment_id, payment in payments.items()
        if payment is not None and payment.status == HELD
    }
    return render(
        request,
        "risk.html",
        {
            "queue": queue,
            "queue_total": reviews_total,
            "queue_capped": reviews_total >= QUEUE_SCAN_MAX,
            "alerts": alerts,
            "held": held,
            "next_alerts": next_alerts,
            "is_first_alerts_page": not alerts_after,
            "chart": chart,
            "summary": summary,
            "names": names,
            "dispositions": list(service.DISPOSITIONS),
            "four_eyes_amount": svc.settings.risk_review_four_eyes_amount,
            "currency": svc.settings.default_currency,
            "chart_days": CHART_DAYS,
            "can_review": permissions.holds(principal, Permission.RISK_REVIEW),
            "can_handle": permissions.holds(principal, Permission.RISK_ALERTS_HANDLE),
            "can_see_approvals": permissions.holds(principal, Permission.APPROVALS_READ),
            "notice_key": notice if notice in NOTICES else None,
            "notice": NOTICES.get(notice or ""),
        },
    )


# ---------------------------------------------------------------- reviews


@router.post("/risk/reviews/{payment_id}/{verdict}", summary="Approve or reject a held payment")
def decide_review(
    request: Request,
    payment_id: str,
    verdict: str,
    principal: StaffDep,
    svc: ServicesDep,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    security.check_csrf(request.state.session_token, csrf_token)
    if verdict not in ("approve", "reject"):
        raise NotFound("no such decision; approve or reject")
    _need(principal, Permission.RISK_REVIEW)
    reason = reason.strip()
    if len(reason) < 3:
        raise BadRequest("give a reason (at least 3 characters); it is kept with the decision")

    def ask(**asked: Any) -> Any:
        return request_approval(svc, principal, **asked)

    outcome: ReviewOutcome = (
        reviews.approve(svc.payments, principal, payment_id, reason, ask)
        if verdict == "approve"
        else reviews.reject(svc.payments, principal, payment_id, reason)
    )
    return RedirectResponse(f"/console/risk?notice={outcome.outcome}", status_code=303)


# ---------------------------------------------------------------- alerts


@router.post("/risk/alerts/{alert_id}/{step}", summary="Acknowledge or close an alert")
def handle_alert(
    request: Request,
    alert_id: str,
    step: str,
    principal: StaffDep,
    svc: ServicesDep,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    disposition: Annotated[str, Form(max_length=24)] = "",
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    security.check_csrf(request.state.session_token, csrf_token)
    if step not in ("acknowledge", "close"):
        raise NotFound("no such alert action; acknowledge or close")
    _need(principal, Permission.RISK_ALERTS_HANDLE)
    staff_id = principal.subject_id
    if step == "acknowledge":
        svc.db.transact(lambda session: service.acknowledge(session, alert_id, staff_id))
        return RedirectResponse("/console/risk?notice=acknowledged", status_code=303)

    if disposition not in service.DISPOSITIONS:
        raise BadRequest(f"choose a disposition: one of {', '.join(service.DISPOSITIONS)}")

    def close(session: Session) -> None:
        alert = service.get_alert(session, alert_id)
        if alert.kind == "review" and alert.payment_id and alert.status != "closed":
            payment = _held_payment(svc, session, alert.payment_id)
            if payment is not None and payment.status == HELD:
                raise Conflict(
                    "the payment of this review alert is still held; approve or reject it in "
                    "the review queue, which closes the alert"
                )
        service.close(session, alert_id, staff_id, disposition, note.strip() or None)

    svc.db.transact(close)
    return RedirectResponse("/console/risk?notice=closed", status_code=303)


# ---------------------------------------------------------------- one decision


@router.get("/risk/decisions/{payment_id}", summary="Why a payment got its risk decision")
def decision_page(
    request: Request, payment_id: str, principal: StaffDep, svc: ServicesDep
) -> Response:
    _need(principal, Permission.RISK_READ)
    with svc.db.read() as session:
        receipt = ReceiptOut.model_validate(service.receipt_of_payment(session, payment_id))
    try:
        payment: PaymentOut | None = svc.payments.get(principal, payment_id)
    except NotFound:
        payment = None  # an attempt that was challenged and retried under a new id
    contributions = receipt.contributions or []
    chart = (
        charts.signed_bar_chart(
            [
                (f"{item['feature']} = {item['value']}", float(item["contribution"]))
                for item in contributions
            ],
            what="model contributions",
            positive_means="toward fraud",
            negative_means="away from fraud",
        )
        if contributions
        else None
    )
    features = [
        (name, json.dumps(value, ensure_ascii=False))
        for name, value in sorted(receipt.features.items())
        if value is not None and value not in UNKNOWN_FEATURE_VALUES
    ]
    return render(
        request,
        "risk_decision.html",
        {
            "payment_id": payment_id,
            "payment": payment,
            "receipt": receipt,
            "decision": payment.decision if payment else None,
            "active_hits": [hit for hit in receipt.rule_hits if hit.get("mode") != "shadow"],
            "shadow_hits": [hit for hit in receipt.rule_hits if hit.get("mode") == "shadow"],
            "chart": chart,
            "contributions": contributions,
            "features": features,
            "hidden_features": len(receipt.features) - len(features),
            "held": payment is not None and payment.status == HELD,
            "can_review": permissions.holds(principal, Permission.RISK_REVIEW),
            "four_eyes_amount": svc.settings.risk_review_four_eyes_amount,
        },
    )
