"""Notifications really reach a webhook receiver and an SMTP sink; failures back off.

Database tests run on SQLite and PostgreSQL (the ``database_url`` fixture)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from payguard import clock
from payguard.db.engine import Database
from payguard.identity import notifications as identity_notifications
from payguard.identity import service as identity
from payguard.notify import service as notify
from payguard.notify.models import DeliveryAttempt, Notification
from payguard.notify.schemas import NotificationOut
from payguard.settings import Settings
from tests.conftest import make_settings, outbox_payloads

from .receivers import smtp_sink, webhook_receiver

SECRET = "whsec-test-0123456789"
START = datetime(2026, 12, 1, 1, 15, tzinfo=UTC)


@pytest.fixture
def frozen() -> Iterator[clock.FrozenClock]:
    moving = clock.FrozenClock(START)
    previous = clock.set_clock(moving)
    yield moving
    clock.set_clock(previous)


def _settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    return make_settings(database_url, tmp_path, notify_webhook_secret=SECRET, **overrides)


def _staff(db: Database, settings: Settings, role: str = "incident_commander") -> str:
    staff, _ = db.transact(
        lambda s: identity.create_staff(
            s, settings, username=f"{role}-{clock.now().timestamp():.0f}", role=role, password=None
        )
    )
    return str(staff.id)


def _customer(
    db: Database, settings: Settings, *, email: str | None, phone: str | None, name: str
) -> str:
    customer, _wallet = db.transact(
        lambda s: identity.register_customer(
            s,
            settings,
            username=name,
            password="long-enough-password",
            display_name=name.title(),
            email=email,
            phone=phone,
        )
    )
    return str(customer.id)


def send_one(db: Database, settings: Settings, **fields: Any) -> NotificationOut:
    """``notify.send`` in a transaction of its own."""
    return db.transact(lambda s: notify.send(s, settings, **fields))


def _events(db: Database, topic: str) -> list[dict[str, Any]]:
    return outbox_payloads(db, topic)


def _attempts(db: Database, notification_id: str) -> list[DeliveryAttempt]:
    with db.read() as session:
        rows = session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.notification_id == notification_id)
            .order_by(DeliveryAttempt.number)
        ).all()
        session.expunge_all()
        return list(rows)


def _row(db: Database, notification_id: str) -> Notification:
    with db.read() as session:
        row = session.get(Notification, notification_id)
        assert row is not None
        session.expunge(row)
        return row


def test_outbox_is_the_default_and_delivers_at_once(settings: Settings, db: Database) -> None:
    staff_id = _staff(db, settings)
    out = send_one(
        db,
        settings,
        audience="internal",
        template="incident_role_assigned",
        language=None,
        context={
            "title": "Payout burst",
            "grade": "III",
            "status": "reported",
            "role": "commander",
        },
        to_staff_id=staff_id,
        incident_id="inc_test",
    )
    assert (out.channel, out.status, out.attempts, out.language) == ("outbox", "sent", 1, "zh-CN")
    assert out.recipient_kind == "staff" and out.recipient_ref == staff_id
    assert "应急指挥" in out.subject
    sent = _events(db, "notify.sent")
    assert sent == [
        {
            "notification_id": out.id,
            "incident_id": "inc_test",
            "audience": "internal",
            "template": "incident_role_assigned",
            "channel": "outbox",
            "attempts": 1,
        }
    ]
    with db.read() as session:
        mine = notify.list_notifications(session, staff_id=staff_id)
        assert [row.id for row in mine] == [out.id]
        assert "inc_test" in notify.detail(session, settings, out.id).body
    assert notify.dispatch_pending(db, settings) == 0  # nothing left to deliver


def test_webhook_reaches_the_receiver_with_a_valid_signature(
    database_url: str, tmp_path: Path, frozen: clock.FrozenClock
) -> None:
    with webhook_receiver() as receiver:
        settings = _settings(database_url, tmp_path, notify_webhook_url=receiver.url)
        db = Database(settings.database_url)
        try:
            out = send_one(
                db,
                settings,
                audience="internal",
                template="channel_suspended",
                language="en",
                context={"scope": "withdrawals", "reason": "leaked password"},
                channel="webhook",
                incident_id="inc_42",
            )
            assert out.status == "queued" and receiver.requests == []  # after commit only
            assert notify.dispatch_pending(db, settings) == 1
            assert notify.dispatch_pending(db, settings) == 0  # never twice
            row = _row(db, out.id)
            attempts = _attempts(db, out.id)
        finally:
            db.dispose()
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == "/hooks/payguard"
    assert request.headers["content-type"] == "application/json"
    # The receiver's own check, with nothing but the shared secret and hmac.
    fields = dict(part.split("=", 1) for part in request.headers["x-payguard-signature"].split(","))
    assert int(fields["t"]) == int(START.timestamp())
    expected = hmac.new(
        SECRET.encode(), fields["t"].encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    forged = hmac.new(b"wrong-secret", fields["t"].encode() + b"." + request.body, hashlib.sha256)
    assert not hmac.compare_digest(fields["v1"], forged.hexdigest())
    payload = json.loads(request.body)
    assert payload["id"] == out.id and payload["incident_id"] == "inc_42"
    assert payload["template"] == "channel_suspended"
    assert payload["subject"] == "[payguard] Payment channel suspended: withdrawals"
    assert "leaked password" in payload["body"]
    assert request.headers["x-payguard-notification"] == out.id
    assert (row.status, row.attempts, row.sent_at) == ("sent", 1, START)
    assert [(a.number, a.outcome, a.status_code) for a in attempts] == [(1, "ok", 200)]


def test_a_failing_receiver_is_retried_with_back_off_then_marked_failed(
    database_url: str, tmp_path: Path, frozen: clock.FrozenClock
) -> None:
    with webhook_receiver(statuses=[500]) as receiver:
        settings = _settings(
            database_url,
            tmp_path,
            notify_webhook_url=receiver.url,
            notify_max_attempts=3,
            notify_backoff_base_seconds=60,
        )
        db = Database(settings.database_url)
        try:
            out = send_one(
                db,
                settings,
                audience="external",
                template="notify_test",
                language="en",
                context={},
                channel="webhook",
                incident_id="inc_9",
            )
            assert notify.dispatch_pending(db, settings) == 0
            first = _row(db, out.id)
            assert (first.status, first.attempts) == ("queued", 1)
            assert first.next_attempt_at == START + timedelta(seconds=60)
            assert first.last_error == "HTTP 500"
            # Not due yet: the back-off is honoured, the receiver is left alone.
            frozen.advance(timedelta(seconds=59))
            assert notify.dispatch_pending(db, settings) == 0
            assert len(receiver.requests) == 1
            frozen.advance(timedelta(seconds=1))
            notify.dispatch_pending(db, settings)
            second = _row(db, out.id)
            assert second.attempts == 2
            assert second.next_attempt_at == START + timedelta(seconds=60 + 120)
            frozen.advance(timedelta(seconds=120))
            notify.dispatch_pending(db, settings)
            final = _row(db, out.id)
            attempts = _attempts(db, out.id)
            failed = _events(db, "notify.failed")
            frozen.advance(timedelta(days=1))
            assert notify.dispatch_pending(db, settings) == 0  # failed is final
        finally:
            db.dispose()
    assert len(receiver.requests) == 3
    assert [r.headers["x-payguard-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert (final.status, final.attempts, final.failed_at) == (
        "failed",
        3,
        START + timedelta(seconds=180),
    )
    assert [(a.number, a.outcome, a.status_code) for a in attempts] == [
        (1, "error", 500),
        (2, "error", 500),
        (3, "error", 500),
    ]
    assert [a.next_attempt_at for a in attempts] == [
        START + timedelta(seconds=60),
        START + timedelta(seconds=180),
        None,
    ]
    assert [e["notification_id"] for e in failed] == [out.id]
    assert failed[0]["incident_id"] == "inc_9" and failed[0]["channel"] == "webhook"
    assert _events(db, "notify.sent") == []


def test_a_receiver_that_recovers_gets_the_message_on_the_next_attempt(
    database_url: str, tmp_path: Path, frozen: clock.FrozenClock
) -> None:
    with webhook_receiver(statuses=[503, 200]) as receiver:
        settings = _settings(
            database_url, tmp_path, notify_webhook_url=receiver.url, notify_backoff_base_seconds=10
        )
        db = Database(settings.database_url)
        try:
            out = send_one(
                db,
                settings,
                audience="internal",
                template="notify_test",
                language="zh-CN",
                context={},
                channel="webhook",
            )
            assert notify.dispatch_pending(db, settings) == 0
            frozen.advance(timedelta(seconds=10))
            assert notify.dispatch_pending(db, settings) == 1
            row = _row(db, out.id)
        finally:
            db.dispose()
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)
    assert json.loads(receiver.requests[1].body)["subject"] == "【payguard】测试通知"


def test_an_unreachable_webhook_is_an_attempt_not_a_crash(
    database_url: str, tmp_path: Path, frozen: clock.FrozenClock
) -> None:
    # A port nobody listens on: connection refused.
    with webhook_receiver() as receiver:
        dead = receiver.url
    settings = _settings(database_url, tmp_path, notify_webhook_url=dead)
    db = Database(settings.database_url)
    try:
        out = send_one(
            db,
            settings,
            audience="internal",
            template="notify_test",
            language="en",
            context={},
            channel="webhook",
        )
        assert notify.dispatch_pending(db, settings) == 0
        row = _row(db, out.id)
    finally:
        db.dispose()
    assert row.status == "queued" and row.attempts == 1
    assert row.last_error == "ConnectError"  # the kind only: no URL, no address


def test_smtp_reaches_the_sink_for_staff_and_customers(database_url: str, tmp_path: Path) -> None:
    with smtp_sink() as (port, mails):
        settings = _settings(
            database_url,
            tmp_path,
            smtp_port=port,
            notify_internal_emails=["soc@bank.example", "duty@bank.example"],
        )
        db = Database(settings.database_url)
        try:
            staff_id = _staff(db, settings)
            customer_id = _customer(
                db, settings, email="li.lei@example.com", phone=None, name="lilei"
            )
            internal = send_one(
                db,
                settings,
                audience="internal",
                template="incident_status_changed",
                language="zh-CN",
                to_staff_id=staff_id,
                channel="smtp",
                incident_id="inc_7",
                context={
                    "title": "商户平台异常交易",
                    "grade": "II",
                    "status": "contained",
                    "from_status": "confirmed",
                },
            )
            customer = send_one(
                db,
                settings,
                audience="customer",
                template="account_frozen",
                language="en",
                to_customer_id=customer_id,
                channel="smtp",
                context={"account_id": "acc_9"},
            )
            assert mails == []  # queued until dispatch
            assert notify.dispatch_pending(db, settings) == 2
            stored = [_row(db, internal.id), _row(db, customer.id)]
        finally:
            db.dispose()
    by_subject = {mail.message["Subject"]: mail for mail in mails}
    staff_mail = by_subject["【payguard】事件 inc_7 状态变更为已控制"]
    assert staff_mail.recipients == ["soc@bank.example", "duty@bank.example"]
    staff_body = staff_mail.message.get_content()
    assert "已由已确认变更为已控制" in staff_body and "商户平台异常交易" in staff_body
    assert staff_mail.message["X-Payguard-Notification"] == internal.id
    customer_mail = by_subject["payguard: your wallet has been frozen for your protection"]
    assert customer_mail.recipients == ["li.lei@example.com"]
    assert "(acc_9)" in customer_mail.message.get_content()
    assert [row.status for row in stored] == ["sent", "sent"]
    assert stored[1].recipient_masked == "l***@example.com"


def test_no_personal_data_is_stored_in_clear(database_url: str, tmp_path: Path) -> None:
    email, phone = "han.meimei@example.com", "+8613800138000"
    with smtp_sink() as (port, mails):
        settings = _settings(database_url, tmp_path, smtp_port=port)
        db = Database(settings.database_url)
        try:
            by_mail = _customer(db, settings, email=email, phone=None, name="hanmeimei")
            by_phone = _customer(db, settings, email=None, phone=phone, name="zhangsan")
            for customer_id, channel in (
                (by_mail, "smtp"),
                (by_mail, "outbox"),
                (by_phone, "smtp"),
                (by_phone, "outbox"),
            ):
                send_one(
                    db,
                    settings,
                    audience="customer",
                    template="new_device",
                    language="en",
                    to_customer_id=customer_id,
                    channel=channel,
                    context={"device_name": "Pixel 9", "at": "09:15"},
                )
            notify.dispatch_pending(db, settings)
            with db.read() as session:
                dump = " ".join(
                    str(value)
                    for table in ("notify_notifications", "notify_attempts", "outbox_events")
                    for row in session.execute(text(f"SELECT * FROM {table}"))
                    for value in row
                )
                # The phone-only customer's message went to identity's outbox, as SMS.
                sms = identity_notifications.latest_sent_message(session, settings, phone)
                rows = notify.list_notifications(session, customer_id=by_phone)
        finally:
            db.dispose()
    assert len(mails) == 1 and mails[0].recipients == [email]
    for secret in (email, phone, "han.meimei", "13800138000", "Pixel 9"):
        assert secret not in dump, f"{secret!r} stored in clear"
    assert sms is not None and "Pixel 9" in sms
    # smtp without an e-mail address fell back to the outbox channel.
    assert {row.channel for row in rows} == {"outbox"}
    assert {row.recipient_masked for row in rows} == {"+86****8000"}


def test_bad_requests_are_refused_clearly(settings: Settings, db: Database) -> None:
    from payguard.errors import NotFound, ValidationProblem

    def send(**kwargs: Any) -> Any:
        base: dict[str, Any] = {
            "audience": "internal",
            "template": "notify_test",
            "language": "en",
            "context": {},
        }
        return send_one(db, settings, **(base | kwargs))

    with pytest.raises(ValidationProblem, match="PAYGUARD_NOTIFY_WEBHOOK_URL"):
        send(channel="webhook")
    with pytest.raises(ValidationProblem, match="PAYGUARD_NOTIFY_INTERNAL_EMAILS"):
        send(channel="smtp")
    with pytest.raises(ValidationProblem, match="to_customer_id"):
        send(audience="customer")
    with pytest.raises(ValidationProblem, match="audience"):
        send(audience="everyone")
    with pytest.raises(NotFound):
        send(to_staff_id="stf_nobody")
    with db.read() as session:
        assert notify.list_notifications(session) == []  # nothing half-done


def test_sealed_bodies_survive_key_rotation_and_shredding_erases_them(
    settings: Settings, db: Database
) -> None:
    from payguard.crypto import rotation
    from payguard.crypto.envelope import envelope_for

    customer_id = _customer(db, settings, email=None, phone="+8613900139000", name="wangwu")
    internal = _send_simple(db, settings)
    to_customer = send_one(
        db,
        settings,
        audience="customer",
        template="password_reset_required",
        language="en",
        to_customer_id=customer_id,
        context={},
    )
    envelope = envelope_for(settings)
    db.transact(lambda s: rotation.rotate_data_keys(s, envelope, "outbox"))
    assert rotation.reencrypt(db, envelope) >= 1
    db.transact(lambda s: rotation.retire_data_keys(s, grace_seconds=0))
    with db.read() as session:
        assert "api" in notify.detail(session, settings, internal).body
    # Erasing the customer erases what we told them, not the record that we did.
    db.transact(lambda s: envelope.erase(s, customer_id))
    envelope.forget_cached_keys()
    with db.read() as session:
        kept = notify.detail(session, settings, to_customer.id)
    assert kept.body == "[erased]" and kept.status == "sent"


def _send_simple(db: Database, settings: Settings) -> str:
    out = send_one(
        db,
        settings,
        audience="internal",
        template="notify_test",
        language="en",
        context={"note": "api"},
    )
    return out.id
