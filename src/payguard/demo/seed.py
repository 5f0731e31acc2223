"""Seed demo staff, customers, a merchant and a little history; safe to run again."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from payguard.db.engine import Database
from payguard.identity import service as identity
from payguard.identity.service import Principal
from payguard.payments import service as payments
from payguard.payments.rails import SimulatedRail
from payguard.payments.schemas import PaymentRequest
from payguard.risk.engine import PassThroughAssessor
from payguard.settings import Settings

DEMO_CUSTOMERS = (
    ("alice", "Alice Demo", 2, 500_000),
    ("bob", "Bob Demo", 1, 200_000),
    ("carol", "Carol Demo", 0, 20_000),
    ("cafe_owner", "Corner Café owner", 2, 0),
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
    return SeedSummary(created=True, customer_usernames=usernames)


def _seed_history(database: Database, settings: Settings, owners: dict[str, str]) -> None:
    """Opening top-ups and a few payments, made through the real payment pipeline."""
    service = payments.PaymentService(database, settings, PassThroughAssessor(), SimulatedRail())
    currency = settings.default_currency

    def pay(username: str, **fields: object) -> None:
        principal = Principal(kind="customer", subject_id=owners[username], session_id="seed")
        request = PaymentRequest.model_validate({"currency": currency, **fields})
        service.submit(principal, request, None)

    for username, _name, _tier, opening in DEMO_CUSTOMERS:
        if opening:
            pay(username, kind="top_up", amount=opening, bank_account="6222020200001234")
    with database.read() as session:
        merchant_id = payments.list_merchants(session)[0].id
    pay("alice", kind="p2p", amount=12_345, payee_username="bob", memo="dinner")
    pay("bob", kind="p2p", amount=2_000, payee_username="carol", memo="coffee")
    pay("alice", kind="merchant", amount=3_800, merchant_id=merchant_id, memo="latte x2")
    pay("bob", kind="withdrawal", amount=10_000, bank_account="6222020200005678")


def _seed(session: Session, settings: Settings) -> dict[str, str]:
    password = settings.demo_password.get_secret_value()
    identity.create_staff(session, settings, username=DEMO_STAFF, role="admin", password=password)
    currency = settings.default_currency
    owners: dict[str, str] = {}
    for username, display_name, tier, _opening in DEMO_CUSTOMERS:
        customer, _wallet_id = identity.register_customer(
            session,
            settings,
            username=username,
            password=password,
            display_name=display_name,
            kyc_tier=tier,
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
