"""create_app(): the FastAPI app with every domain's router mounted."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payguard import __version__, web
from payguard.approval_actions import build_catalogue
from payguard.audit import service as audit
from payguard.audit.api import router as audit_router
from payguard.console.api import router as console_router
from payguard.console.drill_pages import router as console_drills_router
from payguard.console.evaluation_pages import router as console_evaluation_router
from payguard.console.incident_pages import router as console_incidents_router
from payguard.console.risk_pages import router as console_risk_router
from payguard.crypto.keyring import load_signer
from payguard.db.engine import Database
from payguard.drills.api import router as drills_router
from payguard.errors import BodyTooLarge, ProblemError
from payguard.evaluation.api import router as evaluation_router
from payguard.identity import approvals, instructions
from payguard.identity.api import router as identity_router
from payguard.identity.api.password_reset import router as password_reset_router
from payguard.identity.staff_watch import StaffWatch
from payguard.incidents.api import router as incidents_router
from payguard.incidents.playbooks_api import router as playbooks_router
from payguard.ledger.api import router as ledger_router
from payguard.notify import service as notify_service
from payguard.notify.api import router as notify_router
from payguard.observability import (
    PAYMENTS_BY_STATUS,
    REGISTRY,
    RequestObserver,
    configure_logging,
    get_logger,
)
from payguard.payments import idempotency
from payguard.payments import service as payments_service
from payguard.payments.api import router as payments_router
from payguard.payments.rails import SimulatedRail
from payguard.rate_limits import RateLimits
from payguard.risk.api import router as risk_router
from payguard.risk.engine import build_engine, warm_from_receipts
from payguard.settings import Settings, get_settings

log = get_logger("payguard.app")


class BodySizeLimit:
    """Refuse bodies over the limit before they are read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        problem = BodyTooLarge(f"the request body must be at most {self.max_bytes} bytes")
        response = JSONResponse(
            problem.to_problem(instance=scope.get("path")),
            status_code=413,
            media_type=web.PROBLEM_JSON,
        )
        await response(scope, _no_receive, send)


class _TooLarge(Exception):
    pass


class SecurityHeaders:
    """Headers on every reply: no sniffing, no framing, no referrer; API replies (which
    carry personal data) are never cached; HSTS when the connection is TLS. The console
    adds its own strict Content-Security-Policy on top."""

    BASE = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    )
    HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope.get("path", "").startswith("/v1/")
        tls = scope.get("scheme") == "https"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                extra = [pair for pair in self.BASE if pair[0] not in present]
                if api and b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                if tls:
                    extra.append(self.HSTS)
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _sweeper(services: web.Services, stop: threading.Event, interval: float) -> None:
    """Release expired holds, expire stale approvals, forget records past retention, and
    sign an audit tree head every ``audit_head_interval_seconds``."""
    next_head = time.monotonic() + services.settings.audit_head_interval_seconds
    while not stop.wait(interval):
        try:
            released = payments_service.expire_holds(services.payments)
            if released:
                log.info("holds_expired", count=released)
            purged = services.db.transact(idempotency.purge_expired)
            if purged:
                log.info("idempotency_records_purged", count=purged)
            forgotten = services.db.transact(instructions.purge_expired_nonces)
            if forgotten:
                log.info("nonces_expired", count=forgotten)
            lapsed = services.db.transact(approvals.expire_stale)
            if lapsed:
                log.info("approvals_expired", count=lapsed)
            try:  # queued webhook / SMTP notifications whose (back-off) time has come
                delivered = notify_service.dispatch_pending(services.db, services.settings)
                if delivered:
                    log.info("notifications_sent", count=delivered)
            except Exception as error:  # a bad receiver must not stop the rest of the sweep
                log.warning("notify_dispatch_failed", error_type=type(error).__name__)
            if time.monotonic() >= next_head:
                head = services.db.transact(
                    lambda session: audit.make_tree_head(session, services.signer)
                )
                if head is not None:
                    log.info("audit_tree_head", size=head.size)
                    webhook = services.settings.audit_head_webhook
                    if webhook and not audit.publish_head(webhook, head):
                        log.warning("audit_head_webhook_failed", size=head.size)
                next_head = time.monotonic() + services.settings.audit_head_interval_seconds
        except Exception as error:  # the sweeper must outlive a bad minute of the database
            log.warning("hold_sweeper_failed", error_type=type(error).__name__)


