"""Security notices to customers (new device, device removed) through the message sender."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from payguard.crypto.envelope import envelope_for
from payguard.identity.models import SentMessage
from payguard.identity.service import get_customer, personal_data
from payguard.settings import Settings


def notify_customer(session: Session, settings: Settings, customer_id: str, text: str) -> None:
    """Send ``text`` to the customer's e-mail, else phone; the outbox sender by default."""
    from payguard.identity import otp

    contact = personal_data(session, settings, get_customer(session, customer_id))
    if contact.email:
        channel, recipient = "email", contact.email
    else:
        channel, recipient = "sms", contact.phone or f"customer:{customer_id}"
    otp.sender_for(settings, session).send(channel, recipient, "payguard security notice", text)


def latest_sent_code(session: Session, settings: Settings, recipient: str) -> str | None:
    """The newest six-digit code the outbox sender 'sent' to ``recipient``.

    For the developer console, the tests and the in-process simulator: with the outbox
    sender, this is where a one-time code "arrives"."""
    body = latest_sent_message(session, settings, recipient) or ""
    match = re.search(r"\b(\d{6})\b", body)
    return match.group(1) if match else None


def latest_sent_message(session: Session, settings: Settings, recipient: str) -> str | None:
    """The newest message body the outbox sender 'sent' to ``recipient``."""
    envelope = envelope_for(settings)
    newest = session.execute(
        select(SentMessage.id, SentMessage.body)
        .where(SentMessage.recipient == envelope.blind_index("recipient", recipient))
        .order_by(SentMessage.created_at.desc(), SentMessage.id.desc())
        .limit(1)
    ).first()
    if newest is None:
        return None
    return envelope.open(session, f"sent_messages.body.{newest.id}", newest.body)
