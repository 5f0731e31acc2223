"""One-time codes by SMS or e-mail, and the senders that deliver them.

Codes are six digits from ``secrets``, stored as SHA-256 digests, expire after
``otp_ttl_seconds``, are single use, die after ``otp_max_attempts`` wrong guesses, and
at most ``otp_sends_per_hour`` are sent per subject. The message text (which holds the
code) is never logged.

Senders: ``OutboxSender`` (default) writes the message to ``sent_messages``, where the
developer console and the tests read it; ``SmtpSender`` sends e-mail through an SMTP
server. SMS has no real gateway here: with the SMTP sender, SMS still goes to the outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import smtplib
from datetime import timedelta
from email.message import EmailMessage
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.crypto.envelope import envelope_for
from payguard.errors import ProblemError
from payguard.identity.models import OneTimeCode, SentMessage
from payguard.settings import Settings


class TooManyCodes(ProblemError):
    code, status, title = "too-many-codes", 429, "Too many codes requested"


OUTBOX_OWNER = "platform:outbox"


class MessageSender(Protocol):
    def send(self, channel: str, recipient: str, subject: str, body: str) -> None: ...


class OutboxSender:
    """Keeps the message in the database: the development and test 'phone'.

    Even here nothing personal is stored in clear: the recipient is kept as its blind
    index and the body sealed, so the outbox is found by phone number or address but
    reads as noise in a dump of the table."""

    def __init__(self, settings: Settings, session: Session) -> None:
        self.settings = settings
        self.session = session

    def send(self, channel: str, recipient: str, subject: str, body: str) -> None:
        envelope = envelope_for(self.settings)
        message_id = ids.new_id("message")
        self.session.add(
            SentMessage(
                id=message_id,
                channel=channel,
                recipient=envelope.blind_index("recipient", recipient),
                subject=subject,
                body=envelope.seal(
                    self.session, OUTBOX_OWNER, f"sent_messages.body.{message_id}", body
                ),
                created_at=clock.now(),
            )
        )


class SmtpSender:
    """E-mail through the configured SMTP server; SMS falls back to the outbox."""

    def __init__(self, settings: Settings, session: Session) -> None:
        self.settings = settings
        self.outbox = OutboxSender(settings, session)

    def send(self, channel: str, recipient: str, subject: str, body: str) -> None:
        if channel != "email":
            self.outbox.send(channel, recipient, subject, body)
            return
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = recipient
        message["Subject"] = subject
        message.set_content(body)
        with smtplib.SMTP(self.settings.smtp_host, self.settings.smtp_port, timeout=10) as smtp:
            if self.settings.smtp_starttls:
                smtp.starttls()
            if self.settings.smtp_username and self.settings.smtp_password:
                smtp.login(
                    self.settings.smtp_username, self.settings.smtp_password.get_secret_value()
                )
            smtp.send_message(message)


def sender_for(settings: Settings, session: Session) -> MessageSender:
    if settings.otp_sender == "smtp":
        return SmtpSender(settings, session)
    return OutboxSender(settings, session)


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def mask_destination(destination: str) -> str:
    if "@" in destination:
        name, _, domain = destination.partition("@")
        return f"{name[:1]}***@{domain}"
    return f"{destination[:3]}****{destination[-4:]}" if len(destination) > 7 else "****"


def issue_code(
    session: Session,
    settings: Settings,
    subject_kind: str,
    subject_id: str,
    channel: str,
    purpose: str,
    destination: str,
    challenge_id: str | None = None,
) -> str:
    """Send a fresh code; earlier unused codes for the same purpose stop working."""
    now = clock.now()
    sent_last_hour = session.scalar(
        select(func.count())
        .select_from(OneTimeCode)
        .where(
            OneTimeCode.subject_kind == subject_kind,
            OneTimeCode.subject_id == subject_id,
            OneTimeCode.created_at > now - timedelta(hours=1),
        )
    )
    if (sent_last_hour or 0) >= settings.otp_sends_per_hour:
        raise TooManyCodes(
            f"at most {settings.otp_sends_per_hour} codes an hour; wait before asking again"
        )
    session.execute(
        update(OneTimeCode)
        .where(
            OneTimeCode.subject_kind == subject_kind,
            OneTimeCode.subject_id == subject_id,
            OneTimeCode.purpose == purpose,
            OneTimeCode.used_at.is_(None),
        )
        .values(used_at=now)
    )
    code = f"{secrets.randbelow(1_000_000):06d}"
    record = OneTimeCode(
        id=ids.new_id("one_time_code"),
        subject_kind=subject_kind,
        subject_id=subject_id,
        channel=channel,
        purpose=purpose,
        challenge_id=challenge_id,
        code_hash=_digest(code),
        attempts=0,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.otp_ttl_seconds),
    )
    session.add(record)
    minutes = max(1, settings.otp_ttl_seconds // 60)
    sender_for(settings, session).send(
        channel,
        destination,
        "payguard verification code",
        f"Your payguard code is {code}. It expires in {minutes} min. Never share it.",
    )
    session.flush()
    return record.id


def verify_code(
    session: Session,
    settings: Settings,
    subject_kind: str,
    subject_id: str,
    code: str,
    purpose: str,
    challenge_id: str | None = None,
) -> bool:
    """Spend the live code of this purpose (and challenge) if ``code`` matches."""
    record = session.scalar(
        select(OneTimeCode)
        .where(
            OneTimeCode.subject_kind == subject_kind,
            OneTimeCode.subject_id == subject_id,
            OneTimeCode.purpose == purpose,
            OneTimeCode.used_at.is_(None),
        )
        .order_by(OneTimeCode.created_at.desc())
        .limit(1)
    )
    if record is None or record.expires_at <= clock.now() or record.challenge_id != challenge_id:
        return False
    record.attempts += 1
    if hmac.compare_digest(record.code_hash, _digest(code)):
        record.used_at = clock.now()
        return True
    if record.attempts >= settings.otp_max_attempts:
        record.used_at = clock.now()  # too many guesses: the code is dead
    return False
