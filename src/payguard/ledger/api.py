"""Accounts, balances, statements, freezes and the ledger's own health check."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from fastapi.responses import Response

from payguard import clock
from payguard.approval_actions import ACCOUNT_UNFREEZE
from payguard.errors import AccountNotFound, ValidationProblem
from payguard.identity.permissions import Permission
from payguard.identity.schemas import ApprovalOut
from payguard.identity.service import Principal
from payguard.ledger import service
from payguard.ledger.models import AccountStatus, LedgerAccount
from payguard.ledger.schemas import (
    AccountOut,
    AccountPage,
    InvariantsOut,
    StatementLineOut,
    StatementOut,
    StatusChange,
)
from payguard.web import CUSTOMERS, PrincipalDep, ServicesDep, access, request_approval

router = APIRouter(prefix="/v1", tags=["ledger"])


def account_out(account: LedgerAccount) -> AccountOut:
    return AccountOut(
        id=account.id,
        kind=account.kind,
        name=account.name,
        currency=account.currency,
        status=account.status,
        ledger_balance=account.balance,
        held=account.held,
        available_balance=account.balance - account.held,
        overdraft_limit=account.overdraft_limit,
        owner_id=account.owner_id,
        created_at=account.created_at,
    )


def _visible_account(svc: ServicesDep, principal: Principal, account_id: str) -> LedgerAccount:
    with svc.db.read() as session:
        try:
            account = service.get_account(session, account_id)
        except AccountNotFound:
            account = None
    # "Not yours" and "does not exist" look the same from outside.
    if account is None or (not principal.is_staff and account.owner_id != principal.subject_id):
        raise AccountNotFound(f"no account '{account_id}'")
    return account


@router.get(
    "/accounts",
    summary="Accounts: your own, or all of them for staff",
    **access(Permission.ACCOUNTS_READ, audience=CUSTOMERS),
)
def list_accounts(
    principal: PrincipalDep,
    svc: ServicesDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    kind: str | None = None,
) -> AccountPage:
    owner = None if principal.is_staff else principal.subject_id
    with svc.db.read() as session:
        rows = service.list_accounts(
            session, owner_id=owner, kind=kind, after=cursor, limit=limit + 1
        )
    page = list(rows[:limit])
    return AccountPage(
        items=[account_out(account) for account in page],
        next_cursor=page[-1].id if len(rows) > limit else None,
    )


@router.get(
    "/accounts/{account_id}",
    summary="One account with its balances",
    **access(Permission.ACCOUNTS_READ, audience=CUSTOMERS),
)
def get_account(account_id: str, principal: PrincipalDep, svc: ServicesDep) -> AccountOut:
    return account_out(_visible_account(svc, principal, account_id))


@router.get(
    "/accounts/{account_id}/statement",
    summary="Statement with opening and closing balance, as JSON or CSV",
    response_model=StatementOut,
    **access(Permission.ACCOUNTS_READ, audience=CUSTOMERS),
)
def get_statement(
    account_id: str,
    principal: PrincipalDep,
    svc: ServicesDep,
    period_from: Annotated[datetime | None, Query(alias="from")] = None,
    period_to: Annotated[datetime | None, Query(alias="to")] = None,
    format: Literal["json", "csv"] = "json",
) -> Response:
    _visible_account(svc, principal, account_id)
    end = _aware(period_to) if period_to else clock.now()
    start = _aware(period_from) if period_from else end - timedelta(days=30)
    with svc.db.read() as session:
        result = service.statement(session, account_id, start, end, svc.settings)
    out = StatementOut(
        account_id=result.account_id,
        currency=result.currency,
        period_from=result.period_from,
        period_to=result.period_to,
        opening_balance=result.opening_balance,
        closing_balance=result.closing_balance,
        lines=[StatementLineOut(**asdict(line)) for line in result.lines],
    )
    if format == "csv":
        return Response(
            statement_csv(out),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{account_id}.csv"'},
        )
    return Response(out.model_dump_json(), media_type="application/json")


def statement_csv(out: StatementOut) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["# account", out.account_id, "currency", out.currency])
    writer.writerow(["# period", out.period_from.isoformat(), out.period_to.isoformat()])
    writer.writerow(["# opening_balance", out.opening_balance])
    writer.writerow(
        [
            "created_at",
            "entry_id",
            "transfer_id",
            "kind",
            "amount",
            "balance_after",
            "counterparty_account_id",
            "reference",
            "memo",
        ]
    )
    for line in out.lines:
        writer.writerow(
            [
                line.created_at.isoformat(),
                line.entry_id,
                line.transfer_id,
                line.kind,
                line.amount,
                line.balance_after,
                line.counterparty_account_id,
                line.reference or "",
                line.memo or "",
            ]
        )
    writer.writerow(["# closing_balance", out.closing_balance])
    return buffer.getvalue()


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValidationProblem("from/to need a timezone, e.g. 2026-01-01T00:00:00Z")
    return moment


@router.post(
    "/accounts/{account_id}/freeze",
    summary="Freeze an account: no debits, credits still allowed",
    **access(Permission.ACCOUNTS_FREEZE),
)
def freeze(account_id: str, body: StatusChange, svc: ServicesDep) -> AccountOut:
    return _change_status(svc, account_id, AccountStatus.FROZEN, body.reason)


@router.post(
    "/accounts/{account_id}/unfreeze",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Ask to unfreeze an account: another staff member must approve (four-eyes)",
    **access(Permission.ACCOUNTS_UNFREEZE),
)
def unfreeze(
    account_id: str, body: StatusChange, principal: PrincipalDep, svc: ServicesDep
) -> ApprovalOut:
    return request_approval(
        svc,
        principal,
        action=ACCOUNT_UNFREEZE,
        target=account_id,
        params={},
        reason=body.reason,
    )


def _change_status(
    svc: ServicesDep, account_id: str, status: AccountStatus, reason: str
) -> AccountOut:
    svc.db.transact(lambda session: service.set_status(session, account_id, status, reason=reason))
    with svc.db.read() as session:
        return account_out(service.get_account(session, account_id))


@router.get(
    "/ledger/invariants",
    summary="Recompute the ledger's invariants (balanced, no drift, holds consistent)",
    **access(Permission.LEDGER_VERIFY),
)
def invariants(svc: ServicesDep) -> InvariantsOut:
    with svc.db.read() as session:
        report = service.check_invariants(session)
    return InvariantsOut(ok=report.ok, **asdict(report))
