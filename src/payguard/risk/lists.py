"""Block, watch and allow lists: entries, their CSV form, and the snapshot the engine reads.

An entry puts one subject (an account, a payee, a device, an IP address or range, a phone)
on one list, with a reason, an author and an optional expiry. Entries are never edited or
deleted: a removal is recorded on the row, and every change goes through
``security.risk_list_changed`` into the tamper-evident audit log.

A phone is never stored in clear: it is normalised to E.164 and kept as its blind index,
the same HMAC the identity domain keeps for customers' phones, so a listed phone meets
the payer's ``phone_index`` without either being readable.

The engine reads lists through :class:`ListCache`, one per server process, which hands out
an immutable :class:`Lists` snapshot and reloads it at most every
``PAYGUARD_RISK_RELOAD_SECONDS`` when the table changed. Expired entries stop matching at
once, without a reload. When several entries match, block wins over watch over allow.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from payguard import clock, ids
from payguard.crypto.envelope import envelope_for
from payguard.errors import Conflict, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.observability import get_logger
from payguard.risk.models import ListEntry
from payguard.risk.reloading import ReloadingCache
from payguard.settings import Settings

log = get_logger("payguard.risk.lists")

LIST_NAMES = ("block", "watch", "allow")  # strongest first
SUBJECTS = ("account", "payee", "device", "ip", "cidr", "phone")
# What the engine asks about (ListSnapshot.match); "ip" also matches "cidr" entries.
MATCH_SUBJECTS = ("account", "payee", "device", "ip", "phone")
PRECEDENCE = {"block": 3, "watch": 2, "allow": 1}
CSV_COLUMNS = ("list", "subject", "value", "reason", "expires_at")
CHANGE_TOPIC = "security.risk_list_changed"

MAX_VALUE = 128  # the column's width
MAX_REASON = 500
MAX_AUTHOR = 64
# A wider range is almost certainly a typo, and would block (or allow) half the world.
MIN_PREFIX = {4: 8, 6: 16}
MAX_DURATION_DAYS = 3650

_PHONE_SEPARATORS = re.compile(r"[\s\-().]")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_PHONE_INDEX = re.compile(r"^[0-9a-f]{64}$")
_DURATION = re.compile(r"^(\d{1,6})\s*([mhdw])$")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# ---------------------------------------------------------------- validation


@dataclass(frozen=True)
class Draft:
    """An entry that passed validation: value normalised (a phone already indexed)."""

    list_name: str
    subject: str
    value: str
    reason: str
    expires_at: datetime | None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.list_name, self.subject, self.value)


def phone_index(settings: Settings, phone: str) -> str:
    """The blind index of a phone number, as ``Customer.phone_index`` holds it.

    Spaces, dashes, dots and brackets are dropped and a leading ``00`` becomes ``+``; the
    result must be E.164 (``+8613800138000``). A 64-hex-digit value is taken as an index
    already (an exported list, or a customer's ``phone_index``)."""
    text = phone.strip()
    if _PHONE_INDEX.fullmatch(text.lower()):
        return text.lower()
    compact = _PHONE_SEPARATORS.sub("", text)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not _E164.fullmatch(compact):
        raise ValidationProblem(
            "phone: give the number in international form with its country code, "
            "e.g. +8613800138000 (or its 64-hex-digit blind index)"
        )
    return envelope_for(settings).blind_index("phone", compact)


def normalise_address(text: str) -> IpAddress:
    """An IP address; an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) becomes IPv4."""
    address = ipaddress.ip_address(text.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _network(text: str) -> IpNetwork:
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as error:
        try:
            loose = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            raise ValidationProblem(
                "cidr: not an address range; write it as 203.0.113.0/24 or 2001:db8::/32"
            ) from error
        raise ValidationProblem(
            f"cidr: the address has bits set beyond the prefix; did you mean {loose}?"
        ) from error
    if network.prefixlen < MIN_PREFIX[network.version]:
        raise ValidationProblem(
            f"cidr: /{network.prefixlen} is too wide; IPv{network.version} ranges may be "
            f"at most /{MIN_PREFIX[network.version]}"
        )
    return network


def normalise_value(settings: Settings, subject: str, value: str) -> str:
    """The stored form of ``value``; errors never repeat the value (it may be personal)."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationProblem(f"{subject}: a value is required")
    text = value.strip()
    if subject == "phone":
        return phone_index(settings, text)
    if subject == "ip":
        if "/" in text:
            raise ValidationProblem("ip: that is an address range; use the subject cidr")
        try:
            return str(normalise_address(text))
        except ValueError as error:
            raise ValidationProblem(
                "ip: not an IP address (write 203.0.113.7 or 2001:db8::7)"
            ) from error
    if subject == "cidr":
        return str(_network(text))
    if len(text) > MAX_VALUE:
        raise ValidationProblem(f"{subject}: at most {MAX_VALUE} characters")
    if any(char.isspace() or not char.isprintable() for char in text):
        raise ValidationProblem(f"{subject}: an identifier has no spaces or control characters")
    return text


def _check_names(list_name: str, subject: str) -> None:
    if list_name not in LIST_NAMES:
        raise ValidationProblem(f"list: must be one of {', '.join(LIST_NAMES)}")
    if subject not in SUBJECTS:
        raise ValidationProblem(f"subject: must be one of {', '.join(SUBJECTS)}")


def _check_author(by: str) -> str:
    author = (by or "").strip()
    if not author:
        raise ValidationProblem("by: say who makes the change")
    if len(author) > MAX_AUTHOR:
        raise ValidationProblem(f"by: at most {MAX_AUTHOR} characters")
    return author


def draft(
    settings: Settings,
    *,
    list_name: str,
    subject: str,
    value: str,
    reason: str,
    expires_at: datetime | None,
    now: datetime,
) -> Draft:
    """Validate and normalise one entry (no database access)."""
    _check_names(list_name, subject)
    stored = normalise_value(settings, subject, value)
    why = (reason or "").strip()
    if not why:
        raise ValidationProblem("reason: say why (the next analyst reads it)")
    if len(why) > MAX_REASON:
        raise ValidationProblem(f"reason: at most {MAX_REASON} characters")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise ValidationProblem("expires_at: give a time zone (e.g. 2030-01-01T00:00:00Z)")
        if expires_at <= now:
            raise ValidationProblem("expires_at: must be in the future")
        expires_at = expires_at.astimezone(UTC)
    return Draft(list_name, subject, stored, why, expires_at)


def parse_expiry(text: str | None, now: datetime) -> datetime | None:
    """``""``/``never`` (no expiry), a duration (``90m``, ``12h``, ``30d``, ``2w``) or an
    ISO 8601 time (UTC when it has no offset)."""
    given = (text or "").strip()
    if not given or given.lower() == "never":
        return None
    duration = _DURATION.fullmatch(given.lower())
    if duration:
        amount, unit = int(duration[1]), _DURATION_UNITS[duration[2]]
        delta = timedelta(**{unit: amount})
        if delta > timedelta(days=MAX_DURATION_DAYS):
            raise ValidationProblem(f"expires: at most {MAX_DURATION_DAYS} days ahead")
        return now + delta
    try:
        moment = datetime.fromisoformat(given)
    except ValueError as error:
        raise ValidationProblem(
            "expires: write a duration (30d, 12h, 2w) or an ISO time (2030-01-01T00:00:00Z)"
        ) from error
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---------------------------------------------------------------- changes


def _active_at(now: datetime) -> ColumnElement[bool]:
    return (ListEntry.removed_at.is_(None)) & or_(
        ListEntry.expires_at.is_(None), ListEntry.expires_at > now
    )


def status_of(entry: ListEntry, now: datetime | None = None) -> str:
    """``active``, ``expired`` or ``removed``."""
    if entry.removed_at is not None:
        return "removed"
    if entry.expires_at is not None and entry.expires_at <= (now or clock.now()):
        return "expired"
    return "active"


def shown_value(entry: ListEntry) -> str:
    """The value as people see it: a phone as the start of its index."""
    return f"idx:{entry.value[:12]}…" if entry.subject == "phone" else entry.value


def _event(entry: ListEntry, change: str, by: str, **extra: Any) -> dict[str, Any]:
    # The value is an identifier (a phone only as its blind index); the free-text reason
    # stays in the table, out of the audit log.
    payload: dict[str, Any] = {
        "change": change,
        "entry_id": entry.id,
        "list": entry.list_name,
        "subject": entry.subject,
        "value": entry.value,
        "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
        "by": by,
        **extra,
    }
    if ids.has_prefix(by, "staff"):
        payload["by_staff_id"] = by
    else:
        payload["actor"] = by
    if entry.subject == "account":
        payload["account_id"] = entry.value
    elif entry.subject == "device":
        payload["device_id"] = entry.value
    return payload


def _insert(session: Session, item: Draft, by: str, now: datetime, **extra: Any) -> ListEntry:
    entry = ListEntry(
        id=ids.new_id("list_entry"),
        list_name=item.list_name,
        subject=item.subject,
        value=item.value,
        reason=item.reason,
        expires_at=item.expires_at,
        created_by=by,
        created_at=now,
        removed_at=None,
        removed_by=None,
    )
    session.add(entry)
    session.flush()
    events.emit(session, CHANGE_TOPIC, _event(entry, "added", by, **extra))
    return entry


def add_entry(
    session: Session,
    settings: Settings,
    *,
    list_name: str,
    subject: str,
    value: str,
    reason: str,
    expires_at: datetime | None = None,
    by: str,
) -> ListEntry:
    """Put a subject on a list. An active entry with the same list, subject and value is a
    conflict; the same subject may be on two lists (block wins over watch over allow)."""
    author = _check_author(by)
    now = clock.now()
    item = draft(
        settings,
        list_name=list_name,
        subject=subject,
        value=value,
        reason=reason,
        expires_at=expires_at,
        now=now,
    )
    existing = session.scalar(
        select(ListEntry.id).where(
            ListEntry.list_name == item.list_name,
            ListEntry.subject == item.subject,
            ListEntry.value == item.value,
            _active_at(now),
        )
    )
    if existing is not None:
        raise Conflict(
            f"this {item.subject} is already on the {item.list_name} list (entry {existing}); "
            "remove that entry first to change its reason or expiry",
            entry_id=existing,
        )
    return _insert(session, item, author, now)


def get_entry(session: Session, entry_id: str) -> ListEntry:
    entry = session.get(ListEntry, entry_id) if isinstance(entry_id, str) else None
    if entry is None:
        raise NotFound("no such list entry")
    return entry


def remove_entry(session: Session, entry_id: str, by: str) -> ListEntry:
    """Take an entry off its list (the row stays, marked removed)."""
    author = _check_author(by)
    entry = get_entry(session, entry_id)
    if entry.removed_at is not None:
        raise Conflict(f"the entry was already removed by {entry.removed_by}")
    entry.removed_at = clock.now()
    entry.removed_by = author
    session.flush()
    events.emit(session, CHANGE_TOPIC, _event(entry, "removed", author))
    return entry


def list_entries(
    session: Session,
    list_name: str | None = None,
    subject: str | None = None,
    include_removed: bool = False,
) -> list[ListEntry]:
    """Entries, newest first: active ones, or with ``include_removed`` also the removed
    and expired ones."""
    if list_name is not None and list_name not in LIST_NAMES:
        raise ValidationProblem(f"list: must be one of {', '.join(LIST_NAMES)}")
    if subject is not None and subject not in SUBJECTS:
        raise ValidationProblem(f"subject: must be one of {', '.join(SUBJECTS)}")
    query = select(ListEntry).order_by(ListEntry.created_at.desc(), ListEntry.id.desc())
    if list_name is not None:
        query = query.where(ListEntry.list_name == list_name)
    if subject is not None:
        query = query.where(ListEntry.subject == subject)
    if not include_removed:
        query = query.where(_active_at(clock.now()))
    return list(session.scalars(query))


# ---------------------------------------------------------------- CSV


@dataclass(frozen=True)
class RowNote:
    row: int  # the file's row, the header being row 1
    message: str


@dataclass(frozen=True)
class ImportResult:
    added: list[ListEntry]
    skipped: list[RowNote]  # exact duplicates of active entries (or of an earlier row)


def _cell_out(text: str) -> str:
    """Keep spreadsheets from running a cell as a formula; import takes the quote off."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _cell_in(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_START) else text


def export_csv(session: Session) -> str:
    """Every active entry, oldest first, as ``list,subject,value,reason,expires_at``.
    Phones are their blind indexes (meaningful only under this installation's keyring)."""
    query = (
        select(ListEntry)
        .where(_active_at(clock.now()))
        .order_by(ListEntry.created_at, ListEntry.id)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in session.scalars(query):
        writer.writerow(
            [
                entry.list_name,
                entry.subject,
                _cell_out(entry.value),
                _cell_out(entry.reason),
                entry.expires_at.isoformat() if entry.expires_at else "",
            ]
        )
    return buffer.getvalue()


def _rows(text: str) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
    rows: list[list[str]] = []
    try:
        for row in reader:
            rows.append(row)
    except csv.Error as error:
        raise ValidationProblem(
            f"row {len(rows) + 1}: not valid CSV ({error}); nothing was imported",
            rows=[{"row": len(rows) + 1, "error": "not valid CSV"}],
        ) from error
    return rows


def parse_csv(settings: Settings, text: str, now: datetime) -> list[tuple[int, Draft]]:
    """Every row validated, or a ValidationProblem naming each bad row (``rows``)."""
    rows = _rows(text)
    header_at = next((number for number, row in enumerate(rows) if any(map(str.strip, row))), None)
    if header_at is None:
        raise ValidationProblem(f"the file is empty; the first row names {','.join(CSV_COLUMNS)}")
    header = [name.strip().lower() for name in rows[header_at]]
    missing = [name for name in CSV_COLUMNS if name not in header]
    if missing or len(set(header)) != len(header):
        raise ValidationProblem(
            f"row {header_at + 1}: the header must name each of {','.join(CSV_COLUMNS)} once"
            + (f" (missing: {', '.join(missing)})" if missing else ""),
            rows=[{"row": header_at + 1, "error": "bad header"}],
        )
    where = {name: header.index(name) for name in CSV_COLUMNS}
    drafts: list[tuple[int, Draft]] = []
    errors: list[dict[str, Any]] = []
    for offset, row in enumerate(rows[header_at + 1 :], start=header_at + 2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            errors.append(
                {"row": offset, "error": f"{len(row)} columns where the header has {len(header)}"}
            )
            continue
        cells = {name: _cell_in(row[index]) for name, index in where.items()}
        try:
            drafts.append(
                (
                    offset,
                    draft(
                        settings,
                        list_name=cells["list"].strip().lower(),
                        subject=cells["subject"].strip().lower(),
                        value=cells["value"],
                        reason=cells["reason"],
                        expires_at=parse_expiry(cells["expires_at"], now),
                        now=now,
                    ),
                )
            )
        except ValidationProblem as problem:
            errors.append({"row": offset, "error": problem.detail})
    if errors:
        numbers = ", ".join(str(error["row"]) for error in errors[:20])
        more = f" and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise ValidationProblem(
            f"{len(errors)} row(s) are not valid, nothing was imported: rows {numbers}{more}",
            rows=errors,
        )
    if not drafts:
        raise ValidationProblem("the file has a header but no entries")
    return drafts


def import_csv(session: Session, settings: Settings, text: str, by: str) -> ImportResult:
    """Add every row of a CSV file, all or nothing: one bad row rejects the file (the
    problem's ``rows`` lists each bad row). Rows already on their list are skipped."""
    author = _check_author(by)
    now = clock.now()
    drafts = parse_csv(settings, text, now)
    listed = {
        (row.list_name, row.subject, row.value)
        for row in session.execute(
            select(ListEntry.list_name, ListEntry.subject, ListEntry.value).where(_active_at(now))
        )
    }
    added: list[ListEntry] = []
    skipped: list[RowNote] = []
    first_row: dict[tuple[str, str, str], int] = {}
    for row, item in drafts:
        if item.key in listed:
            skipped.append(RowNote(row, f"already on the {item.list_name} list"))
            continue
        if item.key in first_row:
            skipped.append(RowNote(row, f"the same entry as row {first_row[item.key]}"))
            continue
        first_row[item.key] = row
        added.append(_insert(session, item, author, now, source="import", row=row))
    return ImportResult(added=added, skipped=skipped)


# ---------------------------------------------------------------- the engine's view


@dataclass(frozen=True)
class _Hit:
    list_name: str
    expires_at: datetime | None


def _strongest(hits: Iterable[_Hit], now: datetime) -> str:
    best, rank = "", 0
    for hit in hits:
        if hit.expires_at is not None and hit.expires_at <= now:
            continue
        if PRECEDENCE[hit.list_name] > rank:
            best, rank = hit.list_name, PRECEDENCE[hit.list_name]
    return best


class Lists:
    """An immutable snapshot of the active entries: the engine's ``ListSnapshot``.

    Account, payee, device and phone look-ups are one dictionary probe. An IP is looked up
    once per prefix length in use (single addresses are /32 or /128 ranges), never by
    scanning the ranges. Entries that expire after the snapshot was taken stop matching."""

    def __init__(self, entries: Iterable[ListEntry] = ()) -> None:
        exact: dict[tuple[str, str], list[_Hit]] = {}
        ranges: dict[tuple[int, int], dict[int, list[_Hit]]] = {}
        self.size = 0
        for entry in entries:
            hit = _Hit(entry.list_name, entry.expires_at)
            self.size += 1
            if entry.subject in ("ip", "cidr"):
                try:
                    network = ipaddress.ip_network(entry.value, strict=False)
                except ValueError:
                    log.warning("risk_list_entry_unreadable", entry_id=entry.id)
                    continue
                bits = network.max_prefixlen
                table = ranges.setdefault((network.version, network.prefixlen), {})
                key = int(network.network_address) >> (bits - network.prefixlen)
                table.setdefault(key, []).append(hit)
            else:
                exact.setdefault((entry.subject, entry.value), []).append(hit)
        self._exact = {key: tuple(hits) for key, hits in exact.items()}
        # Per IP version: (prefix length, shift, table), longest prefix first.
        self._ranges: dict[int, tuple[tuple[int, dict[int, tuple[_Hit, ...]]], ...]] = {
            version: tuple(
                (
                    (32 if version == 4 else 128) - prefix,
                    {key: tuple(hits) for key, hits in ranges[(version, prefix)].items()},
                )
                for (ranged_version, prefix) in sorted(ranges, key=lambda item: -item[1])
                if ranged_version == version
            )
            for version in (4, 6)
        }

    def __len__(self) -> int:
        return self.size

    def match(self, subject: str, value: str | None) -> str:
        """'block' | 'watch' | 'allow' | '' for one subject (ip matches CIDR ranges too)."""
        if not value:
            return ""
        if subject == "ip":
            return self._match_ip(value)
        key = value.strip().lower() if subject == "phone" else value.strip()
        hits = self._exact.get((subject, key))
        return _strongest(hits, clock.now()) if hits else ""

    def _match_ip(self, value: str) -> str:
        try:
            address = normalise_address(value)
        except ValueError:
            return ""
        number = int(address)
        found: list[_Hit] = []
        for shift, table in self._ranges[address.version]:
            hits = table.get(number >> shift)
            if hits:
                found.extend(hits)
        return _strongest(found, clock.now()) if found else ""


def snapshot(session: Session, now: datetime | None = None) -> Lists:
    """The active entries at ``now`` (default: the clock's now)."""
    return Lists(session.scalars(select(ListEntry).where(_active_at(now or clock.now()))))


def _version(session: Session) -> tuple[Any, ...]:
    """Changes whenever an entry is added or removed (entries are never edited)."""
    row = session.execute(
        select(
            func.count(),
            func.count(ListEntry.removed_at),
            func.max(ListEntry.created_at),
            func.max(ListEntry.removed_at),
        ).select_from(ListEntry)
    ).one()
    return tuple(row)


class ListCache(ReloadingCache[Lists]):
    """The lists of one server process, for the engine: ``current()`` is a snapshot that
    is at most ``risk_reload_seconds`` behind the database, whichever process changed it.

    A cheap version query (counts and latest times) runs at most once per interval and
    the snapshot is rebuilt only when it changed. Thread-safe; a caller never waits for a
    reload while an older snapshot exists. A failed reload keeps the last snapshot."""

    def __init__(self, db: Any, settings: Settings) -> None:
        super().__init__(settings.risk_reload_seconds)
        self._db = db
        self._lists: Lists | None = None
        self._version: tuple[Any, ...] | None = None

    def _value(self) -> Lists:
        assert self._lists is not None
        return self._lists

    def _reload(self) -> None:
        try:
            with self._db.read() as session:
                version = _version(session)
                if self._lists is None or version != self._version:
                    self._lists, self._version = snapshot(session), version
        except SQLAlchemyError as error:
            if self._lists is None:
                raise
            log.warning("risk_lists_reload_failed", error_type=type(error).__name__)
        self._checked = time.monotonic()


def invalidate(source: object) -> None:
    """Make ``source`` (a ListCache, or anything else) look again at its next use."""
    refresh = getattr(source, "invalidate", None)
    if callable(refresh):
        refresh()
