"""Notifications: record in the caller's transaction, deliver after commit.

``send`` renders a template, decides the recipient and channel, and stores the message
(the body sealed). The outbox channel is delivered at once (the stored row is the
delivery; a customer's copy also lands in identity's message outbox, where the app and
the tests read it). Webhook and SMTP messages are queued and ``dispatch_pending`` delivers
them, with exponential back-off between attempts and ``notify_max_attempts`` in all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.crypto.envelope import envelope_for
from payguard.db.engine import Database
from payguard.errors import NotFound, ValidationProblem
from payguard.events import service as events
from payguard.identity.otp import OUTBOX_OWNER, OutboxSender, mask_destination
from payguard.notify import channels, templates
from payguard.notify.models import DeliveryAttempt, Notification
from payguard.notify.regulator import (
    IncidentFacts,
    RegulatorReportDraft,
    draft_from_facts,
    facts_for_incident,
)
from payguard.notify.schemas import AttemptOut, NotificationDetail, NotificationOut
from payguard.settings import Settings

__all__ = [
    "IncidentFacts",
    "NotificationOut",
    "RegulatorReportDraft",
    "dispatch_pending",
    "get_notification",
    "list_notifications",
    "regulator_report_draft",
    "send",
    "send_regulator_report",
]

AUDIENCES = ("internal", "customer", "external")
CHANNELS = ("outbox", "webhook", "smtp")
# Not a customer's message: sealed with the message outbox's key (rotated with
# `payguard keys rotate --purpose outbox`), as identity's sent_messages are.
PLATFORM_OWNER = OUTBOX_OWNER
# While one process delivers a message, others leave it alone for this long.
LEASE_SECONDS = 120


def _where(notification_id: str) -> str:
    return f"notify_notifications.body.{notification_id}"


@dataclass(frozen=True)
class _Recipient:
    kind: str  # staff | customer | internal | external
    ref: str | None
    address: str | None = None  # only in memory, never stored
    sms: bool = False


def _default_channel(settings: Settings, audience: str) -> str:
    if audience == "internal":
        return settings.notify_internal_channel
    if audience == "customer":
        return settings.notify_customer_channel
    return settings.notify_external_channel


def _check_channel(settings: Settings, audience: str, channel: str) -> None:
    if channel not in CHANNELS:
        raise ValidationProblem(f"channel must be one of {', '.join(CHANNELS)}")
    if channel == "webhook" and not settings.notify_webhook_url:
        raise ValidationProblem("the webhook channel needs PAYGUARD_NOTIFY_WEBHOOK_URL")
    if channel == "webhook" and settings.notify_webhook_secret is None:
        raise ValidationProblem("the webhook channel needs PAYGUARD_NOTIFY_WEBHOOK_SECRET")
    if channel == "smtp" and audience == "internal" and not settings.notify_internal_emails:
        raise ValidationProblem("internal e-mail needs PAYGUARD_NOTIFY_INTERNAL_EMAILS")
    if channel == "smtp" and audience == "external" and not settings.notify_external_emails:
        raise ValidationProblem("external e-mail needs PAYGUARD_NOTIFY_EXTERNAL_EMAILS")


def _customer_contact(session: Session, settings: Settings, customer_id: str) -> _Recipient:
    from payguard.identity.service import get_customer, personal_data

    contact = personal_data(session, settings, get_customer(session, customer_id))
    if contact.email and contact.email != "[erased]":
        return _Recipient("customer", customer_id, contact.email)
    if contact.phone and contact.phone != "[erased]":
        return _Recipient("customer", customer_id, contact.phone, sms=True)
    return _Recipient("customer", customer_id, None)


def _recipient(
    session: Session,
    settings: Settings,
    audience: str,
    to_staff_id: str | None,
    to_customer_id: str | None,
) -> _Recipient:
    if audience == "customer":
        if not to_customer_id:
            raise ValidationProblem("a customer notification needs to_customer_id")
        return _customer_contact(session, settings, to_customer_id)
    if to_customer_id:
        raise ValidationProblem(f"to_customer_id is only for the customer audience ({audience})")
    if audience == "internal":
        if to_staff_id:
            from payguard.identity.service import staff_exists

            if not staff_exists(session, to_staff_id):
                raise NotFound(f"no staff member '{to_staff_id}'")
            # Staff have no contact on file: they read it here, or the internal channel
            # (webhook, team mailbox) carries it with their id.
            return _Recipient("staff", to_staff_id)
        return _Recipient("internal", None)
    return _Recipient("external", None)


def send(
    session: Session,
    settings: Settings,
    *,
    audience: str,
    template: str,
    language: str | None,
    context: dict[str, Any],
    to_staff_id: str | None = None,
    to_customer_id: str | None = None,
    channel: str | None = None,
    incident_id: str | None = None,
    created_by: str = "system",
) -> NotificationOut:
    """Record a notification in the caller's transaction (see the module docstring)."""
    if audience not in AUDIENCES:
        raise ValidationProblem(f"audience must be one of {', '.join(AUDIENCES)}")
    language = language or settings.notify_default_language
    chosen = channel or _default_channel(settings, audience)
    _check_channel(settings, audience, chosen)
    recipient = _recipient(session, settings, audience, to_staff_id, to_customer_id)
    if chosen == "smtp" and audience == "customer" and (recipient.sms or not recipient.address):
        # No e-mail on file: like identity's SMTP sender, SMS goes to the message outbox.
        chosen = "outbox"
    rendered = templates.render(
        template, language, {"incident_id": incident_id, **context} if incident_id else context
    )
    now = clock.now()
    envelope = envelope_for(settings)
    notification_id = ids.new_id("notification")
    owner = to_customer_id if audience == "customer" and to_customer_id else PLATFORM_OWNER
    row = Notification(
        id=notification_id,
        audience=audience,
        template=template,
        language=language,
        channel=chosen,
        status="queued",
        recipient_kind=recipient.kind,
        recipient_ref=recipient.ref,
        recipient_index=envelope.blind_index("recipient", recipient.address)
        if recipient.address
        else None,
        recipient_masked=mask_destination(recipient.address) if recipient.address else None,
        subject=rendered.subject,
        body=envelope.seal(session, owner, _where(notification_id), rendered.body),
        incident_id=incident_id,
        attempts=0,
        next_attempt_at=now,
        created_by=created_by,
        created_at=now,
    )
    session.add(row)
    session.flush()
    if chosen == "outbox":
        outcome = channels.Outcome(True)
        if audience == "customer" and recipient.address:
            OutboxSender(settings, session).send(
                "sms" if recipient.sms else "email",
                recipient.address,
                rendered.subject,
                rendered.body,
            )
        elif audience == "customer":
            outcome = channels.Outcome(True, error="no contact on file; kept here only")
        _record_attempt(session, row, outcome, now=now, settings=settings)
    return NotificationOut.model_validate(row)


