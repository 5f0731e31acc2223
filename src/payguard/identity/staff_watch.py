"""Watching staff sessions: bulk reads of customer data, and repeated refused operations.

Seed 001 case 2 is a wallet data leak; seed 003 asks for least privilege, audit and
monitoring. Roles already limit what a staff member may do; this module notices a staff
session that uses its rights far beyond normal work, or keeps trying what it may not:

- **Read volume.** Every successful staff read of customer, account, payment or device
  data (``GET`` under ``STAFF_READ_PREFIXES``) counts the records it asked for (a list
  page counts its ``limit``, default 50; one record counts 1) per staff member within a
  sliding window (``staff_read_window_seconds``). At ``staff_read_alert_records`` a risk
  alert (kind ``staff_read_volume``) and ``security.staff_read_volume`` are recorded once
  per window — incident intake maps the event to the insider-abuse playbook, which ends
  the staff member's sessions. At ``staff_read_block_records`` further reads of that
  staff member's sessions are refused (``429 read-volume-exceeded``) until the window
  has room again, and ``security.staff_reads_blocked`` is recorded.
- **Refused operations.** Every ``403`` a staff session gets (a permission its role
  lacks, approving its own four-eyes request) is audited as
  ``security.staff_operation_refused``; ``staff_refusal_alert_count`` of them by one
  staff member within ``staff_refusal_window_seconds`` raise a risk alert (kind
  ``staff_refusals``) and ``security.staff_refusals_repeated``.

The counters are in-process (per server process); the records go through the database.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payguard.errors import ProblemError
from payguard.middleware_common import bearer_token, send_too_many, token_digest
from payguard.observability import get_logger
from payguard.settings import Settings

log = get_logger("payguard.identity.staff_watch")

# What a scraper of wallet data reads: customers, accounts and statements, payments,
# devices and instruction evidence.
STAFF_READ_PREFIXES = ("/v1/customers", "/v1/accounts", "/v1/payments", "/v1/devices")
DEFAULT_PAGE = 50
ALERT_READS = "staff_read_volume"
ALERT_REFUSALS = "staff_refusals"


class ReadVolumeExceeded(ProblemError):
    code, status, title = "read-volume-exceeded", 429, "Too many records read"


@dataclass
class _Window:
    """Weighted hits of one staff member within the sliding window."""

    hits: deque[tuple[float, int]] = field(default_factory=deque)
    total: int = 0
    alerted_at: float | None = None
    blocked: bool = False

    def add(self, now: float, weight: int, window: float) -> int:
        self.hits.append((now, weight))
        self.total += weight
        return self.trim(now, window)

    def trim(self, now: float, window: float) -> int:
        while self.hits and now - self.hits[0][0] > window:
            _at, weight = self.hits.popleft()
            self.total -= weight
        return self.total


def read_weight(path: str, query_string: bytes) -> int:
    """Records a read asks for: a collection page its ``limit``, one record 1."""
    parts = [part for part in path.split("/") if part]
    if len(parts) != 2:  # /v1/<collection>/<id>[/...]: one record (or one statement)
        return 1
    values = parse_qs(query_string.decode("latin-1")).get("limit")
    try:
        return max(1, int(values[0])) if values else DEFAULT_PAGE
    except ValueError:
        return DEFAULT_PAGE


class StaffWatch:
    """ASGI middleware; the counters of one server process."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._reads: dict[str, _Window] = {}
        self._refusals: dict[str, _Window] = {}
        self._blocked_sessions: dict[str, str] = {}  # token digest -> staff id
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        method = scope.get("method")
        token = bearer_token(scope)
        digest = token_digest(token) if token else None
        reading = method == "GET" and path.startswith(STAFF_READ_PREFIXES)
        if reading and digest is not None and self._still_blocked(digest):
            await self._refuse(scope, send)
            return
        scope.setdefault("state", {})  # request.state.principal lands here
        status: list[int] = []

        async def watch_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        await self.app(scope, receive, watch_send)
        principal = scope["state"].get("principal")
        if principal is None or not getattr(principal, "is_staff", False) or not status:
            return
        if status[0] == 403:
            await anyio.to_thread.run_sync(self._refused, scope, principal)
        elif reading and status[0] == 200 and digest is not None:
            weight = read_weight(path, scope.get("query_string", b""))
            crossed = self._count_read(principal.subject_id, digest, weight)
            if crossed:
                await anyio.to_thread.run_sync(self._record_reads, scope, principal, crossed)

    # ------------------------------------------------------------ reads

    def _still_blocked(self, digest: str) -> bool:
        with self._lock:
            staff_id = self._blocked_sessions.get(digest)
            if staff_id is None:
                return False
            window = self._reads.get(staff_id)
            now = time.monotonic()
            total = window.trim(now, self.settings.staff_read_window_seconds) if window else 0
            if total >= self.settings.staff_read_block_records:
                return True
            # The window has room again: the session may read (and is watched) again.
            for key in [k for k, v in self._blocked_sessions.items() if v == staff_id]:
                del self._blocked_sessions[key]
            if window is not None:
                window.blocked = False
            return False

    def _count_read(self, staff_id: str, digest: str, weight: int) -> dict[str, Any] | None:
        """What to record when this read crossed the alert or the block line."""
        settings = self.settings
        with self._lock:
            now = time.monotonic()
            window = self._reads.setdefault(staff_id, _Window())
            total = window.add(now, weight, settings.staff_read_window_seconds)
            crossed: dict[str, Any] = {"records": total, "alert": False, "block": False}
            if total >= settings.staff_read_alert_records and (
                window.alerted_at is None
                or now - window.alerted_at > settings.staff_read_window_seconds
            ):
                window.alerted_at = now
                crossed["alert"] = True
            if total >= settings.staff_read_block_records:
                self._blocked_sessions[digest] = staff_id
                if not window.blocked:
                    window.blocked = True
                    crossed["block"] = True
            return crossed if crossed["alert"] or crossed["block"] else None

    async def _refuse(self, scope: Scope, send: Send) -> None:
        window = self.settings.staff_read_window_seconds
        retry_after = max(1, math.ceil(window))
        problem = ReadVolumeExceeded(
            f"this staff session read more records than allowed within {window:g} s; "
            "the security team has been alerted",
            retry_after_seconds=retry_after,
        )
        await send_too_many(scope, send, problem, retry_after)

    def _record_reads(self, scope: Scope, principal: Any, crossed: dict[str, Any]) -> None:
        from payguard.events import service as events
        from payguard.risk import service as risk

        settings = self.settings
        window = settings.staff_read_window_seconds

        def write(session: Any) -> None:
            facts = {
                "staff_id": principal.subject_id,
                "session_id": principal.session_id,
                "role": principal.role,
                "records": crossed["records"],
                "window_seconds": window,
            }
            if crossed["alert"]:
                alert = risk.open_alert(
                    session,
                    kind=ALERT_READS,
                    severity="high",
                    title=(
                        f"Staff member {principal.subject_id} read {crossed['records']} "
                        f"customer-data records within {window:g} s"
                    ),
                    reason_codes=["STAFF_BULK_READ"],
                )
                events.emit(session, "security.staff_read_volume", {**facts, "alert_id": alert.id})
            if crossed["block"]:
                events.emit(session, "security.staff_reads_blocked", facts)

        self._write(scope, write)

    # ------------------------------------------------------------ refusals

    def _refused(self, scope: Scope, principal: Any) -> None:
        from payguard.events import service as events
        from payguard.risk import service as risk

        settings = self.settings
        route = scope.get("route")
        template = str(getattr(route, "path", "") or "")[:200]
        with self._lock:
            now = time.monotonic()
            window = self._refusals.setdefault(principal.subject_id, _Window())
            count = window.add(now, 1, settings.staff_refusal_window_seconds)
            alert = count >= settings.staff_refusal_alert_count and (
                window.alerted_at is None
                or now - window.alerted_at > settings.staff_refusal_window_seconds
            )
            if alert:
                window.alerted_at = now

        def write(session: Any) -> None:
            facts = {
                "staff_id": principal.subject_id,
                "session_id": principal.session_id,
                "role": principal.role,
            }
            events.emit(
                session,
                "security.staff_operation_refused",
                {**facts, "method": scope.get("method"), "route": template, "status": 403},
            )
            if alert:
                opened = risk.open_alert(
                    session,
                    kind=ALERT_REFUSALS,
                    severity="high",
                    title=(
                        f"Staff member {principal.subject_id} was refused {count} operations "
                        f"within {settings.staff_refusal_window_seconds:g} s"
                    ),
                    reason_codes=["STAFF_REPEATED_REFUSALS"],
                )
                events.emit(
                    session,
                    "security.staff_refusals_repeated",
                    {
                        **facts,
                        "count": count,
                        "window_seconds": settings.staff_refusal_window_seconds,
                        "alert_id": opened.id,
                    },
                )

        self._write(scope, write)

    def _write(self, scope: Scope, write: Any) -> None:
        services = getattr(getattr(scope.get("app"), "state", None), "services", None)
        if services is None:
            return
        try:
            services.db.transact(write)
        except Exception as error:  # the reply is sent; only its record is lost
            log.warning("staff_watch_record_failed", error_type=type(error).__name__)
