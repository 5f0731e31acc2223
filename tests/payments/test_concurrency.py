"""Parallel payments against a real server: money stays right, no 5xx, limits hold."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from payguard.db.engine import Database
from payguard.settings import Settings
from tests.factories import (
    Customer,
    Outbox,
    allow_list,
    invariants,
    register,
    set_tier,
    signed,
    staff_auth,
    top_up,
)


@pytest.fixture
def outbox(settings: Settings) -> Iterator[Outbox]:
    """The live server's database, where the tests read the SMS codes it 'sent'."""
    database = Database(settings.database_url)
    yield Outbox(database, settings)
    database.dispose()


WORKERS = 8
PAYMENTS_PER_WORKER = 500
ACCOUNTS = 20
OPENING = 1_000_000


def test_eight_workers_by_five_hundred_payments_keep_the_ledger_right(
    live_server: str, settings: Settings, outbox: Outbox
) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as client:
        customers = [register(client, f"c{index:02d}", db=outbox) for index in range(ACCOUNTS)]
        for customer in customers:
            set_tier(client, settings, customer, 3)
            allow_list(client, settings, customer)
            top_up(client, customer, OPENING, db=outbox)

        def worker(seed: int) -> list[tuple[int, str | None, str]]:
            rng = random.Random(seed)
            results: list[tuple[int, str | None, str]] = []
            # Overlapping pairs: half the traffic goes through five hot accounts.
            hot = customers[:5]
            with httpx.Client(base_url=live_server, timeout=60) as own:
                for _ in range(PAYMENTS_PER_WORKER):
                    payer: Customer = rng.choice(hot if rng.random() < 0.5 else customers)
                    payee = rng.choice([c for c in customers if c is not payer])
                    key = str(uuid.uuid4())
                    instruction = {
                        "kind": "p2p",
                        "amount": rng.randint(1, 40_000),
                        "currency": "CNY",
                        "payee_account_id": payee.wallet_id,
                    }
                    reply = own.post(
                        "/v1/payments",
                        headers={**payer.auth, "Idempotency-Key": key},
                        json=signed(payer, instruction, key),
                    )
                    body = reply.json()
                    results.append((reply.status_code, body.get("id"), body.get("code", "")))
            return results

        with ThreadPoolExecutor(max_workers=WORKERS) as pool:
            outcomes = [item for chunk in pool.map(worker, range(WORKERS)) for item in chunk]

        statuses = Counter(status for status, _id, _code in outcomes)
        assert not [status for status in statuses if status >= 500], statuses
        refusals = Counter(code for status, _id, code in outcomes if status != 201)
        assert set(refusals) <= {"insufficient-funds", "limit-exceeded"}, refusals
        acknowledged = [payment_id for status, payment_id, _code in outcomes if status == 201]
        assert len(acknowledged) > WORKERS * PAYMENTS_PER_WORKER // 2

        staff = staff_auth(settings, "viewer")
        for payment_id in acknowledged:
            payment = client.get(f"/v1/payments/{payment_id}", headers=staff).json()
            assert payment["status"] == "confirmed" and payment["transfer_id"], payment
        total = sum(
            client.get(f"/v1/accounts/{c.wallet_id}", headers=c.auth).json()["ledger_balance"]
            for c in customers
        )
        assert total == ACCOUNTS * OPENING
        report = invariants(client, settings)
        assert report["ok"] is True, report


def test_parallel_payments_cannot_overshoot_the_daily_limit(
    live_server: str, settings: Settings, outbox: Outbox
) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as client:
        rich = register(client, "rich", db=outbox)
        register(client, "friend", db=outbox)
        allow_list(client, settings, rich)
        top_up(client, rich, 1_000_000, db=outbox)

        # Tier 0: 1,000.00 CNY a day; twenty payments of 100.00 race for ten slots.
        def send(index: int) -> int:
            with httpx.Client(base_url=live_server, timeout=60) as own:
                key = f"limit-{index}"
                instruction = {
                    "kind": "p2p",
                    "amount": 10_000,
                    "currency": "CNY",
                    "payee_username": "friend",
                }
                reply = own.post(
                    "/v1/payments",
                    headers={**rich.auth, "Idempotency-Key": key},
                    json=signed(rich, instruction, key),
                )
                return reply.status_code

        with ThreadPoolExecutor(max_workers=20) as pool:
            codes = Counter(pool.map(send, range(20)))
        assert codes == {201: 10, 422: 10}
        wallet = client.get(f"/v1/accounts/{rich.wallet_id}", headers=rich.auth).json()
        assert wallet["ledger_balance"] == 1_000_000 - 100_000
