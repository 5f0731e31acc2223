"""Each playbook action changes the platform as stated, through the real API, and its
recovery step restores it — on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from payguard.client import PayguardClient, PayguardError
from payguard.db.engine import Database
from payguard.identity import password_reset
from payguard.incidents import service as incidents
from payguard.ledger import service as ledger
from payguard.ledger.models import SystemAccount
from payguard.risk.models import ListEntry
from payguard.settings import Settings
from tests.factories import (
    PASSWORD,
    Customer,
    balance,
    create_merchant,
    database_of,
    invariants,
    last_code,
    pay,
    register,
    register_device,
    staff_token,
    top_up,
)
from tests.incidents.helpers import open_one


def _db(client: TestClient) -> Database:
    found: Database = client.app.state.services.db  # type: ignore[attr-defined]
    return found


def open_incident(client: TestClient, settings: Settings, links: list[tuple[str, str]]) -> str:
    def work(session: Any) -> str:
        return open_one(session, settings, links=links).id

    result: str = _db(client).transact(work)
    return result


def staff(settings: Settings, role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {staff_token(settings, role)}"}


def start(
    client: TestClient,
    auth: dict[str, str],
    incident_id: str,
    playbook: str,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    reply = client.post(
        f"/v1/incidents/{incident_id}/playbook-runs",
        headers=auth,
        json={"playbook": playbook, "params": params or {}},
    )
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


def waiting(run: dict[str, Any]) -> list[int]:
    return [step["position"] for step in run["steps"] if step["status"] == "waiting_approval"]


def approve(
    client: TestClient, auth: dict[str, str], run: dict[str, Any], position: int
) -> dict[str, Any]:
    reply = client.post(
        f"/v1/playbook-runs/{run['id']}/steps/{position}/approve", headers=auth, json={}
    )
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


def recover(client: TestClient, auth: dict[str, str], run: dict[str, Any]) -> dict[str, Any]:
    reply = client.post(f"/v1/playbook-runs/{run['id']}/recover", headers=auth)
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


def step(run: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [item for item in run["steps"] if item["name"] == name]
    assert found, f"no step {name} in {[item['name'] for item in run['steps']]}"
    return found[0]


def incident_status(client: TestClient, incident_id: str) -> str:
    with _db(client).read() as session:
        return incidents.get_incident(session, incident_id).status


def login(client: httpx.Client, customer: Customer, password: str = PASSWORD) -> httpx.Response:
    return client.post("/v1/sessions", json={"username": customer.username, "password": password})


def reset_password(client: TestClient, customer: Customer, new_password: str) -> None:
    """The signed-out reset: a code to the registered phone, then the new password."""
    sent = client.post("/v1/password-reset", json={"username": customer.username})
    assert sent.status_code == 202, sent.text
    code = last_code(database_of(client), customer.phone)
    done = client.post(
        "/v1/password-reset/confirm",
        json={"username": customer.username, "code": code, "new_password": new_password},
    )
    assert done.status_code == 204, done.text
    fresh = login(client, customer, new_password)
    assert fresh.status_code == 201, fresh.text
    customer.token = fresh.json()["token"]


# ------------------------------------------------------------------ seed 002


def test_leaked_merchant_credentials_secures_funds_suspends_payouts_and_recovery_restores(
    client: TestClient, settings: Settings
) -> None:
    owner = register(client, f"owner{uuid.uuid4().hex[:6]}")
    buyer = register(client, f"buyer{uuid.uuid4().hex[:6]}")
    shop = create_merchant(client, settings, "Export Co", owner=owner)
    top_up(client, buyer, 100_000)
    assert pay(client, buyer, kind="merchant", merchant_id=shop["id"], amount=40_000).is_success
    assert balance(client, owner, shop["account_id"]) == 40_000
    incident_id = open_incident(
        client, settings, [("merchant", shop["id"]), ("customer", owner.id)]
    )
    commander, admin = staff(settings, "incident_commander"), staff(settings)

    run = start(client, commander, incident_id, "leaked-merchant-credentials")
    # Funds secured, payouts suspended, owner signed out and locked out of the password;
    # the staff steps have no staff id to act on and say so; key rotation waits.
    assert step(run, "secure-funds")["status"] == "done"
    assert step(run, "secure-funds")["result"]["amount"] == 40_000
    assert step(run, "suspend-payouts")["status"] == "done"
    assert step(run, "revoke-staff-sessions")["status"] == "skipped"
    assert "staff_id" in step(run, "revoke-staff-sessions")["error"]
    assert run["status"] == "waiting_approval"
    assert waiting(run) == [step(run, "rotate-keys")["position"]]
    # 9:25, the report to the general manager (the internal desk): sent through notify.
    report = step(run, "report")
    assert report["status"] == "done" and report["result"]["sent"] is True, report

    assert balance(client, buyer) == 100_000 - 40_000
    with _db(client).read() as session:
        suspense = ledger.system_account_id(session, SystemAccount.SUSPENSE, "CNY")
        assert ledger.get_balance(session, suspense).ledger == 40_000
        assert ledger.get_balance(session, shop["account_id"]).ledger == 0
    assert invariants(client, settings)["ok"] is True
    # The owner's session is gone and the leaked password signs in no more.
    assert client.get("/v1/me", headers=owner.auth).status_code == 401
    refused = login(client, owner)
    assert refused.status_code == 403
    assert refused.json()["code"] == "password-reset-required"
    assert "/v1/password-reset" in refused.json()["detail"]
    # A wrong password still gets the one generic answer.
    assert login(client, owner, "not-the-password-1").json()["code"] == "not-authenticated"

    # Four-eyes: the rotation runs only when a second person (holding keys:rotate) says so.
    position = waiting(run)[0]
    same = client.post(
        f"/v1/playbook-runs/{run['id']}/steps/{position}/approve", headers=commander, json={}
    )
    assert same.status_code == 403 and "four-eyes" in same.json()["detail"]
    other_commander = staff(settings, "incident_commander")
    lacking = client.post(
        f"/v1/playbook-runs/{run['id']}/steps/{position}/approve", headers=other_commander, json={}
    )
    assert lacking.status_code == 403 and "keys:rotate" in lacking.json()["detail"]
    run = approve(client, admin, run, position)
    assert step(run, "rotate-keys")["result"]["rotated"]["kek"]["active_kek"] == "kek-2"
    assert run["status"] == "completed"
    assert incident_status(client, incident_id) == "contained"

    # The owner resets the password through the phone, and still cannot drain the shop.
    reset_password(client, owner, "a-brand-new-passw0rd")
    top_up(client, owner, 50_000)
    shop_money = pay(
        client,
        owner,
        kind="withdrawal",
        amount=1_000,
        bank_account="6222020200112233",
        payer_account_id=shop["account_id"],
    )
    assert shop_money.status_code == 409, shop_money.text
    assert shop_money.json()["code"] == "channel-suspended"
    assert "merchant account are suspended" in shop_money.json()["detail"]
    # Customers still pay the shop; the owner's own wallet still withdraws.
    assert pay(client, buyer, kind="merchant", merchant_id=shop["id"], amount=5_000).is_success
    own = pay(client, owner, kind="withdrawal", amount=1_000, bank_account="6222020200112233")
    assert own.status_code == 201, own.text

    # Recovery: payouts resume at once; the secured money returns only with four eyes.
    back = recover(client, commander, run)
    assert back["phase"] == "recovery" and back["status"] == "waiting_approval"
    assert step(back, "undo-suspend-payouts")["status"] == "done"
    release = step(back, "undo-secure-funds")
    assert release["status"] == "waiting_approval"
    back = approve(client, admin, back, release["position"])
    assert step(back, "undo-secure-funds")["result"]["amount"] == 40_000
    assert back["status"] == "completed"
    assert balance(client, owner, shop["account_id"]) == 40_000 + 5_000
    with _db(client).read() as session:
        assert ledger.get_balance(session, suspense).ledger == 0
    assert invariants(client, settings)["ok"] is True
    paid_out = pay(
        client,
        owner,
        kind="withdrawal",
        amount=1_000,
        bank_account="6222020200112233",
        payer_account_id=shop["account_id"],
    )
    assert paid_out.status_code == 201, paid_out.text
    assert incident_status(client, incident_id) == "recovered"
    containment = client.get(f"/v1/playbook-runs/{run['id']}", headers=commander).json()
    assert containment["status"] == "recovered"
    assert step(containment, "suspend-payouts")["status"] == "undone"
    # Every step is on the incident's timeline.
    with _db(client).read() as session:
        lines = incidents.timeline(session, incident_id)
    actions_logged = [line for line in lines if line.kind == "action"]
    assert len(actions_logged) >= len(run["steps"]) + len(back["steps"])


# ------------------------------------------------------------------ channels


def test_suspended_withdrawals_reject_through_the_sdk_and_resume_restores(
    client: TestClient, settings: Settings
) -> None:
    db = database_of(client)
    phone = "+86139" + uuid.uuid4().int.__str__()[:8]
    sdk = PayguardClient(http=client)
    name = f"sdk{uuid.uuid4().hex[:6]}"
    sdk.register(name, "sdk-password-123", "Sdk User", phone=phone)
    sdk.login(name, "sdk-password-123")
    sdk.request_code("sms", "device")
    sdk.register_device("phone", factor="otp", code=last_code(db, phone))

    def by_sms(problem: dict[str, Any]) -> tuple[str, str]:
        sdk.send_challenge_code(problem["challenge_id"], "sms")
        return "sms", last_code(db, phone)

    sdk.step_up_handler = by_sms
    sdk.top_up(50_000, "6222020200001111")
    incident_id = open_incident(client, settings, [])
    commander, admin = staff(settings, "incident_commander"), staff(settings)
    reply = client.post(
        f"/v1/incidents/{incident_id}/playbook-runs",
        headers=commander,
        json={"playbook": "stop-withdrawals"},
    )
    assert reply.status_code == 404 and "known:" in reply.json()["detail"]

    from payguard.payments import channels

    def suspend(session: Any) -> str:
        found, created = channels.suspend(
            session, scope="withdrawals", reason="drill", by="stf_x", incident_id=incident_id
        )
        assert created
        return found.id

    suspension = _db(client).transact(suspend)
    try:
        sdk.withdraw(10_000, "6222020200001111")
        raise AssertionError("a suspended channel must refuse")
    except PayguardError as error:
        assert error.status == 409 and error.code == "channel-suspended"
        assert "Withdrawals are suspended platform-wide" in error.detail
    assert sdk.wallet().ledger_balance == 50_000  # nothing charged, no hold
    shown = client.get("/v1/controls", headers=admin).json()
    assert [item["scope"] for item in shown["channel_suspensions"]] == ["withdrawals"]
    _db(client).transact(
        lambda session: channels.resume(session, by="stf_x", suspension_id=suspension)
    )
    out = sdk.withdraw(10_000, "6222020200001111")
    assert out.succeeded


# ------------------------------------------------------------------ account takeover


def test_account_takeover_playbook_contains_and_recovery_restores(
    client: TestClient, settings: Settings
) -> None:
    victim = register(client, f"victim{uuid.uuid4().hex[:6]}")
    friend = register(client, f"friend{uuid.uuid4().hex[:6]}", device=False)
    top_up(client, victim, 80_000)
    assert victim.device_id is not None
    incident_id = open_incident(
        client,
        settings,
        [("account", victim.wallet_id), ("customer", victim.id), ("device", victim.device_id)],
    )
    commander, admin = staff(settings, "incident_commander"), staff(settings)
    run = start(client, commander, incident_id, "account-takeover")
    assert run["status"] == "completed", run
    assert incident_status(client, incident_id) == "contained"

    # Frozen wallet, no session, the phished password dead, the device revoked and listed.
    assert client.get("/v1/me", headers=victim.auth).status_code == 401
    assert login(client, victim).json()["code"] == "password-reset-required"
    with _db(client).read() as session:
        assert ledger.get_balance(session, victim.wallet_id).status == "frozen"
        listed = session.scalars(
            select(ListEntry).where(
                ListEntry.value == victim.device_id, ListEntry.removed_at.is_(None)
            )
        ).all()
        assert [entry.list_name for entry in listed] == ["block"]
    reset_password(client, victim, "recovered-passw0rd!")
    register_device(client, victim)  # the old device is revoked: a new one, with a code
    frozen = pay(
        client, victim, step_up=True, kind="p2p", amount=1_000, payee_account_id=friend.wallet_id
    )
    assert frozen.status_code == 409 and frozen.json()["code"] == "account-frozen", frozen.text

    back = recover(client, commander, run)
    unfreeze = step(back, "undo-freeze-wallet")
    assert unfreeze["status"] == "waiting_approval"
    back = approve(client, admin, back, unfreeze["position"])
    assert back["status"] == "completed", back
    assert incident_status(client, incident_id) == "recovered"
    with _db(client).read() as session:
        assert ledger.get_balance(session, victim.wallet_id).status == "active"
        still = session.scalar(
            select(func.count())
            .select_from(ListEntry)
            .where(ListEntry.value == victim.device_id, ListEntry.removed_at.is_(None))
        )
        assert still == 0
    # Step-up for this customer is lifted: a small payment to a paid payee goes straight on.
    assert pay(
        client, victim, kind="p2p", amount=1_000, payee_account_id=friend.wallet_id
    ).is_success
    again = pay(
        client, victim, step_up=False, kind="p2p", amount=1_000, payee_account_id=friend.wallet_id
    )
    assert again.status_code == 201, again.text


def test_step_up_segment_demands_step_up_until_lifted(
    client: TestClient, settings: Settings
) -> None:
    payer = register(client, f"payer{uuid.uuid4().hex[:6]}")
    payee = register(client, f"payee{uuid.uuid4().hex[:6]}", device=False)
    top_up(client, payer, 50_000)  # the device's first payment has passed step-up
    plain = pay(
        client, payer, step_up=False, kind="p2p", amount=500, payee_account_id=payee.wallet_id
    )
    assert plain.status_code == 201, plain.text
    incident_id = open_incident(client, settings, [("customer", payer.id)])
    commander = staff(settings, "incident_commander")
    run = start(client, commander, incident_id, "data-leak")
    assert step(run, "step-up-everyone")["status"] == "done"
    # data-leak also forces a reset of the linked customers: come back with a new password.
    reset_password(client, payer, "after-the-leak-passw0rd")
    asked = pay(
        client, payer, step_up=False, kind="p2p", amount=500, payee_account_id=payee.wallet_id
    )
    assert asked.status_code == 403 and asked.json()["code"] == "challenge-required"
    assert "incident:all" in asked.json()["reasons"]
    assert pay(client, payer, kind="p2p", amount=500, payee_account_id=payee.wallet_id).is_success
    back = recover(client, commander, run)
    assert step(back, "undo-step-up-everyone")["status"] == "done"
    after = pay(
        client, payer, step_up=False, kind="p2p", amount=500, payee_account_id=payee.wallet_id
    )
    assert after.status_code == 201, after.text


def test_forced_reset_of_staff_and_signed_out_reset_with_totp(
    client: TestClient, settings: Settings
) -> None:
    import pyotp

    from payguard.identity import service as identity

    secret = pyotp.random_base32()
    username = f"ops{uuid.uuid4().hex[:6]}"

    def make(session: Any) -> str:
        member, _ = identity.create_staff(
            session,
            settings,
            username=username,
            role="operations",
            password="old-staff-passw0rd",
            totp_secret=secret,
        )
        return member.id

    staff_id = _db(client).transact(make)
    totp = pyotp.TOTP(secret)
    first = client.post(
        "/v1/staff/sessions",
        json={"username": username, "password": "old-staff-passw0rd", "otp": totp.now()},
    )
    assert first.status_code == 201, first.text
    incident_id = open_incident(client, settings, [])
    run = start(
        client, staff(settings, "incident_commander"), incident_id, "insider-abuse",
        {"staff_id": staff_id},
    )  # fmt: skip
    # The provisioning token and the login session both end.
    assert step(run, "revoke-staff")["result"]["sessions_revoked"] == 2
    token = first.json()["token"]
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    with _db(client).read() as session:
        assert password_reset.is_required(session, "staff", staff_id)
    # The TOTP code was spent by the first login; the next time step is accepted.
    code = totp.at(int(time.time()) + 30)
    wrong = client.post(
        "/v1/password-reset/confirm",
        json={"kind": "staff", "username": username, "factor": "totp", "code": "000000",
              "new_password": "new-staff-passw0rd"},
    )  # fmt: skip
    assert wrong.status_code == 401 and wrong.json()["code"] == "not-authenticated"
    done = client.post(
        "/v1/password-reset/confirm",
        json={"kind": "staff", "username": username, "factor": "totp", "code": code,
              "new_password": "new-staff-passw0rd"},
    )  # fmt: skip
    assert done.status_code == 204, done.text
    with _db(client).read() as session:
        assert not password_reset.is_required(session, "staff", staff_id)


def test_block_ip_bites_on_payments_from_that_range_and_recovery_lifts_it(
    settings: Settings,
) -> None:
    from payguard.app import create_app

    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False, client=("203.0.113.7", 50000)) as client:
        mal = register(client, f"mal{uuid.uuid4().hex[:6]}")
        bystander = register(client, f"by{uuid.uuid4().hex[:6]}")
        payee = register(client, f"payee{uuid.uuid4().hex[:6]}", device=False)
        top_up(client, mal, 20_000)
        top_up(client, bystander, 20_000)
        incident_id = open_incident(client, settings, [])
        commander = staff(settings, "incident_commander")
        run = start(
            client, commander, incident_id, "credential-stuffing", {"ips": ["203.0.113.0/24"]}
        )
        assert step(run, "block-sources")["result"]["value"] == "203.0.113.0/24"
        assert step(run, "revoke-cracked")["status"] == "skipped"  # no customer linked
        blocked = pay(client, mal, kind="p2p", amount=1_000, payee_account_id=payee.wallet_id)
        assert blocked.status_code == 422, blocked.text
        assert blocked.json()["status"] == "rejected"
        codes = [reason["code"] for reason in blocked.json()["decision"]["reasons"]]
        assert "BLOCK_LISTED_PAYER" in codes
        back = recover(client, commander, run)
        assert back["status"] == "completed", back
        assert step(back, "undo-block-sources")["result"]["removed"] is True
        fine = pay(client, bystander, kind="p2p", amount=1_000, payee_account_id=payee.wallet_id)
        assert fine.status_code == 201, fine.text
