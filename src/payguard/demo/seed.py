"""Seed demo staff, customers, a merchant and a little history; safe to run again."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from payguard import ids
from payguard.db.engine import Database
from payguard.identity import service as identity
from payguard.ledger import service as ledger
from payguard.ledger.models import SystemAccount
from payguard.payments import service as payments
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
    database.transact(lambda session: _seed(session, settings))
    return SeedSummary(created=True, customer_usernames=usernames)


def _seed(session: Session, settings: Settings) -> None:
    password = settings.demo_password.get_secret_value()
    identity.create_staff(session, settings, username=DEMO_STAFF, role="admin", password=password)
    currency = settings.default_currency
    settlement = ledger.system_account_id(session, SystemAccount.BANK_SETTLEMENT, currency)
    owners: dict[str, str] = {}
    for username, display_name, tier, opening in DEMO_CUSTOMERS:
        customer, wallet_id = identity.register_customer(
            session,
            settings,
            username=username,
            password=password,
            display_name=display_name,
            kyc_tier=tier,
        )
        owners[username] = customer.id
        if opening:
            # Opening balances arrive the way real money does: from the bank side.
            ledger.post_transfer(
                session,
                debit_account_id=settlement,
                credit_account_id=wallet_id,
                amount=opening,
                currency=currency,
                kind="top_up",
                reference=ids.new_id("payment"),
                memo="demo opening balance",
            )
    payments.create_merchant(
        session,
        settings,
        name="Corner Café",
        owner_customer_id=owners["cafe_owner"],
        currency=currency,
    )