def _event_payload(row: Notification) -> dict[str, Any]:
    return {
        "notification_id": row.id,
        "incident_id": row.incident_id,
        "audience": row.audience,
        "template": row.template,
        "channel": row.channel,
        "attempts": row.attempts,
    }


def backoff(settings: Settings, attempt: int) -> timedelta:
    """The wait after failed attempt ``attempt`` (1-based): base x 2^(n-1), capped."""
    seconds = settings.notify_backoff_base_seconds * (2 ** max(attempt - 1, 0))
    return timedelta(seconds=min(seconds, settings.notify_backoff_max_seconds))


def _record_attempt(
    session: Session,
    row: Notification,
    outcome: channels.Outcome,
    *,
    now: datetime,
    settings: Settings,
) -> None:
    row.attempts += 1
    next_at: datetime | None = None
    if outcome.ok:
        row.status, row.sent_at, row.next_attempt_at = "sent", now, None
        row.last_error = outcome.error
    elif row.attempts >= settings.notify_max_attempts:
        row.status, row.failed_at, row.next_attempt_at = "failed", now, None
        row.last_error = (outcome.error or "delivery failed")[:300]
    else:
        next_at = now + backoff(settings, row.attempts)
        row.next_attempt_at = next_at
        row.last_error = (outcome.error or "delivery failed")[:300]
    session.add(
        DeliveryAttempt(
            notification_id=row.id,
            number=row.attempts,
            channel=row.channel,
            at=now,
            outcome="ok" if outcome.ok else "error",
            status_code=outcome.status_code,
            error=(outcome.error or None) and str(outcome.error)[:300],
            duration_ms=outcome.duration_ms,
            next_attempt_at=next_at,
        )
    )
    if row.status == "sent":
        events.emit(session, "notify.sent", _event_payload(row))
    elif row.status == "failed":
        events.emit(session, "notify.failed", _event_payload(row) | {"error": row.last_error})


