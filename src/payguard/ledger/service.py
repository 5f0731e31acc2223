"""Ledger operations. Every money movement in payguard goes through ``post_transfer``.

The hot path uses SQLAlchemy Core on purpose: one locked read of the touched
accounts (in id order, so concurrent writers cannot deadlock each other), one
``executemany`` of balance updates, one insert of the transfer and one of its
entries. All checks happen under the lock, so a check and its write cannot be
separated by a concurrent transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, func, select, update
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.crypto.envelope import open_memo
from payguard.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotFound,
    Conflict,
    CurrencyMismatch,
    HoldNotPending,
    InsufficientFunds,
    InvalidAmount,
    NotFound,
    ReversalExceedsRemainder,
    UnknownCurrency,
)
from payguard.events import service as events
from payguard.ledger.models import (
    AccountKind,
    AccountStatus,
    HoldStatus,
    LedgerAccount,
    LedgerEntry,
    LedgerHold,
    LedgerTransfer,
    SystemAccount,
)
from payguard.money import MAX_AMOUNT, is_known_currency
from payguard.settings import Settings

ACCOUNTS = cast(Table, LedgerAccount.__table__)
ENTRIES = cast(Table, LedgerEntry.__table__)
TRANSFERS = cast(Table, LedgerTransfer.__table__)
HOLDS = cast(Table, LedgerHold.__table__)


@dataclass(frozen=True)
class Leg:
    """One side of a transfer: positive credits the account, negative debits it."""

    account_id: str
    amount: int


@dataclass(frozen=True)
class PostedTransfer:
    id: str
    currency: str
    amount: int
    balances_after: dict[str, int]
    created_at: datetime


@dataclass(frozen=True)
class Balance:
    account_id: str
    currency: str
    ledger: int
    held: int
    available: int
    status: str


@dataclass
class InvariantReport:
    """What ``check_invariants`` found; ``ok`` only when every list is empty."""

    currency_sums: dict[str, int] = field(default_factory=dict)
    unbalanced_currencies: list[str] = field(default_factory=list)
    unbalanced_transfers: list[str] = field(default_factory=list)
    drifted_accounts: list[str] = field(default_factory=list)
    held_mismatches: list[str] = field(default_factory=list)
    below_floor: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.unbalanced_currencies
            or self.unbalanced_transfers
            or self.drifted_accounts
            or self.held_mismatches
            or self.below_floor
        )


# ---------------------------------------------------------------- accounts


def _check_currency(currency: str) -> str:
    code = currency.upper()
    if not is_known_currency(code):
        raise UnknownCurrency(f"'{currency}' is not an ISO 4217 currency code")
    return code


def _check_amount(amount: int, what: str = "amount") -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount(f"{what} must be an integer count of minor units")
    if amount <= 0:
        raise InvalidAmount(f"{what} must be greater than zero")
    if amount > MAX_AMOUNT:
        raise InvalidAmount(f"{what} must not exceed {MAX_AMOUNT}")


def open_account(
    session: Session,
    *,
    kind: AccountKind,
    currency: str,
    name: str,
    owner_id: str | None = None,
    code: str | None = None,
    overdraft_limit: int | None = 0,
) -> LedgerAccount:
    now = clock.now()
    account = LedgerAccount(
        id=ids.new_id("account"),
        kind=kind,
        code=code,
        owner_id=owner_id,
        name=name,
        currency=_check_currency(currency),
        status=AccountStatus.ACTIVE,
        balance=0,
        held=0,
        overdraft_limit=overdraft_limit,
        created_at=now,
        updated_at=now,
    )
    session.add(account)
    session.flush()
    events.emit(session, "ledger.account_opened", {"account_id": account.id, "kind": kind})
    return account


def system_account_id(session: Session, which: SystemAccount, currency: str) -> str:
    """The id of a platform account, opening it on first use."""
    code = f"{which.value}:{_check_currency(currency)}"
    found = session.scalar(select(LedgerAccount.id).where(LedgerAccount.code == code))
    if found is not None:
        return found
    account = open_account(
        session,
        kind=AccountKind.SYSTEM,
        currency=currency,
        name=f"{which.value.replace('_', ' ')} ({currency.upper()})",
        code=code,
        overdraft_limit=None,
    )
    return account.id


def get_account(session: Session, account_id: str) -> LedgerAccount:
    account = session.get(LedgerAccount, account_id)
    if account is None:
        raise AccountNotFound(f"no account '{account_id}'")
    return account


def list_accounts(
    session: Session,
    *,
    owner_id: str | None = None,
    kind: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> Sequence[LedgerAccount]:
    query = select(LedgerAccount).order_by(LedgerAccount.id).limit(limit)
    if owner_id is not None:
        query = query.where(LedgerAccount.owner_id == owner_id)
    if kind is not None:
        query = query.where(LedgerAccount.kind == kind)
    if after is not None:
        query = query.where(LedgerAccount.id > after)
    return session.scalars(query).all()


def get_balance(session: Session, account_id: str) -> Balance:
    account = get_account(session, account_id)
    return _balance_of(account)


def _balance_of(account: LedgerAccount) -> Balance:
    return Balance(
        account_id=account.id,
        currency=account.currency,
        ledger=account.balance,
        held=account.held,
        available=account.balance - account.held,
        status=account.status,
    )


def set_status(session: Session, account_id: str, status: AccountStatus, *, reason: str) -> None:
    account = session.scalar(
        select(LedgerAccount).where(LedgerAccount.id == account_id).with_for_update()
    )
    if account is None:
        raise AccountNotFound(f"no account '{account_id}'")
    if account.status == AccountStatus.CLOSED:
        raise AccountClosed("a closed account cannot change state")
    if status == AccountStatus.CLOSED and (account.balance != 0 or account.held != 0):
        raise Conflict("only an account with zero balance and no holds can be closed")
    if account.status == status:
        return
    previous = account.status
    account.status = status
    account.updated_at = clock.now()
    session.flush()
    events.emit(
        session,
        "ledger.account_status_changed",
        {"account_id": account_id, "from": previous, "to": status.value, "reason": reason},
    )


# ---------------------------------------------------------------- posting


def _lock_accounts(session: Session, account_ids: Iterable[str]) -> dict[str, Any]:
    ordered = sorted(set(account_ids))
    query = (
        select(
            ACCOUNTS.c.id,
            ACCOUNTS.c.currency,
            ACCOUNTS.c.status,
            ACCOUNTS.c.balance,
            ACCOUNTS.c.held,
            ACCOUNTS.c.overdraft_limit,
        )
        .where(ACCOUNTS.c.id.in_(ordered))
        .order_by(ACCOUNTS.c.id)
        .with_for_update()
    )
    rows = {row.id: row for row in session.execute(query)}
    for account_id in ordered:
        if account_id not in rows:
            raise AccountNotFound(f"no account '{account_id}'")
    return rows


def post_transfer(
    session: Session,
    *,
    debit_account_id: str,
    credit_account_id: str,
    amount: int,
    currency: str,
    kind: str = "transfer",
    reference: str | None = None,
    memo: str | None = None,
    extra_legs: Sequence[Leg] = (),
    release_hold: tuple[str, int] | None = None,
    reverses_transfer_id: str | None = None,
    hold_id: str | None = None,
    allow_frozen_debit: bool = False,
) -> PostedTransfer:
    """Move ``amount`` from one account to another, plus any balanced ``extra_legs``.

    ``release_hold`` (account id, amount) lowers that account's held funds in the same
    write, which is how a pending hold turns into a posted transfer.
    """
    _check_amount(amount)
    currency = _check_currency(currency)
    if debit_account_id == credit_account_id:
        raise InvalidAmount("debit and credit account must differ")
    legs = [Leg(debit_account_id, -amount), Leg(credit_account_id, amount), *extra_legs]
    for leg in extra_legs:
        if isinstance(leg.amount, bool) or not isinstance(leg.amount, int) or leg.amount == 0:
            raise InvalidAmount("every leg must move a non-zero integer amount")
        if abs(leg.amount) > MAX_AMOUNT:
            raise InvalidAmount(f"a leg must not exceed {MAX_AMOUNT}")
    if sum(leg.amount for leg in legs) != 0:
        raise InvalidAmount("the legs of a transfer must sum to zero")

    touched = {leg.account_id for leg in legs}
    if release_hold is not None:
        touched.add(release_hold[0])
    posting = _Posting.of(session)
    rows = posting.lock(touched)

    net: dict[str, int] = defaultdict(int)
    for leg in legs:
        row = rows[leg.account_id]
        if row[1] != currency:
            raise CurrencyMismatch(f"account '{leg.account_id}' holds {row[1]}, not {currency}")
        if row[2] == AccountStatus.CLOSED:
            raise AccountClosed(f"account '{leg.account_id}' is closed")
        if leg.amount < 0 and row[2] == AccountStatus.FROZEN and not allow_frozen_debit:
            raise AccountFrozen(f"account '{leg.account_id}' is frozen; it cannot be debited")
        net[leg.account_id] += leg.amount

    released: dict[str, int] = {}
    if release_hold is not None:
        released[release_hold[0]] = release_hold[1]

    now = clock.now()
    new_state: list[tuple[str, int, int]] = []
    for account_id in sorted(touched):
        _, _, _, old_balance, old_held, floor = rows[account_id]
        balance = old_balance + net.get(account_id, 0)
        held = old_held - released.get(account_id, 0)
        if held < 0:
            raise Conflict(f"account '{account_id}' would release more than it holds")
        if abs(balance) > MAX_AMOUNT:
            raise InvalidAmount("the resulting balance would exceed the supported range")
        if net.get(account_id, 0) < 0 and floor is not None and balance - held < -floor:
            raise InsufficientFunds(
                f"account '{account_id}' has {old_balance - old_held} available; "
                f"{-net[account_id]} needed"
            )
        new_state.append((account_id, balance, held))

    running = {account_id: rows[account_id][3] for account_id in touched}
    entries: list[tuple[str, int, int]] = []
    for leg in legs:
        running[leg.account_id] += leg.amount
        entries.append((leg.account_id, leg.amount, running[leg.account_id]))
    transfer_id = ids.new_id("transfer")
    posting.write(
        new_state,
        (
            transfer_id,
            kind,
            currency,
            amount,
            debit_account_id,
            credit_account_id,
            reference,
            memo,
            hold_id,
            reverses_transfer_id,
            0,
        ),
        entries,
        now,
    )
    return PostedTransfer(
        id=transfer_id,
        currency=currency,
        amount=amount,
        balances_after={account_id: balance for account_id, balance, _ in new_state},
        created_at=now,
    )


# The posting hot path speaks the driver's own SQL on the session's connection, inside
# the session's transaction: the same statements SQLAlchemy would send, without compiling
# them on every call. On PostgreSQL it is two round trips (the locked read, then one
# statement that updates the balances and inserts the transfer and its entries); on
# SQLite, whose write lock is already held (BEGIN IMMEDIATE), it is four in-process calls.
# Driver errors are re-raised as SQLAlchemy's DBAPIError so Database.transact still
# recognises a deadlock or a busy database and retries.

_ACCOUNT_COLUMNS = "id, currency, status, balance, held, overdraft_limit"
_TRANSFER_COLUMNS = (
    "id, kind, currency, amount, debit_account_id, credit_account_id, reference, memo, "
    "hold_id, reverses_transfer_id, reversed_amount, created_at"
)
# The f-strings below only join constants; every value travels as a bound parameter.
_PG_LOCK = (
    f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts WHERE id = ANY(%s) ORDER BY id FOR UPDATE"  # noqa: S608
)
_PG_WRITES: dict[tuple[int, int], str] = {}


def _pg_write(accounts: int, entries: int) -> str:
    """One statement that updates the balances and inserts the transfer and its entries.

    Scalar parameters in VALUES lists (cheaper to send than arrays); the text depends
    only on the number of accounts and legs, so it is built once per shape and the
    driver prepares it on the server.
    """
    statement = _PG_WRITES.get((accounts, entries))
    if statement is None:
        balances = ", ".join(["(%s, %s::bigint, %s::bigint)"] * accounts)
        legs = ", ".join(["(%s, %s::bigint, %s::bigint, %s::int)"] * entries)
        statement = (
            "WITH balances AS ("  # noqa: S608 (constants and placeholders only)
            " UPDATE ledger_accounts AS a"
            " SET balance = v.balance, held = v.held, updated_at = %s"
            f" FROM (VALUES {balances}) AS v(id, balance, held)"
            " WHERE a.id = v.id RETURNING a.id"
            "), transfer AS ("
            f" INSERT INTO ledger_transfers ({_TRANSFER_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
            ")"
            " INSERT INTO ledger_entries"
            " (transfer_id, account_id, amount, balance_after, created_at)"
            " SELECT transfer.id, e.account_id, e.amount, e.balance_after, %s"
            f" FROM transfer, (VALUES {legs}) AS e(account_id, amount, balance_after, n)"
            " WHERE (SELECT count(*) FROM balances) = %s"
            " ORDER BY e.n"
        )
        _PG_WRITES[(accounts, entries)] = statement
    return statement


_SQLITE_UPDATE = "UPDATE ledger_accounts SET balance = ?, held = ?, updated_at = ? WHERE id = ?"
_SQLITE_TRANSFER = (
    f"INSERT INTO ledger_transfers ({_TRANSFER_COLUMNS}) VALUES ({', '.join('?' * 12)})"  # noqa: S608
)
_SQLITE_ENTRY = (
    "INSERT INTO ledger_entries (transfer_id, account_id, amount, balance_after, created_at) "
    "VALUES (?, ?, ?, ?, ?)"
)
_SQLITE_LOCKS: dict[int, str] = {}
_TIME_BINDERS: dict[str, Any] = {}


class _Posting:
    """The driver connection of a session's transaction, with the posting statements."""

    __slots__ = ("_binder", "_dbapi", "_driver", "_postgres")

    def __init__(self, driver: Any, dialect: Any) -> None:
        self._driver = driver
        self._dbapi = dialect.dbapi
        self._postgres = dialect.name == "postgresql"
        binder = _TIME_BINDERS.get(dialect.name)
        if binder is None:
            binder = ENTRIES.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
            binder = binder or (lambda value: value)
            _TIME_BINDERS[dialect.name] = binder
        self._binder = binder

    @classmethod
    def of(cls, session: Session) -> _Posting:
        connection = session.connection()
        return cls(connection.connection.driver_connection, connection.dialect)

    def _fail(self, error: Exception, statement: str, params: Any) -> StatementError:
        return DBAPIError.instance(statement, params, error, self._dbapi.Error)

    def lock(self, account_ids: Iterable[str]) -> dict[str, tuple[Any, ...]]:
        """Read (and on PostgreSQL row-lock, in id order) the accounts of a posting."""
        ordered = sorted(set(account_ids))
        params: tuple[Any, ...]
        if self._postgres:
            statement, params = _PG_LOCK, (ordered,)
        else:
            statement = _SQLITE_LOCKS.get(len(ordered)) or _SQLITE_LOCKS.setdefault(
                len(ordered),
                f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts "  # noqa: S608
                f"WHERE id IN ({', '.join('?' * len(ordered))}) ORDER BY id",
            )
            params = tuple(ordered)
        try:
            cursor = self._driver.cursor()
            try:
                cursor.execute(statement, params)
                found = cursor.fetchall()
            finally:
                cursor.close()
        except self._dbapi.Error as error:
            raise self._fail(error, statement, params) from error
        rows = {row[0]: tuple(row) for row in found}
        for account_id in ordered:
            if account_id not in rows:
                raise AccountNotFound(f"no account '{account_id}'")
        return rows

    def write(
        self,
        balances: list[tuple[str, int, int]],
        transfer: tuple[Any, ...],
        entries: list[tuple[str, int, int]],
        now: datetime,
    ) -> None:
        stamp = self._binder(now)
        if self._postgres:
            statement = _pg_write(len(balances), len(entries))
            params: Any = [stamp]
            for balance in balances:
                params.extend(balance)
            params.extend(transfer)
            params.append(stamp)
            params.append(stamp)
            for number, entry in enumerate(entries):
                params.extend(entry)
                params.append(number)
            params.append(len(balances))
            try:
                cursor = self._driver.cursor()
                try:
                    cursor.execute(statement, params)
                    written = cursor.rowcount
                finally:
                    cursor.close()
            except self._dbapi.Error as error:
                raise self._fail(error, statement, params) from error
            if written != len(entries):  # the balances CTE did not update every account
                raise AssertionError("posting wrote an incomplete set of rows")
            return
        statement, params = _SQLITE_UPDATE, [(b[1], b[2], stamp, b[0]) for b in balances]
        try:
            cursor = self._driver.cursor()
            try:
                cursor.executemany(statement, params)
                if cursor.rowcount != len(balances):
                    raise AssertionError("posting updated an incomplete set of accounts")
                statement, params = _SQLITE_TRANSFER, (*transfer, stamp)
                cursor.execute(statement, params)
                statement = _SQLITE_ENTRY
                params = [(transfer[0], e[0], e[1], e[2], stamp) for e in entries]
                cursor.executemany(statement, params)
            finally:
                cursor.close()
        except self._dbapi.Error as error:
            raise self._fail(error, statement, params) from error


