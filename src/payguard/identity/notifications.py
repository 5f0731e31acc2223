"""Security notices to customers (new device, device removed) through the message sender."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from payguard.identity.models import SentMessage
from payguard.identity.service import get_customer
from payguard.settings import Settings


def notify_customer(session: Session, settings: Settings, customer_id: str, text: str) -> None:
    """Send ``text`` to the customer's e-mail, else phone; the outbox sender by default."""
    from payguard.identity import otp

    customer = get_customer(session, customer_id)
    if customer.email:
        channel, recipient = "email", customer.email
    else:
        channel, recipient = "sms", customer.phone or f"customer:{customer.id}"
    otp.sender_for(settings, session).send(channel, recipient, "payguard security notice", text)


def latest_sent_code(session: Session, recipient: str) -> str | None:
    """The newest six-digit code the outbox sender 'sent' to ``recipient``.

    For the developer console, the tests and the in-process simulator: with the outbox
    sender, this is where a one-time code "arrives"."""
    body = session.scalar(
        select(SentMessage.body)
        .where(SentMessage.recipient == recipient)
        .order_by(SentMessage.created_at.desc(), SentMessage.id.desc())
        .limit(1)
    )
    match = re.search(r"\b(\d{6})\b", body or "")
    return match.group(1) if match else None
