"""Customers, staff and sessions (first cut; the authentication issue deepens it).

Tokens are 256-bit random strings handed to the client once and stored only as
SHA-256 digests, so a database leak does not leak usable sessions. A lookup by
digest is an index probe, which keeps the comparison out of Python entirely.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.crypto.envelope import envelope_for
from payguard.errors import Conflict, NotAuthenticated, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.identity import kyc, sessions, totp
from payguard.identity.models import (
    AuthChallenge,
    AuthSession,
    Customer,
    Device,
    LoginAttempt,
    StaffUser,
)
from payguard.identity.passwords import check_password_policy, hash_password
from payguard.identity.sessions import IssuedSession
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
    # A machine account of an outside payment system using POST /v1/risk/assess.
    "risk_client",
)


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


def register_customer(
    session: Session,
    settings: Settings,
    *,
    username: str,
    password: str,
    display_name: str,
    currency: str | None = None,
    kyc_tier: int = 0,
    phone: str | None = None,
    email: str | None = None,
    legal_name: str | None = None,
    id_document_type: str | None = None,
    id_number: str | None = None,
) -> tuple[Customer, str]:
    """Create a customer and their wallet; returns the customer and the wallet id.

    With real-name data (legal name and a valid identity document) the customer starts
    at KYC tier 1 unless a higher tier is given (the demo seed); see ``kyc``."""
    check_password_policy(password, username=username)
    masked = id_digest = None
    if (legal_name is None) != (id_number is None):
        raise ValidationProblem("legal_name and id_number: give both or neither")
    if id_number is not None:
        document_type = id_document_type or kyc.MAINLAND_ID
        number = kyc.normalise_document(document_type, id_number)
        masked, id_digest = kyc.mask(number), kyc.digest(settings, document_type, number)
        id_document_type = document_type
        kyc_tier = max(kyc_tier, 1)
    elif id_document_type is not None:
        raise ValidationProblem("id_document_type: only together with id_number")
    if id_digest is not None and session.scalar(
        select(Customer.id).where(Customer.id_number_digest == id_digest)
    ):
        raise Conflict("an account is already registered with this identity document")
    customer = Customer(
        id=ids.new_id("customer"),
        username=username.lower(),
        display_name="",  # sealed just below, once the row exists
        password_hash=hash_password(settings, password),
        kyc_tier=kyc_tier,
        status="active",
        created_at=clock.now(),
        id_document_type=id_document_type,
        id_number_masked=masked,
        id_number_digest=id_digest,
    )
    session.add(customer)
    try:
        session.flush()
    except IntegrityError as error:
        raise Conflict("that username is taken; choose another") from error
    set_personal_data(
        session,
        settings,
        customer,
        PersonalData(
            legal_name=legal_name,
            phone=phone,
            email=email.lower() if email else None,
            display_name=display_name,
        ),
    )
    wallet = ledger.open_account(
        session,
        kind=AccountKind.CUSTOMER_WALLET,
        currency=currency or settings.default_currency,
        name=f"wallet of {customer.id}",
        owner_id=customer.id,
    )
    events.emit(session, "identity.customer_registered", {"customer_id": customer.id})
    return customer, wallet.id


@dataclass(frozen=True)
class PersonalData:
    """A customer's personal data in clear: only ever in memory, for the moment it is used."""

    legal_name: str | None = None
    phone: str | None = None
    email: str | None = None
    display_name: str | None = None


PERSONAL_FIELDS = ("legal_name", "phone", "email", "display_name")


def set_personal_data(
    session: Session, settings: Settings, customer: Customer, data: PersonalData
) -> None:
    """Seal each field with the customer's own key, bound to its table, column and row."""
    envelope = envelope_for(settings)
    for field in PERSONAL_FIELDS:
        value = getattr(data, field)
        sealed = (
            envelope.seal(session, customer.id, f"customers.{field}.{customer.id}", value)
            if value
            else None
        )
        setattr(customer, field, sealed if sealed is not None or field != "display_name" else "")
    customer.phone_index = envelope.blind_index("phone", data.phone) if data.phone else None


def personal_data(session: Session, settings: Settings, customer: Customer) -> PersonalData:
    """Open the customer's sealed fields (``[erased]`` after crypto-shredding)."""
    envelope = envelope_for(settings)
    values = {
        field: envelope.open(session, f"customers.{field}.{customer.id}", sealed)
        if (sealed := getattr(customer, field))
        else None
        for field in PERSONAL_FIELDS
    }
    return PersonalData(**values)


