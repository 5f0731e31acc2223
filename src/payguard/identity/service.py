"""Customers, staff and sessions (first cut; the authentication issue deepens it).

Tokens are 256-bit random strings handed to the client once and stored only as
SHA-256 digests, so a database leak does not leak usable sessions. A lookup by
digest is an index probe, which keeps the comparison out of Python entirely.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.errors import Conflict, NotAuthenticated, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.identity.models import AuthSession, Customer, StaffUser
from payguard.identity.passwords import hash_password, needs_rehash, verify_password
from payguard.ledger import service as ledger
from payguard.ledger.models import AccountKind
from payguard.settings import Settings

STAFF_ROLES = (
    "viewer",
    "risk_analyst",
    "incident_commander",
    "operations",
    "compliance",
    "auditor",
    "admin",
)
LOGIN_FAILED = "the username or password is not correct"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a customer or a staff member, through one session."""

    kind: str  # "customer" | "staff"
    subject_id: str
    session_id: str
    role: str | None = None
    # The bound device of a customer session, and the factors the session proved.
    device_id: str | None = None
    auth_level: str = "password"

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"


@dataclass(frozen=True)
class IssuedSession:
    token: str
    session_id: str
    expires_in: int


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_password_rules(password: str) -> None:
    if len(password) < 10:
        raise ValidationProblem("the password must be at least 10 characters long")
    if len(password) > 256:
        raise ValidationProblem("the password must be at most 256 characters long")


def register_customer(
    session: Session,
    settings: Settings,
    *,
    username: str,
    password: str,
    display_name: str,
    currency: str | None = None,
    kyc_tier: int = 0,
) -> tuple[Customer, str]:
    """Create a customer and their wallet; returns the customer and the wallet id."""
    _check_password_rules(password)
    customer = Customer(
        id=ids.new_id("customer"),
        username=username.lower(),
        display_name=display_name,
        password_hash=hash_password(settings, password),
        kyc_tier=kyc_tier,
        status="active",
        created_at=clock.now(),
    )
    session.add(customer)
    try:
        session.flush()
    except IntegrityError as error:
        raise Conflict("that username is taken; choose another") from error
    wallet = ledger.open_account(
        session,
        kind=AccountKind.CUSTOMER_WALLET,
        currency=currency or settings.default_currency,
        name=f"wallet of {customer.id}",
        owner_id=customer.id,
    )
    events.emit(session, "identity.customer_registered", {"customer_id": customer.id})
    return customer, wallet.id


def get_customer(session: Session, customer_id: str) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"no customer '{customer_id}'")
    return customer


def find_customer(session: Session, username: str) -> Customer | None:
    return session.scalar(select(Customer).where(Customer.username == username.lower()))


def _issue(
    session: Session, settings: Settings, kind: str, subject_id: str, customer_id: str | None
) -> IssuedSession:
    token = secrets.token_urlsafe(32)
    now = clock.now()
    record = AuthSession(
        id=ids.new_id("session"),
        token_hash=token_digest(token),
        subject_kind=kind,
        subject_id=subject_id,
        customer_id=customer_id,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.session_ttl_seconds),
    )
    session.add(record)
    session.flush()
    return IssuedSession(token=token, session_id=record.id, expires_in=settings.session_ttl_seconds)


def login_customer(
    session: Session, settings: Settings, *, username: str, password: str
) -> IssuedSession:
    customer = find_customer(session, username)
    valid = verify_password(settings, customer.password_hash if customer else None, password)
    if customer is None or not valid or customer.status != "active":
        events.emit(session, "identity.login_failed", {"subject_kind": "customer"})
        raise NotAuthenticated(LOGIN_FAILED)
    if needs_rehash(settings, customer.password_hash):
        customer.password_hash = hash_password(settings, password)
    return _issue(session, settings, "customer", customer.id, customer.id)


def create_staff(
    session: Session, settings: Settings, *, username: str, role: str, password: str | None
) -> tuple[StaffUser, IssuedSession]:
    """Create a staff user and issue their first session (the admin token)."""
    if role not in STAFF_ROLES:
        raise ValidationProblem(f"unknown role '{role}'; one of: {', '.join(STAFF_ROLES)}")
    if password is not None:
        _check_password_rules(password)
    staff = StaffUser(
        id=ids.new_id("staff"),
        username=username.lower(),
        password_hash=hash_password(settings, password) if password else None,
        role=role,
        status="active",
        created_at=clock.now(),
    )
    session.add(staff)
    try:
        session.flush()
    except IntegrityError as error:
        raise Conflict("a staff user with that username exists") from error
    return staff, _issue(session, settings, "staff", staff.id, None)


def login_staff(
    session: Session, settings: Settings, *, username: str, password: str
) -> IssuedSession:
    staff = session.scalar(select(StaffUser).where(StaffUser.username == username.lower()))
    valid = verify_password(settings, staff.password_hash if staff else None, password)
    if staff is None or not valid or staff.status != "active":
        events.emit(session, "identity.login_failed", {"subject_kind": "staff"})
        raise NotAuthenticated(LOGIN_FAILED)
    return _issue(session, settings, "staff", staff.id, None)


def resolve_token(session: Session, token: str) -> Principal:
    """The principal behind a bearer token, or NotAuthenticated."""
    record = session.scalar(
        select(AuthSession).where(AuthSession.token_hash == token_digest(token))
    )
    if record is None or record.revoked_at is not None or record.expires_at <= clock.now():
        raise NotAuthenticated("the session is missing, expired or revoked; log in again")
    role = None
    if record.subject_kind == "staff":
        staff = session.get(StaffUser, record.subject_id)
        if staff is None or staff.status != "active":
            raise NotAuthenticated("the staff account is not active")
        role = staff.role
    return Principal(
        kind=record.subject_kind, subject_id=record.subject_id, session_id=record.id, role=role
    )


def revoke_session(session: Session, session_id: str) -> None:
    session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )


def wallet_ids(session: Session, customer_id: str) -> list[str]:
    return [account.id for account in ledger.list_accounts(session, owner_id=customer_id)]


def set_kyc_tier(session: Session, customer_id: str, tier: int) -> Customer:
    if tier not in (0, 1, 2, 3):
        raise ValidationProblem("the KYC tier must be 0, 1, 2 or 3")
    customer = get_customer(session, customer_id)
    customer.kyc_tier = tier
    events.emit(session, "identity.kyc_tier_changed", {"customer_id": customer_id, "tier": tier})
    return customer