def _warm_risk_engine(services: web.Services) -> None:
    """Rules, model, lists and counters loaded before the first payment; a database that
    is not there yet must not stop the server from starting (``/readyz`` tells)."""
    try:
        services.risk.warm()
        if not services.settings.redis_url:
            warmed = warm_from_receipts(services.risk, services.db)
            if warmed:
                log.info("risk_counters_warmed", payments=warmed)
    except Exception as error:
        log.warning("risk_warm_up_failed", error_type=type(error).__name__)
        services.db.dispose()  # no connection kept to a database that is not ready


def _risk_refresher(services: web.Services, stop: threading.Event) -> None:
    """Look for a new rule set, model or list change off the request path, so that a
    payment's time budget never pays for that query."""
    interval = max(0.2, services.settings.risk_reload_seconds / 2)
    while not stop.wait(interval):
        try:
            services.risk.warm()
        except Exception as error:  # keep the last good ones; try again next time
            log.warning("risk_refresh_failed", error_type=type(error).__name__)


def _incident_intake(services: web.Services, stop: threading.Event) -> None:
    """Turn new outbox events into incidents and timeline entries (incidents/intake.py)."""
    from payguard.incidents import intake

    while not stop.wait(services.settings.incident_intake_seconds):
        try:
            intake.process_events(services)
        except Exception as error:  # keep the thread; the cursor resumes where it stopped
            log.warning("incident_intake_failed", error_type=type(error).__name__)


def build_services(settings: Settings) -> web.Services:
    """The platform's services on one database: the API's, and the CLI's for approvals."""
    db = Database(settings.database_url, pool_size=settings.database_pool_size)
    rail = SimulatedRail(
        latency_ms=settings.rail_latency_ms,
        failure_rate=settings.rail_failure_rate,
        seed=settings.rail_seed,
    )
    engine = build_engine(db, settings)
    payments = payments_service.PaymentService(db, settings, engine, rail)
    return web.Services(
        settings=settings,
        db=db,
        payments=payments,
        risk=engine,
        approvals=build_catalogue(payments),
        signer=load_signer(settings),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.json_logs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        db = services.db
        app.state.services = services
        _warm_risk_engine(services)
        stop = threading.Event()
        sweeper = threading.Thread(
            target=_sweeper, args=(services, stop, 30.0), name="sweeper", daemon=True
        )
        refresher = threading.Thread(
            target=_risk_refresher, args=(services, stop), name="risk-refresh", daemon=True
        )
        sweeper.start()
        refresher.start()
        intake_thread = None
        if settings.incident_intake_seconds > 0:
            intake_thread = threading.Thread(
                target=_incident_intake, args=(services, stop), name="incident-intake", daemon=True
            )
            intake_thread.start()
        try:
            yield
        finally:
            stop.set()
            sweeper.join(timeout=5)
            refresher.join(timeout=5)
            if intake_thread is not None:
                intake_thread.join(timeout=5)
            db.dispose()

    app = FastAPI(
        title="payguard",
        version=__version__,
        description="Secure e-wallet and mobile-payment platform API",
        lifespan=lifespan,
    )
    app.state.access_log = settings.access_log
    app.add_exception_handler(ProblemError, web.handle_problem)
    app.add_exception_handler(RequestValidationError, web.handle_validation)
    app.add_exception_handler(StarletteHTTPException, web.handle_http)
    app.add_exception_handler(Exception, web.handle_unexpected)
    app.add_middleware(RequestObserver)
    app.add_middleware(StaffWatch, settings=settings)  # bulk staff reads, refused operations
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimits, settings=settings)  # floods refused before any work
    app.add_middleware(SecurityHeaders)

    @app.get("/healthz", tags=["operations"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="The database answers")
    def readyz() -> Response:
        ready = app.state.services.db.ping()
        return JSONResponse(
            {"status": "ready" if ready else "unavailable", "database": ready},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    def metrics() -> Response:
        services: web.Services = app.state.services
        with services.db.read() as session:
            counts: dict[str, Any] = payments_service.payments_by_status(session)
        PAYMENTS_BY_STATUS.clear()
        for status, count in counts.items():
            PAYMENTS_BY_STATUS.labels(status).set(count)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    app.include_router(identity_router)
    app.include_router(password_reset_router)
    app.include_router(playbooks_router)
    app.include_router(ledger_router)
    app.include_router(payments_router)
    app.include_router(audit_router)
    app.include_router(risk_router)
    app.include_router(incidents_router)
    app.include_router(notify_router)
    app.include_router(drills_router)
    app.include_router(evaluation_router)
    app.include_router(console_risk_router)  # before console_router: its catch-all is last
    app.include_router(console_incidents_router)
    app.include_router(console_drills_router)
    app.include_router(console_evaluation_router)
    app.include_router(console_router)
    return app
