"""Payment channel suspension: stop one way money leaves (or enters) while an incident runs.

A scope names the channel:

- ``withdrawals``: every withdrawal to a bank account, platform-wide (seed 002: "关闭移动端
  提现服务"), including the release of held payouts;
- ``merchant_payouts:<merchant id>``: money leaving that merchant's account (withdrawals
  and transfers paid from it, and the release of its held payouts); payments *to* the
  merchant and refunds to its customers still work, so the shop keeps trading while no
  one can drain it;
- ``kind:<payment kind>``: every new payment of one kind (p2p, merchant, top_up,
  withdrawal, refund).

The payment path checks inside the payment's own transaction, before anything is posted,
with one indexed query (:func:`check`): a suspension committed before the payment's
check is always honoured, and an empty table costs one index probe. Every suspension and
resumption is an audited ``controls.*`` event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.errors import ChannelSuspended, Conflict, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.payments.models import Merchant, PaymentChannelSuspension, PaymentKind

WITHDRAWALS = "withdrawals"
MERCHANT_PREFIX = "merchant_payouts:"
KIND_PREFIX = "kind:"
KINDS = tuple(kind.value for kind in PaymentKind)

_T = PaymentChannelSuspension


@dataclass(frozen=True)
class SuspensionOut:
    id: str
    scope: str
    reason: str
    incident_id: str | None
    suspended_by: str
    suspended_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None

    @property
    def active(self) -> bool:
        return self.lifted_at is None


def _out(row: PaymentChannelSuspension) -> SuspensionOut:
    return SuspensionOut(
        id=row.id,
        scope=row.scope,
        reason=row.reason,
        incident_id=row.incident_id,
        suspended_by=row.suspended_by,
        suspended_at=row.suspended_at,
        lifted_at=row.lifted_at,
        lifted_by=row.lifted_by,
    )


def parse_scope(session: Session, scope: str) -> tuple[str, str | None]:
    """The normalised scope and, for a merchant scope, the merchant's ledger account."""
    text = (scope or "").strip()
    if text == WITHDRAWALS:
        return text, None
    if text.startswith(KIND_PREFIX):
        kind = text[len(KIND_PREFIX) :].strip()
        if kind not in KINDS:
            raise ValidationProblem(f"scope: the payment kind must be one of {', '.join(KINDS)}")
        return KIND_PREFIX + kind, None
    if text.startswith(MERCHANT_PREFIX):
        merchant_id = text[len(MERCHANT_PREFIX) :].strip()
        merchant = session.get(Merchant, merchant_id) if merchant_id else None
        if merchant is None:
            raise NotFound(f"scope: no merchant '{merchant_id}'")
        return MERCHANT_PREFIX + merchant.id, merchant.account_id
    raise ValidationProblem(
        "scope: 'withdrawals', 'merchant_payouts:<merchant id>' or 'kind:<payment kind>'"
    )


def active_for_scope(session: Session, scope: str) -> SuspensionOut | None:
    row = session.scalar(
        select(_T).where(_T.lifted_at.is_(None), _T.scope == scope).order_by(_T.suspended_at)
    )
    return _out(row) if row is not None else None


def suspend(
    session: Session,
    *,
    scope: str,
    reason: str,
    by: str,
    incident_id: str | None = None,
) -> tuple[SuspensionOut, bool]:
    """Suspend a channel. Returns the suspension and whether this call created it (an
    already suspended channel is left as it is: its own owner lifts it)."""
    why = (reason or "").strip()
    if not why:
        raise ValidationProblem("reason: say why the channel is suspended (the audit log keeps it)")
    normalised, account_id = parse_scope(session, scope)
    existing = active_for_scope(session, normalised)
    if existing is not None:
        return existing, False
    row = PaymentChannelSuspension(
        id=ids.new_id("channel_suspension"),
        scope=normalised,
        account_id=account_id,
        reason=why[:500],
        incident_id=incident_id,
        suspended_by=by[:64],
        suspended_at=clock.now(),
    )
    session.add(row)
    session.flush()
    events.emit(
        session,
        "controls.channel_suspended",
        {
            "suspension_id": row.id,
            "scope": row.scope,
            "account_id": account_id,
            "incident_id": incident_id,
            "actor": by,
        },
    )
    return _out(row), True


