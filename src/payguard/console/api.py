"""The operations console router: server-rendered pages for staff under ``/console``.

Thin like every ``api.py``: parse and check the input, authorise, call the domain
services, hand the results to a template. Pages that change state (login, logout,
freeze, unfreeze) are POST forms with a CSRF token and answer with a redirect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, timedelta
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from payguard import clock
from payguard.approval_actions import ACCOUNT_UNFREEZE
from payguard.console import charts, security
from payguard.console.rendering import ConsoleRoute, error_page, render, safe_next
from payguard.console.security import StaffDep
from payguard.errors import Forbidden, NotAuthenticated, NotFound, ProblemError
from payguard.events import service as events
from payguard.identity import approvals, permissions, sessions
from payguard.identity import service as identity
from payguard.identity.permissions import Permission
from payguard.ledger import service as ledger
from payguard.ledger.models import AccountKind, AccountStatus, LedgerAccount
from payguard.payments import reports as payment_reports
from payguard.payments import service as payments_service
from payguard.payments.models import PaymentStatus
from payguard.web import ServicesDep, request_approval

router = APIRouter(prefix="/console", tags=["console"], route_class=ConsoleRoute)

PAGE_SIZE = 25
RECENT_PAYMENTS = 10
STATEMENT_DAYS = 30
STATEMENT_MAX_LINES = 200
CURSOR_PATTERNS = {
    "payment": re.compile(r"pay_[0-9a-f]{32}"),
    "account": re.compile(r"acc_[0-9a-f]{32}"),
}
NOTICES = {
    "frozen": "The account is frozen: debits are refused, credits still arrive.",
    "unfrozen": "The account is active again.",
    "unchanged": "The account was already in that state; nothing changed.",
    "unfreeze_requested": "Unfreezing needs a second person: the request waits for another "
    "staff member's approval (four-eyes).",
}
APPROVAL_NOTICES = {
    "approved": "Approved: the operation ran.",
    "rejected": "Decided: the request will not run.",
}
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


class BadRequest(ProblemError):
    code, status, title = "bad-request", 400, "The request is not valid"


def _cursor(value: str | None, kind: str) -> str | None:
    if not value:
        return None
    if not CURSOR_PATTERNS[kind].fullmatch(value):
        raise BadRequest("the page cursor is not valid; go back to the first page")
    return value


def _choice(value: str | None, allowed: list[str], what: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise BadRequest(f"unknown {what} '{value}'; one of: {', '.join(allowed)}")
    return value


def _account_labels(session: Session, accounts: Iterable[LedgerAccount]) -> dict[str, str]:
    """A readable name per account: "wallet of alice" rather than the customer id."""
    labels: dict[str, str] = {}
    for account in accounts:
        labels[account.id] = account.name
        if account.kind == AccountKind.CUSTOMER_WALLET and account.owner_id:
            try:
                owner = identity.get_customer(session, account.owner_id)
            except NotFound:
                continue
            labels[account.id] = f"wallet of {owner.username}"
    return labels


# ---------------------------------------------------------------- sign in and out


def _login_page(
    request: Request, *, next_path: str, error: str | None = None, status_code: int = 200
) -> Response:
    token = security.new_nonce()
    response = render(
        request,
        "login.html",
        {"login_csrf": token, "next_path": next_path, "error": error},
        status_code=status_code,
    )
    security.set_login_csrf_cookie(request, response, token)
    return response


@router.get("/login", summary="Console sign-in form")
def login_form(request: Request, svc: ServicesDep, next: str | None = None) -> Response:
    token = security.session_token(request)
    if token is not None:
        try:
            with svc.db.read() as session:
                principal = identity.resolve_token(session, token)
            if principal.is_staff:
                return RedirectResponse(safe_next(next), status_code=303)
        except NotAuthenticated:
            pass
    return _login_page(request, next_path=safe_next(next))


@router.post("/login", summary="Sign in to the console")
def login(
    request: Request,
    svc: ServicesDep,
    username: Annotated[str, Form(max_length=120)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    otp: Annotated[str, Form(max_length=16)] = "",
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/console",
) -> Response:
    security.check_login_csrf(request, csrf_token)
    target = safe_next(next)
    if not username.strip() or not password:
        return _login_page(
            request, next_path=target, error="Enter your username and password.", status_code=400
        )
    attempt = sessions.Attempt(
        subject_kind="staff",
        username=username.strip(),
        password=password,
        source_ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        totp_code=otp.strip() or None,
    )
    result = svc.db.transact(lambda session: sessions.login(session, svc.settings, attempt))
    if result.refusal is not None:
        refusal = result.refusal
        message = (
            "Too many attempts; try again later."
            if refusal.status == 429
            else "The username, password or code is not correct."
        )
        return _login_page(
            request,
            next_path=target,
            error=message,
            status_code=refusal.status if refusal.status == 429 else 401,
        )
    issued = result.issued
    assert issued is not None
    response = RedirectResponse(target, status_code=303)
    security.set_session_cookie(request, response, issued.token, issued.expires_in)
    return response


@router.post("/logout", summary="Sign out of the console")
def logout(
    request: Request,
    principal: StaffDep,
    svc: ServicesDep,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    security.check_csrf(request.state.session_token, csrf_token)
    svc.db.transact(lambda session: identity.revoke_session(session, principal.session_id))
    response = RedirectResponse(security.LOGIN_PATH, status_code=303)
    security.clear_session_cookie(request, response)
    return response


# ---------------------------------------------------------------- dashboard


@router.get("", summary="Console dashboard")
def dashboard(request: Request, principal: StaffDep, svc: ServicesDep) -> Response:
    now = clock.now()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hours = payment_reports.last_hours(now)
    with svc.db.read() as session:
        by_status = payments_service.payments_by_status(session)
        totals = payment_reports.day_totals(session, day_start, day_start + timedelta(days=1))
        counts = payment_reports.hourly_counts(session, hours[0], hours[-1] + timedelta(hours=1))
        invariants = ledger.check_invariants(session)
    recent, _ = svc.payments.list(principal, cursor=None, limit=RECENT_PAYMENTS)
    statuses = [status.value for status in PaymentStatus]
    ordered = [(status, by_status.get(status, 0)) for status in statuses]
    ordered += [(status, count) for status, count in by_status.items() if status not in statuses]
    return render(
        request,
        "dashboard.html",
        {
            "now": now,
            "by_status": ordered,
            "total_payments": sum(by_status.values()),
            "totals": totals,
            "chart": charts.hourly_bar_chart(hours, counts),
            "invariants": invariants,
            "recent": recent,
        },
    )


# ---------------------------------------------------------------- payments


@router.get("/payments", summary="Payments with a status filter")
def payments(
    request: Request,
    principal: StaffDep,
    svc: ServicesDep,
    status: str | None = None,
    cursor: str | None = None,
) -> Response:
    statuses = [item.value for item in PaymentStatus]
    chosen = _choice(status, statuses, "status")
    after = _cursor(cursor, "payment")
    items, next_cursor = svc.payments.list(principal, cursor=after, limit=PAGE_SIZE, status=chosen)
    return render(
        request,
        "payments.html",
        {
            "items": items,
            "statuses": statuses,
            "status": chosen or "",
            "next_cursor": next_cursor,
            "is_first_page": after is None,
        },
    )


@router.get("/payments/{payment_id}", summary="One payment")
def payment_detail(
    request: Request, payment_id: str, principal: StaffDep, svc: ServicesDep
) -> Response:
    payment = svc.payments.get(principal, payment_id)
    entries: list[dict[str, Any]] = []
    transfer = hold = None
    with svc.db.read() as session:
        instruction = payment_reports.payment_instruction(session, payment.id) or {}
        if payment.transfer_id:
            transfer = ledger.get_transfer(session, payment.transfer_id)
            rows = ledger.entries_of_transfer(session, payment.transfer_id)
            touched = [ledger.get_account(session, entry.account_id) for entry in rows]
            labels = _account_labels(session, touched)
            for entry, account in zip(rows, touched, strict=True):
                entries.append(
                    {
                        "account_id": entry.account_id,
                        "account_name": labels[account.id],
                        "account_kind": account.kind,
                        "amount": entry.amount,
                        "balance_after": entry.balance_after,
                        "created_at": entry.created_at,
                    }
                )
        if payment.hold_id:
            hold = ledger.get_hold(session, payment.hold_id)
    return render(
        request,
        "payment.html",
        {
            "payment": payment,
            "instruction": sorted(instruction.items()),
            "transfer": transfer,
            "entries": entries,
            "hold": hold,
        },
    )


# ---------------------------------------------------------------- accounts


@router.get("/accounts", summary="Ledger accounts with a kind filter")
def accounts(
    request: Request,
    principal: StaffDep,
    svc: ServicesDep,
    kind: str | None = None,
    cursor: str | None = None,
) -> Response:
    kinds = [item.value for item in AccountKind]
    chosen = _choice(kind, kinds, "account kind")
    after = _cursor(cursor, "account")
    with svc.db.read() as session:
        rows = list(ledger.list_accounts(session, kind=chosen, after=after, limit=PAGE_SIZE + 1))
        page = rows[:PAGE_SIZE]
        labels = _account_labels(session, page)
    return render(
        request,
        "accounts.html",
        {
            "items": page,
            "labels": labels,
            "kinds": kinds,
            "kind": chosen or "",
            "next_cursor": page[-1].id if len(rows) > PAGE_SIZE else None,
            "is_first_page": after is None,
        },
    )


@router.get("/accounts/{account_id}", summary="One account: balances and statement")
def account_detail(
    request: Request,
    account_id: str,
    principal: StaffDep,
    svc: ServicesDep,
    notice: str | None = None,
) -> Response:
    now = clock.now()
    period_from = now - timedelta(days=STATEMENT_DAYS)
    owner = None
    with svc.db.read() as session:
        account = ledger.get_account(session, account_id)
        balance = ledger.get_balance(session, account_id)
        statement = ledger.statement(session, account_id, period_from, now, svc.settings)
        if account.owner_id and account.kind != AccountKind.SYSTEM:
            try:
                owner = identity.get_customer(session, account.owner_id)
            except NotFound:
                owner = None
    lines = statement.lines[-STATEMENT_MAX_LINES:]
    return render(
        request,
        "account.html",
        {
            "account": account,
            "balance": balance,
            "statement": statement,
            "lines": list(reversed(lines)),
            "hidden_lines": len(statement.lines) - len(lines),
            "owner": owner,
            "notice": NOTICES.get(notice or ""),
            "statement_days": STATEMENT_DAYS,
        },
    )


def _change_status(
    request: Request,
    svc: ServicesDep,
    principal: StaffDep,
    account_id: str,
    target: AccountStatus,
    csrf_token: str,
    reason: str,
) -> Response:
    security.check_csrf(request.state.session_token, csrf_token)
    needed = Permission.ACCOUNTS_FREEZE if target == AccountStatus.FROZEN else None
    needed = needed or Permission.ACCOUNTS_UNFREEZE
    if not permissions.holds(principal, needed):
        raise Forbidden(f"this needs the permission '{needed}'")
    reason = reason.strip()
    if len(reason) < 3:
        raise BadRequest("give a reason (at least 3 characters); it goes to the account's record")
    if target == AccountStatus.ACTIVE:
        # Four-eyes: the console records the request; a second staff member approves it.
        request_approval(
            svc, principal, action=ACCOUNT_UNFREEZE, target=account_id, params={}, reason=reason
        )
        return RedirectResponse(
            f"/console/accounts/{account_id}?notice=unfreeze_requested", status_code=303
        )

    def work(session: Session) -> bool:
        account = ledger.get_account(session, account_id)
        if account.status == target:
            return False
        ledger.set_status(session, account_id, target, reason=reason)
        events.emit(
            session,
            "console.account_status_changed",
            {
                "account_id": account_id,
                "to": target.value,
                "staff_id": principal.subject_id,
                "session_id": principal.session_id,
            },
        )
        return True

    changed = svc.db.transact(work)
    notice = (
        ("frozen" if target == AccountStatus.FROZEN else "unfrozen") if changed else "unchanged"
    )
    return RedirectResponse(f"/console/accounts/{account_id}?notice={notice}", status_code=303)


@router.post("/accounts/{account_id}/freeze", summary="Freeze an account")
def freeze(
    request: Request,
    account_id: str,
    principal: StaffDep,
    svc: ServicesDep,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    return _change_status(
        request, svc, principal, account_id, AccountStatus.FROZEN, csrf_token, reason
    )


@router.post("/accounts/{account_id}/unfreeze", summary="Ask to unfreeze an account (four-eyes)")
def unfreeze(
    request: Request,
    account_id: str,
    principal: StaffDep,
    svc: ServicesDep,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    return _change_status(
        request, svc, principal, account_id, AccountStatus.ACTIVE, csrf_token, reason
    )


# ---------------------------------------------------------------- settlement


@router.get("/settlement", summary="Rail settlement report of one UTC day")
def settlement(
    request: Request, principal: StaffDep, svc: ServicesDep, day: str | None = None
) -> Response:
    if day:
        try:
            chosen = date.fromisoformat(day)
        except ValueError:
            raise BadRequest("the day must be a date like 2025-01-31") from None
    else:
        chosen = clock.now().date()
    report = svc.payments.settlement_report(chosen)
    totals: dict[tuple[str, str], dict[str, int]] = {}
    for line in report.lines:
        bucket = totals.setdefault(
            (line.direction, line.currency), {"count": 0, "amount": 0, "failed": 0}
        )
        bucket["count"] += line.succeeded_count
        bucket["amount"] += line.succeeded_amount
        bucket["failed"] += line.failed_count
    return render(
        request,
        "settlement.html",
        {
            "report": report,
            "totals": sorted(totals.items()),
            "previous_day": chosen - timedelta(days=1),
            "next_day": chosen + timedelta(days=1),
            "today": clock.now().date(),
        },
    )


# ---------------------------------------------------------------- four-eyes approvals


@router.get("/approvals", summary="Four-eyes requests: pending first, then recent decisions")
def approvals_page(
    request: Request, principal: StaffDep, svc: ServicesDep, notice: str | None = None
) -> Response:
    if not permissions.holds(principal, Permission.APPROVALS_READ):
        raise Forbidden("this needs the permission 'approvals:read'")
    with svc.db.read() as session:
        pending = [approvals.to_out(r) for r in approvals.list_requests(session, status="pending")]
        recent = [
            approvals.to_out(r)
            for r in approvals.list_requests(session, limit=50)
            if approvals.effective_status(r) != approvals.PENDING
        ]
        names = identity.staff_names(session)
    decidable = {
        row.id
        for row in pending
        if row.requested_by != principal.subject_id
        and permissions.holds(principal, svc.approvals.get(row.action).permission)
    }
    return render(
        request,
        "approvals.html",
        {
            "pending": pending,
            "recent": recent,
            "decidable": decidable,
            "names": names,
            "me": principal.subject_id,
            "notice": APPROVAL_NOTICES.get(notice or ""),
        },
    )


@router.post("/approvals/{approval_id}/{verdict}", summary="Approve or reject a request")
def decide_approval(
    request: Request,
    approval_id: str,
    verdict: str,
    principal: StaffDep,
    svc: ServicesDep,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    security.check_csrf(request.state.session_token, csrf_token)
    if verdict == "approve":
        approvals.approve_and_finish(svc.db, svc.approvals, principal, approval_id, note or None)
    elif verdict == "reject":
        svc.db.transact(
            lambda session: approvals.reject(
                session, svc.approvals, principal, approval_id, note or None
            )
        )
    else:
        raise NotFound("no such decision; approve or reject")
    done = "approved" if verdict == "approve" else "rejected"
    return RedirectResponse(f"/console/approvals?notice={done}", status_code=303)


# ---------------------------------------------------------------- assets and the rest


def _load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("payguard.console") / "static"
    found: dict[str, tuple[bytes, str]] = {}
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1]
        if item.is_file() and suffix in STATIC_TYPES:
            found[item.name] = (item.read_bytes(), STATIC_TYPES[suffix])
    return found


STATIC_FILES = _load_static()


@router.get("/static/{name}", summary="Console stylesheet and icon")
def static(request: Request, name: str) -> Response:
    if name not in STATIC_FILES:
        return error_page(request, 404, "Not found", "there is no such console file")
    body, media_type = STATIC_FILES[name]
    return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=300"})


@router.get("/{rest:path}", summary="Anything else under /console", include_in_schema=False)
def not_found(request: Request, rest: str) -> Response:
    if rest == "":
        return RedirectResponse("/console", status_code=308)
    return error_page(request, 404, "Page not found", "there is no console page at this address")
