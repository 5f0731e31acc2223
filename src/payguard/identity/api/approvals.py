"""Four-eyes approvals: request, list, approve (which executes), reject or withdraw."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from payguard.identity import approvals
from payguard.identity.permissions import Permission
from payguard.identity.schemas import ApprovalCreate, ApprovalDecision, ApprovalOut
from payguard.web import PrincipalDep, ServicesDep, access, request_approval

router = APIRouter(prefix="/v1", tags=["approvals"])


@router.post(
    "/approvals",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Request a four-eyes operation (needs the operation's own permission too)",
    **access(Permission.APPROVALS_READ),
)
def create(body: ApprovalCreate, principal: PrincipalDep, svc: ServicesDep) -> ApprovalOut:
    return request_approval(
        svc,
        principal,
        action=body.action,
        target=body.target,
        params=body.params,
        reason=body.reason,
    )


@router.get(
    "/approvals", summary="Approval requests, newest first", **access(Permission.APPROVALS_READ)
)
def list_approvals(
    svc: ServicesDep,
    status_filter: Annotated[
        str | None,
        Query(alias="status", pattern="^(pending|executed|rejected|cancelled|expired)$"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ApprovalOut]:
    with svc.db.read() as session:
        rows = approvals.list_requests(session, status=status_filter, limit=limit)
        return [approvals.to_out(row) for row in rows]


@router.get(
    "/approvals/{approval_id}", summary="One approval request", **access(Permission.APPROVALS_READ)
)
def get_approval(approval_id: str, svc: ServicesDep) -> ApprovalOut:
    with svc.db.read() as session:
        return approvals.to_out(approvals.get(session, approval_id))


@router.post(
    "/approvals/{approval_id}/approve",
    summary="Approve someone else's request: the operation runs now, once",
    **access(Permission.APPROVALS_READ),
)
def approve(
    approval_id: str, body: ApprovalDecision, principal: PrincipalDep, svc: ServicesDep
) -> ApprovalOut:
    return approvals.approve_and_finish(svc.db, svc.approvals, principal, approval_id, body.note)


@router.post(
    "/approvals/{approval_id}/reject",
    summary="Reject a request, or withdraw your own",
    **access(Permission.APPROVALS_READ),
)
def reject(
    approval_id: str, body: ApprovalDecision, principal: PrincipalDep, svc: ServicesDep
) -> ApprovalOut:
    return svc.db.transact(
        lambda session: approvals.to_out(
            approvals.reject(session, svc.approvals, principal, approval_id, body.note)
        )
    )