def resume(
    session: Session,
    *,
    by: str,
    suspension_id: str | None = None,
    scope: str | None = None,
    reason: str = "resumed",
) -> SuspensionOut:
    """Lift one suspension (by id, or the active one of a scope)."""
    if suspension_id is not None:
        row = session.get(_T, suspension_id)
        if row is None:
            raise NotFound(f"no channel suspension '{suspension_id}'")
    elif scope is not None:
        normalised, _ = parse_scope(session, scope)
        row = session.scalar(select(_T).where(_T.lifted_at.is_(None), _T.scope == normalised))
        if row is None:
            raise Conflict(f"the channel '{normalised}' is not suspended")
    else:
        raise ValidationProblem("give suspension_id or scope")
    if row.lifted_at is not None:
        raise Conflict(f"the suspension of '{row.scope}' was already lifted by {row.lifted_by}")
    row.lifted_at = clock.now()
    row.lifted_by = by[:64]
    row.lift_reason = (reason or "resumed").strip()[:500]
    session.flush()
    events.emit(
        session,
        "controls.channel_resumed",
        {
            "suspension_id": row.id,
            "scope": row.scope,
            "incident_id": row.incident_id,
            "actor": by,
        },
    )
    return _out(row)


def list_suspensions(session: Session, *, include_lifted: bool = False) -> list[SuspensionOut]:
    query = select(_T).order_by(_T.suspended_at.desc()).limit(500)
    if not include_lifted:
        query = query.where(_T.lifted_at.is_(None))
    return [_out(row) for row in session.scalars(query)]


# Built once: the payment path runs it on every payment.
_CHECK = (
    select(_T.scope, _T.suspended_at)
    .where(
        _T.lifted_at.is_(None),
        or_(
            _T.scope.in_([bindparam("kind_scope"), bindparam("channel_scope")]),
            _T.account_id == bindparam("payer"),
        ),
    )
    .limit(1)
)


def check(session: Session, *, kind: str, payer_account_id: str | None) -> None:
    """Raise ChannelSuspended when a suspension covers a new payment of ``kind`` paid from
    ``payer_account_id``. Runs inside the payment's transaction."""
    params: dict[str, Any] = {
        "kind_scope": KIND_PREFIX + kind,
        "channel_scope": WITHDRAWALS if kind == PaymentKind.WITHDRAWAL.value else "",
        # Only money leaving a merchant account is a payout (a refund returns the customer's).
        "payer": payer_account_id if kind != PaymentKind.REFUND.value else "",
    }
    found = session.execute(_CHECK, params).first()
    if found is None:
        return
    raise _refusal(str(found[0]), found[1])


def _refusal(scope: str, since: Any) -> ChannelSuspended:
    when = since.strftime("%Y-%m-%d %H:%M UTC") if isinstance(since, datetime) else "recently"
    if scope == WITHDRAWALS:
        what = "Withdrawals are suspended platform-wide"
    elif scope.startswith(MERCHANT_PREFIX):
        what = "Payouts from this merchant account are suspended"
    else:
        what = f"Payments of kind '{scope[len(KIND_PREFIX) :]}' are suspended"
    return ChannelSuspended(
        f"{what} since {when} while the security team handles an incident. Nothing was "
        "charged and your balance is unchanged; please try again later or contact support.",
        scope=scope,
    )


__all__ = [
    "KINDS",
    "SuspensionOut",
    "active_for_scope",
    "check",
    "list_suspensions",
    "parse_scope",
    "resume",
    "suspend",
]
