"""WebAuthn passkeys with a software authenticator: registration, step-up assertions,
and the refusals (wrong challenge, cloned counter, no user verification, no proof)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from payguard.client.signing import canonical_instruction
from tests.factories import Customer, database_of, last_code, register, signed
from tests.identity.soft_authenticator import SoftAuthenticator, b64url, unb64url

BANK = "6222020200112233"


def _enrol(client: TestClient, customer: Customer, authenticator: SoftAuthenticator) -> Any:
    started = client.post("/v1/factors/passkeys/options", headers=customer.auth)
    assert started.status_code == 201, started.text
    options = started.json()["options"]
    assert options["authenticatorSelection"]["userVerification"] == "required"
    client.post(
        "/v1/factors/otp", headers=customer.auth, json={"channel": "sms", "purpose": "enrol"}
    )
    return client.post(
        "/v1/factors/passkeys",
        headers=customer.auth,
        json={
            "challenge_id": started.json()["challenge_id"],
            "name": "fingerprint",
            "credential": authenticator.create(options),
            "factor": "otp",
            "code": last_code(database_of(client), customer.phone),
        },
    )


@pytest.fixture
def ann(client: TestClient) -> Customer:
    customer = register(client, "ann")
    register(client, "bob", device=False)
    return customer


@pytest.fixture
def authenticator(client: TestClient, ann: Customer) -> SoftAuthenticator:
    device = SoftAuthenticator()
    enrolled = _enrol(client, ann, device)
    assert enrolled.status_code == 201, enrolled.text
    return device


def _top_up_challenge(client: TestClient, ann: Customer) -> tuple[str, dict[str, Any], str]:
    """Submit the device's first payment; returns (idempotency key, body, challenge id)."""
    key = str(uuid.uuid4())
    body = {"kind": "top_up", "amount": 10_000, "currency": "CNY", "bank_account": BANK}
    reply = client.post(
        "/v1/payments", headers={**ann.auth, "Idempotency-Key": key}, json=signed(ann, body, key)
    )
    assert reply.status_code == 403 and reply.json()["code"] == "challenge-required", reply.text
    assert reply.json()["allowed_factors"][0] == "passkey"
    return key, body, reply.json()["challenge_id"]


def _options(client: TestClient, ann: Customer, challenge_id: str) -> dict[str, Any]:
    reply = client.post(f"/v1/challenges/{challenge_id}/passkey-options", headers=ann.auth)
    assert reply.status_code == 200, reply.text
    options: dict[str, Any] = reply.json()
    return options


def _verify(client: TestClient, ann: Customer, challenge_id: str, credential: Any) -> Any:
    return client.post(
        f"/v1/challenges/{challenge_id}/verify",
        headers=ann.auth,
        json={"factor": "passkey", "credential": credential},
    )


def test_registration_is_listed_and_counted(
    client: TestClient, ann: Customer, authenticator: SoftAuthenticator
) -> None:
    listed = client.get("/v1/factors/passkeys", headers=ann.auth).json()
    assert [item["name"] for item in listed] == ["fingerprint"]
    assert client.get("/v1/factors", headers=ann.auth).json()["passkeys"] == 1


def test_registration_needs_a_current_factor(client: TestClient, ann: Customer) -> None:
    started = client.post("/v1/factors/passkeys/options", headers=ann.auth).json()
    reply = client.post(
        "/v1/factors/passkeys",
        headers=ann.auth,
        json={
            "challenge_id": started["challenge_id"],
            "name": "attacker's key",
            "credential": SoftAuthenticator().create(started["options"]),
        },
    )
    assert reply.status_code == 403 and reply.json()["code"] == "second-factor-required"
    assert client.get("/v1/factors/passkeys", headers=ann.auth).json() == []


def test_registration_without_user_verification_is_refused(
    client: TestClient, ann: Customer
) -> None:
    reply = _enrol(client, ann, SoftAuthenticator(verify_user=False))
    assert reply.status_code == 422, reply.text
    assert client.get("/v1/factors/passkeys", headers=ann.auth).json() == []


def test_a_passkey_assertion_over_the_instruction_passes_step_up(
    client: TestClient, ann: Customer, authenticator: SoftAuthenticator
) -> None:
    key, body, challenge_id = _top_up_challenge(client, ann)
    options = _options(client, ann, challenge_id)
    # Dynamic linking: the bytes the authenticator signs end with the instruction's hash.
    challenge_bytes = unb64url(options["challenge"])
    passed = _verify(client, ann, challenge_id, authenticator.get(options))
    assert passed.status_code == 200, passed.text
    assert passed.json()["factor_used"] == "passkey"
    assert challenge_bytes[-32:].hex() == passed.json()["instruction_hash"]
    done = client.post(
        "/v1/payments",
        headers={**ann.auth, "Idempotency-Key": key},
        json=signed(ann, body, key, challenge_id=challenge_id),
    )
    assert done.status_code == 201, done.text
    assert client.get("/v1/factors/passkeys", headers=ann.auth).json()[0]["sign_count"] == 1


def test_an_assertion_over_another_challenge_is_refused(
    client: TestClient, ann: Customer, authenticator: SoftAuthenticator
) -> None:
    _key, _body, challenge_id = _top_up_challenge(client, ann)
    options = _options(client, ann, challenge_id)
    # A phisher's page asks the authenticator to sign its own challenge.
    other = b64url(hashlib.sha256(canonical_instruction({"amount": 1}, "x")).digest())
    refused = _verify(client, ann, challenge_id, authenticator.get(options, challenge=other))
    assert refused.status_code == 403 and refused.json()["code"] == "challenge-failed"
    assert client.get(f"/v1/challenges/{challenge_id}", headers=ann.auth).json()["status"] == (
        "pending"
    )


def test_a_counter_that_does_not_move_means_a_clone_and_is_refused(
    client: TestClient, ann: Customer, authenticator: SoftAuthenticator
) -> None:
    _key, _body, first = _top_up_challenge(client, ann)
    assert _verify(client, ann, first, authenticator.get(_options(client, ann, first))).is_success
    _key, _body, second = _top_up_challenge(client, ann)
    cloned = authenticator.get(_options(client, ann, second), counter_step=0)
    refused = _verify(client, ann, second, cloned)
    assert refused.status_code == 403 and refused.json()["code"] == "challenge-failed"


def test_an_assertion_without_user_verification_is_refused(
    client: TestClient, ann: Customer, authenticator: SoftAuthenticator
) -> None:
    _key, _body, challenge_id = _top_up_challenge(client, ann)
    authenticator.verify_user = False
    assertion = authenticator.get(_options(client, ann, challenge_id))
    refused = _verify(client, ann, challenge_id, assertion)
    assert refused.status_code == 403 and refused.json()["code"] == "challenge-failed"
