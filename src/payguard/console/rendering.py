"""Templates, filters and the route class that turns every console outcome into a page.

``ConsoleRoute`` wraps each console endpoint: it draws a CSP nonce for the request,
turns "not signed in" into a redirect to the login page, turns every problem (unknown
id, bad cursor, bad form, forbidden) into a friendly HTML page with the right status,
and puts the security headers on whatever goes out.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from payguard.clock import as_utc
from payguard.console import security
from payguard.errors import ProblemError
from payguard.identity import permissions
from payguard.identity.permissions import Permission
from payguard.money import format_amount
from payguard.observability import get_logger

log = get_logger("payguard.console")

STATUS_TONES = {
    "confirmed": "good",
    "posted": "good",
    "active": "good",
    "succeeded": "good",
    "held_for_review": "warn",
    "challenged": "warn",
    "received": "info",
    "verified": "info",
    "assessed": "info",
    "pending": "warn",
    "frozen": "bad",
    "rejected": "bad",
    "failed": "bad",
    "closed": "muted",
    "voided": "muted",
    "expired": "muted",
}


def _money(amount: int | None, currency: str) -> str:
    return "—" if amount is None else format_amount(int(amount), currency)


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else f"{as_utc(moment):%Y-%m-%d %H:%M:%S} UTC"


def _tone(status: str | None) -> str:
    return STATUS_TONES.get(status or "", "muted")


def _label(value: str | None) -> str:
    return (value or "").replace("_", " ")


def _short_id(value: str | None) -> str:
    """``pay_0197…c2d4e5f6``: the type prefix and the random tail, enough to tell apart."""
    if not value:
        return "—"
    prefix, _, rest = value.partition("_")
    return f"{prefix}_…{rest[-8:]}" if len(rest) > 12 else value


def _query_string(**params: str | None) -> str:
    """``?a=1&b=2`` of the non-empty parameters, or an empty string."""
    kept = {name: value for name, value in params.items() if value}
    return "?" + urlencode(kept) if kept else ""


environment = Environment(
    loader=PackageLoader("payguard.console", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["money"] = _money
environment.filters["when"] = _when
environment.filters["tone"] = _tone
environment.filters["label"] = _label
environment.filters["short_id"] = _short_id
environment.globals["qs"] = _query_string


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    token = getattr(request.state, "session_token", None)
    values: dict[str, Any] = {
        "request_path": request.url.path,
        "principal": principal,
        "csrf_token": security.csrf_token_for(token) if token else "",
        "csrf_field": security.CSRF_FIELD,
        "nonce": getattr(request.state, "csp_nonce", ""),
        "can": lambda permission: (
            principal is not None and permissions.holds(principal, Permission(permission))
        ),
        "can_change_status": lambda account_status: (
            principal is not None and security.can_change_account_status(principal, account_status)
        ),
    }
    values.update(context or {})
    html = environment.get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code)


def error_page(request: Request, status_code: int, title: str, detail: str) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {"status_code": status_code, "title": title, "detail": detail},
        status_code=status_code,
    )


def login_redirect(request: Request) -> RedirectResponse:
    location = security.LOGIN_PATH
    if request.method != "GET":
        return RedirectResponse(location, status_code=303)  # a form post cannot be resumed
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if target not in (security.LOGIN_PATH, "/console"):
        location += "?next=" + quote(target, safe="")
    return RedirectResponse(location, status_code=303)


def safe_next(target: str | None) -> str:
    """Only ever redirect inside the console after login (no open redirect)."""
    if (
        target
        and target.startswith("/console")
        and not target.startswith("//")
        and "\\" not in target
        and not target.startswith(security.LOGIN_PATH)
    ):
        return target
    return "/console"


def _validation_detail(error: RequestValidationError) -> str:
    first = error.errors()[0] if error.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "path"))
    return f"{where or 'input'}: {first.get('msg', 'not valid')}"


class ConsoleRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = super().get_route_handler()

        async def handler(request: Request) -> Response:
            nonce = security.new_nonce()
            request.state.csp_nonce = nonce
            response: Response
            try:
                response = await endpoint(request)
            except security.LoginRequired:
                response = login_redirect(request)
                if security.SESSION_COOKIE in request.cookies:
                    security.clear_session_cookie(request, response)
            except ProblemError as error:
                response = error_page(request, error.status, error.title, error.detail)
            except RequestValidationError as error:
                response = error_page(
                    request, 400, "The request is not valid", _validation_detail(error)
                )
            except StarletteHTTPException as error:
                response = error_page(
                    request, error.status_code, "Something is not right", str(error.detail)
                )
            except Exception as error:
                log.error(
                    "console_unhandled_error",
                    path_template=self.path,
                    error_type=type(error).__name__,
                )
                response = error_page(
                    request,
                    500,
                    "Something went wrong on our side",
                    "The page could not be shown. Nothing was changed if a form failed; "
                    "try again in a moment.",
                )
            security.apply_security_headers(response, nonce)
            return response

        return handler
