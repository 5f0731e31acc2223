"""Four-eyes (maker–checker) approval of sensitive operations.

A staff member holding an operation's permission *requests* it with a reason; a
*different* staff member holding the same permission approves it, and only then does it
run, once, inside the approving transaction. Requests expire after
``approval_ttl_hours``. Every step is an event on the audit trail.

The operations themselves belong to their domains; ``payguard.approval_actions`` lists
them as :class:`Action` entries (permission, a check of target and parameters, the
executor), so this module knows none of their tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.db.engine import Database
from payguard.errors import Conflict, Forbidden, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.identity import permissions
from payguard.identity.models import ApprovalRequest
from payguard.identity.permissions import Permission
from payguard.identity.schemas import ApprovalOut
from payguard.identity.service import Principal
from payguard.settings import Settings

PENDING, EXECUTED, REJECTED, CANCELLED, EXPIRED = (
    "pending",
    "executed",
    "rejected",
    "cancelled",
    "expired",
)


@dataclass(frozen=True)
class Action:
    """One operation that needs two people."""

    name: str
    permission: Permission
    summary: str
    # Raises a ProblemError when the target or parameters are wrong; returns the
    # normalised parameters. Runs at request time and again before execution.
    check: Callable[[Session, str, dict[str, Any]], dict[str, Any]]
    # Does the work in the approving transaction; returns what to record as the result.
    execute: Callable[[Session, ApprovalRequest], dict[str, Any]]
    # Work that must follow the commit (a call to a bank rail); its result is recorded.
    after_commit: Callable[[ApprovalRequest], dict[str, Any]] | None = None


@dataclass
class ActionCatalogue:
    actions: dict[str, Action] = field(default_factory=dict)

    def add(self, action: Action) -> None:
        self.actions[action.name] = action

    def get(self, name: str) -> Action:
        action = self.actions.get(name)
        if action is None:
            raise ValidationProblem(f"action: one of {', '.join(sorted(self.actions))}")
        return action


def request(
    session: Session,
    settings: Settings,
    catalogue: ActionCatalogue,
    principal: Principal,
    *,
    action: str,
    target: str,
    params: dict[str, Any],
    reason: str,
) -> ApprovalRequest:
    spec = catalogue.get(action)
    permissions.demand(principal, spec.permission)
    if not reason.strip():
        raise ValidationProblem("reason: say why; the approver and the audit trail read it")
    normalised = spec.check(session, target, params)
    duplicate = session.scalar(
        select(ApprovalRequest.id).where(
            ApprovalRequest.action == action,
            ApprovalRequest.target == target,
            ApprovalRequest.status == PENDING,
            ApprovalRequest.expires_at > clock.now(),
        )
    )
    if duplicate is not None:
        raise Conflict(f"request {duplicate} for this is already waiting for approval")
    now = clock.now()
    record = ApprovalRequest(
        id=ids.new_id("approval"),
        action=action,
        target=target,
        params=normalised,
        reason=reason.strip()[:500],
        requested_by=principal.subject_id,
        requested_at=now,
        expires_at=now + timedelta(hours=settings.approval_ttl_hours),
        status=PENDING,
    )
    session.add(record)
    session.flush()
    _emit(session, "approval.requested", record, principal)
    return record


def approve(
    session: Session,
    catalogue: ActionCatalogue,
    principal: Principal,
    request_id: str,
    note: str | None = None,
) -> ApprovalRequest:
    """The second person says yes: the operation runs now, exactly once."""
    record = _decidable(session, catalogue, principal, request_id)
    if record.requested_by == principal.subject_id:
        raise Forbidden("four-eyes: a request must be approved by someone other than its maker")
    spec = catalogue.get(record.action)
    assert record.target is not None
    spec.check(session, record.target, dict(record.params))
    _claim(session, record, EXECUTED, principal, note)
    record.result = spec.execute(session, record)
    record.executed_at = clock.now()
    _emit(session, "approval.executed", record, principal)
    return record


def reject(
    session: Session,
    catalogue: ActionCatalogue,
    principal: Principal,
    request_id: str,
    note: str | None = None,
) -> ApprovalRequest:
    """A checker says no, or the maker withdraws the request."""
    record = _decidable(session, catalogue, principal, request_id)
    status = CANCELLED if record.requested_by == principal.subject_id else REJECTED
    _claim(session, record, status, principal, note)
    _emit(session, f"approval.{status}", record, principal)
    return record


def approve_and_finish(
    db: Database,
    catalogue: ActionCatalogue,
    principal: Principal,
    request_id: str,
    note: str | None = None,
) -> ApprovalOut:
    """Approve in one transaction, then run the action's after-commit work (a bank rail
    call) and record its outcome with the request."""
    record = db.transact(lambda session: approve(session, catalogue, principal, request_id, note))
    spec = catalogue.get(record.action)
    if spec.after_commit is not None:
        outcome = spec.after_commit(record)

        def note_outcome(session: Session) -> None:
            stored = get(session, request_id)
            stored.result = {**(stored.result or {}), **outcome}

        db.transact(note_outcome)
    with db.read() as session:
        return to_out(get(session, request_id))


def _decidable(
    session: Session, catalogue: ActionCatalogue, principal: Principal, request_id: str
) -> ApprovalRequest:
    record = get(session, request_id)
    permissions.demand(principal, catalogue.get(record.action).permission)
    if record.status == PENDING and record.expires_at <= clock.now():
        raise Conflict("the request has expired; ask again if it is still needed")
    if record.status != PENDING:
        raise Conflict(f"the request is already {record.status}")
    return record


def _claim(
    session: Session, record: ApprovalRequest, status: str, principal: Principal, note: str | None
) -> None:
    """pending → status in one conditional UPDATE: two checkers racing cannot both win."""
    now = clock.now()
    claimed = session.execute(
        update(ApprovalRequest)
        .where(
            ApprovalRequest.id == record.id,
            ApprovalRequest.status == PENDING,
            ApprovalRequest.expires_at > now,
        )
        .values(
            status=status,
            decided_by=principal.subject_id,
            decided_at=now,
            decision_note=(note or "").strip()[:500] or None,
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("the request was decided by someone else a moment ago")
    session.refresh(record)


def expire_stale(session: Session) -> int:
    """Mark pending requests past their deadline expired (the sweeper calls this)."""
    now = clock.now()
    stale = session.scalars(
        select(ApprovalRequest).where(
            ApprovalRequest.status == PENDING, ApprovalRequest.expires_at <= now
        )
    ).all()
    for record in stale:
        record.status = EXPIRED
        record.decided_at = now
        _emit(session, "approval.expired", record, None)
    return len(stale)


def get(session: Session, request_id: str) -> ApprovalRequest:
    record = session.get(ApprovalRequest, request_id)
    if record is None:
        raise NotFound(f"no approval request '{request_id}'")
    return record


def list_requests(
    session: Session, *, status: str | None = None, limit: int = 100
) -> list[ApprovalRequest]:
    query = select(ApprovalRequest).order_by(ApprovalRequest.requested_at.desc()).limit(limit)
    if status == PENDING:
        query = query.where(
            ApprovalRequest.status == PENDING, ApprovalRequest.expires_at > clock.now()
        )
    elif status == EXPIRED:
        query = query.where(
            (ApprovalRequest.status == EXPIRED)
            | ((ApprovalRequest.status == PENDING) & (ApprovalRequest.expires_at <= clock.now()))
        )
    elif status is not None:
        query = query.where(ApprovalRequest.status == status)
    return list(session.scalars(query))


def effective_status(record: ApprovalRequest) -> str:
    if record.status == PENDING and record.expires_at <= clock.now():
        return EXPIRED
    return record.status


def to_out(record: ApprovalRequest) -> ApprovalOut:
    out = ApprovalOut.model_validate(record, from_attributes=True)
    out.status = effective_status(record)
    return out


def _emit(
    session: Session, topic: str, record: ApprovalRequest, principal: Principal | None
) -> None:
    events.emit(
        session,
        topic,
        {
            "approval_id": record.id,
            "action": record.action,
            "target": record.target,
            "requested_by": record.requested_by,
            "by_staff_id": principal.subject_id if principal else None,
        },
    )
