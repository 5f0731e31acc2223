"""Delivery over the wire: a signed webhook POST, or an e-mail through SMTP.

Each function returns an :class:`Outcome` and never raises for a delivery failure: the
caller records the attempt and schedules the next one. Errors are described by their
kind and reply code only: exception texts can carry addresses or secret webhook paths.
"""

from __future__ import annotations

import hashlib
import hmac
import smtplib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import httpx
import orjson

from payguard.settings import Settings

SIGNATURE_HEADER = "X-Payguard-Signature"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix>,v1=<hex HMAC-SHA256 over "<unix>." + body>``: the timestamp is signed
    with the body, so a receiver can refuse replays of old deliveries."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance: int = 300) -> bool:
    """What a receiver does (and the tests do): check the MAC and the age."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def encode(payload: dict[str, object]) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


def post_webhook(
    settings: Settings,
    payload: dict[str, object],
    *,
    notification_id: str,
    attempt: int,
    timestamp: int,
    url: str | None = None,
) -> Outcome:
    target = url or settings.notify_webhook_url
    if not target:
        return Outcome(False, error="no webhook URL configured (PAYGUARD_NOTIFY_WEBHOOK_URL)")
    if settings.notify_webhook_secret is None:
        return Outcome(False, error="no webhook secret configured (PAYGUARD_NOTIFY_WEBHOOK_SECRET)")
    body = encode(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "payguard-notify",
        SIGNATURE_HEADER: sign(settings.notify_webhook_secret.get_secret_value(), timestamp, body),
        "X-Payguard-Notification": notification_id,
        "X-Payguard-Attempt": str(attempt),
    }
    started = time.perf_counter()
    try:
        reply = httpx.post(
            target,
            content=body,
            headers=headers,
            timeout=settings.notify_webhook_timeout_seconds,
            follow_redirects=False,
        )
    except httpx.HTTPError as error:
        return Outcome(False, error=type(error).__name__, duration_ms=_since(started))
    duration = _since(started)
    if 200 <= reply.status_code < 300:
        return Outcome(True, status_code=reply.status_code, duration_ms=duration)
    return Outcome(
        False,
        status_code=reply.status_code,
        error=f"HTTP {reply.status_code}",
        duration_ms=duration,
    )


def send_email(
    settings: Settings,
    recipients: list[str],
    subject: str,
    body: str,
    *,
    notification_id: str,
    language: str,
) -> Outcome:
    if not recipients:
        return Outcome(False, error="no e-mail recipients")
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="payguard.local")
    message["Content-Language"] = language
    message["X-Payguard-Notification"] = notification_id
    message.set_content(body)
    started = time.perf_counter()
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username and settings.smtp_password:
                smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
            refused = smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as error:
        codes = {code for code, _ in error.recipients.values()}
        return Outcome(
            False,
            status_code=min(codes, default=None),
            error="all recipients refused",
            duration_ms=_since(started),
        )
    except smtplib.SMTPResponseException as error:
        return Outcome(
            False,
            status_code=error.smtp_code,
            error=type(error).__name__,
            duration_ms=_since(started),
        )
    except (TimeoutError, smtplib.SMTPException, OSError) as error:
        return Outcome(False, error=type(error).__name__, duration_ms=_since(started))
    if refused:
        # Some got it: a retry would send it again to those. Count it as sent, say so.
        return Outcome(
            True,
            status_code=250,
            error=f"{len(refused)} recipient(s) refused",
            duration_ms=_since(started),
        )
    return Outcome(True, status_code=250, duration_ms=_since(started))


def _since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
