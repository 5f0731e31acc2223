"""What every router shares: the app's services, the caller, idempotency scopes, problems."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from payguard.crypto.keyring import AnySigner
from payguard.db.engine import Database
from payguard.errors import (
    PROBLEM_BASE,
    Forbidden,
    IdempotencyKeyMissing,
    MalformedBody,
    NotAuthenticated,
    ProblemError,
    ValidationProblem,
)
from payguard.identity import approvals, instructions, permissions
from payguard.identity import service as identity
from payguard.identity.approvals import ActionCatalogue
from payguard.identity.permissions import Permission
from payguard.identity.schemas import ApprovalOut
from payguard.identity.service import Principal
from payguard.observability import get_logger
from payguard.payments import idempotency
from payguard.payments.service import IdempotencyScope, PaymentService, Reply
from payguard.risk.engine import RiskEngine
from payguard.settings import Settings

PROBLEM_JSON = "application/problem+json"
log = get_logger("payguard.web")


@dataclass
class Services:
    """Built once per app in the lifespan; routers reach them through ``services``."""

    settings: Settings
    db: Database
    payments: PaymentService
    risk: RiskEngine
    approvals: ActionCatalogue
    signer: AnySigner


async def services(request: Request) -> Services:
    # async: a trivial dependency should not cost a hop to the thread pool.
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return request.cookies.get("payguard_session")


def current_principal(request: Request, svc: ServicesDep) -> Principal:
    token = _bearer(request)
    if not token:
        raise NotAuthenticated("send 'Authorization: Bearer <session token>'")
    with svc.db.read() as session:
        principal = identity.resolve_token(session, token)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


async def require_customer(principal: PrincipalDep) -> Principal:
    if principal.kind != "customer":
        raise Forbidden("this endpoint is for customers")
    return principal


CustomerDep = Annotated[Principal, Depends(require_customer)]


# Who may call a route, besides staff with the named permission.
PUBLIC = "public"  # no session (registration, login, refresh)
SIGNED_IN = "signed-in"  # any customer or staff session (own sessions, own factors)
CUSTOMERS = "customers"  # customers only (their own data)


def access(permission: Permission | None = None, *, audience: str | None = None) -> dict[str, Any]:
    """Route keyword arguments declaring and enforcing who may call it.

    ``access(P)``: staff holding P. ``access(P, audience=CUSTOMERS)``: customers (the
    handler scopes the data to their own) or staff holding P. ``access(audience=...)``
    alone: PUBLIC, SIGNED_IN or CUSTOMERS."""
    if permission is None and audience is None:
        raise ValueError("declare a permission, an audience or both")
    declared: dict[str, Any] = {
        "audience": audience,
        "permission": permission.value if permission else None,
        "roles": permissions.roles_with(permission) if permission else [],
        "four_eyes": permission in permissions.FOUR_EYES if permission else False,
    }
    keywords: dict[str, Any] = {"openapi_extra": {"x-payguard-access": declared}}
    if audience == PUBLIC:
        return keywords

    async def check(principal: PrincipalDep) -> Principal:
        if principal.kind == "customer":
            if audience not in (CUSTOMERS, SIGNED_IN):
                raise Forbidden("this endpoint is for staff")
            return principal
        if audience == SIGNED_IN:
            return principal
        if permission is None:
            raise Forbidden("this endpoint is for customers")
        permissions.demand(principal, permission)
        return principal

    keywords["dependencies"] = [Depends(check)]
    return keywords


def request_approval(
    svc: Services,
    principal: Principal,
    *,
    action: str,
    target: str,
    params: dict[str, Any],
    reason: str,
) -> ApprovalOut:
    """Record a four-eyes request; routes of any domain that need a second person use it."""
    return svc.db.transact(
        lambda session: approvals.to_out(
            approvals.request(
                session,
                svc.settings,
                svc.approvals,
                principal,
                action=action,
                target=target,
                params=params,
                reason=reason,
            )
        )
    )


async def idempotency_scope(
    request: Request,
    principal: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> IdempotencyScope:
    """Required on POSTs that move money: scoped to the caller, bound to the exact body."""
    if idempotency_key is None:
        raise IdempotencyKeyMissing(
            "send an Idempotency-Key header (a fresh UUID per payment) so a retry cannot pay twice"
        )
    key = idempotency.check_key(idempotency_key)
    body = await request.body()
    fingerprint = idempotency.request_hash(request.method, request.url.path, _stable_body(body))
    return IdempotencyScope(
        scope=f"{principal.kind}:{principal.subject_id}", key=key, fingerprint=fingerprint
    )


def _stable_body(body: bytes) -> bytes:
    """The body without the parts a re-signed retry changes (nonce, time, signature).

    A signed instruction retried after a lost reply is signed again with a fresh nonce;
    it is still the same request for the idempotency key."""
    if b'"nonce"' not in body:
        return body
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(document, dict):
        return body
    stable = instructions.signed_document(document, None)
    return instructions.instruction_hash(stable).encode()


IdempotencyDep = Annotated[IdempotencyScope, Depends(idempotency_scope)]


def reply_response(reply: Reply) -> Response:
    headers = {"Idempotent-Replayed": "true"} if reply.replayed else {}
    return Response(
        content=reply.body,
        status_code=reply.status_code,
        media_type="application/json",
        headers=headers,
    )


def problem_response(error: ProblemError, request: Request) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
    retry_after = error.extra.get("retry_after_seconds")
    if isinstance(retry_after, int):
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(
        error.to_problem(instance=request.url.path),
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


async def handle_problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, ProblemError)
    return problem_response(error, request)


async def handle_validation(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    errors = error.errors()
    if any(item.get("type") == "json_invalid" for item in errors):
        return problem_response(MalformedBody("the body is not valid JSON"), request)
    # Report where and what, never the submitted value: it may be personal data.
    fields = [
        {"field": ".".join(str(part) for part in item.get("loc", ())), "message": item.get("msg")}
        for item in errors
    ]
    first = fields[0] if fields else {"field": "?", "message": "invalid"}
    problem = ValidationProblem(f"{first['field']}: {first['message']}", errors=fields)
    return problem_response(problem, request)


async def handle_http(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    body = {
        "type": PROBLEM_BASE + ("not-found" if error.status_code == 404 else "http-error"),
        "title": str(error.detail),
        "status": error.status_code,
        "detail": str(error.detail),
        "code": "not-found" if error.status_code == 404 else f"http-{error.status_code}",
    }
    return Response(
        orjson.dumps(body),
        status_code=error.status_code,
        media_type=PROBLEM_JSON,
        headers=getattr(error, "headers", None),
    )


async def handle_unexpected(request: Request, error: Exception) -> Response:
    log.error(
        "unhandled_error",
        path_template=request.scope.get("route") and getattr(request.scope["route"], "path", None),
        error_type=type(error).__name__,
    )
    body = {
        "type": PROBLEM_BASE + "internal-error",
        "title": "Internal error",
        "status": 500,
        "detail": "something went wrong on our side; nothing was changed if the request failed",
        "code": "internal-error",
    }
    return Response(orjson.dumps(body), status_code=500, media_type=PROBLEM_JSON)
