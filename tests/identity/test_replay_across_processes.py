"""A replayed instruction is refused by another server process, through the shared Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from sqlalchemy import func, select

from payguard.db.engine import Database
from payguard.identity.models import SeenNonce
from payguard.settings import Settings
from tests.conftest import serve
from tests.factories import Outbox, register, signed, top_up


@pytest.fixture
def outbox(settings: Settings) -> Iterator[Outbox]:
    database = Database(settings.database_url)
    yield Outbox(database, settings)
    database.dispose()


@pytest.mark.redis
def test_a_replay_to_a_second_process_is_refused_by_the_shared_redis_cache(
    settings: Settings, redis_url: str, outbox: Outbox
) -> None:
    if not settings.is_sqlite:
        pytest.skip("one backend is enough for a two-process test")
    env = {"PAYGUARD_REDIS_URL": redis_url}
    with (
        serve(settings, **env) as first,
        serve(settings, **env) as second,
        httpx.Client(base_url=first, timeout=30) as one,
        httpx.Client(base_url=second, timeout=30) as two,
    ):
        ann = register(one, "ann", db=outbox)
        register(one, "bob", db=outbox, device=False)
        top_up(one, ann, 100_000, db=outbox)

        key = str(uuid.uuid4())
        body = signed(
            ann, {"kind": "p2p", "amount": 500, "currency": "CNY", "payee_username": "bob"}, key
        )
        headers = {**ann.auth, "Idempotency-Key": key}
        assert one.post("/v1/payments", headers=headers, json=body).status_code == 201
        replay = two.post("/v1/payments", headers=headers, json=body)
        assert replay.status_code == 409, replay.text
        assert replay.json()["code"] == "instruction-replayed"

    nonce_key = f"payguard:nonce:{ann.device_id}:{body['nonce']}"
    assert redis.Redis.from_url(redis_url).ttl(nonce_key) > 0
    with outbox.db.read() as session:  # Redis took the nonces, not the database
        assert session.scalar(select(func.count()).select_from(SeenNonce)) == 0
