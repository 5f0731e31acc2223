"""Small helpers that make API tests read like the story they tell."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from payguard import clock
from payguard.client.signing import DeviceKey, sign_instruction
from payguard.db.engine import Database
from payguard.identity import notifications
from payguard.identity import service as identity
from payguard.settings import Settings

PASSWORD = "long-enough-password"


@dataclass
class Customer:
    id: str
    username: str
    token: str
    wallet_id: str
    phone: str = ""
    device_key: DeviceKey | None = None
    device_id: str | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Outbox:
    """Where a test reads the codes the outbox sender 'sent': the app's database, and its
    settings (the keyring that seals the messages)."""

    db: Database
    settings: Settings


def database_of(client: httpx.Client, db: Outbox | None = None) -> Outbox:
    """The outbox behind ``client``: a TestClient's app, or the one given (live servers)."""
    if db is not None:
        return db
    app = getattr(client, "app", None)
    if app is None:
        raise ValueError("a live-server client needs db= to read the message outbox")
    return Outbox(app.state.services.db, app.state.services.settings)


def last_code(outbox: Outbox, recipient: str) -> str:
    """The newest one-time code the outbox sender 'sent' to ``recipient``."""
    with outbox.db.read() as session:
        code = notifications.latest_sent_code(session, outbox.settings, recipient)
    assert code is not None, "no code was sent"
    return code


def register(
    client: httpx.Client,
    username: str,
    *,
    device: bool = True,
    db: Outbox | None = None,
) -> Customer:
    """A customer with a phone, a session and (by default) a registered device key."""
    phone = "+86138" + "".join(str(secrets.randbelow(10)) for _ in range(8))
    created = client.post(
        "/v1/customers",
        json={
            "username": username,
            "password": PASSWORD,
            "display_name": username.title(),
            "phone": phone,
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    token = client.post("/v1/sessions", json={"username": username, "password": PASSWORD})
    assert token.status_code == 201, token.text
    customer = Customer(
        body["id"], username, token.json()["token"], body["wallet_account_ids"][0], phone
    )
    if device:
        register_device(client, customer, db=db)
    return customer


def register_device(
    client: httpx.Client, customer: Customer, *, db: Outbox | None = None
) -> dict[str, Any]:
    """Prove a second factor by SMS code and register a fresh Ed25519 device key."""
    database = database_of(client, db)
    sent = client.post(
        "/v1/factors/otp", headers=customer.auth, json={"channel": "sms", "purpose": "device"}
    )
    assert sent.status_code in (200, 201, 202), sent.text
    key = DeviceKey.generate()
    reply = client.post(
        "/v1/devices",
        headers=customer.auth,
        json={
            "name": "test phone",
            "algorithm": key.algorithm,
            "public_key": key.public_pem,
            "factor": "otp",
            "code": last_code(database, customer.phone),
        },
    )
    assert reply.status_code == 201, reply.text
    customer.device_key, customer.device_id = key, reply.json()["id"]
    result: dict[str, Any] = reply.json()
    return result


def signed(customer: Customer, body: dict[str, Any], key: str, **extra: Any) -> dict[str, Any]:
    """``body`` as the customer's device would send it (unsigned if it has no device)."""
    if customer.device_key is None or customer.device_id is None:
        return {**body, **extra}
    return sign_instruction(
        body,
        key=customer.device_key,
        device_id=customer.device_id,
        idempotency_key=key,
        # The app's clock, which tests may freeze, is the device's clock too.
        now=clock.now(),
        **extra,
    )


def pass_challenge(
    client: httpx.Client, customer: Customer, challenge_id: str, db: Outbox | None = None
) -> None:
    """Complete a step-up challenge with an SMS code, as the customer would."""
    sent = client.post(
        f"/v1/challenges/{challenge_id}/code", headers=customer.auth, json={"channel": "sms"}
    )
    assert sent.status_code == 200, sent.text
    code = last_code(database_of(client, db), customer.phone)
    passed = client.post(
        f"/v1/challenges/{challenge_id}/verify",
        headers=customer.auth,
        json={"factor": "sms", "code": code},
    )
    assert passed.status_code == 200, passed.text


def pay(
    client: httpx.Client,
    customer: Customer,
    key: str | None = None,
    *,
    step_up: bool = True,
    db: Outbox | None = None,
    **body: Any,
) -> httpx.Response:
    """Submit a signed payment; a step-up challenge is passed by SMS unless step_up=False."""
    body.setdefault("currency", "CNY")
    key = key or str(uuid.uuid4())
    headers = {**customer.auth, "Idempotency-Key": key}
    reply = client.post("/v1/payments", headers=headers, json=signed(customer, body, key))
    if step_up and reply.status_code == 403 and reply.json().get("code") == "challenge-required":
        challenge_id = reply.json()["challenge_id"]
        pass_challenge(client, customer, challenge_id, db)
        reply = client.post(
            "/v1/payments",
            headers=headers,
            json=signed(customer, body, key, challenge_id=challenge_id),
        )
    return reply


def top_up(
    client: httpx.Client, customer: Customer, amount: int, db: Outbox | None = None
) -> dict[str, Any]:
    reply = pay(
        client, customer, kind="top_up", amount=amount, bank_account="6222020200112233", db=db
    )
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


def approved(
    client: httpx.Client, settings: Settings, requested: httpx.Response, checker: str = "compliance"
) -> dict[str, Any]:
    """Have a second staff member (of role ``checker``) approve a four-eyes request."""
    assert requested.status_code == 202, requested.text
    reply = client.post(
        f"/v1/approvals/{requested.json()['id']}/approve",
        headers=staff_auth(settings, checker),
        json={"note": "checked"},
    )
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    assert result["status"] == "executed", result
    return result


def set_tier(client: httpx.Client, settings: Settings, customer: Customer, tier: int) -> None:
    """Change a KYC tier the only way there is: one staff member asks, another approves."""
    requested = client.post(
        f"/v1/customers/{customer.id}/kyc-tier",
        headers=staff_auth(settings, "operations"),
        json={"tier": tier, "reason": "documents verified"},
    )
    approved(client, settings, requested)


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


def allow_list(client: httpx.Client, settings: Settings, customer: Customer) -> None:
    """Put a customer's wallet on the risk allow list: a scripted test payer (like a
    payroll account) is exempt from the velocity and habit rules."""
    reply = client.post(
        "/v1/risk/lists",
        headers=staff_auth(settings, "risk_analyst"),
        json={
            "list": "allow",
            "subject": "account",
            "value": customer.wallet_id,
            "reason": "test payer: scripted bursts of payments",
        },
    )
    assert reply.status_code == 201, reply.text