def find_by_phone(session: Session, settings: Settings, phone: str) -> list[Customer]:
    """Customers with this phone number, found by its blind index without decrypting."""
    index = envelope_for(settings).blind_index("phone", phone)
    return list(session.scalars(select(Customer).where(Customer.phone_index == index)))


def get_customer(session: Session, customer_id: str) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"no customer '{customer_id}'")
    return customer


def find_customer(session: Session, username: str) -> Customer | None:
    return session.scalar(select(Customer).where(Customer.username == username.lower()))


def create_staff(
    session: Session,
    settings: Settings,
    *,
    username: str,
    role: str,
    password: str | None,
    totp_secret: str | None = None,
) -> tuple[StaffUser, IssuedSession]:
    """Create a staff user and issue their first session (the admin token)."""
    if role not in STAFF_ROLES:
        raise ValidationProblem(f"unknown role '{role}'; one of: {', '.join(STAFF_ROLES)}")
    if password is not None:
        check_password_policy(password, username=username)
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
    if totp_secret is not None:
        totp.enrol_confirmed(session, settings, "staff", staff.id, totp_secret)
    # A provisioning token (no refresh) for scripts and the first sign-in set-up.
    issued = sessions.issue(
        session, settings, "staff", staff.id, auth_level="provisioned", with_refresh=False
    )
    return staff, issued


def resolve_token(session: Session, token: str) -> Principal:
    """The principal behind a bearer token, or NotAuthenticated."""
    record = sessions.resolve(session, token)
    role = None
    if record.subject_kind == "staff":
        staff = session.get(StaffUser, record.subject_id)
        if staff is None or staff.status != "active":
            raise NotAuthenticated("the staff account is not active")
        role = staff.role
    return Principal(
        kind=record.subject_kind,
        subject_id=record.subject_id,
        session_id=record.id,
        role=role,
        device_id=record.device_id,
        auth_level=record.auth_level,
    )


def staff_by_totp(session: Session, settings: Settings, username: str, code: str) -> Principal:
    """A staff member proven by their current TOTP code: how the CLI knows who acts.

    The same refusal for an unknown user, a user without TOTP and a wrong code."""
    staff = session.scalar(select(StaffUser).where(StaffUser.username == username.lower()))
    if (
        staff is None
        or staff.status != "active"
        or not totp.verify_code(session, settings, "staff", staff.id, code)
    ):
        raise NotAuthenticated("the staff username or TOTP code is not correct")
    return Principal(kind="staff", subject_id=staff.id, session_id="cli", role=staff.role)


def staff_exists(session: Session, staff_id: str) -> bool:
    """Whether a staff member with this id exists."""
    return session.get(StaffUser, staff_id) is not None


def staff_role(session: Session, staff_id: str) -> str | None:
    """The role of the staff member with this id, or ``None`` when there is none."""
    staff = session.get(StaffUser, staff_id)
    return staff.role if staff is not None else None


def staff_names(session: Session) -> dict[str, str]:
    """Staff id → username, for screens that show who asked and who decided."""
    rows = session.execute(select(StaffUser.id, StaffUser.username))
    return {staff_id: username for staff_id, username in rows}


def step_up_challenges_not_used(session: Session, start: datetime, end: datetime) -> int:
    """Step-up challenges created in [start, end) that were never used."""
    found = session.scalar(
        select(func.count())
        .select_from(AuthChallenge)
        .where(
            AuthChallenge.purpose == "step_up",
            AuthChallenge.created_at >= start,
            AuthChallenge.created_at < end,
            AuthChallenge.status != "used",
        )
    )
    return int(found or 0)


def customer_login_outcomes(
    session: Session, start: datetime, end: datetime
) -> list[tuple[bool, str, int]]:
    """(succeeded, reason, how many) of customers' login attempts on existing accounts in
    [start, end)."""
    rows = session.execute(
        select(LoginAttempt.succeeded, LoginAttempt.reason, func.count())
        .where(
            LoginAttempt.at >= start,
            LoginAttempt.at < end,
            LoginAttempt.subject_kind == "customer",
            LoginAttempt.subject_id.is_not(None),
        )
        .group_by(LoginAttempt.succeeded, LoginAttempt.reason)
    ).all()
    return [(row[0], row[1], int(row[2])) for row in rows]


def unknown_customer_logins(session: Session, start: datetime, end: datetime) -> int:
    """Customer login attempts in [start, end) on no existing account."""
    found = session.scalar(
        select(func.count())
        .select_from(LoginAttempt)
        .where(
            LoginAttempt.at >= start,
            LoginAttempt.at < end,
            LoginAttempt.subject_kind == "customer",
            LoginAttempt.subject_id.is_(None),
        )
    )
    return int(found or 0)


