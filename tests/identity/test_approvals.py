"""Four-eyes approval: one person asks, a different one with the same permission approves,
the operation runs once; self-approval, the wrong role, expiry and rejection do nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from payguard import clock
from payguard.app import create_app
from payguard.db.engine import Database
from payguard.events import service as events
from payguard.identity import approvals
from payguard.ledger import service as ledger
from payguard.ledger.models import SystemAccount
from payguard.settings import Settings
from tests.factories import (
    PASSWORD,
    Customer,
    balance,
    invariants,
    pay,
    register,
    set_tier,
    staff_auth,
    top_up,
)


@pytest.fixture
def frozen() -> Iterator[clock.FrozenClock]:
    fixed = clock.FrozenClock(clock.now())
    previous = clock.set_clock(fixed)
    try:
        yield fixed
    finally:
        clock.set_clock(previous)


def ask(
    client: TestClient,
    auth: dict[str, str],
    action: str,
    target: str,
    reason: str = "ticket 4711",
    **params: Any,
) -> Any:
    return client.post(
        "/v1/approvals",
        headers=auth,
        json={"action": action, "target": target, "params": params, "reason": reason},
    )


def decide(client: TestClient, auth: dict[str, str], approval_id: str, verdict: str) -> Any:
    return client.post(f"/v1/approvals/{approval_id}/{verdict}", headers=auth, json={})


def tier_of(client: TestClient, settings: Settings, customer: Customer) -> int:
    reply = client.get(f"/v1/customers/{customer.id}", headers=staff_auth(settings, "viewer"))
    return int(reply.json()["kyc_tier"])


def test_the_maker_cannot_approve_and_a_second_person_executes_once(
    client: TestClient, settings: Settings, db: Database
) -> None:
    nina = register(client, "nina", device=False)
    maker, checker = staff_auth(settings, "operations"), staff_auth(settings, "compliance")
    asked = client.post(
        f"/v1/customers/{nina.id}/kyc-tier",
        headers=maker,
        json={"tier": 2, "reason": "passport checked by video call"},
    )
    assert asked.status_code == 202
    request = asked.json()
    assert request["status"] == "pending" and request["params"] == {"tier": 2}
    assert tier_of(client, settings, nina) == 0

    own = decide(client, maker, request["id"], "approve")
    assert own.status_code == 403 and "four-eyes" in own.json()["detail"]
    assert tier_of(client, settings, nina) == 0

    done = decide(client, checker, request["id"], "approve")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "executed"
    assert done.json()["result"] == {"from_tier": 0, "to_tier": 2}
    assert tier_of(client, settings, nina) == 2
    again = decide(client, staff_auth(settings, "operations"), request["id"], "approve")
    assert again.status_code == 409
    with db.read() as session:
        topics = [e.topic for e in events.recent(session, limit=100)]
    assert "approval.requested" in topics and "approval.executed" in topics
    assert topics.count("identity.kyc_tier_changed") == 1


def test_the_checker_needs_the_same_permission(client: TestClient, settings: Settings) -> None:
    omar = register(client, "omar", device=False)
    path = f"/v1/accounts/{omar.wallet_id}"
    client.post(
        path + "/freeze", headers=staff_auth(settings, "risk_analyst"), json={"reason": "ato"}
    )
    asked = client.post(
        path + "/unfreeze", headers=staff_auth(settings, "operations"), json={"reason": "cleared"}
    )
    assert asked.status_code == 202
    for role in ("viewer", "risk_analyst", "auditor", "compliance"):
        refused = decide(client, staff_auth(settings, role), asked.json()["id"], "approve")
        assert refused.status_code == 403, role
    assert client.get(path, headers=omar.auth).json()["status"] == "frozen"
    # A risk analyst may freeze but not even ask to unfreeze.
    analyst = client.post(
        path + "/unfreeze", headers=staff_auth(settings, "risk_analyst"), json={"reason": "mine"}
    )
    assert analyst.status_code == 403


def test_a_request_expires_unexecuted(
    client: TestClient, settings: Settings, db: Database, frozen: clock.FrozenClock
) -> None:
    pia = register(client, "pia", device=False)
    asked = client.post(
        f"/v1/customers/{pia.id}/kyc-tier",
        headers=staff_auth(settings, "operations"),
        json={"tier": 1, "reason": "documents"},
    ).json()
    frozen.advance(timedelta(hours=settings.approval_ttl_hours, seconds=1))
    late = decide(client, staff_auth(settings, "compliance"), asked["id"], "approve")
    assert late.status_code == 409 and "expired" in late.json()["detail"]
    listed = client.get(
        "/v1/approvals", params={"status": "expired"}, headers=staff_auth(settings, "auditor")
    )
    assert [row["id"] for row in listed.json()] == [asked["id"]]
    assert db.transact(approvals.expire_stale) == 1
    assert tier_of(client, settings, pia) == 0
    # Once expired, the same change may be asked for again.
    again = client.post(
        f"/v1/customers/{pia.id}/kyc-tier",
        headers=staff_auth(settings, "operations"),
        json={"tier": 1, "reason": "documents"},
    )
    assert again.status_code == 202


def test_reject_and_withdraw_execute_nothing(client: TestClient, settings: Settings) -> None:
    quin = register(client, "quin", device=False)
    maker = staff_auth(settings, "operations")
    first = client.post(
        f"/v1/customers/{quin.id}/kyc-tier", headers=maker, json={"tier": 3, "reason": "vip"}
    ).json()
    duplicate = client.post(
        f"/v1/customers/{quin.id}/kyc-tier", headers=maker, json={"tier": 3, "reason": "vip"}
    )
    assert duplicate.status_code == 409
    rejected = decide(client, staff_auth(settings, "compliance"), first["id"], "reject")
    assert rejected.json()["status"] == "rejected"
    second = client.post(
        f"/v1/customers/{quin.id}/kyc-tier", headers=maker, json={"tier": 3, "reason": "vip"}
    ).json()
    withdrawn = decide(client, maker, second["id"], "reject")
    assert withdrawn.json()["status"] == "cancelled"
    assert (
        decide(client, staff_auth(settings, "compliance"), second["id"], "approve").status_code
        == 409
    )
    assert tier_of(client, settings, quin) == 0


def test_bad_requests_leave_no_request_behind(client: TestClient, settings: Settings) -> None:
    rita = register(client, "rita", device=False)
    auth = staff_auth(settings, "admin")
    cases = [
        ask(client, auth, "kyc.tier_change", rita.id, tier=7),
        ask(client, auth, "kyc.tier_change", rita.id, tier=0),  # already there
        ask(client, auth, "kyc.tier_change", "cus_missing", tier=2),
        ask(client, auth, "kyc.tier_change", rita.id, tier=2, colour="red"),
        ask(client, auth, "account.unfreeze", rita.wallet_id),  # not frozen
        ask(client, auth, "launch.rockets", rita.id),
        ask(client, auth, "limits.override", rita.id, per_payment_max=-1),
    ]
    assert [reply.status_code for reply in cases] == [422, 422, 404, 422, 422, 422, 422]
    assert all("Traceback" not in reply.text for reply in cases)
    assert client.get("/v1/approvals", headers=auth).json() == []


def test_a_limit_override_lets_a_payment_through_until_it_lapses(
    client: TestClient, settings: Settings, frozen: clock.FrozenClock
) -> None:
    sara, tom = register(client, "sara"), register(client, "tom")
    top_up(client, sara, 40_000)
    big = 60_000  # above tier 0's single-payment limit of 500.00 CNY
    top_up(client, sara, 30_000)
    refused = pay(client, sara, kind="p2p", amount=big, payee_username="tom")
    assert refused.status_code == 422 and refused.json()["code"] == "limit-exceeded"
    asked = ask(
        client,
        staff_auth(settings, "compliance"),
        "limits.override",
        sara.id,
        reason="house purchase deposit",
        per_payment_max=100_000,
        daily_amount_max=200_000,
        daily_count_max=20,
        hours=2,
    )
    assert asked.status_code == 202
    decide(client, staff_auth(settings, "operations"), asked.json()["id"], "approve")
    assert pay(client, sara, kind="p2p", amount=big, payee_username="tom").status_code == 201
    assert balance(client, tom) == big
    frozen.advance(timedelta(hours=2, seconds=1))
    sara.token = client.post(
        "/v1/sessions", json={"username": "sara", "password": PASSWORD}
    ).json()["token"]  # the access token lapsed too
    lapsed = pay(client, sara, kind="p2p", amount=1_000, payee_username="tom")
    assert lapsed.status_code == 201  # within tier 0 again
    assert pay(client, sara, kind="p2p", amount=big, payee_username="tom").status_code == 422


def test_a_ledger_adjustment_posts_a_balanced_transfer_once(
    client: TestClient, settings: Settings, db: Database
) -> None:
    uma = register(client, "uma", device=False)
    suspense = db.transact(
        lambda session: ledger.system_account_id(session, SystemAccount.SUSPENSE, "CNY")
    )
    asked = ask(
        client,
        staff_auth(settings, "operations"),
        "ledger.adjustment",
        suspense,
        reason="return funds secured in incident INC-7",
        credit_account_id=uma.wallet_id,
        amount=12_345,
        currency="cny",
    )
    assert asked.status_code == 202, asked.text
    assert balance(client, uma) == 0
    done = decide(client, staff_auth(settings, "admin"), asked.json()["id"], "approve").json()
    assert done["status"] == "executed" and done["result"]["transfer_id"]
    assert balance(client, uma) == 12_345
    assert invariants(client, settings)["ok"]
    wrong_currency = ask(
        client,
        staff_auth(settings, "operations"),
        "ledger.adjustment",
        suspense,
        credit_account_id=uma.wallet_id,
        amount=1,
        currency="USD",
    )
    assert wrong_currency.status_code == 422


@pytest.fixture
def payout_client(settings: Settings) -> Iterator[TestClient]:
    # A low threshold keeps the test's amounts inside tier 2's limits.
    tuned = settings.model_copy(update={"payout_approval_threshold": 100_000})
    with TestClient(create_app(tuned), raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_large_payout_waits_for_two_people(payout_client: TestClient, settings: Settings) -> None:
    client = payout_client
    vic = register(client, "vic")
    set_tier(client, settings, vic, 2)
    top_up(client, vic, 500_000)
    small = pay(client, vic, kind="withdrawal", amount=99_999, bank_account="6222020200112233")
    assert small.status_code == 201 and small.json()["status"] == "confirmed"
    held = pay(client, vic, kind="withdrawal", amount=300_000, bank_account="6222020200112233")
    assert held.status_code == 202, held.text
    payment = held.json()
    assert payment["status"] == "held_for_review"
    wallet = client.get(f"/v1/accounts/{vic.wallet_id}", headers=vic.auth).json()
    assert wallet["available_balance"] < wallet["ledger_balance"]

    maker, checker = staff_auth(settings, "operations"), staff_auth(settings, "operations")
    asked = ask(client, maker, "payout.release", payment["id"], reason="customer called back")
    assert asked.status_code == 202
    assert decide(client, maker, asked.json()["id"], "approve").status_code == 403
    released = decide(client, checker, asked.json()["id"], "approve")
    assert released.status_code == 200, released.text
    assert released.json()["result"]["payment_status"] == "confirmed"
    after = client.get(f"/v1/payments/{payment['id']}", headers=vic.auth).json()
    assert after["status"] == "confirmed"
    assert [step["status"] for step in after["history"]][-3:] == [
        "held_for_review",
        "posted",
        "confirmed",
    ]
    assert invariants(client, settings)["ok"]
    # Released once: a second request for it is refused at the door.
    assert ask(client, maker, "payout.release", payment["id"]).status_code == 409


def test_a_held_payout_can_be_declined_by_one_person(
    payout_client: TestClient, settings: Settings
) -> None:
    client = payout_client
    wes = register(client, "wes")
    set_tier(client, settings, wes, 2)
    top_up(client, wes, 500_000)
    before = balance(client, wes)
    held = pay(client, wes, kind="withdrawal", amount=200_000, bank_account="6222020200112233")
    payment_id = held.json()["id"]
    viewer = client.post(
        f"/v1/payments/{payment_id}/decline",
        headers=staff_auth(settings, "viewer"),
        json={"reason": "no"},
    )
    assert viewer.status_code == 403
    declined = client.post(
        f"/v1/payments/{payment_id}/decline",
        headers=staff_auth(settings, "operations"),
        json={"reason": "beneficiary bank account is on a mule list"},
    )
    assert declined.status_code == 200 and declined.json()["status"] == "failed"
    wallet = client.get(f"/v1/accounts/{wes.wallet_id}", headers=wes.auth).json()
    assert wallet["ledger_balance"] == wallet["available_balance"] == before
    asked = ask(client, staff_auth(settings, "operations"), "payout.release", payment_id)
    assert asked.status_code == 409
    assert invariants(client, settings)["ok"]
