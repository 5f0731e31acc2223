"""Step-up: when the pipeline asks for it, and that a proof is good for one instruction only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient

from payguard import clock
from payguard.settings import Settings
from tests.conftest import make_settings
from tests.factories import (
    Customer,
    balance,
    pass_challenge,
    pay,
    payment_count,
    register,
    signed,
    top_up,
)

BANK = "6222020200112233"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Below the tier-0 per-payment limit, so the step-up rule is what the tests meet.
    return make_settings(database_url, tmp_path, step_up_new_payee_amount=20_000)


@pytest.fixture
def ann(client: TestClient) -> Customer:
    customer = register(client, "ann")
    top_up(client, customer, 5_000_000)  # the device's first payment: passes its step-up
    register(client, "bob")
    return customer


def _submit(
    client: TestClient, customer: Customer, body: dict[str, Any], key: str, **extra: Any
) -> Any:
    headers = {**customer.auth, "Idempotency-Key": key}
    return client.post("/v1/payments", headers=headers, json=signed(customer, body, key, **extra))


def _challenged(reply: Any) -> dict[str, Any]:
    assert reply.status_code == 403, reply.text
    problem: dict[str, Any] = reply.json()
    assert problem["code"] == "challenge-required"
    assert problem["challenge_id"].startswith("chl_")
    assert "sms" in problem["allowed_factors"]
    return problem


def test_a_withdrawal_needs_step_up_and_goes_through_after_it(
    client: TestClient, settings: Settings, ann: Customer
) -> None:
    before, count = balance(client, ann), payment_count(client, settings)
    body = {"kind": "withdrawal", "amount": 10_000, "currency": "CNY", "bank_account": BANK}
    key = str(uuid.uuid4())
    problem = _challenged(_submit(client, ann, body, key))
    assert problem["reasons"] == ["withdrawal"]
    assert balance(client, ann) == before and payment_count(client, settings) == count

    pass_challenge(client, ann, problem["challenge_id"])
    done = _submit(client, ann, body, key, challenge_id=problem["challenge_id"])
    assert done.status_code == 201, done.text
    assert "verified" in [item["status"] for item in done.json()["history"]]
    assert balance(client, ann) < before


def test_a_new_payee_above_the_amount_needs_step_up_once(
    client: TestClient, settings: Settings, ann: Customer
) -> None:
    small = {"kind": "p2p", "amount": 1_000, "currency": "CNY", "payee_username": "bob"}
    assert _submit(client, ann, small, str(uuid.uuid4())).status_code == 201

    carol = register(client, "carol")
    large = {
        "kind": "p2p",
        "amount": settings.step_up_new_payee_amount,
        "currency": "CNY",
        "payee_account_id": carol.wallet_id,
    }
    problem = _challenged(_submit(client, ann, large, str(uuid.uuid4())))
    assert problem["reasons"] == ["new_payee"]
    assert pay(client, ann, **large).status_code == 201  # passes the step-up
    # Carol has been paid now: the next large payment to her needs no step-up.
    assert _submit(client, ann, large, str(uuid.uuid4())).status_code == 201


def test_the_first_payment_of_a_new_device_needs_step_up(client: TestClient) -> None:
    dan = register(client, "dan")
    body = {"kind": "top_up", "amount": 1_000, "currency": "CNY", "bank_account": BANK}
    problem = _challenged(_submit(client, dan, body, str(uuid.uuid4())))
    assert problem["reasons"] == ["new_device"]
    assert pay(client, dan, **body).status_code == 201
    devices = client.get("/v1/devices", headers=dan.auth).json()
    assert devices[0]["is_new"] is False
    assert _submit(client, dan, body, str(uuid.uuid4())).status_code == 201


def test_a_proof_is_good_for_its_own_instruction_only(
    client: TestClient, settings: Settings, ann: Customer
) -> None:
    body = {"kind": "withdrawal", "amount": 10_000, "currency": "CNY", "bank_account": BANK}
    key = str(uuid.uuid4())
    problem = _challenged(_submit(client, ann, body, key))
    pass_challenge(client, ann, problem["challenge_id"])

    # A different amount under the same challenge: the hash differs, a new challenge is due.
    other = {**body, "amount": 900_000}
    again = _challenged(_submit(client, ann, other, key, challenge_id=problem["challenge_id"]))
    assert again["challenge_id"] != problem["challenge_id"]
    # Same content under another idempotency key is another instruction too.
    _challenged(_submit(client, ann, body, str(uuid.uuid4()), challenge_id=problem["challenge_id"]))
    # The instruction it was made for still goes through, once.
    done = _submit(client, ann, body, key, challenge_id=problem["challenge_id"])
    assert done.status_code == 201, done.text


def test_a_used_challenge_cannot_authorise_a_second_payment(
    client: TestClient, ann: Customer
) -> None:
    body = {"kind": "withdrawal", "amount": 10_000, "currency": "CNY", "bank_account": BANK}
    key = str(uuid.uuid4())
    problem = _challenged(_submit(client, ann, body, key))
    pass_challenge(client, ann, problem["challenge_id"])
    assert _submit(client, ann, body, key, challenge_id=problem["challenge_id"]).status_code == 201
    status = client.get(f"/v1/challenges/{problem['challenge_id']}", headers=ann.auth).json()
    assert status["status"] == "used"
    verify = client.post(
        f"/v1/challenges/{problem['challenge_id']}/verify",
        headers=ann.auth,
        json={"factor": "sms", "code": "000000"},
    )
    assert verify.status_code == 403
    assert verify.json()["code"] == "challenge-failed"


def test_a_wrong_code_fails_the_challenge_and_an_expired_one_is_refused(
    client: TestClient, ann: Customer
) -> None:
    body = {"kind": "withdrawal", "amount": 10_000, "currency": "CNY", "bank_account": BANK}
    problem = _challenged(_submit(client, ann, body, str(uuid.uuid4())))
    challenge = problem["challenge_id"]
    client.post(f"/v1/challenges/{challenge}/code", headers=ann.auth, json={"channel": "sms"})
    wrong = client.post(
        f"/v1/challenges/{challenge}/verify",
        headers=ann.auth,
        json={"factor": "sms", "code": "000000"},
    )
    assert wrong.status_code == 403

    later = clock.FrozenClock(datetime.now(UTC) + timedelta(hours=1))
    previous = clock.set_clock(later)
    try:
        expired = client.post(
            f"/v1/challenges/{challenge}/verify",
            headers=ann.auth,
            json={"factor": "sms", "code": "123456"},
        )
    finally:
        clock.set_clock(previous)
    assert expired.status_code in (401, 403)


def test_someone_elses_challenge_is_not_found(client: TestClient, ann: Customer) -> None:
    body = {"kind": "withdrawal", "amount": 10_000, "currency": "CNY", "bank_account": BANK}
    problem = _challenged(_submit(client, ann, body, str(uuid.uuid4())))
    eve = register(client, "eve")
    seen = client.get(f"/v1/challenges/{problem['challenge_id']}", headers=eve.auth)
    assert seen.status_code == 404


def test_totp_completes_a_challenge(client: TestClient, ann: Customer) -> None:
    started = client.post("/v1/factors/totp", headers=ann.auth)
    assert started.status_code in (200, 201), started.text
    authenticator = pyotp.TOTP(started.json()["secret"])
    confirmed = client.post(
        "/v1/factors/totp/confirm", headers=ann.auth, json={"code": authenticator.now()}
    )
    assert confirmed.status_code in (200, 201), confirmed.text

    body = {"kind": "withdrawal", "amount": 10_000, "currency": "CNY", "bank_account": BANK}
    key = str(uuid.uuid4())
    problem = _challenged(_submit(client, ann, body, key))
    assert "totp" in problem["allowed_factors"]
    next_step = authenticator.at(datetime.now(UTC) + timedelta(seconds=30))
    passed = client.post(
        f"/v1/challenges/{problem['challenge_id']}/verify",
        headers=ann.auth,
        json={"factor": "totp", "code": next_step},
    )
    assert passed.status_code == 200, passed.text
    assert passed.json()["factor_used"] == "totp"
    done = _submit(client, ann, body, key, challenge_id=problem["challenge_id"])
    assert done.status_code == 201