def get_transfer(session: Session, transfer_id: str) -> LedgerTransfer:
    transfer = session.get(LedgerTransfer, transfer_id)
    if transfer is None:
        raise NotFound(f"no transfer '{transfer_id}'")
    return transfer


def entries_of_transfer(session: Session, transfer_id: str) -> Sequence[LedgerEntry]:
    query = select(LedgerEntry).where(LedgerEntry.transfer_id == transfer_id)
    return session.scalars(query.order_by(LedgerEntry.id)).all()


# ---------------------------------------------------------------- reversals


def reverse_transfer(
    session: Session,
    transfer_id: str,
    *,
    amount: int | None = None,
    reference: str | None = None,
    memo: str | None = None,
) -> PostedTransfer:
    """Post a compensating transfer for (part of) the principal of ``transfer_id``.

    The sum of all reversals of one transfer never exceeds its principal: the
    remainder is checked and consumed under a row lock, so two concurrent
    reversals cannot both take the last of it. Fees are not reversed.
    """
    original = session.execute(
        select(TRANSFERS).where(TRANSFERS.c.id == transfer_id).with_for_update()
    ).one_or_none()
    if original is None:
        raise NotFound(f"no transfer '{transfer_id}'")
    if original.reverses_transfer_id is not None:
        raise Conflict("a reversal cannot itself be reversed; post a new transfer instead")
    remaining = original.amount - original.reversed_amount
    if amount is None and remaining == 0:
        raise ReversalExceedsRemainder(f"transfer '{transfer_id}' is already fully reversed")
    to_reverse = remaining if amount is None else amount
    _check_amount(to_reverse)
    if to_reverse > remaining:
        raise ReversalExceedsRemainder(
            f"only {remaining} of transfer '{transfer_id}' remains to be reversed"
        )
    result = session.execute(
        update(TRANSFERS)
        .where(
            and_(
                TRANSFERS.c.id == transfer_id,
                TRANSFERS.c.reversed_amount + to_reverse <= TRANSFERS.c.amount,
            )
        )
        .values(reversed_amount=TRANSFERS.c.reversed_amount + to_reverse)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ReversalExceedsRemainder(f"transfer '{transfer_id}' was reversed concurrently")
    # A reversal is a correction, not spending: it may debit a frozen account.
    return post_transfer(
        session,
        debit_account_id=original.credit_account_id,
        credit_account_id=original.debit_account_id,
        amount=to_reverse,
        currency=original.currency,
        kind="reversal",
        reference=reference or original.reference,
        memo=memo,
        reverses_transfer_id=transfer_id,
        allow_frozen_debit=True,
    )


# ---------------------------------------------------------------- holds


def create_hold(
    session: Session,
    *,
    account_id: str,
    credit_account_id: str,
    amount: int,
    currency: str,
    expires_at: datetime,
    reference: str | None = None,
) -> LedgerHold:
    """Reserve ``amount`` on ``account_id``: it stays in the ledger balance but is unavailable."""
    _check_amount(amount)
    currency = _check_currency(currency)
    rows = _lock_accounts(session, [account_id, credit_account_id])
    for row in rows.values():
        if row.currency != currency:
            raise CurrencyMismatch(f"account '{row.id}' holds {row.currency}, not {currency}")
    payer = rows[account_id]
    if payer.status == AccountStatus.FROZEN:
        raise AccountFrozen(f"account '{account_id}' is frozen; it cannot be debited")
    if payer.status == AccountStatus.CLOSED or rows[credit_account_id].status == "closed":
        raise AccountClosed("a closed account cannot take part in a hold")
    available = payer.balance - payer.held
    floor = payer.overdraft_limit
    if floor is not None and available - amount < -floor:
        raise InsufficientFunds(f"account '{account_id}' has {available} available")
    now = clock.now()
    session.execute(
        update(ACCOUNTS)
        .where(ACCOUNTS.c.id == account_id)
        .values(held=ACCOUNTS.c.held + amount, updated_at=now)
    )
    hold = LedgerHold(
        id=ids.new_id("hold"),
        account_id=account_id,
        credit_account_id=credit_account_id,
        currency=currency,
        amount=amount,
        posted_amount=0,
        status=HoldStatus.PENDING,
        reference=reference,
        expires_at=expires_at,
        created_at=now,
    )
    session.add(hold)
    session.flush()
    return hold


def _lock_pending_hold(session: Session, hold_id: str) -> LedgerHold:
    # populate_existing: re-read under the lock, whatever this session saw before.
    query = select(LedgerHold).where(LedgerHold.id == hold_id).with_for_update()
    hold = session.scalar(query.execution_options(populate_existing=True))
    if hold is None:
        raise NotFound(f"no hold '{hold_id}'")
    if hold.status != HoldStatus.PENDING:
        raise HoldNotPending(f"hold '{hold_id}' is already {hold.status}")
    return hold


def _resolve(session: Session, hold: LedgerHold, status: HoldStatus, **values: Any) -> None:
    result = session.execute(
        update(HOLDS)
        .where(and_(HOLDS.c.id == hold.id, HOLDS.c.status == HoldStatus.PENDING))
        .values(status=status, resolved_at=clock.now(), **values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise HoldNotPending(f"hold '{hold.id}' was resolved concurrently")
    session.expire(hold)


def post_hold(
    session: Session,
    hold_id: str,
    *,
    amount: int | None = None,
    extra_legs: Sequence[Leg] = (),
    kind: str = "hold_post",
    memo: str | None = None,
) -> PostedTransfer:
    """Turn a pending hold into a transfer of ``amount`` (default all); the rest is released.

    ``extra_legs`` (fees) may debit the held account too; everything it is debited
    must fit inside the hold.
    """
    hold = _lock_pending_hold(session, hold_id)
    if hold.expires_at <= clock.now():
        raise HoldNotPending(f"hold '{hold_id}' has expired")
    to_post = hold.amount if amount is None else amount
    _check_amount(to_post)
    extra_debit = -sum(leg.amount for leg in extra_legs if leg.account_id == hold.account_id)
    if to_post + extra_debit > hold.amount:
        raise InvalidAmount(f"cannot post more than the {hold.amount} held")
    posted = post_transfer(
        session,
        debit_account_id=hold.account_id,
        credit_account_id=hold.credit_account_id,
        amount=to_post,
        currency=hold.currency,
        kind=kind,
        reference=hold.reference,
        memo=memo,
        extra_legs=extra_legs,
        release_hold=(hold.account_id, hold.amount),
        hold_id=hold.id,
        # The funds were reserved while the account could still pay.
        allow_frozen_debit=True,
    )
    _resolve(
        session,
        hold,
        HoldStatus.POSTED,
        posted_amount=to_post + extra_debit,
        transfer_id=posted.id,
    )
    return posted


def void_hold(session: Session, hold_id: str) -> None:
    hold = _lock_pending_hold(session, hold_id)
    _release(session, hold, HoldStatus.VOIDED)


def _release(session: Session, hold: LedgerHold, status: HoldStatus) -> None:
    _lock_accounts(session, [hold.account_id])
    session.execute(
        update(ACCOUNTS)
        .where(ACCOUNTS.c.id == hold.account_id)
        .values(held=ACCOUNTS.c.held - hold.amount, updated_at=clock.now())
    )
    _resolve(session, hold, status)


def get_hold(session: Session, hold_id: str) -> LedgerHold:
    hold = session.get(LedgerHold, hold_id)
    if hold is None:
        raise NotFound(f"no hold '{hold_id}'")
    return hold


def expired_hold_ids(session: Session, limit: int = 500) -> list[str]:
    query = (
        select(HOLDS.c.id)
        .where(and_(HOLDS.c.status == HoldStatus.PENDING, HOLDS.c.expires_at <= clock.now()))
        .order_by(HOLDS.c.expires_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def expire_hold(session: Session, hold_id: str) -> bool:
    """Release one expired hold; False when it was resolved or is not due yet."""
    try:
        hold = _lock_pending_hold(session, hold_id)
    except HoldNotPending:
        return False
    if hold.expires_at > clock.now():
        return False
    _release(session, hold, HoldStatus.EXPIRED)
    events.emit(session, "ledger.hold_expired", {"hold_id": hold.id, "reference": hold.reference})
    return True


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class StatementLine:
    entry_id: int
    transfer_id: str
    kind: str
    amount: int
    balance_after: int
    counterparty_account_id: str
    reference: str | None
    memo: str | None
    created_at: datetime


@dataclass(frozen=True)
class Statement:
    account_id: str
    currency: str
    period_from: datetime
    period_to: datetime
    opening_balance: int
    closing_balance: int
    lines: list[StatementLine]


def statement(
    session: Session,
    account_id: str,
    period_from: datetime,
    period_to: datetime,
    settings: Settings | None = None,
) -> Statement:
    """Entries of the period with opening and closing balance; with ``settings`` the
    sealed memos are opened (callers that show them to people pass them)."""
    account = get_account(session, account_id)
    if period_to < period_from:
        raise InvalidAmount("the statement period ends before it starts")
    opening = session.scalar(
        select(ENTRIES.c.balance_after)
        .where(and_(ENTRIES.c.account_id == account_id, ENTRIES.c.created_at < period_from))
        .order_by(ENTRIES.c.created_at.desc(), ENTRIES.c.id.desc())
        .limit(1)
    )
    query = (
        select(
            ENTRIES.c.id,
            ENTRIES.c.transfer_id,
            ENTRIES.c.amount,
            ENTRIES.c.balance_after,
            ENTRIES.c.created_at,
            TRANSFERS.c.kind,
            TRANSFERS.c.debit_account_id,
            TRANSFERS.c.credit_account_id,
            TRANSFERS.c.reference,
            TRANSFERS.c.memo,
        )
        .join(TRANSFERS, TRANSFERS.c.id == ENTRIES.c.transfer_id)
        .where(
            and_(
                ENTRIES.c.account_id == account_id,
                ENTRIES.c.created_at >= period_from,
                ENTRIES.c.created_at < period_to,
            )
        )
        .order_by(ENTRIES.c.created_at, ENTRIES.c.id)
    )
    lines = []
    for row in session.execute(query):
        counterparty = (
            row.credit_account_id if row.debit_account_id == account_id else row.debit_account_id
        )
        lines.append(
            StatementLine(
                entry_id=row.id,
                transfer_id=row.transfer_id,
                kind=row.kind,
                amount=row.amount,
                balance_after=row.balance_after,
                counterparty_account_id=counterparty,
                reference=row.reference,
                memo=open_memo(session, settings, row.reference, row.memo)
                if settings is not None
                else row.memo,
                created_at=row.created_at,
            )
        )
    opening_balance = opening or 0
    closing = lines[-1].balance_after if lines else opening_balance
    return Statement(
        account_id=account_id,
        currency=account.currency,
        period_from=period_from,
        period_to=period_to,
        opening_balance=opening_balance,
        closing_balance=closing,
        lines=lines,
    )


def check_invariants(session: Session) -> InvariantReport:
    """Recompute the ledger's promises from the entries themselves."""
    report = InvariantReport()
    for currency, total in session.execute(
        select(ACCOUNTS.c.currency, func.sum(ACCOUNTS.c.balance)).group_by(ACCOUNTS.c.currency)
    ):
        report.currency_sums[currency] = int(total or 0)
        if total:
            report.unbalanced_currencies.append(currency)
    report.unbalanced_transfers = list(
        session.scalars(
            select(ENTRIES.c.transfer_id)
            .group_by(ENTRIES.c.transfer_id)
            .having(func.sum(ENTRIES.c.amount) != 0)
        )
    )
    entry_sums = (
        select(ENTRIES.c.account_id, func.sum(ENTRIES.c.amount).label("total"))
        .group_by(ENTRIES.c.account_id)
        .subquery()
    )
    drift = select(ACCOUNTS.c.id).outerjoin(entry_sums, entry_sums.c.account_id == ACCOUNTS.c.id)
    drift = drift.where(ACCOUNTS.c.balance != func.coalesce(entry_sums.c.total, 0))
    report.drifted_accounts = list(session.scalars(drift))
    hold_sums = (
        select(HOLDS.c.account_id, func.sum(HOLDS.c.amount).label("total"))
        .where(HOLDS.c.status == HoldStatus.PENDING)
        .group_by(HOLDS.c.account_id)
        .subquery()
    )
    held = select(ACCOUNTS.c.id).outerjoin(hold_sums, hold_sums.c.account_id == ACCOUNTS.c.id)
    held = held.where(ACCOUNTS.c.held != func.coalesce(hold_sums.c.total, 0))
    report.held_mismatches = list(session.scalars(held))
    report.below_floor = list(
        session.scalars(
            select(ACCOUNTS.c.id).where(
                and_(
                    ACCOUNTS.c.overdraft_limit.is_not(None),
                    ACCOUNTS.c.balance - ACCOUNTS.c.held < -ACCOUNTS.c.overdraft_limit,
                )
            )
        )
    )
    return report
