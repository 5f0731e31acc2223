"""Rate limits on the API's write requests: token buckets per source IP and per session.

A flood of requests from one client must not take the payment API down for everyone
(seed 004: attack and failure risks; DESIGN §7: Redis for rate limits). Every write
request (POST, PUT, PATCH, DELETE under ``/v1/``) takes a token from its session's bucket
when it carries a bearer token, then from its source address's bucket; an empty bucket
answers ``429 rate-limited`` (RFC 9457) with ``Retry-After`` before the request reaches
the application, so a refused request costs no database work.

A request refused by its session's bucket does not drain its address's bucket: one
flooding session cannot starve the other customers behind the same address. Buckets are
in-process by default and in Redis when ``PAYGUARD_REDIS_URL`` is set, so that every
server process shares them. Once per limited key and ``rate_limit_event_seconds`` the
platform records ``security.rate_limited`` (audited), which incident intake can map.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from payguard.errors import ProblemError
from payguard.middleware_common import bearer_token, send_too_many, token_digest
from payguard.observability import get_logger
from payguard.settings import Settings

log = get_logger("payguard.rate_limits")

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Beyond this many remembered keys the in-process store forgets the full buckets.
MAX_LOCAL_KEYS = 50_000


class RateLimited(ProblemError):
    code, status, title = "rate-limited", 429, "Too many requests"


@dataclass(frozen=True)
class Limit:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: int


class LocalBuckets:
    """Token buckets in this process (one server process, or tests)."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    async def take(self, key: str, limit: Limit) -> float:
        """0.0 when a token was taken; else the seconds until one is there."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(key, (float(limit.burst), now))
            tokens = min(float(limit.burst), tokens + max(0.0, now - last) * limit.rate)
            if tokens >= 1.0:
                self._state[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._state[key] = (tokens, now)
                wait = (1.0 - tokens) / limit.rate
            if len(self._state) > MAX_LOCAL_KEYS:
                self._forget_full(now, limit)
        return wait

    def _forget_full(self, now: float, limit: Limit) -> None:
        # A bucket that has refilled is the same as no bucket: dropping it loses nothing.
        refill = limit.burst / limit.rate
        for key in [k for k, (_tokens, last) in self._state.items() if now - last > refill]:
            del self._state[key]


# One atomic step of a bucket in Redis, on Redis's clock (every process agrees on it).
_REDIS_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


class RedisBuckets:
    """Token buckets shared by every server process through Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis

        self.client: Any = aioredis.Redis.from_url(url, socket_timeout=0.5)
        self.prefix = prefix
        self.script: Any = self.client.register_script(_REDIS_TAKE)

    async def take(self, key: str, limit: Limit) -> float:
        reply = await self.script(keys=[self.prefix + key], args=[limit.rate, limit.burst])
        return float(reply.decode() if isinstance(reply, bytes) else reply)


class RateLimits:
    """ASGI middleware: refuse write requests over their session's or address's rate."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.enabled = settings.rate_limit_enabled
        self.ip_limit = Limit(settings.rate_limit_ip_per_second, settings.rate_limit_ip_burst)
        self.session_limit = Limit(
            settings.rate_limit_session_per_second, settings.rate_limit_session_burst
        )
        self.buckets: LocalBuckets | RedisBuckets = (
            RedisBuckets(settings.redis_url, settings.rate_limit_redis_prefix)
            if settings.redis_url
            else LocalBuckets()
        )
        self._last_event: dict[str, float] = {}
        self._event_lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            not self.enabled
            or scope["type"] != "http"
            or scope.get("method") not in WRITE_METHODS
            or not str(scope.get("path", "")).startswith("/v1/")
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = str(client[0]) if client else "unknown"
        token = bearer_token(scope)
        checks = [("session", token_digest(token), self.session_limit)] if token else []
        checks.append(("ip", ip, self.ip_limit))
        for kind, key, limit in checks:
            try:
                wait = await self.buckets.take(f"{kind}:{key}", limit)
            except Exception as error:  # a limiter outage must not take the API down
                log.warning("rate_limit_store_failed", error_type=type(error).__name__)
                wait = 0.0
            if wait > 0:
                await self._refuse(scope, send, kind, key, ip, token, wait)
                return
        await self.app(scope, receive, send)

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        kind: str,
        key: str,
        ip: str,
        token: str | None,
        wait: float,
    ) -> None:
        retry_after = max(1, math.ceil(wait))
        who = "this session" if kind == "session" else "this address"
        problem = RateLimited(
            f"too many requests from {who}; retry after {retry_after} s",
            retry_after_seconds=retry_after,
            limit_scope=kind,
        )
        await send_too_many(scope, send, problem, retry_after)
        if self._event_due(f"{kind}:{key}"):
            await anyio.to_thread.run_sync(self._record, scope, kind, ip, token, retry_after)

    def _event_due(self, key: str) -> bool:
        now = time.monotonic()
        with self._event_lock:
            last = self._last_event.get(key)
            if last is not None and now - last < self.settings.rate_limit_event_seconds:
                return False
            self._last_event[key] = now
            if len(self._last_event) > MAX_LOCAL_KEYS:
                self._last_event.clear()
            return True

    def _record(
        self, scope: Scope, kind: str, ip: str, token: str | None, retry_after: int
    ) -> None:
        """``security.rate_limited``: who was limited (ids and the address, no token)."""
        app = scope.get("app")
        services = getattr(getattr(app, "state", None), "services", None)
        if services is None:
            return
        from payguard.events import service as events
        from payguard.identity import service as identity

        def write(session: Any) -> None:
            payload: dict[str, Any] = {
                "limit_scope": kind,
                "ip": ip,
                "method": scope.get("method"),
                "path": str(scope.get("path", ""))[:200],
                "retry_after_seconds": retry_after,
            }
            if kind == "session" and token:
                try:
                    principal = identity.resolve_token(session, token)
                except ProblemError:
                    principal = None
                if principal is not None:
                    payload["session_id"] = principal.session_id
                    payload[f"{principal.kind}_id"] = principal.subject_id
            events.emit(session, "security.rate_limited", payload)

        try:
            services.db.transact(write)
        except Exception as error:  # the refusal stands; only its record is lost
            log.warning("rate_limit_event_failed", error_type=type(error).__name__)
