"""Seed demo staff, customers, a merchant and a little history; safe to run again."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from payguard.client.signing import DeviceKey, sign_instruction
from payguard.db.engine import Database
from payguard.errors import ChallengeRequired
from payguard.identity import devices, notifications, stepup
from payguard.identity import service as identity
from payguard.identity.service import Principal
from payguard.payments import service as payments
from payguard.payments.rails import SimulatedRail
from payguard.payments.schemas import PaymentRequest
from payguard.risk import lists
from payguard.risk.engine import build_engine
from payguard.settings import Settings

# username, display name, KYC tier, opening top-up, phone (a reserved-looking demo number)
DEMO_CUSTOMERS = (
    ("alice", "Alice Demo", 2, 500_000, "+8613800000001"),
    ("bob", "Bob Demo", 1, 200_000, "+8613800000002"),
    ("carol", "Carol Demo", 0, 20_000, "+8613800000003"),
    ("cafe_owner", "Corner Café owner", 2, 0, "+8613800000004"),
)
DEMO_STAFF = "admin"


@dataclass
class SeedSummary:
    created: bool
    customer_usernames: list[str] = field(default_factory=list)
    staff_username: str = DEMO_STAFF


def seed_demo(database: Database, settings: Settings) -> SeedSummary:
    usernames = [username for username, *_ in DEMO_CUSTOMERS]
    with database.read() as session:
        if identity.find_customer(session, usernames[0]) is not None:
            return SeedSummary(created=False, customer_usernames=usernames)
    owners = database.transact(lambda session: _seed(session, settings))
    _seed_history(database, settings, owners)
    database.transact(lambda session: _seed_risk_lists(session, settings, owners))
    return SeedSummary(created=True, customer_usernames=usernames)


def _seed_risk_lists(session: Session, settings: Settings, owners: dict[str, str]) -> None:
    """Carol's wallet is reported as a mule: paying her shows a blocked payment."""
    lists.add_entry(
        session,
        settings,
        list_name="block",
        subject="payee",
        value=identity.wallet_ids(session, owners["carol"])[0],
        reason="demo: reported by a customer as a money-mule account",
        by="demo-seed",
    )


@dataclass
class _DemoDevice:
    """A seed-time device: its private key lives only in memory and is then forgotten."""

    customer_id: str
    device_id: str
    key: DeviceKey


def _seed_history(database: Database, settings: Settings, owners: dict[str, str]) -> None:
    """Opening top-ups and a few payments, made through the real payment pipeline:
    signed by a device key and, where policy asks, passing step-up by SMS code."""
    service = payments.PaymentService(
        database, settings, build_engine(database, settings), SimulatedRail()
    )
    currency = settings.default_currency
    devices_by_user = {
        username: _register_seed_device(database, settings, customer_id)
        for username, customer_id in owners.items()
    }

    def pay(username: str, **fields: object) -> None:
        device = devices_by_user[username]
        principal = Principal(kind="customer", subject_id=device.customer_id, session_id="seed")
        key = f"demo-seed-{uuid.uuid4()}"
        scope = payments.IdempotencyScope(f"customer:{device.customer_id}", key, key)
        instruction = {"currency": currency, **fields}

        def submit(challenge_id: str | None = None) -> None:
            body = sign_instruction(
                instruction,
                key=device.key,
                device_id=device.device_id,
                idempotency_key=key,
                challenge_id=challenge_id,
            )
            service.submit(principal, PaymentRequest.model_validate(body), scope)

        try:
            submit()
        except ChallengeRequired as required:
            challenge_id = str(required.extra["challenge_id"])
            _pass_step_up_by_sms(database, settings, device.customer_id, challenge_id)
            submit(challenge_id)

    for username, _name, _tier, opening, _phone in DEMO_CUSTOMERS:
        if opening:
            pay(username, kind="top_up", amount=opening, bank_account="6222020200001234")
    with database.read() as session:
        merchant_id = payments.list_merchants(session)[0].id
    pay("alice", kind="p2p", amount=12_345, payee_username="bob", memo="dinner")
    pay("bob", kind="p2p", amount=2_000, payee_username="carol", memo="coffee")
    pay("alice", kind="merchant", amount=3_800, merchant_id=merchant_id, memo="latte x2")
    pay("bob", kind="withdrawal", amount=10_000, bank_account="6222020200005678")


def _register_seed_device(database: Database, settings: Settings, customer_id: str) -> _DemoDevice:
    key = DeviceKey.generate()

    def register(session: Session) -> str:
        device = devices.register(
            session,
            settings,
            customer_id=customer_id,
            session_id="seed",
            name="demo seed device",
            algorithm=key.algorithm,
            public_key=key.public_pem,
            platform={"os": "seed"},
            factor="seed",
        )
        return device.id

    return _DemoDevice(customer_id, database.transact(register), key)


def _pass_step_up_by_sms(
    database: Database, settings: Settings, customer_id: str, challenge_id: str
) -> None:
    """What the customer does on their phone: ask for the code, read it, type it in."""

    def send(session: Session) -> str:
        stepup.send_code(session, settings, customer_id, challenge_id, "sms")
        customer = identity.get_customer(session, customer_id)
        phone = identity.personal_data(session, settings, customer).phone
        code = notifications.latest_sent_code(session, settings, phone or "")
        assert code is not None, "the outbox sender keeps every code it sends"
        return code

    code = database.transact(send)
    passed = database.transact(
        lambda session: stepup.complete(
            session, settings, customer_id, challenge_id, factor="sms", code=code
        )
    )
    if not passed:
        raise RuntimeError("the demo step-up code was refused")


def _seed(session: Session, settings: Settings) -> dict[str, str]:
    password = settings.demo_password.get_secret_value()
    identity.create_staff(
        session,
        settings,
        username=DEMO_STAFF,
        role="admin",
        password=password,
        totp_secret=settings.demo_staff_totp_secret.get_secret_value(),
    )
    currency = settings.default_currency
    owners: dict[str, str] = {}
    for username, display_name, tier, _opening, phone in DEMO_CUSTOMERS:
        customer, _wallet_id = identity.register_customer(
            session,
            settings,
            username=username,
            password=password,
            display_name=display_name,
            kyc_tier=tier,
            phone=phone,
        )
        owners[username] = customer.id
    payments.create_merchant(
        session,
        settings,
        name="Corner Café",
        owner_customer_id=owners["cafe_owner"],
        currency=currency,
    )
    return owners
