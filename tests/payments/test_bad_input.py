"""Every kind of bad input gets its own problem, and nothing is written."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import rfc8785
from fastapi.testclient import TestClient

from payguard.settings import Settings
from tests.factories import (
    Customer,
    balance,
    invariants,
    pay,
    payment_count,
    register,
    signed,
    top_up,
)


@pytest.fixture
def payer(client: TestClient) -> Iterator[Customer]:
    customer = register(client, "payer")
    register(client, "payee")
    top_up(client, customer, 10_000)
    yield customer


def assert_problem(reply: Any, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    problem = reply.json()
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["type"].endswith("/" + code)
    assert problem["detail"]
    assert "Traceback" not in reply.text


BAD_BODIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("negative amount", {"amount": -5}, 422, "invalid-amount"),
    ("zero amount", {"amount": 0}, 422, "invalid-amount"),
    ("amount beyond 64 bits", {"amount": 2**64}, 422, "invalid-amount"),
    ("amount beyond 2^62", {"amount": 2**62 + 1}, 422, "invalid-amount"),
    ("amount as a string", {"amount": "5"}, 422, "validation-error"),
    ("amount as a decimal", {"amount": 5.5}, 422, "validation-error"),
    ("unknown currency", {"currency": "ZZZ"}, 422, "unknown-currency"),
    ("currency not a string", {"currency": 156}, 422, "validation-error"),
    ("unknown kind", {"kind": "loan"}, 422, "validation-error"),
    ("unknown field", {"sneaky": True}, 422, "validation-error"),
    (
        "unknown payee account",
        {"payee_username": None, "payee_account_id": "acc_x"},
        404,
        "account-not-found",
    ),
    ("unknown payee user", {"payee_username": "nobody-here"}, 404, "account-not-found"),
    ("insufficient funds", {"amount": 10_001}, 409, "insufficient-funds"),
    ("wrong currency for the wallet", {"currency": "USD"}, 422, "currency-mismatch"),
]


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [pytest.param(o, s, c, id=name) for name, o, s, c in BAD_BODIES],
)
def test_bad_payment_bodies(
    client: TestClient,
    settings: Settings,
    payer: Customer,
    overrides: dict[str, Any],
    status: int,
    code: str,
) -> None:
    before = payment_count(client, settings)
    body = {"kind": "p2p", "amount": 100, "currency": "CNY", "payee_username": "payee"}
    body.update(overrides)
    body = {key: value for key, value in body.items() if value is not None}
    key = str(uuid.uuid4())
    headers = {**payer.auth, "Idempotency-Key": key}
    # Integers beyond JSON's safe range cannot even be signed; the schema refuses them first.
    with contextlib.suppress(rfc8785.CanonicalizationError):
        body = signed(payer, body, key)
    assert_problem(client.post("/v1/payments", headers=headers, json=body), status, code)
    assert payment_count(client, settings) == before
    assert balance(client, payer) == 10_000
    assert invariants(client, settings)["ok"] is True


def test_malformed_json_oversized_body_and_missing_key(
    client: TestClient, settings: Settings, payer: Customer
) -> None:
    headers = {**payer.auth, "Idempotency-Key": "k", "Content-Type": "application/json"}
    assert_problem(
        client.post("/v1/payments", headers=headers, content=b'{"kind": '), 400, "malformed-body"
    )
    huge = b'{"memo": "' + b"x" * (settings.max_body_bytes + 10) + b'"}'
    assert_problem(
        client.post("/v1/payments", headers=headers, content=huge), 413, "body-too-large"
    )
    no_key = client.post(
        "/v1/payments",
        headers=payer.auth,
        json={"kind": "p2p", "amount": 1, "currency": "CNY", "payee_username": "payee"},
    )
    assert_problem(no_key, 400, "idempotency-key-missing")
    long_key = {**payer.auth, "Idempotency-Key": "k" * 200}
    assert_problem(
        client.post(
            "/v1/payments", headers=long_key, json={"kind": "p2p", "amount": 1, "currency": "CNY"}
        ),
        422,
        "validation-error",
    )
    assert payment_count(client, settings) == 1  # only the top-up


def test_key_reused_with_another_body(
    client: TestClient, settings: Settings, payer: Customer
) -> None:
    first = pay(client, payer, key="same", kind="p2p", amount=100, payee_username="payee")
    assert first.status_code == 201
    second = pay(client, payer, key="same", kind="p2p", amount=101, payee_username="payee")
    assert_problem(second, 409, "idempotency-key-reused")
    assert balance(client, payer) == 10_000 - 100


def test_frozen_payer_cannot_pay_but_can_receive(
    client: TestClient, settings: Settings, payer: Customer
) -> None:
    from tests.factories import staff_auth

    ops = staff_auth(settings, "operations")
    frozen = client.post(
        f"/v1/accounts/{payer.wallet_id}/freeze", headers=ops, json={"reason": "suspected ATO"}
    )
    assert frozen.status_code == 200 and frozen.json()["status"] == "frozen"
    reply = pay(client, payer, kind="p2p", amount=100, payee_username="payee")
    assert_problem(reply, 409, "account-frozen")
    withdrawal = pay(client, payer, kind="withdrawal", amount=100, bank_account="6222000011")
    assert_problem(withdrawal, 409, "account-frozen")
    assert top_up(client, payer, 500)["status"] == "confirmed"
    assert balance(client, payer) == 10_500
    assert invariants(client, settings)["ok"] is True


def test_payments_need_the_right_fields(client: TestClient, payer: Customer) -> None:
    assert_problem(pay(client, payer, kind="withdrawal", amount=100), 422, "validation-error")
    assert_problem(pay(client, payer, kind="merchant", amount=100), 422, "validation-error")
    assert_problem(pay(client, payer, kind="p2p", amount=100), 422, "validation-error")
    to_self = pay(client, payer, kind="p2p", amount=100, payee_account_id=payer.wallet_id)
    assert_problem(to_self, 422, "validation-error")
    assert_problem(
        pay(client, payer, kind="merchant", amount=100, merchant_id="mer_missing"),
        404,
        "account-not-found",
    )
