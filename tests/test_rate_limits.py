"""Rate limits on the API's write requests (payguard/rate_limits.py): token buckets per
session and per source address, 429 rate-limited with Retry-After, one audited event."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from payguard.audit.models import AuditRecord
from payguard.rate_limits import Limit, LocalBuckets, RedisBuckets
from payguard.settings import Settings
from tests.conftest import app_client, outbox_payloads
from tests.factories import PASSWORD, register

LIMITED: dict[str, object] = {
    "rate_limit_enabled": True,  # tests/conftest.py switches it off elsewhere
    "rate_limit_ip_per_second": 0.01,  # no refill within a test, however slow
    "rate_limit_ip_burst": 6,
    "rate_limit_session_per_second": 0.01,
    "rate_limit_session_burst": 3,
}


def limited_client(database_url: str, tmp_path: Path, **overrides: object) -> TestClient:
    return app_client(database_url, tmp_path, LIMITED, **overrides)


@pytest.fixture
def limited(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with limited_client(database_url, tmp_path) as client:
        yield client


def topics(client: TestClient, topic: str) -> list[dict[str, object]]:
    return outbox_payloads(client.app.state.services.db, topic)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- the buckets


def test_a_bucket_gives_its_burst_then_refills_at_its_rate() -> None:
    buckets = LocalBuckets()
    limit = Limit(rate=20.0, burst=3)
    waits = [asyncio.run(buckets.take("k", limit)) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0 < waits[3] <= 1 / 20 + 0.01  # the wait for one token at 20 a second
    assert asyncio.run(buckets.take("other", limit)) == 0.0  # keys are independent
    time.sleep(0.06)
    assert asyncio.run(buckets.take("k", limit)) == 0.0


@pytest.mark.redis
def test_redis_buckets_are_shared_by_every_process(redis_url: str) -> None:
    prefix = f"test:rate:{uuid.uuid4().hex}:"
    limit = Limit(rate=0.1, burst=2)

    async def run() -> list[float]:
        first, second = RedisBuckets(redis_url, prefix), RedisBuckets(redis_url, prefix)
        try:
            return [
                await first.take("ip:198.51.100.1", limit),
                await second.take("ip:198.51.100.1", limit),
                await first.take("ip:198.51.100.1", limit),
                await second.take("ip:198.51.100.2", limit),
            ]
        finally:
            await first.client.aclose()
            await second.client.aclose()

    waits = asyncio.run(run())
    assert waits[0] == 0.0 and waits[1] == 0.0
    assert 5 < waits[2] <= 10  # the third from either process waits for the refill
    assert waits[3] == 0.0


@pytest.mark.redis
def test_with_redis_two_app_processes_share_the_buckets(
    database_url: str, tmp_path: Path, redis_url: str
) -> None:
    unique = uuid.uuid4().hex
    shared = {
        "redis_url": redis_url,
        "rate_limit_redis_prefix": f"test:rate:{unique}:",
        "risk_redis_prefix": f"test:risk:{unique}:",
    }
    with (
        limited_client(database_url, tmp_path, **shared) as first,
        limited_client(database_url, tmp_path, **shared) as second,
    ):
        codes = [
            client.post("/v1/payments", json={}).status_code
            for client in (first, second, first, second, first, second, first)
        ]
    assert codes == [401] * 6 + [429]  # one bucket of 6 for the address, whichever process


# ---------------------------------------------------------------------- the middleware


def test_a_flood_from_one_address_gets_429_with_retry_after(limited: TestClient) -> None:
    replies = [limited.post("/v1/payments", json={"amount": 1}) for _ in range(8)]
    assert [reply.status_code for reply in replies[:6]] == [401] * 6
    refused = replies[6]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    problem = refused.json()
    assert problem["type"] == "https://payguard.dev/problems/rate-limited"
    assert problem["code"] == "rate-limited" and problem["status"] == 429
    assert problem["limit_scope"] == "ip" and problem["retry_after_seconds"] >= 1
    # Reads are never limited; the record is one event per key, not one per refusal.
    assert limited.get("/healthz").status_code == 200
    events = topics(limited, "security.rate_limited")
    assert len(events) == 1
    assert events[0]["limit_scope"] == "ip" and events[0]["path"] == "/v1/payments"


def test_a_flooding_session_is_limited_without_starving_its_address(
    database_url: str, tmp_path: Path
) -> None:
    with limited_client(
        database_url, tmp_path, rate_limit_ip_burst=20, rate_limit_session_burst=3
    ) as client:
        flooder = register(client, f"flood-{uuid.uuid4().hex[:6]}", device=False)
        other = register(client, f"calm-{uuid.uuid4().hex[:6]}", device=False)
        headers = {**flooder.auth, "Idempotency-Key": str(uuid.uuid4())}
        replies = [
            client.post("/v1/payments", json={"kind": "p2p"}, headers=headers) for _ in range(12)
        ]
        codes = [reply.status_code for reply in replies]
        assert codes[:3] == [422] * 3 and set(codes[3:]) == {429}
        assert replies[3].json()["limit_scope"] == "session"
        # The nine refusals did not drain the address's bucket: the other customer and
        # a login from the same address still get through.
        login = {"username": other.username, "password": PASSWORD}
        assert client.post("/v1/sessions", json=login).status_code == 201
        assert (
            client.post(
                "/v1/payments", json={"kind": "p2p"}, headers={**other.auth, "Idempotency-Key": "k"}
            ).status_code
            == 422
        )
        [event] = topics(client, "security.rate_limited")
        assert event["limit_scope"] == "session" and event["customer_id"] == flooder.id
        assert "session_id" in event
        services = client.app.state.services  # type: ignore[attr-defined]
        with services.db.read() as session:
            audited = session.scalars(
                select(AuditRecord).where(AuditRecord.action == "security.rate_limited")
            ).all()
        assert [record.actor for record in audited] == [f"customer:{flooder.id}"]


def test_the_limits_can_be_switched_off(database_url: str, tmp_path: Path) -> None:
    with limited_client(database_url, tmp_path, rate_limit_enabled=False) as client:
        codes = [client.post("/v1/payments", json={}).status_code for _ in range(12)]
    assert codes == [401] * 12  # every request reaches the app (and is refused there)


def test_the_defaults_are_sane() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.rate_limit_enabled
    assert settings.rate_limit_session_burst < settings.rate_limit_ip_burst
    assert settings.rate_limit_session_per_second <= settings.rate_limit_ip_per_second
