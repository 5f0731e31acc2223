"""Payments, refunds, merchants and the rail settlement report."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import Response

from payguard import clock
from payguard.identity.permissions import Permission
from payguard.observability import PAYMENT_REPLIES
from payguard.payments import service
from payguard.payments.schemas import (
    DeclineRequest,
    MerchantCreate,
    MerchantOut,
    PaymentOut,
    PaymentPage,
    PaymentRequest,
    RefundRequest,
    SettlementReport,
)
from payguard.web import (
    CUSTOMERS,
    SIGNED_IN,
    IdempotencyDep,
    PrincipalDep,
    ServicesDep,
    access,
    reply_response,
)

router = APIRouter(prefix="/v1", tags=["payments"])

REPLIES = {
    201: {"model": PaymentOut, "description": "Posted and confirmed"},
    202: {"model": PaymentOut, "description": "Held for review or challenged"},
    422: {"description": "Rejected, or a rail failed (the body is the payment)"},
}


@router.post(
    "/payments",
    status_code=status.HTTP_201_CREATED,
    summary="Submit a payment (p2p, merchant, top-up, withdrawal)",
    responses=REPLIES,  # type: ignore[arg-type]
    response_model=PaymentOut,
    **access(audience=CUSTOMERS),
)
def submit_payment(
    body: PaymentRequest,
    request: Request,
    principal: PrincipalDep,
    scope: IdempotencyDep,
    svc: ServicesDep,
) -> Response:
    client_ip = request.client.host if request.client else None
    reply = svc.payments.submit(principal, body, scope, ip=client_ip)
    PAYMENT_REPLIES.labels(str(reply.status_code)).inc()
    return reply_response(reply)


@router.get(
    "/payments",
    summary="Payments: your own, or all for staff",
    **access(Permission.PAYMENTS_READ, audience=CUSTOMERS),
)
def list_payments(
    principal: PrincipalDep,
    svc: ServicesDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    status: str | None = None,
) -> PaymentPage:
    items, next_cursor = svc.payments.list(principal, cursor=cursor, limit=limit, status=status)
    return PaymentPage(items=items, next_cursor=next_cursor)


@router.get(
    "/payments/{payment_id}",
    summary="One payment with its history and decision",
    **access(Permission.PAYMENTS_READ, audience=CUSTOMERS),
)
def get_payment(payment_id: str, principal: PrincipalDep, svc: ServicesDep) -> PaymentOut:
    return svc.payments.get(principal, payment_id)


@router.post(
    "/payments/{payment_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    summary="Refund (part of) a confirmed merchant payment",
    response_model=PaymentOut,
    **access(Permission.PAYMENTS_REFUND, audience=CUSTOMERS),
)
def refund_payment(
    payment_id: str,
    body: RefundRequest,
    principal: PrincipalDep,
    scope: IdempotencyDep,
    svc: ServicesDep,
) -> Response:
    return reply_response(svc.payments.refund(principal, payment_id, body, scope))


@router.post(
    "/payments/{payment_id}/decline",
    summary="Decline a held payout: the funds return to the wallet and the payment fails "
    "(one person may say no; releasing takes two)",
    **access(Permission.PAYOUTS_RELEASE),
)
def decline_payout(payment_id: str, body: DeclineRequest, svc: ServicesDep) -> PaymentOut:
    return svc.payments.decline_payout(payment_id, body.reason)


@router.get("/merchants", summary="Merchants that accept payments", **access(audience=SIGNED_IN))
def merchants(principal: PrincipalDep, svc: ServicesDep) -> list[MerchantOut]:
    with svc.db.read() as session:
        return service.list_merchants(session)


@router.post(
    "/merchants",
    status_code=status.HTTP_201_CREATED,
    summary="Onboard a merchant (staff: operations)",
    **access(Permission.MERCHANTS_MANAGE),
)
def create_merchant(body: MerchantCreate, svc: ServicesDep) -> MerchantOut:
    return svc.db.transact(
        lambda session: service.create_merchant(
            session,
            svc.settings,
            name=body.name,
            owner_customer_id=body.owner_customer_id,
            currency=body.currency,
        )
    )


@router.get(
    "/rails/settlement",
    summary="Rail activity of one UTC day, per rail, direction and currency",
    **access(Permission.SETTLEMENT_READ),
)
def settlement(svc: ServicesDep, day: date | None = None) -> SettlementReport:
    return svc.payments.settlement_report(day or clock.now().date())
