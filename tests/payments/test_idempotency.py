"""Idempotency keys: replays, and parallel duplicates against a real server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi.testclient import TestClient

from payguard.db.engine import Database
from payguard.settings import Settings
from tests.factories import (
    PASSWORD,
    Outbox,
    balance,
    invariants,
    pay,
    payment_count,
    register,
    signed,
    top_up,
)


def test_same_key_same_body_replays_the_original(client: TestClient, settings: Settings) -> None:
    lia = register(client, "lia")
    register(client, "max")
    top_up(client, lia, 5_000)
    first = pay(client, lia, key="pay-1", kind="p2p", amount=700, payee_username="max")
    again = pay(client, lia, key="pay-1", kind="p2p", amount=700, payee_username="max")
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.json() == first.json()
    assert balance(client, lia) == 4_300
    # Keys are scoped per caller: another customer may use the same key freely.
    max_ = register(client, "nia")
    top_up(client, max_, 100)
    assert (
        pay(client, max_, key="pay-1", kind="p2p", amount=50, payee_username="lia").status_code
        == 201
    )
    assert payment_count(client, settings) == 4


def test_twenty_parallel_identical_requests_make_one_payment(
    live_server: str, settings: Settings, db: Database
) -> None:
    outbox = Outbox(db, settings)
    with httpx.Client(base_url=live_server, timeout=30) as client:
        ola = register(client, "ola", db=outbox)
        register(client, "pia", device=False)
        top_up(client, ola, 100_000, db=outbox)
        headers = {**ola.auth, "Idempotency-Key": "parallel-key"}
        body = {"kind": "p2p", "amount": 1_000, "currency": "CNY", "payee_username": "pia"}

        def send(_: int) -> httpx.Response:
            with httpx.Client(base_url=live_server, timeout=30) as own:
                # A retry is signed afresh (new nonce); the idempotency key makes it one payment.
                return own.post(
                    "/v1/payments", headers=headers, json=signed(ola, body, "parallel-key")
                )

        with ThreadPoolExecutor(max_workers=20) as pool:
            replies = list(pool.map(send, range(20)))
        statuses = sorted(reply.status_code for reply in replies)
        assert all(status == 201 for status in statuses), statuses
        assert len({reply.json()["id"] for reply in replies}) == 1
        assert sum(reply.headers.get("Idempotent-Replayed") == "true" for reply in replies) == 19
        assert balance(client, ola) == 99_000
        assert payment_count(client, settings) == 2
        assert invariants(client, settings)["ok"] is True


def login(client: TestClient, username: str) -> str:
    reply = client.post("/v1/sessions", json={"username": username, "password": PASSWORD})
    return str(reply.json()["token"])


def test_a_key_is_forgotten_after_its_retention(client: TestClient, settings: Settings) -> None:
    from datetime import UTC, datetime, timedelta

    from payguard import clock

    rex = register(client, "rex")
    register(client, "sue")
    top_up(client, rex, 5_000)
    start = datetime.now(UTC)
    frozen = clock.FrozenClock(start)
    previous = clock.set_clock(frozen)
    try:
        assert (
            pay(client, rex, key="old", kind="p2p", amount=100, payee_username="sue").status_code
            == 201
        )
        frozen.advance(timedelta(hours=settings.idempotency_ttl_hours - 1))
        rex.token = login(client, "rex")  # sessions last an hour; keys a day
        reused = pay(client, rex, key="old", kind="p2p", amount=200, payee_username="sue")
        assert reused.status_code == 409 and reused.json()["code"] == "idempotency-key-reused"
        frozen.advance(timedelta(hours=2))
        rex.token = login(client, "rex")
        fresh = pay(client, rex, key="old", kind="p2p", amount=200, payee_username="sue")
        assert fresh.status_code == 201 and "Idempotent-Replayed" not in fresh.headers
        assert balance(client, rex) == 5_000 - 300
    finally:
        clock.set_clock(previous)
