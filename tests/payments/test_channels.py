"""Payment channel suspension bites in the payment pipeline and nowhere else (payments/
channels.py): each scope refuses exactly its payments with a clear problem, inside the
payment's transaction, and resuming restores them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from payguard.app import create_app
from payguard.db.engine import Database
from payguard.errors import NotFound, ValidationProblem
from payguard.events.models import OutboxEvent
from payguard.payments import channels
from payguard.settings import Settings
from tests.factories import (
    balance,
    create_merchant,
    invariants,
    pay,
    register,
    set_tier,
    staff_auth,
    top_up,
)

CARD = "6222020200112233"


@pytest.fixture
def low_threshold_client(settings: Settings) -> Iterator[TestClient]:
    tuned = settings.model_copy(update={"payout_approval_threshold": 100_000})
    with TestClient(create_app(tuned), raise_server_exceptions=False) as test_client:
        yield test_client


def _db(client: TestClient) -> Database:
    found: Database = client.app.state.services.db  # type: ignore[attr-defined]
    return found


def suspend(client: TestClient, scope: str) -> str:
    def work(session: Any) -> str:
        found, created = channels.suspend(session, scope=scope, reason="incident", by="stf_test")
        assert created
        return found.id

    result: str = _db(client).transact(work)
    return result


def resume(client: TestClient, suspension_id: str) -> None:
    _db(client).transact(
        lambda session: channels.resume(session, by="stf_test", suspension_id=suspension_id)
    )


def test_kind_scope_stops_one_kind_and_refunds_have_their_own_scope(
    client: TestClient, settings: Settings
) -> None:
    ann = register(client, "ann")
    ben = register(client, "ben", device=False)
    shop = create_merchant(client, settings, "Corner Shop", owner=ben)
    top_up(client, ann, 40_000)
    p2p = suspend(client, "kind:p2p")
    refused = pay(client, ann, kind="p2p", amount=1_000, payee_account_id=ben.wallet_id)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["code"] == "channel-suspended" and problem["scope"] == "kind:p2p"
    assert "Payments of kind 'p2p' are suspended" in problem["detail"]
    assert "balance is unchanged" in problem["detail"]
    assert refused.headers["content-type"].startswith("application/problem+json")
    bought = pay(client, ann, kind="merchant", amount=2_000, merchant_id=shop["id"])
    assert bought.status_code == 201, bought.text
    assert balance(client, ann) == 38_000
    resume(client, p2p)
    assert pay(client, ann, kind="p2p", amount=1_000, payee_account_id=ben.wallet_id).is_success

    refunds = suspend(client, "kind:refund")
    asked = client.post(
        f"/v1/payments/{bought.json()['id']}/refunds",
        headers={**staff_auth(settings, "operations"), "Idempotency-Key": "refund-1"},
        json={"amount": 500},
    )
    assert asked.status_code == 409 and asked.json()["code"] == "channel-suspended"
    resume(client, refunds)
    again = client.post(
        f"/v1/payments/{bought.json()['id']}/refunds",
        headers={**staff_auth(settings, "operations"), "Idempotency-Key": "refund-2"},
        json={"amount": 500},
    )
    assert again.status_code == 201, again.text
    assert invariants(client, settings)["ok"]


def test_held_payouts_are_not_released_while_withdrawals_are_suspended(
    low_threshold_client: TestClient, settings: Settings
) -> None:
    client = low_threshold_client
    vic = register(client, "vic")
    set_tier(client, settings, vic, 2)
    top_up(client, vic, 500_000)
    held = pay(client, vic, kind="withdrawal", amount=200_000, bank_account=CARD)
    assert held.status_code == 202, held.text
    stop = suspend(client, "withdrawals")
    maker, checker = staff_auth(settings, "operations"), staff_auth(settings, "operations")
    asked = client.post(
        "/v1/approvals",
        headers=maker,
        json={"action": "payout.release", "target": held.json()["id"], "params": {},
              "reason": "customer called back"},
    )  # fmt: skip
    assert asked.status_code == 202, asked.text
    blocked = client.post(f"/v1/approvals/{asked.json()['id']}/approve", headers=checker, json={})
    assert blocked.status_code == 409 and blocked.json()["code"] == "channel-suspended"
    resume(client, stop)
    released = client.post(f"/v1/approvals/{asked.json()['id']}/approve", headers=checker, json={})
    assert released.status_code == 200, released.text
    assert released.json()["result"]["payment_status"] == "confirmed"
    assert invariants(client, settings)["ok"]


def test_scopes_are_validated_and_every_change_is_audited(
    client: TestClient, settings: Settings
) -> None:
    with _db(client).write() as session:
        for scope, problem in (
            ("everything", ValidationProblem),
            ("kind:teleport", ValidationProblem),
            ("merchant_payouts:mer_nope", NotFound),
        ):
            with pytest.raises(problem):
                channels.suspend(session, scope=scope, reason="x", by="stf_test")
        with pytest.raises(ValidationProblem):
            channels.suspend(session, scope="withdrawals", reason=" ", by="stf_test")
    first = suspend(client, "withdrawals")

    def twice(session: Any) -> tuple[str, bool]:
        found, created = channels.suspend(session, scope="withdrawals", reason="b", by="stf_2")
        return found.id, created

    assert _db(client).transact(twice) == (first, False)  # left to its owner
    resume(client, first)
    with _db(client).read() as session:
        topics = [event.topic for event in session.query(OutboxEvent).order_by(OutboxEvent.id)]
        assert channels.list_suspensions(session) == []
        assert len(channels.list_suspensions(session, include_lifted=True)) == 1
    assert topics.count("controls.channel_suspended") == 1
    assert topics.count("controls.channel_resumed") == 1
