"""Registration, sessions, who may see what, and that no money route is anonymous."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from payguard.settings import Settings
from tests.factories import (
    PASSWORD,
    approved,
    create_merchant,
    pay,
    register,
    staff_auth,
    top_up,
)

PUBLIC_ROUTES = {
    ("POST", "/v1/customers"),
    ("POST", "/v1/sessions"),
    ("POST", "/v1/staff/sessions"),
    ("POST", "/v1/sessions/refresh"),
    ("GET", "/v1/audit/public-key"),
    # The signed-out password reset (identity/password_reset.py): a code, then the new one.
    ("POST", "/v1/password-reset"),
    ("POST", "/v1/password-reset/confirm"),
}


def test_register_login_logout(client: TestClient) -> None:
    quinn = register(client, "quinn")
    me = client.get("/v1/me", headers=quinn.auth).json()
    assert me == {"kind": "customer", "id": quinn.id, "role": None, "session_id": me["session_id"]}
    profile = client.get("/v1/customers/me", headers=quinn.auth).json()
    assert profile["wallet_account_ids"] == [quinn.wallet_id] and profile["kyc_tier"] == 0
    assert client.delete("/v1/sessions/current", headers=quinn.auth).status_code == 204
    revoked = client.get("/v1/me", headers=quinn.auth)
    assert revoked.status_code == 401 and revoked.json()["code"] == "not-authenticated"
    assert client.get("/v1/me", headers={"Authorization": "Bearer made-up"}).status_code == 401


def test_login_failure_does_not_reveal_whether_the_account_exists(client: TestClient) -> None:
    register(client, "rosa")
    wrong_password = client.post("/v1/sessions", json={"username": "rosa", "password": "nope-nope"})
    unknown_user = client.post("/v1/sessions", json={"username": "ghost", "password": "nope-nope"})
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert wrong_password.json()["detail"] == unknown_user.json()["detail"]


def test_duplicate_username_and_weak_input(client: TestClient) -> None:
    register(client, "sam")
    again = client.post(
        "/v1/customers", json={"username": "SAM", "password": PASSWORD, "display_name": "S"}
    )
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    short = client.post(
        "/v1/customers", json={"username": "tess", "password": "short", "display_name": "T"}
    )
    assert short.status_code == 422
    assert PASSWORD not in short.text and "short" not in short.json()["detail"]


def test_customers_only_see_and_move_their_own_money(
    client: TestClient, settings: Settings
) -> None:
    uma, vic = register(client, "uma"), register(client, "vic")
    top_up(client, uma, 10_000)
    uma_payment = pay(client, uma, kind="p2p", amount=10, payee_username="vic").json()
    for path in (
        f"/v1/accounts/{uma.wallet_id}",
        f"/v1/accounts/{uma.wallet_id}/statement",
    ):
        reply = client.get(path, headers=vic.auth)
        assert reply.status_code == 404 and reply.json()["code"] == "account-not-found"
    # The payee may see a payment made to them; a third customer may not.
    assert client.get(f"/v1/payments/{uma_payment['id']}", headers=vic.auth).status_code == 200
    wes = register(client, "wes")
    assert client.get(f"/v1/payments/{uma_payment['id']}", headers=wes.auth).status_code == 404
    assert client.get("/v1/payments", headers=wes.auth).json()["items"] == []
    listed = client.get("/v1/accounts", headers=vic.auth).json()["items"]
    assert [account["id"] for account in listed] == [vic.wallet_id]
    stolen = pay(
        client, vic, kind="p2p", amount=10, payer_account_id=uma.wallet_id, payee_username="vic"
    )
    assert stolen.status_code == 404 and stolen.json()["code"] == "account-not-found"
    # Customers cannot use staff endpoints.
    freeze = client.post(
        f"/v1/accounts/{vic.wallet_id}/freeze", headers=vic.auth, json={"reason": "try it"}
    )
    assert freeze.status_code == 403
    assert client.get("/v1/ledger/invariants", headers=vic.auth).status_code == 403
    # Staff are not customers: they cannot make payments.
    staff_pay = client.post(
        "/v1/payments",
        headers={**staff_auth(settings, "admin"), "Idempotency-Key": "s"},
        json={"kind": "p2p", "amount": 1, "currency": "CNY", "payee_username": "vic"},
    )
    assert staff_pay.status_code == 403


def test_staff_roles(client: TestClient, settings: Settings) -> None:
    xena = register(client, "xena")
    viewer, operations = staff_auth(settings, "viewer"), staff_auth(settings, "operations")
    path = f"/v1/accounts/{xena.wallet_id}"
    refused = client.post(path + "/freeze", headers=viewer, json={"reason": "curious"})
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert client.get(path, headers=viewer).json()["status"] == "active"
    assert (
        client.post(path + "/freeze", headers=operations, json={"reason": "fraud report"}).json()[
            "status"
        ]
        == "frozen"
    )
    # Unfreezing takes two people: the first one's call only asks.
    asked = client.post(path + "/unfreeze", headers=operations, json={"reason": "cleared"})
    assert asked.status_code == 202 and asked.json()["status"] == "pending"
    assert client.get(path, headers=viewer).json()["status"] == "frozen"
    approved(client, settings, asked, checker="operations")
    assert client.get(path, headers=viewer).json()["status"] == "active"
    merchant = client.post("/v1/merchants", headers=viewer, json={"name": "Nope"})
    assert merchant.status_code == 403
    assert create_merchant(client, settings, "Yes Shop")["name"] == "Yes Shop"
    tier = client.post(
        f"/v1/customers/{xena.id}/kyc-tier", headers=viewer, json={"tier": 3, "reason": "why not"}
    )
    assert tier.status_code == 403


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x_1", path)


def test_every_v1_route_refuses_anonymous_callers(client: TestClient) -> None:
    # The OpenAPI document lists every mounted route, so a new one is covered by itself.
    paths = client.get("/openapi.json").json()["paths"]
    routes = [
        (method.upper(), path)
        for path, operations in paths.items()
        if path.startswith("/v1")
        for method in operations
    ]
    assert len(routes) > 15
    checked = 0
    for method, path in routes:
        if (method, path) in PUBLIC_ROUTES:
            continue
        reply = client.request(method, _concrete(path), json={})
        assert reply.status_code == 401, f"{method} {path} answered {reply.status_code} anonymously"
        checked += 1
    assert checked == len(routes) - len(PUBLIC_ROUTES)


@pytest.mark.parametrize("header", ["Bearer", "Basic abc", "Bearer    ", "token-without-scheme"])
def test_malformed_authorization_headers(client: TestClient, header: str) -> None:
    reply = client.get("/v1/accounts", headers={"Authorization": header})
    assert reply.status_code == 401
