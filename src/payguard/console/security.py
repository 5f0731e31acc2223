"""Console sessions, CSRF tokens and the response headers every console page carries.

The session is the ordinary staff session of ``identity``: its token travels in the
``payguard_session`` cookie (HttpOnly, SameSite=Strict, Secure over https, scoped to
``/console`` so the JSON API never receives it from a browser). State-changing forms
also carry a CSRF token derived from the session token with HMAC-SHA256: it is
different for every session, needs no storage, and cannot be computed by a page that
does not hold the (HttpOnly) cookie. The login form, which has no session yet, uses a
double-submit token kept in a short-lived cookie of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from payguard.errors import Forbidden, NotAuthenticated
from payguard.identity import permissions
from payguard.identity import service as identity
from payguard.identity.permissions import Permission
from payguard.identity.service import Principal
from payguard.web import ServicesDep

SESSION_COOKIE = "payguard_session"
LOGIN_CSRF_COOKIE = "payguard_login_csrf"
COOKIE_PATH = "/console"
LOGIN_PATH = "/console/login"
CSRF_FIELD = "csrf_token"
_CSRF_CONTEXT = b"payguard.console.csrf.v1"


class LoginRequired(Exception):
    """No valid staff session: the console answers with a redirect to the login page."""


class CsrfRejected(Forbidden):
    code = "csrf-rejected"
    title = "Form check failed"


def is_secure(request: Request) -> bool:
    return request.url.scheme == "https"


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def content_security_policy(nonce: str) -> str:
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            "style-src 'self'",
            "img-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def apply_security_headers(response: Response, nonce: str) -> None:
    """Headers on every console reply, pages and redirects alike."""
    headers = response.headers
    headers["Content-Security-Policy"] = content_security_policy(nonce)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if "cache-control" not in headers:
        headers["Cache-Control"] = "no-store"


# ---------------------------------------------------------------- CSRF


def csrf_token_for(session_token: str) -> str:
    """The CSRF token of one session: HMAC of a fixed context under the session token."""
    return hmac.new(session_token.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def check_csrf(session_token: str, submitted: str) -> None:
    expected = csrf_token_for(session_token)
    if not submitted or not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise CsrfRejected(
            "the form's security token is missing or stale; reload the page and try again"
        )


def check_login_csrf(request: Request, submitted: str) -> None:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not submitted or not hmac.compare_digest(cookie.encode(), submitted.encode()):
        raise CsrfRejected(
            "the login form expired or was not sent from this site; reload it and try again"
        )


def set_login_csrf_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=1800,
        path=LOGIN_PATH,
        httponly=True,
        samesite="strict",
        secure=is_secure(request),
    )


# ---------------------------------------------------------------- session cookie


def set_session_cookie(request: Request, response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=LOGIN_PATH, httponly=True, samesite="strict")


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=is_secure(request),
    )


def session_token(request: Request) -> str | None:
    """The console session token: the cookie, or a Bearer header (scripts, tests)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE) or None


def console_staff(request: Request, svc: ServicesDep) -> Principal:
    """The signed-in staff member; anonymous visitors go to the login page."""
    token = session_token(request)
    if token is None:
        raise LoginRequired
    try:
        with svc.db.read() as session:
            principal = identity.resolve_token(session, token)
    except NotAuthenticated:
        raise LoginRequired from None
    if not principal.is_staff:
        raise Forbidden("the operations console is for staff; a customer session cannot open it")
    request.state.principal = principal
    request.state.session_token = token
    return principal


StaffDep = Annotated[Principal, Depends(console_staff)]


def can_change_account_status(principal: Principal, account_status: str) -> bool:
    """Freeze an active account, or ask to unfreeze a frozen one (four-eyes)."""
    needed = Permission.ACCOUNTS_FREEZE if account_status == "active" else None
    return permissions.holds(principal, needed or Permission.ACCOUNTS_UNFREEZE)
