"""Forced password reset (identity/password_reset.py): the flagged password opens nothing,
the signed-out reset needs a second factor, and it answers the same for everyone."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from payguard.db.engine import Database
from payguard.events.models import OutboxEvent
from payguard.identity import password_reset
from payguard.identity import service as identity
from payguard.settings import Settings
from tests.factories import PASSWORD, database_of, last_code, register


def _db(client: TestClient) -> Database:
    found: Database = client.app.state.services.db  # type: ignore[attr-defined]
    return found


def force(client: TestClient, customer_id: str) -> dict[str, Any]:
    result: dict[str, Any] = _db(client).transact(
        lambda session: password_reset.force(
            session, subject_kind="customer", subject_id=customer_id, by="stf_t", reason="leak"
        )
    )
    return result


def login(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    return client.post("/v1/sessions", json={"username": username, "password": password})


def test_forced_reset_blocks_login_until_reset_with_a_code(
    client: TestClient, settings: Settings
) -> None:
    ann = register(client, "ann", device=False)
    assert force(client, ann.id) == {"already_required": False, "sessions_revoked": 1}
    assert client.get("/v1/me", headers=ann.auth).status_code == 401
    refused = login(client, "ann")
    assert refused.status_code == 403
    problem = refused.json()
    assert problem["code"] == "password-reset-required"
    assert "POST /v1/password-reset" in problem["detail"] and "重置密码" in problem["detail"]
    # Without the right password nobody learns that the account is flagged.
    assert login(client, "ann", "wrong-password-123").json()["code"] == "not-authenticated"

    # The same answer for an unknown user; no code is sent to anyone.
    unknown = client.post("/v1/password-reset", json={"username": "nobody"})
    sent = client.post("/v1/password-reset", json={"username": "ann"})
    assert unknown.status_code == sent.status_code == 202
    assert unknown.json() == sent.json()
    code = last_code(database_of(client), ann.phone)
    wrong = client.post(
        "/v1/password-reset/confirm",
        json={"username": "ann", "code": "000000", "new_password": "fresh-passw0rd-1"},
    )
    ghost = client.post(
        "/v1/password-reset/confirm",
        json={"username": "nobody", "code": "000000", "new_password": "fresh-passw0rd-1"},
    )
    assert wrong.status_code == ghost.status_code == 401
    assert wrong.json()["detail"] == ghost.json()["detail"]
    reused = client.post(
        "/v1/password-reset/confirm",
        json={"username": "ann", "code": code, "new_password": PASSWORD},
    )
    assert reused.status_code == 422 and "not used here before" in reused.json()["detail"]
    done = client.post(
        "/v1/password-reset/confirm",
        json={"username": "ann", "code": code, "new_password": "fresh-passw0rd-1"},
    )
    assert done.status_code == 204, done.text
    assert login(client, "ann").status_code == 401  # the old password is gone
    assert login(client, "ann", "fresh-passw0rd-1").status_code == 201
    with _db(client).read() as session:
        assert not password_reset.is_required(session, "customer", ann.id)
        topics = [event.topic for event in session.query(OutboxEvent)]
    assert "controls.password_reset_forced" in topics and "identity.password_reset" in topics


def test_reset_guesses_are_throttled_like_logins(client: TestClient, settings: Settings) -> None:
    ben = register(client, "ben", device=False)
    force(client, ben.id)
    client.post("/v1/password-reset", json={"username": "ben"})
    answers = [
        client.post(
            "/v1/password-reset/confirm",
            json={"username": "ben", "code": f"{n:06d}", "new_password": "fresh-passw0rd-2"},
        ).status_code
        for n in range(settings.login_max_failures + 1)
    ]
    assert answers[: settings.login_max_failures] == [401] * settings.login_max_failures
    assert answers[-1] == 429
    # A staff reset takes TOTP only: an SMS code is not offered.
    staff = client.post(
        "/v1/password-reset/confirm",
        json={"kind": "staff", "username": "x", "factor": "otp", "code": "1",
              "new_password": "fresh-passw0rd-2"},
    )  # fmt: skip
    assert staff.status_code == 422 and "factor: one of totp" in staff.json()["detail"]


def test_a_password_change_satisfies_a_forced_reset(client: TestClient) -> None:
    cat = register(client, "cat", device=False)
    force(client, cat.id)
    assert client.get("/v1/me", headers=cat.auth).status_code == 401

    def change(session: Any) -> None:
        # The signed-in change (POST /v1/customers/me/password) clears the flag too.
        identity.change_password(
            session,
            _settings(client),
            cat.id,
            session_id="none",
            current_password=PASSWORD,
            new_password="changed-passw0rd-3",
        )

    _db(client).transact(change)
    with _db(client).read() as session:
        assert not password_reset.is_required(session, "customer", cat.id)
    assert login(client, "cat", "changed-passw0rd-3").status_code == 201


def _settings(client: TestClient) -> Settings:
    found: Settings = client.app.state.services.settings  # type: ignore[attr-defined]
    return found
