"""Every payment kind end to end through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from payguard.app import create_app
from payguard.settings import Settings
from tests.conftest import make_settings
from tests.factories import (
    allow_list,
    balance,
    create_merchant,
    invariants,
    pay,
    register,
    set_tier,
    staff_auth,
    top_up,
)

LIFECYCLE = ["received", "verified", "assessed", "posted", "confirmed"]
# The first payment from a new device and every withdrawal pass a step-up challenge,
# which the history records as a second verification after assessment.
STEPPED_UP = ["received", "verified", "assessed", "verified", "posted", "confirmed"]


def statuses(payment: dict[str, object]) -> list[str]:
    return [item["status"] for item in payment["history"]]  # type: ignore[attr-defined,index]


def test_top_up_p2p_and_merchant_payment_with_recorded_lifecycle(
    client: TestClient, settings: Settings
) -> None:
    alice, bob = register(client, "alice"), register(client, "bob")
    topped = top_up(client, alice, 100_000)
    assert topped["status"] == "confirmed" and statuses(topped) == STEPPED_UP
    assert balance(client, alice) == 100_000

    p2p = pay(client, alice, kind="p2p", amount=12_345, payee_username="bob", memo="dinner")
    assert p2p.status_code == 201
    body = p2p.json()
    assert statuses(body) == LIFECYCLE
    assert body["decision"]["action"] == "allow"
    assert body["transfer_id"].startswith("trf_")
    assert balance(client, alice) == 100_000 - 12_345
    assert balance(client, bob) == 12_345

    shop = create_merchant(client, settings, "Tea House", owner=bob)
    bought = pay(client, alice, kind="merchant", amount=2_000, merchant_id=shop["id"])
    assert bought.status_code == 201 and bought.json()["payee_account_id"] == shop["account_id"]
    assert balance(client, alice) == 100_000 - 12_345 - 2_000
    # Bob owns the merchant, so he may read the merchant account.
    assert balance(client, bob, shop["account_id"]) == 2_000
    fetched = client.get(f"/v1/payments/{body['id']}", headers=bob.auth)
    assert fetched.status_code == 200 and fetched.json()["id"] == body["id"]
    assert invariants(client, settings)["ok"] is True


def test_withdrawal_is_two_phase_with_a_fee_leg(client: TestClient, settings: Settings) -> None:
    carol = register(client, "carol")
    top_up(client, carol, 50_000)
    reply = pay(client, carol, kind="withdrawal", amount=20_000, bank_account="6222 0202 0011 9876")
    assert reply.status_code == 201, reply.text
    payment = reply.json()
    # Default fee: 100 fixed + 10 basis points of 20,000 = 120.
    assert payment["fee"] == 120
    assert payment["hold_id"].startswith("hld_") and statuses(payment) == STEPPED_UP
    assert balance(client, carol) == 50_000 - 20_000 - 120
    fees = [
        account
        for account in client.get(
            "/v1/accounts", headers=staff_auth(settings, "viewer"), params={"kind": "system"}
        ).json()["items"]
        if account["name"].startswith("fees revenue")
    ]
    assert fees[0]["ledger_balance"] == 120
    assert invariants(client, settings)["ok"] is True


def test_rail_failure_voids_the_withdrawal_hold_and_fails_top_ups(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path, rail_failure_rate=1.0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        dan = register(client, "dan")
        failed_top_up = pay(client, dan, kind="top_up", amount=5_000, bank_account="62220000111")
        assert failed_top_up.status_code == 422
        assert failed_top_up.json()["status"] == "failed"
        assert failed_top_up.json()["failure_code"] == "rail_rejected"
        assert balance(client, dan) == 0

    good_settings = make_settings(database_url, tmp_path)
    with TestClient(create_app(good_settings), raise_server_exceptions=False) as client:
        dan_token = client.post(
            "/v1/sessions", json={"username": "dan", "password": "long-enough-password"}
        ).json()["token"]
        dan.token = dan_token
        top_up(client, dan, 30_000)

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        reply = pay(client, dan, kind="withdrawal", amount=10_000, bank_account="62220000111")
        assert reply.status_code == 422
        payment = reply.json()
        assert payment["status"] == "failed" and payment["failure_code"] == "rail_rejected"
        account = client.get(f"/v1/accounts/{dan.wallet_id}", headers=dan.auth).json()
        assert account["ledger_balance"] == 30_000
        assert account["held"] == 0 and account["available_balance"] == 30_000
        assert invariants(client, settings)["ok"] is True


def test_refunds_full_partial_and_refused(client: TestClient, settings: Settings) -> None:
    erin, owner, stranger = (
        register(client, "erin"),
        register(client, "owner"),
        register(client, "stranger"),
    )
    top_up(client, erin, 10_000)
    shop = create_merchant(client, settings, "Bakery", owner=owner)
    paid = pay(client, erin, kind="merchant", amount=3_000, merchant_id=shop["id"]).json()

    def refund(who_auth: dict[str, str], amount: int | None, key: str) -> object:
        body = {} if amount is None else {"amount": amount}
        return client.post(
            f"/v1/payments/{paid['id']}/refunds",
            headers={**who_auth, "Idempotency-Key": key},
            json=body,
        )

    denied = refund(stranger.auth, 100, "r0")
    assert denied.status_code == 404  # type: ignore[attr-defined]
    partial = refund(owner.auth, 1_000, "r1")
    assert partial.status_code == 201  # type: ignore[attr-defined]
    assert partial.json()["kind"] == "refund"  # type: ignore[attr-defined]
    assert partial.json()["original_payment_id"] == paid["id"]  # type: ignore[attr-defined]
    too_much = refund(owner.auth, 2_500, "r2")
    assert too_much.status_code == 409  # type: ignore[attr-defined]
    assert too_much.json()["code"] == "reversal-exceeds-remainder"  # type: ignore[attr-defined]
    rest = refund(staff_auth(settings, "operations"), None, "r3")
    assert rest.status_code == 201 and rest.json()["amount"] == 2_000  # type: ignore[attr-defined]
    again = refund(owner.auth, None, "r4")
    assert again.json()["code"] == "payment-not-refundable"  # type: ignore[attr-defined]
    assert balance(client, erin) == 10_000
    assert balance(client, owner, shop["account_id"]) == 0

    p2p = pay(client, erin, kind="p2p", amount=100, payee_username="owner").json()
    not_merchant = client.post(
        f"/v1/payments/{p2p['id']}/refunds",
        headers={**staff_auth(settings, "operations"), "Idempotency-Key": "r5"},
        json={},
    )
    assert not_merchant.status_code == 409
    assert not_merchant.json()["code"] == "payment-not-refundable"
    assert invariants(client, settings)["ok"] is True


def test_kyc_tier_limits(client: TestClient, settings: Settings) -> None:
    frank, gina = register(client, "frank"), register(client, "gina")
    allow_list(client, settings, frank)  # 50 payments in a row are a burst otherwise
    top_up(client, frank, 5_000_000)
    # Tier 0: 500.00 per payment, 1,000.00 a day, 10 payments a day.
    over_single = pay(client, frank, kind="p2p", amount=50_001, payee_username="gina")
    assert over_single.status_code == 422
    assert over_single.json()["code"] == "limit-exceeded"
    assert over_single.json()["limit"] == "per_payment_max"
    assert pay(client, frank, kind="p2p", amount=50_000, payee_username="gina").status_code == 201
    assert pay(client, frank, kind="p2p", amount=50_000, payee_username="gina").status_code == 201
    over_daily = pay(client, frank, kind="p2p", amount=1, payee_username="gina")
    assert over_daily.json()["limit"] == "daily_amount_max"
    assert balance(client, gina) == 100_000

    set_tier(client, settings, frank, 1)
    for _ in range(48):  # tier 1 allows 50 a day; two were made already
        assert pay(client, frank, kind="p2p", amount=1, payee_username="gina").status_code == 201
    over_count = pay(client, frank, kind="p2p", amount=1, payee_username="gina")
    assert over_count.json()["limit"] == "daily_count_max"
    assert balance(client, gina) == 100_048


def test_statement_json_and_csv(client: TestClient) -> None:
    hugo = register(client, "hugo")
    register(client, "ivy")
    top_up(client, hugo, 9_000)
    pay(client, hugo, kind="p2p", amount=1_500, payee_username="ivy", memo="books")
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    url = f"/v1/accounts/{hugo.wallet_id}/statement"
    statement = client.get(url, headers=hugo.auth, params={"from": start}).json()
    assert statement["opening_balance"] == 0 and statement["closing_balance"] == 7_500
    assert [line["amount"] for line in statement["lines"]] == [9_000, -1_500]
    assert statement["lines"][1]["memo"] == "books"

    later = client.get(
        url, headers=hugo.auth, params={"from": datetime.now(UTC).isoformat(), "format": "json"}
    ).json()
    assert later["opening_balance"] == 7_500 and later["lines"] == []

    csv_reply = client.get(url, headers=hugo.auth, params={"format": "csv"})
    assert csv_reply.headers["content-type"].startswith("text/csv")
    lines = csv_reply.text.splitlines()
    assert lines[0].startswith("# account") and lines[-1] == "# closing_balance,7500"
    naive = client.get(url, headers=hugo.auth, params={"from": "2026-01-01T00:00:00"})
    assert naive.status_code == 422


def test_settlement_report_counts_rail_activity(client: TestClient, settings: Settings) -> None:
    jane = register(client, "jane")
    top_up(client, jane, 20_000)
    top_up(client, jane, 5_000)
    pay(client, jane, kind="withdrawal", amount=1_000, bank_account="62220000999")
    report = client.get("/v1/rails/settlement", headers=staff_auth(settings, "operations")).json()
    lines = {line["direction"]: line for line in report["lines"]}
    assert lines["in"]["succeeded_count"] == 2 and lines["in"]["succeeded_amount"] == 25_000
    assert lines["out"]["succeeded_count"] == 1 and lines["out"]["succeeded_amount"] == 1_000


def test_cursor_pagination_of_payments_and_accounts(client: TestClient, settings: Settings) -> None:
    kim = register(client, "kim")
    for _ in range(5):
        top_up(client, kim, 100)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/payments", headers=kim.auth, params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 5 and len(set(seen)) == 5 and seen == sorted(seen, reverse=True)

    for index in range(3):
        register(client, f"acct{index}")
    auth = staff_auth(settings, "viewer")
    first = client.get("/v1/accounts", headers=auth, params={"limit": 2}).json()
    second = client.get(
        "/v1/accounts", headers=auth, params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert {a["id"] for a in first["items"]}.isdisjoint({a["id"] for a in second["items"]})
