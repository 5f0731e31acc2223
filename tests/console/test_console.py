"""The operations console: sign-in, pages, CSRF-protected freezes, headers, bad input."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient

from payguard import clock
from payguard.console import api as console_api
from payguard.db.engine import Database
from payguard.identity import service as identity
from payguard.identity import totp
from payguard.ledger import service as ledger
from payguard.settings import Settings
from tests import factories

STAFF_PASSWORD = "console-Passw0rd!"
PAGES = (
    "/console",
    "/console/payments",
    "/console/accounts",
    "/console/settlement",
)


@dataclass
class World:
    alice: factories.Customer
    alice_token: str
    alice_wallet: str
    bob_wallet: str
    top_up_id: str
    p2p_id: str


# TOTP secrets of this test's staff, and how many codes each has used: each sign-in
# needs a code of a later time step than the last (within the one-step drift window).
_STAFF_TOTP: dict[str, tuple[str, int]] = {}


def make_staff(settings: Settings, username: str, role: str) -> None:
    secret = pyotp.random_base32()
    _STAFF_TOTP[username] = (secret, 0)
    database = Database(settings.database_url)
    try:
        database.transact(
            lambda session: identity.create_staff(
                session,
                settings,
                username=username,
                role=role,
                password=STAFF_PASSWORD,
                totp_secret=secret,
            )
        )
    finally:
        database.dispose()


def totp_code(username: str) -> str:
    secret, used = _STAFF_TOTP[username.lower()]
    _STAFF_TOTP[username.lower()] = (secret, used + 1)
    return totp.code_at(secret, clock.now() + timedelta(seconds=30 * used))


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name}"
    return found.group(1)


def login(client: TestClient, username: str, password: str = STAFF_PASSWORD) -> str:
    """Sign in through the form; returns the page's CSRF token for later POSTs."""
    form = client.get("/console/login")
    assert form.status_code == 200
    reply = client.post(
        "/console/login",
        data={
            "username": username,
            "password": password,
            "otp": totp_code(username),
            "csrf_token": hidden(form.text, "csrf_token"),
            "next": "/console",
        },
        follow_redirects=False,
    )
    assert reply.status_code == 303, reply.text
    dashboard = client.get("/console")
    assert dashboard.status_code == 200
    return hidden(dashboard.text, "csrf_token")


def pay(client: TestClient, customer: factories.Customer, **body: object) -> dict[str, object]:
    reply = factories.pay(client, customer, **body)
    assert reply.status_code == 201, reply.text
    result: dict[str, object] = reply.json()
    return result


@pytest.fixture
def world(client: TestClient, settings: Settings) -> World:
    make_staff(settings, "ops", "admin")
    make_staff(settings, "watcher", "viewer")
    alice = factories.register(client, "alice")
    bob = factories.register(client, "bob", device=False)
    top_up = pay(client, alice, kind="top_up", amount=50_000, bank_account="6222000011112222")
    p2p = pay(
        client,
        alice,
        kind="p2p",
        amount=1_234,
        payee_username="bob",
        memo="<script>alert(1)</script>",
    )
    return World(
        alice=alice,
        alice_token=alice.token,
        alice_wallet=alice.wallet_id,
        bob_wallet=bob.wallet_id,
        top_up_id=str(top_up["id"]),
        p2p_id=str(p2p["id"]),
    )


def account_status(settings: Settings, account_id: str) -> str:
    database = Database(settings.database_url)
    try:
        with database.read() as session:
            return str(ledger.get_account(session, account_id).status)
    finally:
        database.dispose()


# ---------------------------------------------------------------- sign-in


