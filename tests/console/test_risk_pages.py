"""The console's Risk pages: the review queue (approve, reject, four-eyes), alerts
(acknowledge, close), the decisions chart, and the explanation of one decision."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from payguard import clock
from payguard.app import create_app
from payguard.risk import service as risk
from payguard.settings import Settings
from tests.conftest import make_settings
from tests.console.test_console import login, make_staff
from tests.factories import Customer, balance, pay, register, staff_auth
from tests.risk.test_engine import TEST_RULES, funded, publish

REVIEW_AMOUNT = 77_700  # TEST_RULES: held for review
LARGE_REVIEW_AMOUNT = 2_000_000  # held, and above the four-eyes line of 10,000.00
BLOCK_AMOUNT = 66_600  # blocked, severe (the wallet freezes), with a customer tip


@pytest.fixture
def risk_settings(database_url: str, tmp_path: Path) -> Settings:
    # Reload at once: the published rule set applies to the very next payment.
    return make_settings(database_url, tmp_path, risk_reload_seconds=0)


@pytest.fixture
def client(risk_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(risk_settings), raise_server_exceptions=False) as test_client:
        publish(test_client, risk_settings, TEST_RULES)
        make_staff(risk_settings, "analyst", "risk_analyst")
        make_staff(risk_settings, "checker", "risk_analyst")
        make_staff(risk_settings, "watcher", "viewer")
        yield test_client


def held_payment(
    client: TestClient, settings: Settings, amount: int = REVIEW_AMOUNT, tier: int = 2
) -> tuple[Customer, Customer, str]:
    payer = funded(client, settings, "payer", tier=tier)
    payee = register(client, f"payee-{uuid.uuid4().hex[:6]}")
    reply = pay(client, payer, amount=amount, kind="p2p", payee_username=payee.username)
    assert reply.status_code == 202, reply.text
    assert reply.json()["status"] == "held_for_review"
    return payer, payee, str(reply.json()["id"])


def payment_status(client: TestClient, customer: Customer, payment_id: str) -> str:
    reply = client.get(f"/v1/payments/{payment_id}", headers=customer.auth)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["status"])


def queue_ids(client: TestClient) -> list[str]:
    page = client.get("/console/risk")
    assert page.status_code == 200, page.text
    return re.findall(r"/console/risk/reviews/(pay_\w+)/reject", page.text)


def decide(
    client: TestClient, csrf: str, payment_id: str, verdict: str, reason: str
) -> httpx.Response:
    return client.post(
        f"/console/risk/reviews/{payment_id}/{verdict}",
        data={"csrf_token": csrf, "reason": reason},
        follow_redirects=False,
    )


# ---------------------------------------------------------------- the review queue


def test_an_analyst_approves_a_held_payment_from_the_queue(
    client: TestClient, risk_settings: Settings
) -> None:
    payer, payee, payment_id = held_payment(client, risk_settings)
    csrf = login(client, "analyst")
    page = client.get("/console/risk")
    assert page.status_code == 200
    html = page.text
    assert 'href="/console/risk" class="active"' in html  # in the nav
    assert "Review queue" in html and "777.00 CNY" in html
    assert "TEST_REVIEW" in html and "test-review matched" in html
    assert f"/console/risk/decisions/{payment_id}" in html
    assert f"/console/risk/reviews/{payment_id}/approve" in html
    assert "needs a second analyst)" not in html  # below the four-eyes line
    assert queue_ids(client) == [payment_id]

    done = decide(client, csrf, payment_id, "approve", "called the customer: genuine rent")
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/console/risk?notice=approved"
    after = client.get(done.headers["location"])
    assert "Approved: the held payment was posted" in after.text
    assert payment_id not in queue_ids(client)
    assert payment_status(client, payer, payment_id) == "confirmed"
    assert balance(client, payee) == REVIEW_AMOUNT

    # Deciding twice is a domain problem, shown as the console's error page.
    again = decide(client, csrf, payment_id, "approve", "once more")
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("text/html")
    assert "not held for review" in again.text and "Back to the dashboard" in again.text


def test_rejecting_returns_the_funds_and_needs_a_reason(
    client: TestClient, risk_settings: Settings
) -> None:
    payer = funded(client, risk_settings, "payer")
    payee = register(client, f"payee-{uuid.uuid4().hex[:6]}")
    before = balance(client, payer)
    reply = pay(client, payer, amount=REVIEW_AMOUNT, kind="p2p", payee_username=payee.username)
    payment_id = reply.json()["id"]
    csrf = login(client, "analyst")

    no_reason = decide(client, csrf, payment_id, "reject", "  ")
    assert no_reason.status_code == 400
    assert "give a reason" in no_reason.text
    assert payment_status(client, payer, payment_id) == "held_for_review"

    done = decide(client, csrf, payment_id, "reject", "customer did not make it")
    assert done.status_code == 303
    assert done.headers["location"] == "/console/risk?notice=rejected"
    assert "the funds are back with the payer" in client.get(done.headers["location"]).text
    assert payment_status(client, payer, payment_id) == "failed"
    assert balance(client, payer) == before
    assert balance(client, payee) == 0
    assert payment_id not in queue_ids(client)
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.read() as session:
        assert risk.labels_for(session, [payment_id]) == {payment_id: "fraud"}

    unknown = decide(client, csrf, payment_id, "shrug", "not a verdict")
    assert unknown.status_code == 404


def test_a_large_approval_files_a_four_eyes_request(
    client: TestClient, risk_settings: Settings
) -> None:
    payer, payee, payment_id = held_payment(
        client, risk_settings, amount=LARGE_REVIEW_AMOUNT, tier=3
    )
    csrf = login(client, "analyst")
    page = client.get("/console/risk").text
    assert "Approve (needs a second analyst)" in page
    assert "this files a four-eyes request" in page

    asked = decide(client, csrf, payment_id, "approve", "large but genuine")
    assert asked.status_code == 303
    assert asked.headers["location"] == "/console/risk?notice=approval_requested"
    after = client.get(asked.headers["location"]).text
    assert "filed as a request" in after and 'href="/console/approvals"' in after
    assert "waiting for a second analyst" in after
    assert payment_status(client, payer, payment_id) == "held_for_review"
    assert balance(client, payee) == 0
    pending = client.get(
        "/v1/approvals", params={"status": "pending"}, headers=staff_auth(risk_settings)
    ).json()
    [request] = [item for item in pending if item["target"] == payment_id]
    assert request["action"] == "risk.review_release"

    # The second analyst approves on the Approvals page; the payment posts.
    client.post("/console/logout", data={"csrf_token": csrf})
    checker_csrf = login(client, "checker")
    approved = client.post(
        f"/console/approvals/{request['id']}/approve",
        data={"csrf_token": checker_csrf, "note": "evidence checked"},
        follow_redirects=False,
    )
    assert approved.status_code == 303, approved.text
    assert payment_status(client, payer, payment_id) == "confirmed"
    assert balance(client, payee) == LARGE_REVIEW_AMOUNT
    assert payment_id not in queue_ids(client)


# ---------------------------------------------------------------- alerts


def test_acknowledging_and_closing_an_alert(client: TestClient, risk_settings: Settings) -> None:
    payer = funded(client, risk_settings, "payer")
    payee = register(client, f"payee-{uuid.uuid4().hex[:6]}")
    blocked = pay(client, payer, amount=BLOCK_AMOUNT, kind="p2p", payee_username=payee.username)
    assert blocked.status_code == 422, blocked.text
    payment_id = blocked.json()["id"]
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.read() as session:
        [alert] = [
            item
            for item in risk.list_alerts(session, status="active", kind="block")[0]
            if item.payment_id == payment_id
        ]
        alert_id = alert.id

    csrf = login(client, "analyst")
    page = client.get("/console/risk").text
    assert "payment blocked: TEST_BLOCK" in page and "critical" in page
    assert f"/console/risk/alerts/{alert_id}/acknowledge" in page
    assert f"/console/risk/alerts/{alert_id}/close" in page

    taken = client.post(
        f"/console/risk/alerts/{alert_id}/acknowledge",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert taken.status_code == 303
    assert taken.headers["location"] == "/console/risk?notice=acknowledged"
    assert "Alert acknowledged" in client.get(taken.headers["location"]).text
    with services.db.read() as session:
        alert = risk.get_alert(session, alert_id)
        assert alert.status == "acknowledged" and alert.assignee

    no_disposition = client.post(
        f"/console/risk/alerts/{alert_id}/close",
        data={"csrf_token": csrf, "disposition": "whatever"},
        follow_redirects=False,
    )
    assert no_disposition.status_code == 400
    assert "choose a disposition" in no_disposition.text

    closed = client.post(
        f"/console/risk/alerts/{alert_id}/close",
        data={"csrf_token": csrf, "disposition": "fraud", "note": "confirmed with the bank"},
        follow_redirects=False,
    )
    assert closed.status_code == 303
    assert closed.headers["location"] == "/console/risk?notice=closed"
    after = client.get(closed.headers["location"]).text
    assert "Alert closed" in after
    assert f"/console/risk/alerts/{alert_id}/" not in after
    with services.db.read() as session:
        alert = risk.get_alert(session, alert_id)
        assert (alert.status, alert.disposition, alert.note) == (
            "closed",
            "fraud",
            "confirmed with the bank",
        )
        assert risk.labels_for(session, [payment_id]) == {payment_id: "fraud"}

    twice = client.post(
        f"/console/risk/alerts/{alert_id}/close",
        data={"csrf_token": csrf, "disposition": "fraud"},
        follow_redirects=False,
    )
    assert twice.status_code == 409
    assert "already closed" in twice.text
    missing = client.post(
        "/console/risk/alerts/alr_00000000000000000000000000000000/acknowledge",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert missing.status_code == 404


def test_a_review_alert_of_a_held_payment_is_resolved_in_the_queue(
    client: TestClient, risk_settings: Settings
) -> None:
    payer, _, payment_id = held_payment(client, risk_settings)
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.read() as session:
        [alert] = [
            item
            for item in risk.list_alerts(session, status="active", kind="review")[0]
            if item.payment_id == payment_id
        ]
        alert_id = alert.id
    csrf = login(client, "analyst")
    page = client.get("/console/risk").text
    assert f"/console/risk/alerts/{alert_id}/acknowledge" in page
    assert f"/console/risk/alerts/{alert_id}/close" not in page
    refused = client.post(
        f"/console/risk/alerts/{alert_id}/close",
        data={"csrf_token": csrf, "disposition": "no_action"},
        follow_redirects=False,
    )
    assert refused.status_code == 409
    assert "approve or reject it in the review queue" in refused.text
    assert payment_id in queue_ids(client)
    assert payment_status(client, payer, payment_id) == "held_for_review"


# ---------------------------------------------------------------- who may do what


def test_a_viewer_may_not_open_the_risk_pages(client: TestClient, risk_settings: Settings) -> None:
    _, _, payment_id = held_payment(client, risk_settings)
    csrf = login(client, "watcher")
    for path in ("/console/risk", f"/console/risk/decisions/{payment_id}"):
        reply = client.get(path)
        assert reply.status_code == 403, path
        assert "risk:read" in reply.text
        assert payment_id not in reply.text
    refused = decide(client, csrf, payment_id, "approve", "viewer tries")
    assert refused.status_code == 403
    payment_page = client.get(f"/console/payments/{payment_id}")
    assert payment_page.status_code == 200
    assert f"/console/risk/decisions/{payment_id}" not in payment_page.text


@pytest.mark.parametrize("token", [None, "", "0" * 64])
def test_risk_forms_without_a_valid_token_are_refused(
    client: TestClient, risk_settings: Settings, token: str | None
) -> None:
    payer, _, payment_id = held_payment(client, risk_settings)
    login(client, "analyst")
    data = {"reason": "cross-site attempt"}
    if token is not None:
        data["csrf_token"] = token
    reply = client.post(
        f"/console/risk/reviews/{payment_id}/approve", data=data, follow_redirects=False
    )
    assert reply.status_code == 403
    assert "security token" in reply.text
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.read() as session:
        [alert] = [
            item
            for item in risk.list_alerts(session, status="active", kind="review")[0]
            if item.payment_id == payment_id
        ]
    closing = client.post(
        f"/console/risk/alerts/{alert.id}/acknowledge", data=data, follow_redirects=False
    )
    assert closing.status_code == 403
    assert payment_status(client, payer, payment_id) == "held_for_review"
    with services.db.read() as session:
        assert risk.get_alert(session, alert.id).status == "open"


def test_anonymous_visitors_go_to_login(client: TestClient) -> None:
    reply = client.get("/console/risk", follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"].startswith("/console/login")


# ---------------------------------------------------------------- charts and explanations


def test_the_risk_page_charts_decisions_per_day(
    client: TestClient, risk_settings: Settings
) -> None:
    held_payment(client, risk_settings)  # a top-up (allow) and a p2p (review)
    login(client, "analyst")
    html = client.get("/console/risk").text
    assert "Decisions per day, last 14 days" in html
    assert "<svg" in html and 'class="seg allow"' in html and 'class="seg review"' in html
    # Every attempt is a decision (a challenged top-up and its step-up retry count twice).
    services = client.app.state.services  # type: ignore[attr-defined]
    now = clock.now()
    with services.db.read() as session:
        actions = [
            receipt.action
            for receipt in risk.receipts_between(
                session, now - timedelta(days=1), now + timedelta(days=1)
            )
        ]
    assert actions.count("review") == 1
    total = len(actions)
    share = f"{100 * (total - actions.count('allow')) / total:.1f}%"
    assert f"{total} decisions · {total - actions.count('allow')} not allowed ({share})" in html
    assert f"{total} decisions in the 14 days" in html  # the chart's accessible description
    assert f"{actions.count('review')} review" in html


def test_the_decision_page_explains_reasons_rule_hits_and_contributions(
    client: TestClient, risk_settings: Settings
) -> None:
    _, _, payment_id = held_payment(client, risk_settings)
    services = client.app.state.services  # type: ignore[attr-defined]

    def explained_by_a_model(session: object) -> None:
        receipt = risk.receipt_of_payment(session, payment_id)  # type: ignore[arg-type]
        receipt.model_version = "m-test-1"
        receipt.model_score = 0.91
        receipt.contributions = [
            {"feature": "amount", "value": REVIEW_AMOUNT, "contribution": 1.25},
            {"feature": "payee_new", "value": 1, "contribution": 0.4},
            {"feature": "device_known", "value": 1, "contribution": -0.3},
        ]

    services.db.transact(explained_by_a_model)
    login(client, "analyst")
    page = client.get(f"/console/risk/decisions/{payment_id}")
    assert page.status_code == 200, page.text
    html = page.text
    assert "review" in html and "TEST_REVIEW" in html
    assert "test-review matched" in html and "test-review 命中" in html
    assert "test-shadow" in html and '<span class="badge muted">shadow</span>' in html
    assert "1 active · 1 shadow" in html
    assert '<svg class="chart contributions"' in html
    assert html.count('class="contrib up"') == 2 and html.count('class="contrib down"') == 1
    assert "amount = 77700" in html and "+1.250" in html and "-0.300" in html
    assert "payer_inflow_sum_24h" in html  # a non-zero feature
    assert "m-test-1" in html and "0.910" in html
    assert f"/console/risk/reviews/{payment_id}/approve" in html  # still held: decide here

    missing = client.get("/console/risk/decisions/pay_0000000000000000000000000000dead")
    assert missing.status_code == 404
    assert "Back to the dashboard" in missing.text


def test_a_blocked_decision_shows_the_customer_tip_and_no_model(
    client: TestClient, risk_settings: Settings
) -> None:
    payer = funded(client, risk_settings, "payer")
    payee = register(client, f"payee-{uuid.uuid4().hex[:6]}")
    blocked = pay(client, payer, amount=BLOCK_AMOUNT, kind="p2p", payee_username=payee.username)
    payment_id = blocked.json()["id"]
    login(client, "analyst")
    html = client.get(f"/console/risk/decisions/{payment_id}").text
    assert "block" in html and "TEST_BLOCK" in html
    assert "Scammers pose as customer service." in html and "骗子常冒充客服。" in html
    assert "No model was active" in html
    assert '<svg class="chart contributions"' not in html
    assert f"/console/risk/reviews/{payment_id}/" not in html  # not held: nothing to decide


def test_the_payment_page_links_to_its_decision(
    client: TestClient, risk_settings: Settings
) -> None:
    _, _, payment_id = held_payment(client, risk_settings)
    login(client, "analyst")
    page = client.get(f"/console/payments/{payment_id}")
    assert page.status_code == 200
    assert f'href="/console/risk/decisions/{payment_id}">Risk decision →</a>' in page.text
    assert client.get(f"/console/risk/decisions/{payment_id}").status_code == 200
