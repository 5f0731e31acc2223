"""Step-up segments: for a while, payers of a segment must pass step-up on every payment.

An incident raises step-up for the payers at risk, without touching anyone else: after a
phishing wave (seed 001 case 1) for every customer, after a leak of tier-1 accounts for
that KYC tier, during an account-takeover campaign for devices registered in the last N
hours, or for one customer. A segment always expires (``hours``) and can be lifted
earlier; both are audited ``controls.*`` events.

The payment pipeline asks :func:`matching_reasons` inside the payment's transaction (one
indexed query; an empty table costs one index probe) and demands step-up when it answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.errors import Conflict, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.identity.models import Customer, StepUpSegment

SEGMENTS = ("all", "kyc_tier", "new_devices", "customer")
MAX_HOURS = 24 * 30
_T = StepUpSegment


@dataclass(frozen=True)
class SegmentOut:
    id: str
    segment: str
    value: str | None
    reason: str
    incident_id: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    lifted_at: datetime | None


def _out(row: StepUpSegment) -> SegmentOut:
    return SegmentOut(
        id=row.id,
        segment=row.segment,
        value=row.value,
        reason=row.reason,
        incident_id=row.incident_id,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        lifted_at=row.lifted_at,
    )


def _normalise(session: Session, segment: str, value: str | int | None) -> str | None:
    if segment not in SEGMENTS:
        raise ValidationProblem(f"segment: one of {', '.join(SEGMENTS)}")
    text = None if value is None else str(value).strip()
    if segment == "all":
        if text:
            raise ValidationProblem("value: the segment 'all' takes no value")
        return None
    if segment == "kyc_tier":
        if text not in ("0", "1", "2", "3"):
            raise ValidationProblem("value: the KYC tier, 0 to 3")
        return text
    if segment == "new_devices":
        if not text or not text.isdigit() or not 1 <= int(text) <= MAX_HOURS:
            raise ValidationProblem(
                f"value: how many hours a device counts as new (1 to {MAX_HOURS})"
            )
        return text
    if not text or session.get(Customer, text) is None:
        raise NotFound(f"value: no customer '{text}'")
    return text


def raise_step_up(
    session: Session,
    *,
    segment: str,
    value: str | int | None = None,
    hours: int,
    reason: str,
    by: str,
    incident_id: str | None = None,
) -> SegmentOut:
    """Demand step-up of every payer in the segment for ``hours``."""
    if not 1 <= hours <= MAX_HOURS:
        raise ValidationProblem(f"hours: 1 to {MAX_HOURS}; a segment must expire")
    why = (reason or "").strip()
    if not why:
        raise ValidationProblem("reason: say why payers of this segment must step up")
    now = clock.now()
    row = StepUpSegment(
        id=ids.new_id("stepup_segment"),
        segment=segment,
        value=_normalise(session, segment, value),
        reason=why[:500],
        incident_id=incident_id,
        created_by=by[:64],
        created_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    session.add(row)
    session.flush()
    events.emit(
        session,
        "controls.step_up_raised",
        {
            "segment_id": row.id,
            "segment": row.segment,
            "value": row.value,
            "expires_at": row.expires_at.isoformat(),
            "incident_id": incident_id,
            "actor": by,
        },
    )
    return _out(row)


def lift(session: Session, segment_id: str, *, by: str) -> SegmentOut:
    row = session.get(_T, segment_id)
    if row is None:
        raise NotFound(f"no step-up segment '{segment_id}'")
    if row.lifted_at is not None:
        raise Conflict("the step-up segment was already lifted")
    row.lifted_at = clock.now()
    row.lifted_by = by[:64]
    session.flush()
    events.emit(
        session,
        "controls.step_up_lifted",
        {"segment_id": row.id, "segment": row.segment, "incident_id": row.incident_id, "actor": by},
    )
    return _out(row)


def get(session: Session, segment_id: str) -> SegmentOut:
    row = session.get(_T, segment_id)
    if row is None:
        raise NotFound(f"no step-up segment '{segment_id}'")
    return _out(row)


def active(session: Session) -> list[SegmentOut]:
    now = clock.now()
    query = (
        select(_T)
        .where(_T.lifted_at.is_(None), _T.expires_at > now)
        .order_by(_T.created_at)
        .limit(500)
    )
    return [_out(row) for row in session.scalars(query)]


# Built once: the payment path runs it on every payment.
_MATCH = (
    select(_T.segment, _T.value)
    .where(
        _T.lifted_at.is_(None),
        _T.expires_at > bindparam("now", type_=_T.expires_at.type),
        or_(
            _T.segment.in_(["all", "new_devices"]),
            (_T.segment == "kyc_tier") & (_T.value == bindparam("tier")),
            (_T.segment == "customer") & (_T.value == bindparam("customer_id")),
        ),
    )
    .limit(20)
)


def matching_reasons(
    session: Session,
    *,
    customer_id: str,
    kyc_tier: int | None,
    device_registered_at: datetime | None,
    now: datetime,
) -> list[str]:
    """The segments this payer falls in now (empty: no extra step-up)."""
    rows = session.execute(
        _MATCH,
        {"now": now, "tier": "" if kyc_tier is None else str(kyc_tier), "customer_id": customer_id},
    ).all()
    reasons: list[str] = []
    for segment, value in rows:
        if segment == "new_devices":
            # No device (an unsigned instruction) counts as new: nothing vouches for it.
            young = device_registered_at is None or device_registered_at > now - timedelta(
                hours=int(value or 0)
            )
            if not young:
                continue
        reason = f"incident:{segment}"
        if reason not in reasons:
            reasons.append(reason)
    return reasons


__all__ = ["SEGMENTS", "SegmentOut", "active", "get", "lift", "matching_reasons", "raise_step_up"]