def revoke_session(session: Session, session_id: str) -> None:
    sessions.revoke(session, session_id, reason="logout")


def wallet_ids(session: Session, customer_id: str) -> list[str]:
    return [account.id for account in ledger.list_accounts(session, owner_id=customer_id)]


def set_kyc_tier(session: Session, customer_id: str, tier: int) -> Customer:
    if tier not in (0, 1, 2, 3):
        raise ValidationProblem("the KYC tier must be 0, 1, 2 or 3")
    customer = get_customer(session, customer_id)
    customer.kyc_tier = tier
    events.emit(session, "identity.kyc_tier_changed", {"customer_id": customer_id, "tier": tier})
    return customer


@dataclass(frozen=True)
class RiskFacts:
    """What identity knows that the risk engine weighs: no personal data."""

    kyc_tier: int
    phone_index: str | None
    session_started_at: datetime | None
    second_factor_at: datetime | None
    failed_logins_1h: int
    password_changed_at: datetime | None
    device_registered_at: datetime | None


def _risk_facts_statement() -> Any:
    """One round trip for every fact, built once (building a statement costs more than
    running it)."""
    session_row = (
        select(AuthSession.created_at, AuthSession.auth_level)
        .where(AuthSession.id == bindparam("session_id"))
        .subquery()
    )
    stepped_up = (
        select(func.max(AuthChallenge.passed_at))
        .where(
            AuthChallenge.subject_kind == "customer",
            AuthChallenge.subject_id == bindparam("customer_id"),
        )
        .scalar_subquery()
    )
    failed = (
        select(func.count())
        .select_from(LoginAttempt)
        .where(
            LoginAttempt.subject_id == bindparam("customer_id"),
            LoginAttempt.succeeded.is_(False),
            LoginAttempt.at >= bindparam("since", type_=LoginAttempt.at.type),
        )
        .scalar_subquery()
    )
    registered = (
        select(Device.created_at).where(Device.id == bindparam("device_id")).scalar_subquery()
    )
    return select(
        select(session_row.c.created_at).scalar_subquery(),
        select(session_row.c.auth_level).scalar_subquery(),
        stepped_up,
        failed,
        registered,
    )


_RISK_FACTS = _risk_facts_statement()


def risk_facts(
    session: Session,
    customer: Customer,
    *,
    session_id: str | None,
    device_id: str | None,
    now: datetime,
) -> RiskFacts:
    row = session.execute(
        _RISK_FACTS,
        {
            "session_id": session_id or "",
            "customer_id": customer.id,
            "since": now - timedelta(hours=1),
            "device_id": device_id or "",
        },
    ).one()
    started_at, auth_level, stepped_at, failed_count, registered_at = row
    started_at, stepped_at, registered_at = (
        _as_aware(started_at),
        _as_aware(stepped_at),
        _as_aware(registered_at),
    )
    second_factor_at = started_at if "+" in (auth_level or "") else None
    if stepped_at is not None and (second_factor_at is None or stepped_at > second_factor_at):
        second_factor_at = stepped_at
    return RiskFacts(
        kyc_tier=customer.kyc_tier,
        phone_index=customer.phone_index,
        session_started_at=started_at,
        second_factor_at=second_factor_at,
        failed_logins_1h=int(failed_count or 0),
        password_changed_at=customer.password_changed_at,
        device_registered_at=registered_at,
    )


def _as_aware(value: Any) -> datetime | None:
    """Scalar subqueries bypass the column type: SQLite hands back text or naive times."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value if isinstance(value, datetime) else None


def change_password(
    session: Session,
    settings: Settings,
    customer_id: str,
    *,
    session_id: str,
    current_password: str,
    new_password: str,
) -> int:
    """Change the password; every other session of the customer ends. Returns how many."""
    from payguard.identity.passwords import verify_password

    customer = get_customer(session, customer_id)
    if not verify_password(settings, customer.password_hash, current_password):
        raise NotAuthenticated("the current password is not correct")
    check_password_policy(new_password, username=customer.username)
    customer.password_hash = hash_password(settings, new_password)
    customer.password_changed_at = clock.now()
    customer.password_reset_required_at = None  # a forced reset is satisfied by a change
    ended = 0
    for other in session.scalars(
        select(AuthSession).where(
            AuthSession.subject_kind == "customer",
            AuthSession.subject_id == customer_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.id != session_id,
        )
    ):
        sessions.revoke(session, other.id, reason="password_changed")
        ended += 1
    events.emit(
        session, "identity.password_changed", {"customer_id": customer_id, "sessions_ended": ended}
    )
    return ended
