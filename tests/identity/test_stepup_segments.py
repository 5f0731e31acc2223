"""Step-up segments (identity/stepup_segments.py): the payment pipeline demands step-up of
exactly the payers in a raised segment, until it is lifted or expires."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from payguard import clock
from payguard.db.engine import Database
from payguard.errors import NotFound, ValidationProblem
from payguard.identity import stepup_segments
from payguard.identity.models import Device
from payguard.settings import Settings
from tests.factories import Customer, pay, register, top_up


def _db(client: TestClient) -> Database:
    found: Database = client.app.state.services.db  # type: ignore[attr-defined]
    return found


def raise_segment(client: TestClient, segment: str, value: Any = None, hours: int = 2) -> str:
    def work(session: Any) -> str:
        return stepup_segments.raise_step_up(
            session, segment=segment, value=value, hours=hours, reason="incident", by="stf_t"
        ).id

    result: str = _db(client).transact(work)
    return result


def lift(client: TestClient, segment_id: str) -> None:
    _db(client).transact(lambda session: stepup_segments.lift(session, segment_id, by="stf_t"))


def reasons(client: TestClient, payer: Customer, payee: Customer) -> list[str]:
    reply = pay(
        client, payer, step_up=False, kind="p2p", amount=300, payee_account_id=payee.wallet_id
    )
    if reply.status_code == 201:
        return []
    assert reply.status_code == 403 and reply.json()["code"] == "challenge-required", reply.text
    found: list[str] = reply.json()["reasons"]
    return found


def test_segments_demand_step_up_of_their_payers_only(
    client: TestClient, settings: Settings
) -> None:
    ann = register(client, "ann")
    bob = register(client, "bob", device=False)
    top_up(client, ann, 20_000)  # the device's first payment passes step-up once
    assert pay(client, ann, kind="p2p", amount=300, payee_account_id=bob.wallet_id).is_success
    assert reasons(client, ann, bob) == []

    tier = raise_segment(client, "kyc_tier", 0)
    higher = raise_segment(client, "kyc_tier", 3)
    assert reasons(client, ann, bob) == ["incident:kyc_tier"]
    lift(client, tier)
    assert reasons(client, ann, bob) == []  # tier 3 is not ann's
    lift(client, higher)

    other = raise_segment(client, "customer", bob.id)
    assert reasons(client, ann, bob) == []
    mine = raise_segment(client, "customer", ann.id)
    assert reasons(client, ann, bob) == ["incident:customer"]
    lift(client, mine)
    lift(client, other)

    young = raise_segment(client, "new_devices", 6)
    assert reasons(client, ann, bob) == ["incident:new_devices"]
    _db(client).transact(
        lambda session: session.execute(
            update(Device)
            .where(Device.id == ann.device_id)
            .values(created_at=clock.now() - timedelta(hours=7))
        )
    )
    assert reasons(client, ann, bob) == []  # the device is older than the segment's 6 h
    lift(client, young)

    everyone = raise_segment(client, "all", hours=1)
    assert reasons(client, ann, bob) == ["incident:all"]
    # Passing step-up lets the payment through; the segment stays until lifted or expired.
    assert pay(client, ann, kind="p2p", amount=300, payee_account_id=bob.wallet_id).is_success
    with _db(client).read() as session:
        later = clock.now() + timedelta(hours=2)
        assert (
            stepup_segments.matching_reasons(
                session, customer_id=ann.id, kyc_tier=0, device_registered_at=None, now=later
            )
            == []
        )
        assert [item.id for item in stepup_segments.active(session)] == [everyone]


def test_segments_are_validated(client: TestClient, settings: Settings) -> None:
    with _db(client).write() as session:
        for segment, value, hours, problem in (
            ("planet", None, 2, ValidationProblem),
            ("kyc_tier", 7, 2, ValidationProblem),
            ("new_devices", "soon", 2, ValidationProblem),
            ("all", "x", 2, ValidationProblem),
            ("customer", "cus_nobody", 2, NotFound),
            ("all", None, 0, ValidationProblem),
        ):
            with pytest.raises(problem):
                stepup_segments.raise_step_up(
                    session, segment=segment, value=value, hours=hours, reason="x", by="stf_t"
                )