# ------------------------------------------------------------------ delivery


@dataclass(frozen=True)
class _Claimed:
    id: str
    attempt: int
    channel: str
    payload: dict[str, Any]
    subject: str
    body: str
    language: str
    emails: list[str]


def _claim(session: Session, settings: Settings, notification_id: str) -> _Claimed | None:
    """Take the lease on one due message and open what delivery needs (in memory only)."""
    now = clock.now()
    taken = session.execute(
        update(Notification)
        .where(
            Notification.id == notification_id,
            Notification.status == "queued",
            or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= now),
        )
        .values(next_attempt_at=now + timedelta(seconds=LEASE_SECONDS))
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        return None  # another process has it, or it is no longer due
    row = session.get(Notification, notification_id)
    assert row is not None
    body = envelope_for(settings).open(session, _where(row.id), row.body)
    emails: list[str] = []
    if row.channel == "smtp":
        if row.recipient_kind == "customer" and row.recipient_ref:
            contact = _customer_contact(session, settings, row.recipient_ref)
            emails = [contact.address] if contact.address and not contact.sms else []
        elif row.audience == "external":
            emails = list(settings.notify_external_emails)
        else:
            emails = list(settings.notify_internal_emails)
    payload: dict[str, Any] = {
        "id": row.id,
        "audience": row.audience,
        "template": row.template,
        "language": row.language,
        "subject": row.subject,
        "body": body,
        "incident_id": row.incident_id,
        "recipient": {
            "kind": row.recipient_kind,
            "ref": row.recipient_ref,
            "masked": row.recipient_masked,
        },
        "created_at": row.created_at.isoformat(),
        "attempt": row.attempts + 1,
    }
    return _Claimed(
        row.id, row.attempts + 1, row.channel, payload, row.subject, body, row.language, emails
    )


def _deliver(settings: Settings, claimed: _Claimed) -> channels.Outcome:
    if claimed.channel == "webhook":
        return channels.post_webhook(
            settings,
            claimed.payload,
            notification_id=claimed.id,
            attempt=claimed.attempt,
            timestamp=int(clock.now().timestamp()),
        )
    if claimed.channel == "smtp":
        return channels.send_email(
            settings,
            claimed.emails,
            claimed.subject,
            claimed.body,
            notification_id=claimed.id,
            language=claimed.language,
        )
    return channels.Outcome(True)  # outbox rows are delivered when recorded