def test_login_sets_a_strict_cookie_and_logout_revokes_it(client: TestClient, world: World) -> None:
    form = client.get("/console/login")
    assert 'name="password"' in form.text
    reply = client.post(
        "/console/login",
        data={
            "username": "OPS",
            "password": STAFF_PASSWORD,
            "otp": totp_code("ops"),
            "csrf_token": hidden(form.text, "csrf_token"),
            "next": "/console/payments",
        },
        follow_redirects=False,
    )
    assert reply.status_code == 303
    assert reply.headers["location"] == "/console/payments"
    cookie = next(
        value
        for value in reply.headers.get_list("set-cookie")
        if value.startswith("payguard_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http in the test client
    token = client.cookies.get("payguard_session")
    assert token

    page = client.get("/console")
    assert page.status_code == 200
    csrf = hidden(page.text, "csrf_token")
    # Logging out needs the form token too.
    assert client.post("/console/logout", data={}, follow_redirects=False).status_code == 403
    out = client.post("/console/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert out.headers["location"] == "/console/login"
    assert client.cookies.get("payguard_session") is None
    # The session is revoked server-side, not only forgotten by the browser.
    again = client.get(
        "/console", headers={"Cookie": f"payguard_session={token}"}, follow_redirects=False
    )
    assert again.status_code == 303
    assert again.headers["location"].startswith("/console/login")


def test_wrong_password_and_forged_login_form_are_refused(client: TestClient, world: World) -> None:
    form = client.get("/console/login")
    csrf = hidden(form.text, "csrf_token")
    wrong = client.post(
        "/console/login",
        data={"username": "ops", "password": "not-the-password", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert wrong.status_code == 401
    assert "not correct" in wrong.text
    assert "payguard_session" not in client.cookies
    # A login form posted from elsewhere has no matching token cookie.
    client.cookies.clear()
    forged = client.post(
        "/console/login",
        data={
            "username": "ops",
            "password": STAFF_PASSWORD,
            "otp": totp_code("ops"),
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert "payguard_session" not in client.cookies


def test_login_never_redirects_off_the_console(client: TestClient, world: World) -> None:
    form = client.get("/console/login")
    reply = client.post(
        "/console/login",
        data={
            "username": "ops",
            "password": STAFF_PASSWORD,
            "otp": totp_code("ops"),
            "csrf_token": hidden(form.text, "csrf_token"),
            "next": "https://evil.example/console",
        },
        follow_redirects=False,
    )
    assert reply.headers["location"] == "/console"


@pytest.mark.parametrize("path", [*PAGES, "/console/accounts/acc_x"])
def test_anonymous_visitors_are_sent_to_login(client: TestClient, path: str) -> None:
    reply = client.get(path, follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"].startswith("/console/login")


def test_anonymous_post_changes_nothing(
    client: TestClient, world: World, settings: Settings
) -> None:
    reply = client.post(
        f"/console/accounts/{world.alice_wallet}/freeze",
        data={"reason": "no session"},
        follow_redirects=False,
    )
    assert reply.status_code == 303
    assert account_status(settings, world.alice_wallet) == "active"


def test_customers_are_refused(client: TestClient, world: World) -> None:
    by_cookie = client.get("/console", headers={"Cookie": f"payguard_session={world.alice_token}"})
    assert by_cookie.status_code == 403
    assert "for staff" in by_cookie.text
    assert world.p2p_id not in by_cookie.text
    by_bearer = client.get(
        "/console/payments", headers={"Authorization": f"Bearer {world.alice_token}"}
    )
    assert by_bearer.status_code == 403


# ---------------------------------------------------------------- pages


def test_dashboard_shows_status_counts_volume_chart_and_ledger_check(
    client: TestClient, world: World
) -> None:
    login(client, "ops")
    page = client.get("/console")
    assert page.status_code == 200
    html = page.text
    assert "Payments by status" in html
    assert "Balanced" in html and "all invariants hold" in html
    assert "0.00 CNY" in html  # the sum of all CNY balances
    assert "512.34 CNY" in html  # settled today: 500.00 top-up + 12.34 p2p
    assert "<svg" in html and 'class="bar current"' in html
    assert "2 payments in the last 24 hours" in html
    assert world.p2p_id[-8:] in html  # in the recent payments table
    assert "<script>alert(1)</script>" not in html


def test_payments_list_filters_and_pages(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    login(client, "ops")
    listing = client.get("/console/payments")
    assert listing.status_code == 200
    assert world.p2p_id in listing.text and world.top_up_id in listing.text
    assert "12.34 CNY" in listing.text and "500.00 CNY" in listing.text

    failed = client.get("/console/payments", params={"status": "failed"})
    assert failed.status_code == 200
    assert world.p2p_id not in failed.text
    assert "No payments." in failed.text

    monkeypatch.setattr(console_api, "PAGE_SIZE", 1)
    first = client.get("/console/payments")
    assert world.p2p_id in first.text and world.top_up_id not in first.text
    next_link = re.search(r'href="(/console/payments\?cursor=[^"]+)" rel="next"', first.text)
    assert next_link
    second = client.get(next_link.group(1).replace("&amp;", "&"))
    assert second.status_code == 200
    assert world.top_up_id in second.text and world.p2p_id not in second.text


def test_payment_page_shows_instruction_decision_history_and_entries(
    client: TestClient, world: World
) -> None:
    login(client, "ops")
    page = client.get(f"/console/payments/{world.p2p_id}")
    assert page.status_code == 200
    html = page.text
    assert "12.34 CNY" in html
    assert "Risk decision" in html and "allow" in html
    for status in ("received", "verified", "assessed", "confirmed"):
        assert status in html
    assert world.alice_wallet[-8:] in html and world.bob_wallet[-8:] in html
    assert "Entries sum" in html
    # The memo is shown, escaped.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" not in html

    top_up = client.get(f"/console/payments/{world.top_up_id}").text
    assert "622200******2222" in top_up  # first 6 and last 4, as stored
    assert "6222000011112222" not in top_up


def test_accounts_list_and_account_page(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    login(client, "ops")
    listing = client.get("/console/accounts")
    assert listing.status_code == 200
    assert world.alice_wallet[-8:] in listing.text
    system = client.get("/console/accounts", params={"kind": "system"})
    assert system.status_code == 200
    assert world.alice_wallet[-8:] not in system.text
    assert "bank settlement" in system.text

    monkeypatch.setattr(console_api, "PAGE_SIZE", 1)
    first = client.get("/console/accounts", params={"kind": "customer_wallet"})
    assert 'rel="next"' in first.text

    page = client.get(f"/console/accounts/{world.alice_wallet}")
    assert page.status_code == 200
    html = page.text
    assert "alice" in html
    assert "487.66 CNY" in html  # 500.00 − 12.34
    assert "Statement, last 30 days" in html
    assert "Freeze account" in html
    assert world.p2p_id[-8:] in html  # statement line links to the payment


def test_settlement_page(client: TestClient, world: World) -> None:
    login(client, "ops")
    page = client.get("/console/settlement")
    assert page.status_code == 200
    assert "500.00 CNY" in page.text
    assert "in (top-ups)" in page.text
    empty = client.get("/console/settlement", params={"day": "2001-01-01"})
    assert empty.status_code == 200
    assert "No rail activity on this day." in empty.text


BAD_INPUT = (
    ("/console/payments/pay_0000000000000000000000000000dead", 404),
    ("/console/accounts/acc_nope", 404),
    ("/console/payments?cursor=not-a-cursor", 400),
    ("/console/payments?status=lost", 400),
    ("/console/accounts?kind=piggy_bank", 400),
    ("/console/accounts?cursor=acc_%27%3B--", 400),
    ("/console/settlement?day=31-01-2025", 400),
    ("/console/no/such/page", 404),
)


def test_bad_input_gets_a_friendly_page(client: TestClient, world: World) -> None:
    login(client, "ops")
    for path, status in BAD_INPUT:
        reply = client.get(path)
        assert reply.status_code == status, path
        assert reply.headers["content-type"].startswith("text/html"), path
        assert "Back to the dashboard" in reply.text, path
        assert "Traceback" not in reply.text, path


# ---------------------------------------------------------------- freezing


def test_freeze_and_unfreeze_with_a_valid_form_token(
    client: TestClient, world: World, settings: Settings
) -> None:
    csrf = login(client, "ops")
    reply = client.post(
        f"/console/accounts/{world.alice_wallet}/freeze",
        data={"csrf_token": csrf, "reason": "suspected account takeover"},
        follow_redirects=False,
    )
    assert reply.status_code == 303
    assert account_status(settings, world.alice_wallet) == "frozen"
    page = client.get(reply.headers["location"])
    assert "The account is frozen" in page.text
    assert "Ask to unfreeze" in page.text
    # A frozen wallet cannot pay.
    refused = factories.pay(
        client, world.alice, kind="p2p", amount=100, payee_username="bob", step_up=False
    )
    assert refused.status_code == 409

    back = client.post(
        f"/console/accounts/{world.alice_wallet}/unfreeze",
        data={"csrf_token": csrf, "reason": "identity re-verified"},
        follow_redirects=False,
    )
    assert back.status_code == 303
    # Four-eyes: the console only asks; the account stays frozen until a second person agrees.
    assert "another staff member" in client.get(back.headers["location"]).text
    assert account_status(settings, world.alice_wallet) == "frozen"
    pending = client.get(
        "/v1/approvals", params={"status": "pending"}, headers=factories.staff_auth(settings)
    ).json()
    assert [(p["action"], p["target"]) for p in pending] == [
        ("account.unfreeze", world.alice_wallet)
    ]
    approved = client.post(
        f"/v1/approvals/{pending[0]['id']}/approve",
        headers=factories.staff_auth(settings, "operations"),
        json={},
    )
    assert approved.json()["status"] == "executed"
    assert account_status(settings, world.alice_wallet) == "active"


def test_a_second_staff_member_approves_in_the_console(
    client: TestClient, world: World, settings: Settings
) -> None:
    make_staff(settings, "checker", "operations")
    csrf = login(client, "ops")
    client.post(
        f"/console/accounts/{world.alice_wallet}/freeze",
        data={"csrf_token": csrf, "reason": "suspected account takeover"},
    )
    client.post(
        f"/console/accounts/{world.alice_wallet}/unfreeze",
        data={"csrf_token": csrf, "reason": "identity re-verified"},
    )
    own_page = client.get("/console/approvals")
    assert "account.unfreeze" in own_page.text and "(you)" in own_page.text
    approval_id = re.search(r"/console/approvals/(apr_\w+)/reject", own_page.text).group(1)  # type: ignore[union-attr]
    assert f"/console/approvals/{approval_id}/approve" not in own_page.text  # not the maker
    own = client.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": csrf})
    assert own.status_code == 403
    assert account_status(settings, world.alice_wallet) == "frozen"

    client.post("/console/logout", data={"csrf_token": csrf})
    checker_csrf = login(client, "checker")
    page = client.get("/console/approvals")
    assert f"/console/approvals/{approval_id}/approve" in page.text
    forged = client.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": "0" * 64})
    assert forged.status_code == 403
    done = client.post(
        f"/console/approvals/{approval_id}/approve",
        data={"csrf_token": checker_csrf, "note": "documents match"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert account_status(settings, world.alice_wallet) == "active"
    after = client.get(done.headers["location"])
    assert "Approved: the operation ran." in after.text and "executed" in after.text

    client.post("/console/logout", data={"csrf_token": checker_csrf})
    login(client, "watcher")  # a viewer may not see the queue
    assert client.get("/console/approvals").status_code == 403


@pytest.mark.parametrize("token", [None, "", "0" * 64])
def test_freeze_without_a_valid_form_token_is_refused(
    client: TestClient, world: World, settings: Settings, token: str | None
) -> None:
    login(client, "ops")
    data = {"reason": "cross-site attempt"}
    if token is not None:
        data["csrf_token"] = token
    reply = client.post(
        f"/console/accounts/{world.alice_wallet}/freeze", data=data, follow_redirects=False
    )
    assert reply.status_code == 403
    assert account_status(settings, world.alice_wallet) == "active"


def test_freeze_token_of_another_session_is_refused(
    client: TestClient, world: World, settings: Settings
) -> None:
    other_csrf = login(client, "ops")
    client.cookies.clear()
    login(client, "ops")  # a second session: its token differs
    reply = client.post(
        f"/console/accounts/{world.alice_wallet}/freeze",
        data={"csrf_token": other_csrf, "reason": "stale form"},
        follow_redirects=False,
    )
    assert reply.status_code == 403
    assert account_status(settings, world.alice_wallet) == "active"


def test_freeze_needs_a_reason_and_the_operations_role(
    client: TestClient, world: World, settings: Settings
) -> None:
    csrf = login(client, "ops")
    no_reason = client.post(
        f"/console/accounts/{world.alice_wallet}/freeze",
        data={"csrf_token": csrf, "reason": "  "},
        follow_redirects=False,
    )
    assert no_reason.status_code == 400
    assert account_status(settings, world.alice_wallet) == "active"

    client.cookies.clear()
    viewer_csrf = login(client, "watcher")
    page = client.get(f"/console/accounts/{world.alice_wallet}")
    assert "Freeze account" not in page.text
    refused = client.post(
        f"/console/accounts/{world.alice_wallet}/freeze",
        data={"csrf_token": viewer_csrf, "reason": "viewer tries"},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    assert account_status(settings, world.alice_wallet) == "active"


# ---------------------------------------------------------------- headers


def test_security_headers_on_every_console_page(client: TestClient, world: World) -> None:
    login_page = client.get("/console/login")
    login(client, "ops")
    for reply in [login_page, *(client.get(path) for path in PAGES)]:
        assert reply.status_code == 200
        headers = reply.headers
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        nonce = re.search(r"'nonce-([^']+)'", csp)
        assert nonce and f'<script nonce="{nonce.group(1)}">' in reply.text
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
    css = client.get("/console/static/console.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert css.headers["x-content-type-options"] == "nosniff"
