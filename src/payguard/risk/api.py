"""The risk engine over HTTP: assessment for outside systems, decisions, alerts, reviews.

Rules, lists and models have their own modules' routers, gathered here."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from payguard import clock, ids
from payguard.identity.permissions import Permission
from payguard.risk import aml_api, lists_api, models_api, reviews, rules_api, service
from payguard.risk.engine import RiskContext
from payguard.risk.engine_schemas import (
    AlertOut,
    AlertPage,
    AssessReply,
    AssessRequest,
    AssignRequest,
    CloseRequest,
    ReasonOut,
    ReceiptOut,
    ReviewDecisionRequest,
    ReviewOutcome,
)
from payguard.web import PrincipalDep, ServicesDep, access, request_approval

router = APIRouter()
engine_router = APIRouter(prefix="/v1/risk", tags=["risk"])


@engine_router.post(
    "/assess",
    summary="Decide one payment of an outside payment system",
    **access(Permission.RISK_ASSESS),
)
def assess(body: AssessRequest, svc: ServicesDep, request: Request) -> AssessReply:
    context = RiskContext(
        payment_id=body.reference or "",
        kind=body.kind,
        customer_id=None,
        payer_account_id=body.payer,
        payee_account_id=body.payee,
        amount=body.amount,
        currency=body.currency.upper(),
        at=body.time or clock.now(),
        channel=body.channel,
        ip=body.ip,
        device_id=body.device.id if body.device else None,
        device_new=body.device.new if body.device else False,
        device_registered_at=body.device.registered_at if body.device else None,
        bank_token=body.bank_token,
        kyc_tier=body.kyc_tier,
        session_started_at=body.session.started_at if body.session else None,
        second_factor_at=body.session.second_factor_at if body.session else None,
        failed_logins_1h=body.session.failed_logins_1h if body.session else 0,
        password_changed_at=body.session.password_changed_at if body.session else None,
        latitude=body.geo.latitude if body.geo else None,
        longitude=body.geo.longitude if body.geo else None,
    )
    decision = svc.risk.assess(context)
    receipt = svc.db.transact(
        lambda session: service.record_receipt(session, context, decision, source="api").id
    )
    return AssessReply(
        decision_id=receipt,
        action=decision.action,
        score=decision.score,
        reasons=[ReasonOut(**vars(reason)) for reason in decision.reasons],
        customer_tip=decision.customer_tip,
        customer_tip_zh=decision.customer_tip_zh,
        ruleset_version=decision.ruleset_version,
        model_version=decision.model_version,
        model_score=decision.model_score,
        fallback=decision.fallback,
        elapsed_ms=decision.elapsed_ms,
        features=decision.features,
    )


@engine_router.get(
    "/decisions/{decision_id}",
    summary="A stored decision by its id, or by the payment it decided",
    **access(Permission.RISK_READ),
)
def get_decision(decision_id: str, svc: ServicesDep) -> ReceiptOut:
    with svc.db.read() as session:
        receipt = (
            service.get_receipt(session, decision_id)
            if ids.has_prefix(decision_id, "decision")
            else service.receipt_of_payment(session, decision_id)
        )
        return ReceiptOut.model_validate(receipt)


@engine_router.get("/alerts", summary="Alerts, newest first", **access(Permission.RISK_READ))
def list_alerts(
    svc: ServicesDep,
    status: Annotated[str | None, Query(pattern="^(open|acknowledged|closed|active)$")] = None,
    kind: Annotated[str | None, Query(max_length=24)] = None,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AlertPage:
    with svc.db.read() as session:
        items, next_cursor = service.list_alerts(
            session, status=status, kind=kind, limit=limit, cursor=cursor
        )
        return AlertPage(
            items=[AlertOut.model_validate(item) for item in items], next_cursor=next_cursor
        )


@engine_router.get("/alerts/{alert_id}", summary="One alert", **access(Permission.RISK_READ))
def get_alert(alert_id: str, svc: ServicesDep) -> AlertOut:
    with svc.db.read() as session:
        return AlertOut.model_validate(service.get_alert(session, alert_id))


def _alert_change(svc: Any, change: Any) -> AlertOut:
    return svc.db.transact(lambda session: AlertOut.model_validate(change(session)))  # type: ignore[no-any-return]


@engine_router.post(
    "/alerts/{alert_id}/acknowledge",
    summary="Take an alert: acknowledged, and assigned to you if nobody has it",
    **access(Permission.RISK_ALERTS_HANDLE),
)
def acknowledge_alert(alert_id: str, principal: PrincipalDep, svc: ServicesDep) -> AlertOut:
    return _alert_change(
        svc, lambda session: service.acknowledge(session, alert_id, principal.subject_id)
    )


@engine_router.post(
    "/alerts/{alert_id}/assign",
    summary="Give an alert to a staff member",
    **access(Permission.RISK_ALERTS_HANDLE),
)
def assign_alert(
    alert_id: str, body: AssignRequest, principal: PrincipalDep, svc: ServicesDep
) -> AlertOut:
    return _alert_change(
        svc,
        lambda session: service.assign(session, alert_id, principal.subject_id, body.assignee),
    )


@engine_router.post(
    "/alerts/{alert_id}/close",
    summary="Close an alert with a disposition (fraud and legitimate label its payment)",
    **access(Permission.RISK_ALERTS_HANDLE),
)
def close_alert(
    alert_id: str, body: CloseRequest, principal: PrincipalDep, svc: ServicesDep
) -> AlertOut:
    return _alert_change(
        svc,
        lambda session: service.close(
            session, alert_id, principal.subject_id, body.disposition, body.note
        ),
    )


@engine_router.get(
    "/reviews",
    summary="The review queue: held payments' open alerts, oldest first",
    **access(Permission.RISK_READ),
)
def review_queue(
    svc: ServicesDep, limit: Annotated[int, Query(ge=1, le=200)] = 100
) -> list[AlertOut]:
    with svc.db.read() as session:
        items, _ = service.list_alerts(session, status="active", kind="review", limit=limit)
        return [AlertOut.model_validate(item) for item in reversed(items)]


@engine_router.post(
    "/reviews/{payment_id}/approve",
    summary="Post a held payment (a second analyst approves above the four-eyes line)",
    **access(Permission.RISK_REVIEW),
)
def approve_review(
    payment_id: str, body: ReviewDecisionRequest, principal: PrincipalDep, svc: ServicesDep
) -> ReviewOutcome:
    def ask(**request: Any) -> Any:
        return request_approval(svc, principal, **request)

    return reviews.approve(svc.payments, principal, payment_id, body.reason, ask)


@engine_router.post(
    "/reviews/{payment_id}/reject",
    summary="Release a held payment's funds back to the payer; the payment fails",
    **access(Permission.RISK_REVIEW),
)
def reject_review(
    payment_id: str, body: ReviewDecisionRequest, principal: PrincipalDep, svc: ServicesDep
) -> ReviewOutcome:
    return reviews.reject(svc.payments, principal, payment_id, body.reason)


router.include_router(engine_router)
router.include_router(lists_api.router)
router.include_router(models_api.router)
router.include_router(rules_api.router)
router.include_router(aml_api.router)
