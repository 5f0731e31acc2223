"""Login throttling and locks, sessions with refresh rotation, staff MFA, KYC registration,
password policy and rehash on login."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from payguard import clock
from payguard.app import create_app
from payguard.db.engine import Database
from payguard.events import service as events
from payguard.identity import kyc, throttle, totp
from payguard.identity import service as identity
from payguard.identity.models import AuthSession, Customer
from payguard.settings import Settings
from tests.conftest import make_settings
from tests.factories import PASSWORD, register, staff_auth

STAFF_PASSWORD = "staff-password-for-tests"


@pytest.fixture
def frozen() -> Iterator[clock.FrozenClock]:
    fixed = clock.FrozenClock(clock.now())
    previous = clock.set_clock(fixed)
    try:
        yield fixed
    finally:
        clock.set_clock(previous)


def app_client(settings: Settings, **overrides: object) -> TestClient:
    tuned = settings.model_copy(update=overrides)
    return TestClient(create_app(tuned), raise_server_exceptions=False)


def login(
    client: TestClient, username: str, password: str = PASSWORD, **extra: object
) -> httpx.Response:
    return client.post("/v1/sessions", json={"username": username, "password": password, **extra})


def event_count(db: Database, kind: str) -> int:
    with db.read() as session:
        return len(events.recent(session, kind, limit=1000))


# --- throttling -------------------------------------------------------------------------


def test_each_failure_grows_the_wait_answered_with_429_and_retry_after(
    settings: Settings, frozen: clock.FrozenClock
) -> None:
    with app_client(settings, login_delay_base_ms=2000, login_delay_max_ms=8000) as client:
        register(client, "tara", device=False)
        first = client.post("/v1/sessions", json={"username": "tara", "password": "wrong-one-1"})
        assert first.status_code == 401
        too_soon = client.post("/v1/sessions", json={"username": "tara", "password": PASSWORD})
        assert too_soon.status_code == 429
        assert too_soon.headers["Retry-After"] == "2"
        assert too_soon.json()["code"] == "too-many-attempts"
        frozen.advance(timedelta(seconds=2))
        second = client.post("/v1/sessions", json={"username": "tara", "password": "wrong-one-2"})
        assert second.status_code == 401
        # Two failures: the wait doubles.
        assert (
            client.post("/v1/sessions", json={"username": "tara", "password": PASSWORD}).headers[
                "Retry-After"
            ]
            == "4"
        )
        frozen.advance(timedelta(seconds=4))
        assert (
            client.post("/v1/sessions", json={"username": "tara", "password": PASSWORD}).status_code
            == 201
        )


def test_lock_after_n_failures_then_unlock_by_time(
    settings: Settings, frozen: clock.FrozenClock, db: Database
) -> None:
    with app_client(settings, login_max_failures=3, login_lock_seconds=600) as client:
        register(client, "uma", device=False)
        for _ in range(3):
            assert login(client, "uma", "not-the-password").status_code == 401
        locked = login(client, "uma")  # the right password does not help while locked
        assert locked.status_code == 429
        assert int(locked.headers["Retry-After"]) == 600
        assert event_count(db, "security.login_locked") == 1
        frozen.advance(timedelta(seconds=601))
        assert login(client, "uma").status_code == 201
        with db.read() as session:
            reasons = [a.reason for a in throttle.recent_attempts(session, "customer", "uma")]
        # Newest first: every failure and refusal is on record, with no password in it.
        assert reasons[0] == "ok"
        assert reasons.count("bad_credentials") == 3
        assert reasons.count("locked") == 1


def test_unknown_and_existing_accounts_get_the_same_replies(
    settings: Settings, frozen: clock.FrozenClock
) -> None:
    with app_client(settings, login_max_failures=2) as client:
        register(client, "vera", device=False)
        replies = {}
        for username in ("vera", "nobody-here"):
            replies[username] = [login(client, username, "not-the-password") for _ in range(3)]
        for real, ghost in zip(replies["vera"], replies["nobody-here"], strict=True):
            assert real.status_code == ghost.status_code
            assert real.json()["detail"] == ghost.json()["detail"]
        assert [r.status_code for r in replies["vera"]] == [401, 401, 429]


def test_staff_can_lift_a_lock_and_it_is_audited(
    settings: Settings, frozen: clock.FrozenClock, db: Database
) -> None:
    with app_client(settings, login_max_failures=2) as client:
        register(client, "wren", device=False)
        for _ in range(2):
            login(client, "wren", "not-the-password")
        assert login(client, "wren").status_code == 429
        body = {"subject_kind": "customer", "username": "wren"}
        viewer = client.post(
            "/v1/staff/login-unlocks", headers=staff_auth(settings, "viewer"), json=body
        )
        assert viewer.status_code == 403
        unlocked = client.post(
            "/v1/staff/login-unlocks", headers=staff_auth(settings, "operations"), json=body
        )
        assert unlocked.status_code == 204
        assert login(client, "wren").status_code == 201
        assert event_count(db, "identity.login_unlocked") == 1


def test_one_source_ip_is_throttled_across_accounts(
    settings: Settings, frozen: clock.FrozenClock
) -> None:
    with app_client(settings, login_ip_max_failures=4, login_max_failures=100) as client:
        for number in range(4):
            assert login(client, f"sprayed-{number}", "Spring2026!").status_code == 401
        # Password spraying: a fifth account from the same address is refused unseen.
        assert login(client, "sprayed-5", "Spring2026!").status_code == 429


# --- sessions ---------------------------------------------------------------------------


def test_refresh_rotates_and_a_reused_refresh_token_ends_every_session(
    client: TestClient, db: Database
) -> None:
    register(client, "yara", device=False)
    first = client.post("/v1/sessions", json={"username": "yara", "password": PASSWORD}).json()
    assert first["refresh_token"] and first["expires_in"] > 0
    rotated = client.post("/v1/sessions/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 201
    second = rotated.json()
    assert second["token"] != first["token"]
    assert second["refresh_token"] != first["refresh_token"]
    old_access = {"Authorization": f"Bearer {first['token']}"}
    new_access = {"Authorization": f"Bearer {second['token']}"}
    assert client.get("/v1/me", headers=old_access).status_code == 401
    assert client.get("/v1/me", headers=new_access).status_code == 200

    # The first refresh token again: someone copied it. Everything ends.
    reused = client.post("/v1/sessions/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert client.get("/v1/me", headers=new_access).status_code == 401
    assert (
        client.post(
            "/v1/sessions/refresh", json={"refresh_token": second["refresh_token"]}
        ).status_code
        == 401
    )
    assert event_count(db, "security.refresh_token_reused") == 1
    with db.read() as session:
        tokens = session.scalars(select(AuthSession.token_hash)).all()
    assert first["token"] not in tokens and all(len(digest) == 64 for digest in tokens)


def test_an_expired_refresh_token_is_refused(
    client: TestClient, settings: Settings, frozen: clock.FrozenClock
) -> None:
    register(client, "zoe", device=False)
    issued = client.post("/v1/sessions", json={"username": "zoe", "password": PASSWORD}).json()
    frozen.advance(timedelta(seconds=settings.refresh_ttl_seconds + 1))
    reply = client.post("/v1/sessions/refresh", json={"refresh_token": issued["refresh_token"]})
    assert reply.status_code == 401
    assert "expired" in reply.json()["detail"]


def test_sessions_are_listed_and_revoked_one_by_one_or_everywhere(client: TestClient) -> None:
    abel = register(client, "abel", device=False)
    laptop = client.post(
        "/v1/sessions",
        json={"username": "abel", "password": PASSWORD},
        headers={"User-Agent": "laptop-browser"},
    ).json()
    laptop_auth = {"Authorization": f"Bearer {laptop['token']}"}
    listed = client.get("/v1/sessions", headers=abel.auth).json()
    assert len(listed) == 2
    assert [s["current"] for s in listed].count(True) == 1
    assert {s["user_agent"] for s in listed} >= {"laptop-browser"}

    # Another customer cannot end abel's session, nor learn that it exists.
    bela = register(client, "bela", device=False)
    stranger = client.delete(f"/v1/sessions/{laptop['session_id']}", headers=bela.auth)
    assert stranger.status_code == 404
    assert client.get("/v1/me", headers=laptop_auth).status_code == 200

    assert (
        client.delete(f"/v1/sessions/{laptop['session_id']}", headers=abel.auth).status_code == 204
    )
    assert client.get("/v1/me", headers=laptop_auth).status_code == 401
    assert len(client.get("/v1/sessions", headers=abel.auth).json()) == 1

    again = client.post("/v1/sessions", json={"username": "abel", "password": PASSWORD}).json()
    assert client.delete("/v1/sessions", headers=abel.auth).status_code == 204
    assert client.get("/v1/me", headers=abel.auth).status_code == 401
    assert (
        client.get("/v1/me", headers={"Authorization": f"Bearer {again['token']}"}).status_code
        == 401
    )
    assert client.get("/v1/me", headers=bela.auth).status_code == 200


def test_a_session_is_bound_to_the_device_that_logged_in(client: TestClient) -> None:
    cora = register(client, "cora")
    dana = register(client, "dana")
    bound = client.post(
        "/v1/sessions",
        json={"username": "cora", "password": PASSWORD, "device_id": cora.device_id},
    )
    assert bound.status_code == 201
    auth = {"Authorization": f"Bearer {bound.json()['token']}"}
    current = [s for s in client.get("/v1/sessions", headers=auth).json() if s["current"]]
    assert current[0]["device_id"] == cora.device_id
    someone_elses = client.post(
        "/v1/sessions",
        json={"username": "cora", "password": PASSWORD, "device_id": dana.device_id},
    )
    assert someone_elses.status_code == 422


# --- staff MFA --------------------------------------------------------------------------


def test_staff_sign_in_needs_password_and_totp(
    client: TestClient, settings: Settings, db: Database
) -> None:
    secret = pyotp.random_base32()
    db.transact(
        lambda session: identity.create_staff(
            session,
            settings,
            username="ella",
            role="viewer",
            password=STAFF_PASSWORD,
            totp_secret=secret,
        )
    )
    body = {"username": "ella", "password": STAFF_PASSWORD}
    no_code = client.post("/v1/staff/sessions", json=body)
    assert no_code.status_code == 403
    assert no_code.json()["code"] == "second-factor-required"
    wrong = client.post("/v1/staff/sessions", json={**body, "otp": "000000"})
    assert wrong.status_code == 401
    code = totp.code_at(secret, clock.now())
    signed_in = client.post("/v1/staff/sessions", json={**body, "otp": code})
    assert signed_in.status_code == 201, signed_in.text
    # A TOTP code is good once.
    assert client.post("/v1/staff/sessions", json={**body, "otp": code}).status_code == 401
    auth = {"Authorization": f"Bearer {signed_in.json()['token']}"}
    levels = [s["auth_level"] for s in client.get("/v1/sessions", headers=auth).json()]
    assert "password+totp" in levels
    # A customer password cannot open a staff session, nor the reverse.
    register(client, "ella-customer", device=False)
    assert (
        client.post(
            "/v1/staff/sessions", json={"username": "ella-customer", "password": PASSWORD}
        ).status_code
        == 401
    )


def test_staff_without_an_authenticator_cannot_sign_in(
    client: TestClient, settings: Settings, db: Database
) -> None:
    db.transact(
        lambda session: identity.create_staff(
            session, settings, username="finn", role="viewer", password=STAFF_PASSWORD
        )
    )
    reply = client.post("/v1/staff/sessions", json={"username": "finn", "password": STAFF_PASSWORD})
    assert reply.status_code == 403
    assert "TOTP" in reply.json()["detail"]


# --- registration: KYC and password policy ----------------------------------------------


def mainland_id(first_17: str = "11010519491231002") -> str:
    return first_17 + kyc.mainland_check_character(first_17)


def registration(username: str, **extra: object) -> dict[str, object]:
    return {
        "username": username,
        "password": PASSWORD,
        "display_name": username.title(),
        "phone": "+8613800138000",
        **extra,
    }


def test_real_name_registration_checks_the_id_and_masks_it(
    client: TestClient, db: Database
) -> None:
    number = mainland_id()
    created = client.post(
        "/v1/customers",
        json=registration(
            "gina", legal_name="Zhang Gina", id_document_type="cn_resident_id", id_number=number
        ),
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["kyc_tier"] == 1
    assert body["id_number_masked"] == number[:3] + "*" * 11 + number[-4:]
    assert number not in created.text
    assert body["phone_masked"] != "+8613800138000"
    with db.read() as session:
        stored = session.get(Customer, body["id"])
        assert stored is not None
        columns = [getattr(stored, c.key) for c in Customer.__table__.columns]
    assert number not in [str(value) for value in columns]

    duplicate = client.post(
        "/v1/customers",
        json=registration(
            "gina2", legal_name="Zhang Gina", id_document_type="cn_resident_id", id_number=number
        ),
    )
    assert duplicate.status_code == 409
    without_id = client.post("/v1/customers", json=registration("hana")).json()
    assert without_id["kyc_tier"] == 0


@pytest.mark.parametrize(
    ("number", "complaint"),
    [
        (mainland_id()[:17] + ("0" if mainland_id()[-1] != "0" else "1"), "check digit"),
        ("99010519491231002X", "province"),
        ("110105194913310021", "birth date"),
        ("11010519491231", "17 digits"),
    ],
)
def test_a_bad_mainland_id_is_refused_without_echoing_it(
    client: TestClient, number: str, complaint: str
) -> None:
    reply = client.post(
        "/v1/customers",
        json=registration(
            "ivan", legal_name="Li Ivan", id_document_type="cn_resident_id", id_number=number
        ),
    )
    assert reply.status_code == 422
    assert complaint in reply.json()["detail"]
    assert number not in reply.text


@pytest.mark.parametrize("password", ["qwertyuiop", "1234567890", "Password123"])
def test_common_passwords_are_refused(client: TestClient, password: str) -> None:
    reply = client.post("/v1/customers", json={**registration("jade"), "password": password})
    assert reply.status_code == 422
    assert "commonly used" in reply.json()["detail"]
    assert password not in reply.text


def test_login_rehashes_when_argon2_parameters_change(
    database_url: str, tmp_path: Path, db: Database
) -> None:
    weak = make_settings(database_url, tmp_path, argon2_time_cost=1, argon2_memory_kib=64)
    with TestClient(create_app(weak)) as client:
        customer = register(client, "kira", device=False)
    with db.read() as session:
        before = session.get(Customer, customer.id).password_hash  # type: ignore[union-attr]
    assert "t=1" in before and "m=64" in before
    stronger = make_settings(database_url, tmp_path, argon2_time_cost=2, argon2_memory_kib=128)
    with TestClient(create_app(stronger)) as client:
        assert login(client, "kira").status_code == 201
    with db.read() as session:
        after = session.get(Customer, customer.id).password_hash  # type: ignore[union-attr]
    assert "t=2" in after and "m=128" in after
    with TestClient(create_app(stronger)) as client:
        assert login(client, "kira").status_code == 201


def test_a_logged_out_sessions_refresh_token_is_refused_without_ending_the_others(
    client: TestClient, db: Database
) -> None:
    lena = register(client, "lena", device=False)
    phone = client.post("/v1/sessions", json={"username": "lena", "password": PASSWORD}).json()
    phone_auth = {"Authorization": f"Bearer {phone['token']}"}
    assert client.delete("/v1/sessions/current", headers=phone_auth).status_code == 204
    reply = client.post("/v1/sessions/refresh", json={"refresh_token": phone["refresh_token"]})
    assert reply.status_code == 401
    assert client.get("/v1/me", headers=lena.auth).status_code == 200
    assert event_count(db, "security.refresh_token_reused") == 0
