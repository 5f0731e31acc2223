"""Notification records and their delivery attempts.

No personal data in clear: a customer is named by id, their address only as a blind index
and a mask; the body is sealed (under the customer's own key for customer messages, so
crypto-shredding a customer erases what we told them too). Addresses are looked up again at
delivery time, never copied here.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from payguard.crypto.sealed import register_sealed
from payguard.db.base import Base, BigIntPK, UTCDateTime


class Notification(Base):
    __tablename__ = "notify_notifications"
    __table_args__ = (
        Index("ix_notify_notifications_due", "status", "next_attempt_at"),
        Index("ix_notify_notifications_recipient", "recipient_kind", "recipient_ref"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    audience: Mapped[str] = mapped_column(String(16))  # internal | customer | external
    template: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(16))  # outbox | webhook | smtp
    status: Mapped[str] = mapped_column(String(16))  # queued | sent | failed
    # staff | customer | internal (the configured channel) | external (the regulator desk)
    recipient_kind: Mapped[str] = mapped_column(String(16))
    recipient_ref: Mapped[str | None] = mapped_column(String(64))  # staff or customer id
    recipient_index: Mapped[str | None] = mapped_column(String(64))  # blind index of address
    recipient_masked: Mapped[str | None] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))  # templates keep subjects free of PII
    body: Mapped[str] = mapped_column(Text)  # sealed
    incident_id: Mapped[str | None] = mapped_column(String(40), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryAttempt(Base):
    __tablename__ = "notify_attempts"
    __table_args__ = (Index("ix_notify_attempts_notification", "notification_id", "number"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(ForeignKey("notify_notifications.id"))
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ...
    channel: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(12))  # ok | error
    status_code: Mapped[int | None] = mapped_column(Integer)  # HTTP or SMTP reply code
    error: Mapped[str | None] = mapped_column(String(300))  # kind of failure, never an address
    duration_ms: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# Key rotation re-encrypts, and key retirement keeps the keys of, every registered column.
register_sealed("notify_notifications", "body", "id")
