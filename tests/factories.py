"""Small helpers that make API tests read like the story they tell."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from payguard.db.engine import Database
from payguard.identity import service as identity
from payguard.settings import Settings

PASSWORD = "long-enough-password"


@dataclass
class Customer:
    id: str
    username: str
    token: str
    wallet_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def register(client: httpx.Client, username: str) -> Customer:
    created = client.post(
        "/v1/customers",
        json={"username": username, "password": PASSWORD, "display_name": username.title()},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    token = client.post("/v1/sessions", json={"username": username, "password": PASSWORD})
    assert token.status_code == 201, token.text
    return Customer(body["id"], username, token.json()["token"], body["wallet_account_ids"][0])


def pay(
    client: httpx.Client, customer: Customer, key: str | None = None, **body: Any
) -> httpx.Response:
    body.setdefault("currency", "CNY")
    headers = {**customer.auth, "Idempotency-Key": key or str(uuid.uuid4())}
    return client.post("/v1/payments", headers=headers, json=body)


def top_up(client: httpx.Client, customer: Customer, amount: int) -> dict[str, Any]:
    reply = pay(client, customer, kind="top_up", amount=amount, bank_account="6222020200112233")
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


def balance(client: httpx.Client, customer: Customer, account_id: str | None = None) -> int:
    reply = client.get(f"/v1/accounts/{account_id or customer.wallet_id}", headers=customer.auth)
    assert reply.status_code == 200, reply.text
    return int(reply.json()["ledger_balance"])


def staff_token(settings: Settings, role: str = "admin", username: str | None = None) -> str:
    database = Database(settings.database_url)
    try:
        _staff, issued = database.transact(
            lambda session: identity.create_staff(
                session,
                settings,
                username=username or f"{role}-{uuid.uuid4().hex[:8]}",
                role=role,
                password=None,
            )
        )
    finally:
        database.dispose()
    return issued.token


def staff_auth(settings: Settings, role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {staff_token(settings, role)}"}


def set_tier(client: httpx.Client, settings: Settings, customer: Customer, tier: int) -> None:
    reply = client.put(
        f"/v1/customers/{customer.id}/kyc-tier",
        headers=staff_auth(settings, "operations"),
        json={"tier": tier},
    )
    assert reply.status_code == 200, reply.text


def create_merchant(
    client: httpx.Client, settings: Settings, name: str, owner: Customer | None = None
) -> dict[str, Any]:
    reply = client.post(
        "/v1/merchants",
        headers=staff_auth(settings, "operations"),
        json={"name": name, "owner_customer_id": owner.id if owner else None},
    )
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


def invariants(client: httpx.Client, settings: Settings) -> dict[str, Any]:
    reply = client.get("/v1/ledger/invariants", headers=staff_auth(settings, "auditor"))
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def payment_count(client: httpx.Client, settings: Settings) -> int:
    auth = staff_auth(settings, "viewer")
    count, cursor = 0, None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/payments", headers=auth, params=params).json()
        count += len(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return count
