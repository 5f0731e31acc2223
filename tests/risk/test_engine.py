"""The risk engine in the payment path: the four actions end to end, receipts, the
review queue, the time budget, the assess API for outside systems, shared counters."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from payguard.app import create_app
from payguard.cli import app as cli_app
from payguard.db.engine import Database
from payguard.identity import notifications
from payguard.settings import Settings
from tests.conftest import make_settings, serve
from tests.factories import (
    Customer,
    approved,
    balance,
    pay,
    register,
    set_tier,
    staff_auth,
    staff_token,
    top_up,
)


def rule(rule_id: str, expression: str, action: str | None, **extra: Any) -> dict[str, Any]:
    return {
        "id": rule_id,
        "description": f"test rule {rule_id}",
        "expression": expression,
        "action": action,
        "score": extra.pop("score", 0),
        "reason_code": rule_id.upper().replace("-", "_"),
        "reason_en": f"{rule_id} matched",
        "reason_zh": f"{rule_id} 命中",
        "tip_en": extra.pop("tip_en", None),
        "tip_zh": extra.pop("tip_zh", None),
        "mode": extra.pop("mode", "active"),
        "enabled": True,
        "severe": extra.pop("severe", False),
    }


# Exact amounts pick the action, so every test knows what the engine must decide.
TEST_RULES = [
    rule(
        "test-block",
        "amount == 66600",
        "block",
        severe=True,
        tip_en="Scammers pose as customer service.",
        tip_zh="骗子常冒充客服。",
    ),
    rule("test-review", "amount == 77700 || amount == 2000000", "review"),
    rule("test-challenge", "amount == 88800", "challenge"),
    rule("test-shadow", "amount > 0", "block", mode="shadow"),
]


def publish(client: TestClient, settings: Settings, rules: list[dict[str, Any]]) -> int:
    analyst = staff_auth(settings, "risk_analyst")
    draft = client.post("/v1/risk/rulesets", headers=analyst, json={"rules": rules, "note": "t"})
    assert draft.status_code == 201, draft.text
    version = int(draft.json()["version"])
    requested = client.post(
        "/v1/approvals",
        headers=analyst,
        json={
            "action": "risk.ruleset_publish",
            "target": str(version),
            "params": {},
            "reason": "test rule set",
        },
    )
    approved(client, settings, requested, checker="risk_analyst")
    return version


@pytest.fixture
def risk_settings(database_url: str, tmp_path: Path) -> Settings:
    # Reload at once: a published rule set applies to the very next payment.
    return make_settings(database_url, tmp_path, risk_reload_seconds=0)


@pytest.fixture
def risk_client(risk_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(risk_settings), raise_server_exceptions=False) as client:
        publish(client, risk_settings, TEST_RULES)
        yield client


def funded(
    client: TestClient, settings: Settings, name: str, amount: int = 5_000_000, tier: int = 2
) -> Customer:
    customer = register(client, f"{name}-{uuid.uuid4().hex[:6]}")
    set_tier(client, settings, customer, tier)  # tier 0 may not pay more than 500.00
    top_up(client, customer, amount)
    return customer


def decision_of(client: TestClient, settings: Settings, payment_id: str) -> dict[str, Any]:
    reply = client.get(
        f"/v1/risk/decisions/{payment_id}", headers=staff_auth(settings, "risk_analyst")
    )
    assert reply.status_code == 200, reply.text
    found: dict[str, Any] = reply.json()
    return found


def test_allow_posts_and_keeps_an_explainable_receipt(
    risk_client: TestClient, risk_settings: Settings
) -> None:
    alice, bob = funded(risk_client, risk_settings, "alice"), register(risk_client, "bob")
    reply = pay(risk_client, alice, amount=1_000, kind="p2p", payee_username=bob.username)
    assert reply.status_code == 201, reply.text
    payment = reply.json()
    assert payment["status"] == "confirmed"
    assert payment["decision"]["action"] == "allow"
    receipt = decision_of(risk_client, risk_settings, payment["id"])
    assert receipt["action"] == "allow" and receipt["source"] == "pipeline"
    assert receipt["ruleset_version"] != "none"
    # The shadow rule was evaluated and recorded, and changed nothing.
    assert {"rule_id": "test-shadow", "mode": "shadow"}.items() <= receipt["rule_hits"][0].items()
    features = receipt["features"]
    assert features["amount"] == 1_000 and features["device_known"] is True
    assert features["session_age_minutes"] >= 0
    assert features["payer_count_1h"] == 0  # features are read before this payment counts
    assert features["payer_inflow_sum_24h"] == 5_000_000  # the top-up came in
    assert features["payee_new"] is True


def test_block_rejects_freezes_the_wallet_and_tells_the_customer(
    risk_client: TestClient, risk_settings: Settings
) -> None:
    alice, bob = funded(risk_client, risk_settings, "alice"), register(risk_client, "bob")
    before = balance(risk_client, alice)
    reply = pay(risk_client, alice, amount=66_600, kind="p2p", payee_username=bob.username)
    assert reply.status_code == 422, reply.text
    payment = reply.json()
    assert payment["status"] == "rejected" and payment["failure_code"] == "risk_blocked"
    assert [reason["code"] for reason in payment["decision"]["reasons"]] == ["TEST_BLOCK"]
    assert payment["decision"]["customer_tip"] == "Scammers pose as customer service."
    assert payment["decision"]["customer_tip_zh"] == "骗子常冒充客服。"
    assert balance(risk_client, alice) == before  # nothing moved

    # Severe: the wallet is frozen, the next payment is refused, the customer is told.
    again = pay(risk_client, alice, amount=1_000, kind="p2p", payee_username=bob.username)
    assert again.status_code == 409 and again.json()["code"] == "account-frozen", again.text
    services = risk_client.app.state.services  # type: ignore[attr-defined]
    with services.db.read() as session:
        message = notifications.latest_sent_message(session, risk_settings, alice.phone)
    assert message is not None and "froze" in message

    alerts = risk_client.get(
        "/v1/risk/alerts", params={"kind": "block"}, headers=staff_auth(risk_settings, "viewer")
    )
    assert alerts.status_code == 403  # a viewer does not read risk data
    alerts = risk_client.get(
        "/v1/risk/alerts",
        params={"kind": "block"},
        headers=staff_auth(risk_settings, "risk_analyst"),
    )
    [alert] = [item for item in alerts.json()["items"] if item["payment_id"] == payment["id"]]
    assert alert["severity"] == "critical" and alert["reason_codes"] == ["TEST_BLOCK"]


def test_challenge_goes_through_step_up_and_both_attempts_are_recorded(
    risk_client: TestClient, risk_settings: Settings
) -> None:
    alice, bob = funded(risk_client, risk_settings, "alice"), register(risk_client, "bob")
    first = pay(
        risk_client, alice, amount=88_800, kind="p2p", payee_username=bob.username, step_up=False
    )
    assert first.status_code == 403, first.text
    assert first.json()["code"] == "challenge-required" and "risk" in first.json()["reasons"]
    assert first.json()["risk_reasons"] == ["TEST_CHALLENGE"]  # the payer is told why
    passed = pay(risk_client, alice, amount=88_800, kind="p2p", payee_username=bob.username)
    assert passed.status_code == 201, passed.text
    assert passed.json()["decision"]["action"] == "challenge"
    assert any("step-up passed" in (item["detail"] or "") for item in passed.json()["history"])
    receipt = decision_of(risk_client, risk_settings, passed.json()["id"])
    assert receipt["action"] == "challenge"
    assert receipt["features"]["minutes_since_second_factor"] >= 0  # the step-up just passed


def test_review_holds_the_funds_until_an_analyst_approves(
    risk_client: TestClient, risk_settings: Settings
) -> None:
    alice, bob = funded(risk_client, risk_settings, "alice"), register(risk_client, "bob")
    reply = pay(risk_client, alice, amount=77_700, kind="p2p", payee_username=bob.username)
    assert reply.status_code == 202, reply.text
    payment = reply.json()
    assert payment["status"] == "held_for_review" and payment["hold_id"]
    analyst = staff_auth(risk_settings, "risk_analyst")
    queue = risk_client.get("/v1/risk/reviews", headers=analyst).json()
    assert payment["id"] in [item["payment_id"] for item in queue]
    assert balance(risk_client, bob) == 0

    outcome = risk_client.post(
        f"/v1/risk/reviews/{payment['id']}/approve",
        headers=analyst,
        json={"reason": "called the customer: genuine rent"},
    )
    assert outcome.status_code == 200, outcome.text
    assert outcome.json() == {
        "payment_id": payment["id"],
        "outcome": "approved",
        "payment_status": "confirmed",
        "approval_id": None,
    }
    assert balance(risk_client, bob) == 77_700
    queue = risk_client.get("/v1/risk/reviews", headers=analyst).json()
    assert payment["id"] not in [item["payment_id"] for item in queue]
    twice = risk_client.post(
        f"/v1/risk/reviews/{payment['id']}/approve", headers=analyst, json={"reason": "again"}
    )
    assert twice.status_code == 409, twice.text


def test_rejecting_a_review_returns_the_funds_and_labels_fraud(
    risk_client: TestClient, risk_settings: Settings
) -> None:
    alice, bob = funded(risk_client, risk_settings, "alice"), register(risk_client, "bob")
    before = balance(risk_client, alice)
    payment = pay(risk_client, alice, amount=77_700, kind="p2p", payee_username=bob.username)
    payment_id = payment.json()["id"]
    reply = risk_client.post(
        f"/v1/risk/reviews/{payment_id}/reject",
        headers=staff_auth(risk_settings, "risk_analyst"),
        json={"reason": "customer did not make it"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["payment_status"] == "failed"
    assert balance(risk_client, alice) == before
    services = risk_client.app.state.services  # type: ignore[attr-defined]
    from payguard.risk import service as risk

    with services.db.read() as session:
        assert risk.labels_for(session, [payment_id]) == {payment_id: "fraud"}


def test_a_large_review_needs_a_second_analyst(
    risk_client: TestClient, risk_settings: Settings
) -> None:
    alice, bob = funded(risk_client, risk_settings, "alice", tier=3), register(risk_client, "bob")
    payment = pay(risk_client, alice, amount=2_000_000, kind="p2p", payee_username=bob.username)
    assert payment.status_code == 202, payment.text
    payment_id = payment.json()["id"]
    maker = staff_token(risk_settings, "risk_analyst")
    asked = risk_client.post(
        f"/v1/risk/reviews/{payment_id}/approve",
        headers={"Authorization": f"Bearer {maker}"},
        json={"reason": "large but genuine"},
    )
    assert asked.status_code == 200, asked.text
    assert asked.json()["outcome"] == "approval_requested"
    approval_id = asked.json()["approval_id"]
    own = risk_client.post(
        f"/v1/approvals/{approval_id}/approve",
        headers={"Authorization": f"Bearer {maker}"},
        json={"note": "me again"},
    )
    assert own.status_code == 403, own.text
    assert balance(risk_client, bob) == 0
    checker = risk_client.post(
        f"/v1/approvals/{approval_id}/approve",
        headers=staff_auth(risk_settings, "risk_analyst"),
        json={"note": "checked the evidence"},
    )
    assert checker.status_code == 200 and checker.json()["status"] == "executed", checker.text
    assert balance(risk_client, bob) == 2_000_000


def test_explain_command_shows_reasons_and_rule_hits(
    risk_client: TestClient, risk_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = funded(risk_client, risk_settings, "alice"), register(risk_client, "bob")
    payment = pay(risk_client, alice, amount=77_700, kind="p2p", payee_username=bob.username)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("PAYGUARD_DATABASE_URL", risk_settings.database_url)
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(risk_settings.var_dir))
    from payguard.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["risk", "explain", payment.json()["id"]])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "REVIEW" in result.output and "TEST_REVIEW" in result.output
    assert "test-shadow" in result.output and "payer_inflow_sum_24h" in result.output
    # The real command line: an unknown payment is one clear line, no traceback.
    missing = subprocess.run(
        [sys.executable, "-m", "payguard", "risk", "explain", "pay_nothing"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert missing.returncode == 2, missing.stderr
    assert "no risk decision" in missing.stderr and "Traceback" not in missing.stderr


def test_past_the_time_budget_the_fallback_applies_and_is_recorded(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path, risk_time_budget_ms=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        alice, bob = funded(client, settings, "alice"), register(client, "bob")
        first = pay(client, alice, amount=1_000, kind="p2p", payee_username=bob.username)
        assert first.status_code == 201, first.text
        decision = first.json()["decision"]
        assert decision["action"] == "challenge"  # the documented default fallback
        assert decision["reasons"][0]["code"] == "RISK_TIME_BUDGET_EXCEEDED"
        alerts = client.get(
            "/v1/risk/alerts",
            params={"kind": "fallback"},
            headers=staff_auth(settings, "risk_analyst"),
        ).json()["items"]
        assert first.json()["id"] in [alert["payment_id"] for alert in alerts]
        metrics = client.get("/metrics").text
        assert 'payguard_risk_fallbacks_total{cause="timeout"}' in metrics


def test_the_assess_api_serves_outside_payment_systems(
    risk_client: TestClient, risk_settings: Settings
) -> None:
    machine = staff_auth(risk_settings, "risk_client")
    body = {
        "reference": "bankx-0001",
        "kind": "p2p",
        "payer": "bankx:payer-1",
        "payee": "bankx:payee-9",
        "amount": 77_700,
        "currency": "cny",
        "ip": "203.0.113.7",
        "device": {"id": "bankx:dev-1", "new": True},
        "session": {"failed_logins_1h": 4},
        "geo": {"latitude": 31.23, "longitude": 121.47},
    }
    reply = risk_client.post("/v1/risk/assess", headers=machine, json=body)
    assert reply.status_code == 200, reply.text
    decided = reply.json()
    assert decided["action"] == "review"
    assert decided["reasons"][0]["code"] == "TEST_REVIEW"
    assert decided["features"]["failed_logins_1h"] == 4
    assert decided["features"]["device_new"] is True
    second = risk_client.post("/v1/risk/assess", headers=machine, json={**body, "amount": 5})
    assert second.json()["features"]["payer_count_1h"] == 1  # the first one counted
    receipt = decision_of(risk_client, risk_settings, decided["decision_id"])
    assert receipt["source"] == "api" and receipt["context"]["payment_id"] == "bankx-0001"

    bad = risk_client.post("/v1/risk/assess", headers=machine, json={**body, "amount": -1})
    assert bad.status_code == 422
    customer = register(risk_client, f"c-{uuid.uuid4().hex[:6]}", device=False)
    refused = risk_client.post("/v1/risk/assess", headers=customer.auth, json=body)
    assert refused.status_code == 403


@pytest.mark.redis
def test_two_server_processes_share_the_redis_counters(settings: Settings, redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    token = staff_token(settings, "risk_client")
    env = {"PAYGUARD_REDIS_URL": redis_url, "PAYGUARD_RISK_REDIS_PREFIX": prefix}
    payer = f"ext:{uuid.uuid4().hex[:8]}"
    try:
        with serve(settings, **env) as first, serve(settings, **env) as second:
            counts = []
            for index, base in enumerate([first, second, first, second]):
                reply = httpx.post(
                    f"{base}/v1/risk/assess",
                    headers={"Authorization": f"Bearer {token}"},
                    json={"payer": payer, "payee": "ext:shop", "amount": 100 + index,
                          "currency": "CNY"},
                    timeout=10,
                )  # fmt: skip
                assert reply.status_code == 200, reply.text
                counts.append(reply.json()["features"]["payer_count_1h"])
            # Each process sees the payments the other one assessed.
            assert counts == [0, 1, 2, 3]
    finally:
        from payguard.risk.counters import RedisCounterStore

        RedisCounterStore(redis_url, prefix=prefix).clear()
        Database(settings.database_url).dispose()


def test_a_new_process_warms_its_counters_from_the_receipts(
    risk_client: TestClient, risk_settings: Settings
) -> None:
    alice, bob = funded(risk_client, risk_settings, "alice"), register(risk_client, "bob")
    for amount in (1_000, 2_000):
        assert pay(risk_client, alice, amount=amount, kind="p2p", payee_username=bob.username)
    # A blocked payment moved nothing and is not counted after a restart either.
    blocked = pay(risk_client, alice, amount=66_600, kind="p2p", payee_username=bob.username)
    assert blocked.status_code == 422
    with TestClient(create_app(risk_settings), raise_server_exceptions=False) as restarted:
        carol = funded(restarted, risk_settings, "carol")
        reply = pay(restarted, carol, amount=3_000, kind="p2p", payee_username=bob.username)
        assert reply.status_code == 201, reply.text
        features = decision_of(restarted, risk_settings, reply.json()["id"])["features"]
    # The payee's inflow seen by the new process includes the two earlier payments.
    assert features["payee_count_1h"] == 2
    assert features["payee_sum_1h"] == 3_000
    assert features["payee_distinct_payers_1h"] == 1


def test_one_bank_card_behind_several_accounts_is_seen(
    risk_client: TestClient, risk_settings: Settings
) -> None:
    """Tokens are per customer; the engine keys the card by its blind index instead."""
    first = register(risk_client, f"first-{uuid.uuid4().hex[:6]}")
    second = register(risk_client, f"second-{uuid.uuid4().hex[:6]}")
    card = "6222020200998877665"
    for customer in (first, second):
        reply = pay(risk_client, customer, kind="top_up", amount=10_000, bank_account=card)
        assert reply.status_code in (200, 201), reply.text
    receipt = decision_of(risk_client, risk_settings, reply.json()["id"])
    assert receipt["features"]["card_distinct_accounts_7d"] == 1  # the first account


def test_a_reviewed_withdrawal_goes_to_the_bank_once_approved(
    risk_client: TestClient, risk_settings: Settings
) -> None:
    alice = funded(risk_client, risk_settings, "alice")
    before = balance(risk_client, alice)
    held = pay(
        risk_client, alice, kind="withdrawal", amount=77_700, bank_account="6222020200112233"
    )
    assert held.status_code == 202 and held.json()["status"] == "held_for_review", held.text
    analyst = staff_auth(risk_settings, "risk_analyst")
    approved_reply = risk_client.post(
        f"/v1/risk/reviews/{held.json()['id']}/approve",
        headers=analyst,
        json={"reason": "the customer confirmed by phone"},
    )
    assert approved_reply.status_code == 200, approved_reply.text
    assert approved_reply.json()["payment_status"] == "confirmed"  # paid out by the rail
    fee = held.json()["fee"]
    assert balance(risk_client, alice) == before - 77_700 - fee

    second = pay(
        risk_client, alice, kind="withdrawal", amount=77_700, bank_account="6222020200112233"
    )
    rejected = risk_client.post(
        f"/v1/risk/reviews/{second.json()['id']}/reject",
        headers=analyst,
        json={"reason": "the customer did not ask for it"},
    )
    assert rejected.status_code == 200 and rejected.json()["payment_status"] == "failed"
    assert balance(risk_client, alice) == before - 77_700 - fee


def test_a_payout_held_by_policy_is_not_the_review_queues(
    risk_client: TestClient, risk_settings: Settings
) -> None:
    alice = funded(risk_client, risk_settings, "alice", amount=9_000_000, tier=3)
    held = pay(
        risk_client, alice, kind="withdrawal", amount=6_000_000, bank_account="6222020200112233"
    )
    assert held.status_code == 202 and held.json()["decision"]["action"] != "review", held.text
    reply = risk_client.post(
        f"/v1/risk/reviews/{held.json()['id']}/approve",
        headers=staff_auth(risk_settings, "risk_analyst"),
        json={"reason": "looks fine"},
    )
    assert reply.status_code == 409 and "payout approval" in reply.json()["detail"]
