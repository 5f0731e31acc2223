"""The SDK against the real app in-process, on both backends."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from payguard.client import DeviceKey, PayguardClient, PayguardError
from payguard.settings import Settings
from tests.factories import create_merchant, database_of, last_code, staff_token


def customer(client: TestClient, username: str) -> PayguardClient:
    """A customer whose app binds a device with an SMS code and answers step-up by SMS."""
    db = database_of(client)
    phone = "+86139" + "".join(str(secrets.randbelow(10)) for _ in range(8))
    sdk = PayguardClient(http=client)
    sdk.register(username, "sdk-password-123", username.title(), phone=phone)
    sdk.login(username, "sdk-password-123")
    sdk.request_code("sms", "device")
    sdk.register_device(f"{username}'s phone", factor="otp", code=last_code(db, phone))

    def by_sms(problem: dict[str, Any]) -> tuple[str, str]:
        sdk.send_challenge_code(problem["challenge_id"], "sms")
        return "sms", last_code(db, phone)

    sdk.step_up_handler = by_sms
    return sdk


def test_a_customer_journey(client: TestClient, settings: Settings) -> None:
    ann, ben = customer(client, "ann"), customer(client, "ben")
    assert ann.me()["kind"] == "customer"
    topped = ann.top_up(50_000, "6222020200001111")
    assert topped.succeeded and topped.history[-1] == "confirmed"
    paid = ann.pay_p2p(1_250, payee_username="ben", memo="tickets")
    assert paid.status == "confirmed" and paid.amount == 1_250
    assert ben.wallet().ledger_balance == 1_250
    shop = create_merchant(client, settings, "SDK Shop")
    bought = ann.pay_merchant(700, shop["id"])
    assert bought.payee_account_id == shop["account_id"]
    out = ann.withdraw(10_000, "6222020200001111")
    assert out.succeeded and out.fee > 0
    wallet = ann.wallet()
    assert wallet.ledger_balance == 50_000 - 1_250 - 700 - 10_000 - out.fee
    statement = ann.statement(wallet.id)
    assert statement.closing_balance == wallet.ledger_balance
    payments, cursor = ann.payments(limit=2)
    assert len(payments) == 2 and cursor is not None
    assert ann.payment(paid.id).id == paid.id
    ann.logout()
    with pytest.raises(PayguardError) as error:
        ann.me()
    assert error.value.status == 401 and error.value.code == "not-authenticated"


def test_problems_become_typed_errors(client: TestClient) -> None:
    cat = customer(client, "cat")
    customer(client, "dog")
    with pytest.raises(PayguardError) as broke:
        cat.pay_p2p(100, payee_username="dog")
    assert broke.value.code == "insufficient-funds" and broke.value.status == 409
    with pytest.raises(PayguardError) as money:
        cat.pay_p2p(100, payee_username="dog", currency="ZZZ")
    assert money.value.code == "unknown-currency"


def test_retrying_with_the_same_key_pays_once(client: TestClient) -> None:
    eve = customer(client, "eve")
    customer(client, "fay")
    eve.top_up(10_000, "6222020200002222")
    first = eve.pay_p2p(300, payee_username="fay", idempotency_key="retry-me")
    second = eve.pay_p2p(300, payee_username="fay", idempotency_key="retry-me")
    assert first.id == second.id
    assert eve.wallet().ledger_balance == 9_700


class FlakyTransport(httpx.BaseTransport):
    """Drops the first reply of every POST after the server handled it: a lost response."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.dropped: set[str] = set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        key = request.headers.get("Idempotency-Key")
        if key and key not in self.dropped:
            self.dropped.add(key)
            response.read()
            raise httpx.ReadError("connection reset after the server answered")
        return response


def test_a_lost_reply_is_retried_without_paying_twice(
    client: TestClient, settings: Settings
) -> None:
    gus = customer(client, "gus")
    customer(client, "hal")
    gus.top_up(5_000, "6222020200003333")
    flaky = FlakyTransport(client._transport)
    with httpx.Client(transport=flaky, base_url=str(client.base_url)) as http:
        retrying = PayguardClient(http=http, token=gus.token, backoff_seconds=0.001)
        retrying.device_key, retrying.device_id = gus.device_key, gus.device_id
        paid = retrying.pay_p2p(1_000, payee_username="hal")
    assert paid.status == "confirmed" and len(flaky.dropped) == 1
    assert gus.wallet().ledger_balance == 4_000
    auth = {"Authorization": f"Bearer {staff_token(settings, 'viewer')}"}
    items = client.get("/v1/payments", headers=auth).json()["items"]
    assert [item["kind"] for item in items].count("p2p") == 1


def test_the_app_journey_with_totp_device_binding_and_step_up(client: TestClient) -> None:
    """What the README shows: TOTP as the authenticator, a device key, a stepped-up payment."""
    app = PayguardClient(http=client)
    app.register("ivy", "sdk-password-123", "Ivy")
    app.login("ivy", "sdk-password-123")
    codes = app.enrol_totp()
    assert len(codes) == 10
    # A recovery code proves the factor here, so the step-up below gets a fresh TOTP step.
    device = app.register_device(
        "Ivy's phone", key=DeviceKey.generate("p256"), factor="recovery_code", code=codes[0]
    )
    assert device["algorithm"] == "p256" and device["is_new"] is True
    topped = app.top_up(20_000, "6222020200004444")  # a new device's first payment: step-up
    assert topped.succeeded
    assert "step-up passed (new_device)" in str(topped.raw["history"])
    assert app.devices()[0]["is_new"] is False
    again = app.top_up(1_000, "6222020200004444")  # no longer new: no step-up
    assert "step-up" not in str(again.raw["history"])


def test_without_a_device_the_sdk_cannot_pay(client: TestClient) -> None:
    bare = PayguardClient(http=client)
    bare.register("joe", "sdk-password-123", "Joe")
    bare.login("joe", "sdk-password-123")
    with pytest.raises(PayguardError) as refused:
        bare.top_up(1_000, "6222020200005555")
    assert refused.value.code == "signature-required"
