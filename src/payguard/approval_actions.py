"""The four-eyes catalogue: each sensitive operation, its permission, checks and executor.

The approval engine (``identity/approvals.py``) knows no domain; this module joins it to
the domain services that do the work: KYC tier changes (identity), unfreezing an
account and manual ledger adjustments (ledger), customer limit overrides and the
release of large payouts (payments).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from payguard import clock
from payguard.crypto import rotation
from payguard.crypto.envelope import envelope_for
from payguard.errors import ValidationProblem
from payguard.identity import service as identity
from payguard.identity.approvals import Action, ActionCatalogue
from payguard.identity.models import ApprovalRequest
from payguard.identity.permissions import Permission
from payguard.ledger import service as ledger
from payguard.ledger.models import AccountStatus
from payguard.payments import limits
from payguard.payments.service import PaymentService
from payguard.risk import actions as risk_actions
from payguard.risk import reviews

KYC_TIER_CHANGE = "kyc.tier_change"
ACCOUNT_UNFREEZE = "account.unfreeze"
LIMITS_OVERRIDE = "limits.override"
LEDGER_ADJUSTMENT = "ledger.adjustment"
PAYOUT_RELEASE = "payout.release"
KEYS_ROTATE = "keys.rotate"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TierParams(_Params):
    tier: int = Field(ge=0, le=3)


class OverrideParams(_Params):
    per_payment_max: int = Field(gt=0, le=10**13)
    daily_amount_max: int = Field(gt=0, le=10**13)
    daily_count_max: int = Field(gt=0, le=100_000)
    hours: int = Field(default=24, ge=1, le=24 * 7)


class AdjustmentParams(_Params):
    credit_account_id: str = Field(min_length=1, max_length=40)
    amount: int = Field(gt=0)
    currency: str = Field(min_length=3, max_length=3)


class NoParams(_Params):
    pass


P = TypeVar("P", bound=_Params)


def _parse(model: type[P], params: dict[str, Any]) -> P:
    try:
        return model.model_validate(params)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "params"
        raise ValidationProblem(f"params.{where}: {first['msg']}") from None


def _check_tier(session: Session, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
    parsed = _parse(TierParams, params)
    customer = identity.get_customer(session, customer_id)
    if customer.kyc_tier == parsed.tier:
        raise ValidationProblem(f"params.tier: the customer is already at tier {parsed.tier}")
    return parsed.model_dump()


def _change_tier(session: Session, record: ApprovalRequest) -> dict[str, Any]:
    assert record.target is not None
    before = identity.get_customer(session, record.target).kyc_tier
    identity.set_kyc_tier(session, record.target, int(record.params["tier"]))
    return {"from_tier": before, "to_tier": int(record.params["tier"])}


def _check_unfreeze(session: Session, account_id: str, params: dict[str, Any]) -> dict[str, Any]:
    _parse(NoParams, params)
    account = ledger.get_account(session, account_id)
    if account.status != AccountStatus.FROZEN:
        raise ValidationProblem(f"the account is {account.status}, not frozen")
    return {}


def _unfreeze(session: Session, record: ApprovalRequest) -> dict[str, Any]:
    assert record.target is not None
    ledger.set_status(
        session, record.target, AccountStatus.ACTIVE, reason=f"{record.reason} ({record.id})"
    )
    return {"status": AccountStatus.ACTIVE.value}


def _check_override(session: Session, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
    parsed = _parse(OverrideParams, params)
    identity.get_customer(session, customer_id)
    return parsed.model_dump()


def _override(session: Session, record: ApprovalRequest) -> dict[str, Any]:
    assert record.target is not None
    parsed = OverrideParams.model_validate(record.params)
    granted = limits.set_override(
        session,
        customer_id=record.target,
        per_payment_max=parsed.per_payment_max,
        daily_amount_max=parsed.daily_amount_max,
        daily_count_max=parsed.daily_count_max,
        hours=parsed.hours,
        approval_id=record.id,
        now=clock.now(),
    )
    return {"expires_at": granted.expires_at.isoformat()}


def _check_adjustment(
    session: Session, debit_account_id: str, params: dict[str, Any]
) -> dict[str, Any]:
    parsed = _parse(AdjustmentParams, params)
    if parsed.credit_account_id == debit_account_id:
        raise ValidationProblem("params.credit_account_id: must differ from the debited account")
    for account_id in (debit_account_id, parsed.credit_account_id):
        if ledger.get_account(session, account_id).currency != parsed.currency.upper():
            raise ValidationProblem(f"params.currency: {account_id} is not in {parsed.currency}")
    return {**parsed.model_dump(), "currency": parsed.currency.upper()}


def _adjust(session: Session, record: ApprovalRequest) -> dict[str, Any]:
    assert record.target is not None
    parsed = AdjustmentParams.model_validate(record.params)
    posted = ledger.post_transfer(
        session,
        debit_account_id=record.target,
        credit_account_id=parsed.credit_account_id,
        amount=parsed.amount,
        currency=parsed.currency,
        kind="adjustment",
        reference=record.id,
        memo=record.reason[:200],
    )
    return {"transfer_id": posted.id}


def build_catalogue(payments: PaymentService) -> ActionCatalogue:
    """The catalogue of one running platform (the payout release needs its rail)."""
    envelope = envelope_for(payments.settings)

    def check_rotation(session: Session, target: str, params: dict[str, Any]) -> dict[str, Any]:
        _parse(NoParams, params)
        if target != "kek" and target not in rotation.PURPOSES:
            raise ValidationProblem(f"target: kek or one of {', '.join(rotation.PURPOSES)}")
        return {}

    def rotate(session: Session, record: ApprovalRequest) -> dict[str, Any]:
        if record.target == "kek":
            kek_id, rewrapped = rotation.rotate_kek(session, envelope)
            return {"active_kek": kek_id, "data_keys_rewrapped": rewrapped}
        assert record.target is not None
        owners = rotation.rotate_data_keys(session, envelope, record.target)
        return {"owners_with_new_keys": owners, "next": "payguard keys reencrypt"}

    def check_payout(session: Session, payment_id: str, params: dict[str, Any]) -> dict[str, Any]:
        _parse(NoParams, params)
        payments.check_payout_releasable(session, payment_id)
        return {}

    def release(session: Session, record: ApprovalRequest) -> dict[str, Any]:
        assert record.target is not None
        payments.begin_payout_release(session, record.target, f"approval {record.id}")
        return {"sent_to_rail": True}

    def pay_out(record: ApprovalRequest) -> dict[str, Any]:
        assert record.target is not None
        paid = payments.send_payout(record.target)
        return {"payment_status": paid.status}

    catalogue = ActionCatalogue()
    for action in (
        Action(KYC_TIER_CHANGE, Permission.KYC_TIER_CHANGE, "change a customer's KYC tier",
               _check_tier, _change_tier),
        Action(ACCOUNT_UNFREEZE, Permission.ACCOUNTS_UNFREEZE, "unfreeze a frozen account",
               _check_unfreeze, _unfreeze),
        Action(LIMITS_OVERRIDE, Permission.LIMITS_OVERRIDE,
               "raise a customer's payment limits for a while", _check_override, _override),
        Action(LEDGER_ADJUSTMENT, Permission.LEDGER_ADJUST,
               "post a manual ledger adjustment", _check_adjustment, _adjust),
        Action(PAYOUT_RELEASE, Permission.PAYOUTS_RELEASE,
               "release a held payout to the bank rail", check_payout, release, pay_out),
        Action(KEYS_ROTATE, Permission.KEYS_ROTATE,
               "rotate the KEK or the data keys of a purpose", check_rotation, rotate),
    ):  # fmt: skip
        catalogue.add(action)
    check_review, release_review, pay_out_review = reviews.release_action_parts(payments)
    catalogue.add(
        Action(
            reviews.REVIEW_RELEASE,
            Permission.RISK_REVIEW,
            "approve a large payment the risk engine held for review",
            check_review,
            release_review,
            pay_out_review,
        )
    )
    for action in risk_actions.approval_actions():
        catalogue.add(action)
    # Imported here: the playbook actions reach into most domains this module imports.
    from payguard.incidents import playbooks

    catalogue.add(playbooks.approval_action(payments.settings, payments.assessor))
    return catalogue
