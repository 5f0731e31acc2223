"""The review queue: payments the engine held, approved (posted) or rejected (voided).

Approving puts money in motion, so at or above ``risk_review_four_eyes_amount`` it needs
a second analyst: the approval becomes a four-eyes request (``risk.review_release``).
Rejecting only stops money and is one analyst's call. Either way the payment's alerts
close and the payment is labelled for training.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from payguard.errors import PaymentNotReleasable, ValidationProblem
from payguard.identity.models import ApprovalRequest
from payguard.identity.service import Principal
from payguard.payments.service import PaymentService
from payguard.risk import service
from payguard.risk.engine_schemas import ReviewOutcome

REVIEW_RELEASE = "risk.review_release"


def _check_held(payments: PaymentService, session: Session, payment_id: str) -> Any:
    payment = payments.held_payment(session, payment_id)
    if payment.status != "held_for_review":
        raise PaymentNotReleasable(f"the payment is {payment.status}, not held for review")
    if payment.kind == "withdrawal":
        raise PaymentNotReleasable("a held withdrawal is released by payout approval")
    return payment


def approve(
    payments: PaymentService,
    principal: Principal,
    payment_id: str,
    reason: str,
    request_approval: Any,
) -> ReviewOutcome:
    with payments.db.read() as session:
        payment = _check_held(payments, session, payment_id)
    if payment.amount >= payments.settings.risk_review_four_eyes_amount:
        requested = request_approval(
            action=REVIEW_RELEASE, target=payment_id, params={}, reason=reason
        )
        return ReviewOutcome(
            payment_id=payment_id,
            outcome="approval_requested",
            payment_status=payment.status,
            approval_id=requested.id,
        )

    def work(session: Session) -> ReviewOutcome:
        out = payments.resolve_review_in(session, payment_id, approve=True, reason=reason)
        service.close_alerts_of_payment(
            session, payment_id, principal.subject_id, "legitimate", reason
        )
        return ReviewOutcome(payment_id=payment_id, outcome="approved", payment_status=out.status)

    return payments.db.transact(work)


def reject(
    payments: PaymentService, principal: Principal, payment_id: str, reason: str
) -> ReviewOutcome:
    def work(session: Session) -> ReviewOutcome:
        _check_held(payments, session, payment_id)
        out = payments.resolve_review_in(session, payment_id, approve=False, reason=reason)
        service.close_alerts_of_payment(session, payment_id, principal.subject_id, "fraud", reason)
        service.set_label(session, payment_id, "fraud", source="review", by=principal.subject_id)
        return ReviewOutcome(payment_id=payment_id, outcome="rejected", payment_status=out.status)

    return payments.db.transact(work)


def release_action_parts(payments: PaymentService) -> tuple[Any, Any]:
    """The check and executor of the four-eyes release of a large reviewed payment."""

    def check(session: Session, payment_id: str, params: dict[str, Any]) -> dict[str, Any]:
        if params:
            raise ValidationProblem("params: this action takes none")
        _check_held(payments, session, payment_id)
        return {}

    def execute(session: Session, record: ApprovalRequest) -> dict[str, Any]:
        assert record.target is not None
        out = payments.resolve_review_in(
            session, record.target, approve=True, reason=f"{record.reason} ({record.id})"
        )
        service.close_alerts_of_payment(
            session, record.target, record.requested_by, "legitimate", record.reason
        )
        return {"payment_status": out.status}

    return check, execute
