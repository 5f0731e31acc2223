"""A tampered payment instruction makes its customer step up on every payment for a while
(settings.step_up_after_tamper_hours): what altered one signed instruction, malware on
the phone or a proxy, may drive the app to sign its own (seed 001 case 3)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from payguard.app import create_app
from payguard.db.engine import Database
from payguard.events.models import OutboxEvent
from payguard.settings import Settings
from tests.conftest import make_settings
from tests.factories import Customer, pay, register, signed, top_up

SMALL = 5_000  # 50.00: no step-up for an ordinary payment to a new payee


def _tamper(client: TestClient, customer: Customer, payee: str) -> None:
    key = str(uuid.uuid4())
    body = signed(customer, {"kind": "p2p", "amount": SMALL, "currency": "CNY",
                             "payee_username": payee}, key)  # fmt: skip
    body["amount"] = 90_000  # altered after the device signed it
    reply = client.post(
        "/v1/payments", headers={**customer.auth, "Idempotency-Key": key}, json=body
    )
    assert reply.status_code == 401 and reply.json()["code"] == "bad-signature", reply.text


def _raised(db: Database) -> list[dict[str, Any]]:
    with db.read() as session:
        rows = session.scalars(
            select(OutboxEvent).where(OutboxEvent.topic == "controls.step_up_raised")
        ).all()
        return [dict(row.payload) for row in rows]


def _small_payment(client: TestClient, customer: Customer, payee: str) -> Any:
    return pay(client, customer, step_up=False, kind="p2p", amount=SMALL, payee_username=payee)


def test_a_tampered_instruction_makes_the_customer_step_up(
    client: TestClient, db: Database
) -> None:
    ann, carl = register(client, "ann"), register(client, "carl")
    register(client, "bob", device=False)
    top_up(client, ann, 100_000)  # the device has paid: no new-device step-up
    top_up(client, carl, 100_000)
    assert _small_payment(client, ann, "bob").status_code == 201

    _tamper(client, ann, "bob")
    [raised] = _raised(db)
    assert raised["segment"] == "customer" and raised["value"] == ann.id
    assert raised["actor"] == "system:payments"

    refused = _small_payment(client, ann, "bob")
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "challenge-required"
    assert _small_payment(client, carl, "bob").status_code == 201  # only that customer
    # The customer passes it with their second factor; a second tamper adds no segment.
    assert pay(client, ann, kind="p2p", amount=SMALL, payee_username="bob").status_code == 201
    _tamper(client, ann, "bob")
    assert len(_raised(db)) == 1


def test_switched_off_nothing_is_raised(database_url: str, tmp_path: Path) -> None:
    settings: Settings = make_settings(database_url, tmp_path, step_up_after_tamper_hours=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        ann = register(client, "ann")
        register(client, "bob", device=False)
        top_up(client, ann, 100_000)
        _tamper(client, ann, "bob")
        # Switched off: nothing raised, the next small payment needs no step-up.
        assert _small_payment(client, ann, "bob").status_code == 201
        database = Database(settings.database_url)
        try:
            assert _raised(database) == []
        finally:
            database.dispose()