def dispatch_pending(db: Database, settings: Settings, *, limit: int = 100) -> int:
    """Deliver the queued messages that are due; returns how many were sent.

    Each message is claimed in a short transaction (a lease, so two processes never send
    the same attempt), delivered outside any transaction, and its attempt recorded in a
    third. A crash mid-delivery leaves the lease to expire and the message is tried again.
    """
    now = clock.now()
    with db.read() as session:
        due = session.scalars(
            select(Notification.id)
            .where(
                Notification.status == "queued",
                or_(Notification.next_attempt_at.is_(None), Notification.next_attempt_at <= now),
            )
            .order_by(Notification.created_at, Notification.id)
            .limit(limit)
        ).all()
    sent = 0
    for notification_id in due:
        claimed = db.transact(
            lambda session, nid=notification_id: _claim(session, settings, nid)  # type: ignore[misc]
        )
        if claimed is None:
            continue
        try:
            outcome = _deliver(settings, claimed)
        except Exception as error:  # an odd failure is an attempt too, not a stuck lease
            outcome = channels.Outcome(False, error=type(error).__name__)

        def record(
            session: Session, claimed: _Claimed = claimed, outcome: channels.Outcome = outcome
        ) -> str:
            row = session.get(Notification, claimed.id)
            assert row is not None
            _record_attempt(session, row, outcome, now=clock.now(), settings=settings)
            return row.status

        if db.transact(record) == "sent":
            sent += 1
    return sent


# ------------------------------------------------------------------ reading


def get_notification(session: Session, notification_id: str) -> Notification:
    row = session.get(Notification, notification_id)
    if row is None:
        raise NotFound(f"no notification '{notification_id}'")
    return row


def list_notifications(
    session: Session,
    *,
    incident_id: str | None = None,
    status: str | None = None,
    audience: str | None = None,
    staff_id: str | None = None,
    customer_id: str | None = None,
    limit: int = 100,
) -> Sequence[Notification]:
    query = select(Notification).order_by(Notification.created_at.desc(), Notification.id.desc())
    if incident_id:
        query = query.where(Notification.incident_id == incident_id)
    if status:
        query = query.where(Notification.status == status)
    if audience:
        query = query.where(Notification.audience == audience)
    if staff_id:
        query = query.where(
            Notification.recipient_kind == "staff", Notification.recipient_ref == staff_id
        )
    if customer_id:
        query = query.where(
            Notification.recipient_kind == "customer", Notification.recipient_ref == customer_id
        )
    return session.scalars(query.limit(limit)).all()


def attempts_of(session: Session, notification_id: str) -> Sequence[DeliveryAttempt]:
    return session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.notification_id == notification_id)
        .order_by(DeliveryAttempt.number)
    ).all()


def detail(session: Session, settings: Settings, notification_id: str) -> NotificationDetail:
    row = get_notification(session, notification_id)
    body = envelope_for(settings).open(session, _where(row.id), row.body)
    return NotificationDetail(
        **NotificationOut.model_validate(row).model_dump(),
        body=body,
        attempt_log=[AttemptOut.model_validate(a) for a in attempts_of(session, row.id)],
    )


# ------------------------------------------------------------------ regulator


def regulator_report_draft(
    session: Session,
    settings: Settings,
    incident: str | IncidentFacts | dict[str, Any],
    *,
    language: str | None = None,
    now: datetime | None = None,
) -> RegulatorReportDraft:
    """The draft of the report to the PBoC for an incident (id, facts, or a dict of facts),
    with the reporting clock of its grade."""
    if isinstance(incident, str):
        facts = facts_for_incident(session, incident)
    elif isinstance(incident, dict):
        facts = IncidentFacts.from_dict(incident)
    else:
        facts = incident
    return draft_from_facts(
        settings, facts, language=language or settings.notify_default_language, now=now
    )


def send_regulator_report(
    session: Session,
    settings: Settings,
    incident: str | IncidentFacts | dict[str, Any],
    *,
    language: str | None = None,
    channel: str | None = None,
    created_by: str = "system",
) -> NotificationOut:
    """Send the draft to the external desk (legal / compliance files it)."""
    draft = regulator_report_draft(session, settings, incident, language=language)
    return send(
        session,
        settings,
        audience="external",
        template="regulator_report",
        language=draft.language,
        context=draft.template_context(),
        channel=channel,
        incident_id=draft.incident_id,
        created_by=created_by,
    )
