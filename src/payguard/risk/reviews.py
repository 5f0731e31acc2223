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
    if payment.decision is None or payment.decision.action != "review":
        # A large payout held by the payout policy is released by payout approval
        # (payouts:release), not by the risk review queue.
        raise PaymentNotReleasable(
            "the payment is held by the payout policy, not by the risk engine: "
            "it is released through payout approval"
        )
    return payment


def _release_in(
    payments: PaymentService, session: Session, payment: Any, reason: str
) -> str | None:
    """Post a held payment; a withdrawal instead leaves for the bank rail after the
    commit (:func:`_pay_out`). Returns the new status, or None for a withdrawal."""
    if payment.kind == "withdrawal":
        payments.begin_payout_release(session, payment.id, f"review approved: {reason}")
        return None
    return payments.resolve_review_in(session, payment.id, approve=True, reason=reason).status


def _pay_out(payments: PaymentService, payment_id: str) -> str:
    return payments.send_payout(payment_id).status


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

    def work(session: Session) -> str | None:
        status = _release_in(payments, session, _check_held(payments, session, payment_id), reason)
        service.close_alerts_of_payment(
            session, payment_id, principal.subject_id, "legitimate", reason
        )
        return status

    status = payments.db.transact(work) or _pay_out(payments, payment_id)
    return ReviewOutcome(payment_id=payment_id, outcome="approved", payment_status=status)


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


def release_action_parts(payments: PaymentService) -> tuple[Any, Any, Any]:
    """The check, executor and after-commit step of the four-eyes release of a large
    reviewed payment (a withdrawal goes to the bank rail after the commit)."""

    def check(session: Session, payment_id: str, params: dict[str, Any]) -> dict[str, Any]:
        if params:
            raise ValidationProblem("params: this action takes none")
        _check_held(payments, session, payment_id)
        return {}

    def execute(session: Session, record: ApprovalRequest) -> dict[str, Any]:
        assert record.target is not None
        payment = _check_held(payments, session, record.target)
        status = _release_in(payments, session, payment, f"{record.reason} ({record.id})")
        service.close_alerts_of_payment(
            session, record.target, record.requested_by, "legitimate", record.reason
        )
        return {"payment_status": status or "sent to the bank rail"}

    def after_commit(record: ApprovalRequest) -> dict[str, Any]:
        assert record.target is not None
        with payments.db.read() as session:
            kind = payments.held_payment(session, record.target).kind
        if kind != "withdrawal":
            return {}
        return {"payment_status": _pay_out(payments, record.target)}

    return check, execute, after_commit
