"""Block, watch and allow lists: matching, precedence, expiry, privacy, audit, CSV, API,
the cross-process cache and the CLI."""

from __future__ import annotations

import csv
import io
import ipaddress
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from payguard import clock
from payguard.audit.models import AuditRecord
from payguard.crypto.envelope import envelope_for
from payguard.db.engine import Database
from payguard.db.registry import metadata
from payguard.errors import Conflict, NotFound, ValidationProblem
from payguard.events.models import OutboxEvent
from payguard.identity import service as identity
from payguard.risk import lists
from payguard.risk.counters import EmbeddedCounterStore
from payguard.risk.engine import computer_for
from payguard.risk.features import PaymentFacts
from payguard.risk.lists import ListCache, Lists
from payguard.risk.models import ListEntry
from payguard.settings import Settings, get_settings
from tests.factories import register, staff_token

PHONE = "+8613700001234"
PHONE_DIGITS = "13700001234"
LATER = timedelta(days=30)
CSV = "text/csv"


def add(
    db: Database,
    settings: Settings,
    list_name: str,
    subject: str,
    value: str,
    *,
    reason: str = "test",
    expires_at: datetime | None = None,
    by: str = "analyst-1",
) -> ListEntry:
    entry: ListEntry = db.transact(
        lambda session: lists.add_entry(
            session,
            settings,
            list_name=list_name,
            subject=subject,
            value=value,
            reason=reason,
            expires_at=expires_at,
            by=by,
        )
    )
    return entry


def snap(db: Database) -> Lists:
    with db.read() as session:
        return lists.snapshot(session)


@pytest.fixture
def frozen() -> Iterator[clock.FrozenClock]:
    moment = clock.FrozenClock(datetime(2030, 3, 1, 9, 15, tzinfo=UTC))
    previous = clock.set_clock(moment)
    yield moment
    clock.set_clock(previous)


# ---------------------------------------------------------------- matching


def test_each_subject_matches_its_own_entries(db: Database, settings: Settings) -> None:
    add(db, settings, "block", "account", "acc_payer")
    add(db, settings, "watch", "payee", "acc_payee")
    add(db, settings, "block", "payee", "bnk_token1")
    add(db, settings, "block", "device", "dev_1")
    add(db, settings, "block", "ip", " 203.0.113.7 ")
    add(db, settings, "watch", "ip", "2001:DB8:0:0::7")
    add(db, settings, "block", "cidr", "198.51.100.0/24")
    add(db, settings, "watch", "cidr", "2001:db8:ff00::/40")
    add(db, settings, "block", "phone", PHONE)
    found = snap(db)
    assert len(found) == 9

    assert found.match("account", "acc_payer") == "block"
    assert found.match("account", "acc_payee") == ""  # a payee entry is not an account one
    assert found.match("payee", "acc_payee") == "watch"
    assert found.match("payee", "bnk_token1") == "block"
    assert found.match("device", "dev_1") == "block"
    assert found.match("device", "acc_payer") == ""
    assert found.match("ip", "203.0.113.7") == "block"
    assert found.match("ip", "::ffff:203.0.113.7") == "block"  # IPv4-mapped
    assert found.match("ip", "203.0.113.8") == ""
    assert found.match("ip", "2001:db8::7") == "watch"  # stored normalised
    assert found.match("ip", "198.51.100.0") == "block"
    assert found.match("ip", "198.51.100.255") == "block"
    assert found.match("ip", "198.51.101.1") == ""
    assert found.match("ip", "2001:db8:ff12::1") == "watch"
    assert found.match("ip", "2001:db8:fe00::1") == ""
    assert found.match("ip", "not an address") == ""
    index = envelope_for(settings).blind_index("phone", PHONE)
    assert found.match("phone", index) == "block"
    assert found.match("phone", PHONE) == ""  # the engine passes the index, never the number
    for subject in ("account", "payee", "device", "ip", "phone", "unknown"):
        assert found.match(subject, None) == ""
        assert found.match(subject, "") == ""

    # The engine's features read the same snapshot.
    features = computer_for(settings, EmbeddedCounterStore()).compute(
        PaymentFacts(
            at=clock.now(),
            kind="p2p",
            amount=100,
            currency="CNY",
            payer="acc_other",
            payee="acc_payee",
            ip="198.51.100.9",
            device_id="dev_2",
            phone_index=index,
        ),
        found,
    )
    assert features["list_ip"] == "block" and features["list_payee"] == "watch"
    assert features["list_phone"] == "block" and features["list_payer"] == ""
    assert features["listed_block"] and features["listed_watch"]


def test_block_wins_over_watch_over_allow(db: Database, settings: Settings) -> None:
    allow = add(db, settings, "allow", "account", "acc_1")
    assert snap(db).match("account", "acc_1") == "allow"
    watch = add(db, settings, "watch", "account", "acc_1")
    assert snap(db).match("account", "acc_1") == "watch"
    block = add(db, settings, "block", "account", "acc_1")
    assert snap(db).match("account", "acc_1") == "block"
    db.transact(lambda session: lists.remove_entry(session, block.id, "analyst-2"))
    assert snap(db).match("account", "acc_1") == "watch"
    db.transact(lambda session: lists.remove_entry(session, watch.id, "analyst-2"))
    assert snap(db).match("account", "acc_1") == "allow"
    db.transact(lambda session: lists.remove_entry(session, allow.id, "analyst-2"))
    assert snap(db).match("account", "acc_1") == ""

    # Across exact addresses and ranges too, whichever is narrower.
    add(db, settings, "allow", "cidr", "10.1.0.0/16")
    add(db, settings, "watch", "cidr", "10.0.0.0/8")
    add(db, settings, "block", "ip", "10.1.2.3")
    found = snap(db)
    assert found.match("ip", "10.1.2.3") == "block"
    assert found.match("ip", "10.1.2.4") == "watch"
    assert found.match("ip", "10.2.0.1") == "watch"
    assert found.match("ip", "11.0.0.1") == ""


class _Row:
    """Just what ``Lists`` reads of an entry."""

    def __init__(self, number: int, list_name: str, subject: str, value: str) -> None:
        self.id, self.list_name, self.subject, self.value = (
            f"lst_{number}",
            list_name,
            subject,
            value,
        )
        self.expires_at = None


@hyp_settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(lists.LIST_NAMES),
            st.integers(0, 2**32 - 1),
            st.integers(8, 32),
        ),
        max_size=12,
    ),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
)
def test_ip_matching_agrees_with_brute_force(
    entries: list[tuple[str, int, int]], probes: list[int]
) -> None:
    networks = [
        (name, ipaddress.ip_network((address, prefix), strict=False))
        for name, address, prefix in entries
    ]
    rows = [
        _Row(number, name, "ip" if network.prefixlen == 32 else "cidr", str(network))
        for number, (name, network) in enumerate(networks)
    ]
    found = Lists(rows)  # type: ignore[arg-type]
    for probe in probes + [int(network.network_address) for _, network in networks]:
        address = ipaddress.IPv4Address(probe)
        names = {name for name, network in networks if address in network}
        expected = next((name for name in lists.LIST_NAMES if name in names), "")
        assert found.match("ip", str(address)) == expected
        assert found.match("ip", f"::ffff:{address}") == expected


def test_expired_entries_stop_matching_without_a_reload(
    db: Database, settings: Settings, frozen: clock.FrozenClock
) -> None:
    entry = add(
        db, settings, "block", "device", "dev_1", expires_at=clock.now() + timedelta(hours=1)
    )
    add(db, settings, "watch", "device", "dev_1")
    found = snap(db)
    assert found.match("device", "dev_1") == "block"
    frozen.advance(timedelta(hours=1))
    assert found.match("device", "dev_1") == "watch"  # the same snapshot
    with db.read() as session:
        assert [e.list_name for e in lists.list_entries(session, subject="device")] == ["watch"]
        every = lists.list_entries(session, subject="device", include_removed=True)
        assert {lists.status_of(e): e.id for e in every}["expired"] == entry.id
        assert "block" not in lists.export_csv(session)
    # An expired entry is no duplicate: the device can be blocked again.
    add(db, settings, "block", "device", "dev_1", expires_at=clock.now() + LATER)
    assert snap(db).match("device", "dev_1") == "block"


def test_removed_entries_never_match(db: Database, settings: Settings) -> None:
    entry = add(db, settings, "block", "ip", "203.0.113.9")
    removed = db.transact(lambda session: lists.remove_entry(session, entry.id, "analyst-2"))
    assert removed.removed_by == "analyst-2" and removed.removed_at is not None
    assert snap(db).match("ip", "203.0.113.9") == ""
    with pytest.raises(Conflict):
        db.transact(lambda session: lists.remove_entry(session, entry.id, "analyst-2"))
    with pytest.raises(NotFound):
        db.transact(lambda session: lists.remove_entry(session, "lst_nope", "analyst-2"))
    with db.read() as session:
        assert lists.list_entries(session) == []
        assert lists.status_of(lists.list_entries(session, include_removed=True)[0]) == "removed"


@pytest.mark.parametrize(
    ("list_name", "subject", "value", "message"),
    [
        ("deny", "account", "acc_1", "list: must be one of"),
        ("block", "email", "a@b.c", "subject: must be one of"),
        ("block", "account", "   ", "a value is required"),
        ("block", "account", "acc 1", "no spaces"),
        ("block", "account", "a" * 129, "at most 128"),
        ("block", "ip", "203.0.113.300", "not an IP address"),
        ("block", "ip", "203.0.113.0/24", "use the subject cidr"),
        ("block", "cidr", "203.0.113.7/24", "did you mean 203.0.113.0/24"),
        ("block", "cidr", "0.0.0.0/0", "too wide"),
        ("block", "cidr", "2000::/3", "too wide"),
        ("block", "cidr", "banana", "not an address range"),
        ("block", "phone", PHONE_DIGITS, "international form"),
        ("block", "phone", "+86 abc", "international form"),
    ],
)
def test_bad_entries_are_refused_with_a_reason(
    db: Database, settings: Settings, list_name: str, subject: str, value: str, message: str
) -> None:
    with pytest.raises(ValidationProblem) as refused:
        add(db, settings, list_name, subject, value)
    assert message in refused.value.detail
    assert PHONE_DIGITS not in refused.value.detail


def test_reason_author_expiry_and_duplicates(db: Database, settings: Settings) -> None:
    with pytest.raises(ValidationProblem, match="reason"):
        add(db, settings, "block", "device", "dev_1", reason="  ")
    with pytest.raises(ValidationProblem, match="by"):
        add(db, settings, "block", "device", "dev_1", by="")
    with pytest.raises(ValidationProblem, match="future"):
        add(db, settings, "block", "device", "dev_1", expires_at=clock.now() - timedelta(1))
    with pytest.raises(ValidationProblem, match="time zone"):
        add(db, settings, "block", "device", "dev_1", expires_at=datetime(2099, 1, 1))
    first = add(db, settings, "block", "device", "dev_1")
    with pytest.raises(Conflict) as duplicate:
        add(db, settings, "block", "device", "dev_1", reason="again")
    assert first.id in duplicate.value.detail
    # The same phone written differently is the same entry.
    add(db, settings, "watch", "phone", PHONE)
    with pytest.raises(Conflict):
        add(db, settings, "watch", "phone", "0086 137-0000-1234")
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(ListEntry)) == 2


def test_parse_expiry() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert lists.parse_expiry(None, now) is None
    assert lists.parse_expiry(" never ", now) is None
    assert lists.parse_expiry("30d", now) == now + timedelta(days=30)
    assert lists.parse_expiry("12h", now) == now + timedelta(hours=12)
    assert lists.parse_expiry("2w", now) == now + timedelta(weeks=2)
    assert lists.parse_expiry("2031-05-01T08:00:00", now) == datetime(2031, 5, 1, 8, tzinfo=UTC)
    assert lists.parse_expiry("2031-05-01T08:00:00+08:00", now) == datetime(2031, 5, 1, tzinfo=UTC)
    for bad in ("tomorrow", "30y", "999999d"):
        with pytest.raises(ValidationProblem):
            lists.parse_expiry(bad, now)


# ---------------------------------------------------------------- privacy and audit


def _everything(db: Database) -> str:
    """Every row of every table as text."""
    dumped = []
    with db.read() as session:
        for table in metadata.sorted_tables:
            for row in session.execute(select(table)):
                dumped.append(repr(tuple(row)))
    return "\n".join(dumped)


def test_a_phone_is_stored_only_as_its_blind_index(db: Database, settings: Settings) -> None:
    customer, _wallet = db.transact(
        lambda session: identity.register_customer(
            session,
            settings,
            username="dora",
            password="long-enough-password",
            display_name="Dora",
            phone=PHONE,
        )
    )
    entry = add(db, settings, "block", "phone", "+86 137 0000 1234", reason="phishing SMS")
    assert entry.value == customer.phone_index  # the identity domain's index
    db.transact(lambda session: lists.remove_entry(session, entry.id, "analyst-2"))
    add(db, settings, "watch", "phone", PHONE)
    with db.read() as session:
        stored = session.execute(text("SELECT * FROM risk_list_entries")).all()
        csv_text = lists.export_csv(session)
    assert stored and all(PHONE_DIGITS not in repr(row) for row in stored)
    assert PHONE_DIGITS not in csv_text
    assert PHONE_DIGITS not in _everything(db)  # nor in events, audit records, anywhere


def test_every_change_is_audited(db: Database, settings: Settings) -> None:
    staff, _issued = db.transact(
        lambda session: identity.create_staff(
            session, settings, username="rita", role="risk_analyst", password=None
        )
    )
    entry = add(db, settings, "block", "account", "acc_1", by=staff.id, reason="mule account")
    db.transact(lambda session: lists.remove_entry(session, entry.id, "ops-cli"))
    add(db, settings, "watch", "phone", PHONE)
    with db.read() as session:
        outbox = session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.topic == "security.risk_list_changed")
            .order_by(OutboxEvent.id)
        ).all()
        records = session.scalars(
            select(AuditRecord)
            .where(AuditRecord.action == "security.risk_list_changed")
            .order_by(AuditRecord.seq)
        ).all()
    assert [event.payload["change"] for event in outbox] == ["added", "removed", "added"]
    assert [record.details["change"] for record in records] == ["added", "removed", "added"]
    added, removed, phone = records
    assert added.actor == f"staff:{staff.id}" and added.object == "acc_1"
    assert added.details["entry_id"] == entry.id and added.details["list"] == "block"
    assert "reason" not in added.details  # free text stays out of the audit log
    assert removed.actor == "ops-cli" and removed.details["by"] == "ops-cli"
    assert phone.details["value"] == envelope_for(settings).blind_index("phone", PHONE)
    assert PHONE_DIGITS not in repr(phone.details)


# ---------------------------------------------------------------- CSV


def test_csv_round_trip(db: Database, settings: Settings, frozen: clock.FrozenClock) -> None:
    add(db, settings, "block", "ip", "203.0.113.7", reason='said "hi", then, left\nnext line')
    add(db, settings, "watch", "cidr", "2001:db8::/32", expires_at=clock.now() + LATER)
    add(db, settings, "allow", "account", "acc_vip", reason='=HYPERLINK("x")')
    add(db, settings, "block", "phone", PHONE, reason="-fraud ring")
    with db.read() as session:
        exported = lists.export_csv(session)
    rows = list(csv.reader(io.StringIO(exported)))
    assert rows[0] == ["list", "subject", "value", "reason", "expires_at"]
    assert len(rows) == 5
    assert rows[3][3] == '\'=HYPERLINK("x")'  # a spreadsheet shows it, never runs it
    assert rows[2][4] == (clock.now() + LATER).isoformat()

    # The same file again changes nothing: every row is already listed.
    again = db.transact(lambda session: lists.import_csv(session, settings, exported, "bob"))
    assert again.added == [] and [note.row for note in again.skipped] == [2, 3, 4, 5]

    # Take everything off, import the file: the lists are as they were.
    with db.read() as session:
        every = lists.list_entries(session)
    for entry in every:
        db.transact(lambda session, entry=entry: lists.remove_entry(session, entry.id, "bob"))
    assert len(snap(db)) == 0
    result = db.transact(lambda session: lists.import_csv(session, settings, exported, "bob"))
    assert len(result.added) == 4 and result.skipped == []
    with db.read() as session:
        assert lists.export_csv(session) == exported
        reasons = {e.subject: e.reason for e in lists.list_entries(session)}
    assert reasons["ip"] == 'said "hi", then, left\nnext line'
    assert reasons["account"] == '=HYPERLINK("x")' and reasons["phone"] == "-fraud ring"
    assert snap(db).match("ip", "2001:db8::1") == "watch"


def test_import_is_all_or_nothing_and_names_the_bad_rows(db: Database, settings: Settings) -> None:
    existing = add(db, settings, "block", "device", "dev_known")
    bad = (
        "list,subject,value,reason,expires_at\n"
        "block,ip,203.0.113.7,card testing,30d\n"  # row 2 fine
        "block,ip,203.0.113.999,typo,\n"  # row 3
        "watch,account,acc_1,mule,\n"  # row 4 fine
        "deny,account,acc_2,mule,\n"  # row 5
        "block,phone,13700001234,sms,\n"  # row 6: no country code
        "block,device,dev_2,,\n"  # row 7: no reason
        "block,device,dev_3,old,2001-01-01T00:00:00Z\n"  # row 8: in the past
        "block,device,dev_4,short\n"  # row 9: a column missing
    )
    with pytest.raises(ValidationProblem) as refused:
        db.transact(lambda session: lists.import_csv(session, settings, bad, "bob"))
    rows = refused.value.extra["rows"]
    assert [row["row"] for row in rows] == [3, 5, 6, 7, 8, 9]
    assert "rows 3, 5, 6, 7, 8, 9" in refused.value.detail
    assert PHONE_DIGITS not in repr(rows)
    with db.read() as session:
        assert [e.id for e in lists.list_entries(session)] == [existing.id]  # nothing added

    good = (
        "\ufeffList, Subject ,value,reason,expires_at,note\n"  # Excel's BOM, spacing, extra
        "block,ip,203.0.113.7,card testing,30d,x\n"
        "\n"
        "block,device,dev_known,again,,x\n"  # row 4: already listed
        "WATCH,account,acc_1,mule,,x\n"
        "block,ip,203.0.113.007,same address,,x\n"  # row 6: same as row 2
    )
    with pytest.raises(ValidationProblem, match="rows 6"):  # leading zeros are not an address
        db.transact(lambda session: lists.import_csv(session, settings, good, "bob"))
    good = good.replace("203.0.113.007", "203.0.113.7")
    result = db.transact(lambda session: lists.import_csv(session, settings, good, "bob"))
    assert len(result.added) == 2
    assert [(note.row, note.message) for note in result.skipped] == [
        (4, "already on the block list"),
        (6, "the same entry as row 2"),
    ]
    for broken, message in [
        ("", "empty"),
        ("list,subject,value\nblock,ip,1.2.3.4\n", "missing: reason, expires_at"),
        ("list,subject,value,reason,expires_at\n", "no entries"),
        ('list,subject,value,reason,expires_at\nblock,ip,"1.2.3.4\n', "not valid CSV"),
    ]:
        with pytest.raises(ValidationProblem, match=message):
            db.transact(
                lambda session, broken=broken: lists.import_csv(session, settings, broken, "b")
            )


# ---------------------------------------------------------------- the cache


def test_list_cache_sees_another_process_change_after_reload(settings: Settings) -> None:
    fast = settings.model_copy(update={"risk_reload_seconds": 0.3})
    ours, theirs = Database(settings.database_url), Database(settings.database_url)
    try:
        cache = ListCache(ours, fast)
        first = cache.current()
        assert first.match("device", "dev_x") == ""
        entry = add(theirs, settings, "block", "device", "dev_x")
        assert cache.current().match("device", "dev_x") == ""  # within the interval
        deadline = time.monotonic() + 5
        while cache.current().match("device", "dev_x") != "block":
            assert time.monotonic() < deadline, "the change never arrived"
            time.sleep(0.05)
        unchanged = cache.current()
        time.sleep(0.35)
        assert cache.current() is unchanged  # nothing changed: no rebuild
        theirs.transact(lambda session: lists.remove_entry(session, entry.id, "bob"))
        cache.invalidate()  # as the API does after a change in its own process
        assert cache.current().match("device", "dev_x") == ""

        # Many threads at once, checking at every call: each gets a whole snapshot (the
        # one being replaced while another thread reloads), none fails or waits.
        add(theirs, settings, "watch", "ip", "203.0.113.1")
        cache = ListCache(ours, settings.model_copy(update={"risk_reload_seconds": 0}))
        assert cache.current().match("ip", "203.0.113.1") == "watch"
        seen: list[str] = []
        errors: list[BaseException] = []

        def read() -> None:
            try:
                for _ in range(200):
                    seen.append(cache.current().match("ip", "203.0.113.1"))
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)

        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors and set(seen) == {"watch"}
    finally:
        ours.dispose()
        theirs.dispose()


def test_list_cache_keeps_its_snapshot_when_the_database_fails(
    settings: Settings, tmp_path: Path
) -> None:
    database = Database(settings.database_url)
    try:
        add(database, settings, "block", "account", "acc_1")
        cache = ListCache(database, settings.model_copy(update={"risk_reload_seconds": 0}))
        assert cache.current().match("account", "acc_1") == "block"

        class Broken:
            def read(self) -> Any:
                raise OperationalError("SELECT 1", {}, Exception("down"))

        cache._db = Broken()
        assert cache.current().match("account", "acc_1") == "block"
        with pytest.raises(Exception, match="down"):
            ListCache(Broken(), settings).current()  # no snapshot yet: the engine falls back
    finally:
        database.dispose()


# ---------------------------------------------------------------- API


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_api_routes(client: TestClient, settings: Settings) -> None:
    editor = _auth(staff_token(settings, "risk_analyst"))
    reader = _auth(staff_token(settings, "auditor"))
    added = client.post(
        "/v1/risk/lists",
        headers=editor,
        json={"list": "block", "subject": "ip", "value": "203.0.113.7", "reason": "card testing"},
    )
    assert added.status_code == 201, added.text
    body = added.json()
    assert body["list"] == "block" and body["status"] == "active"
    assert body["created_by"].startswith("stf_")
    # The serving process's engine sees it at once.
    engine_lists = client.app.state.services.risk.lists  # type: ignore[attr-defined]
    assert engine_lists.current().match("ip", "203.0.113.7") == "block"

    phone = client.post(
        "/v1/risk/lists",
        headers=editor,
        json={
            "list": "watch",
            "subject": "phone",
            "value": PHONE,
            "reason": "reported",
            "expires_at": (clock.now() + LATER).isoformat(),
        },
    )
    assert phone.status_code == 201, phone.text
    assert PHONE_DIGITS not in phone.text

    duplicate = client.post(
        "/v1/risk/lists",
        headers=editor,
        json={"list": "block", "subject": "ip", "value": "203.0.113.7", "reason": "again"},
    )
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"].startswith("application/problem+json")
    ip = {"list": "block", "subject": "ip", "value": "1.1.1.1", "reason": "x"}
    for bad in (
        {**ip, "value": "999.1.1.1"},
        {**ip, "list": "nope"},
        {**ip, "reason": ""},
        {**ip, "expires_at": "2020-01-01T00:00:00Z"},  # past
        {**ip, "expires_at": "2099-01-01T00:00:00"},  # no time zone
        {**ip, "subject": "phone", "value": "12345"},
        {**ip, "extra": "field"},
    ):
        refused = client.post("/v1/risk/lists", headers=editor, json=bad)
        assert refused.status_code == 422, (bad, refused.text)

    listed = client.get("/v1/risk/lists", headers=reader, params={"list": "block"})
    assert listed.status_code == 200
    assert [item["value"] for item in listed.json()] == ["203.0.113.7"]
    by_subject = client.get("/v1/risk/lists", headers=reader, params={"subject": "phone"})
    assert len(by_subject.json()) == 1 and by_subject.json()[0]["list"] == "watch"
    assert client.get("/v1/risk/lists", headers=reader, params={"list": "x"}).status_code == 422

    exported = client.get("/v1/risk/lists/export.csv", headers=reader)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.text.startswith("list,subject,value,reason,expires_at\n")

    upload = "list,subject,value,reason,expires_at\nblock,device,dev_9,stolen,7d\n"
    imported = client.post(
        "/v1/risk/lists/import",
        headers={**editor, "Content-Type": "text/csv"},
        content=exported.text + upload.split("\n", 1)[1],
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["added"] == 1
    assert [item["row"] for item in imported.json()["skipped"]] == [2, 3]
    broken = client.post(
        "/v1/risk/lists/import",
        headers={**editor, "Content-Type": "text/csv"},
        content=upload + "block,ip,1.2.3,typo,\n",
    )
    assert broken.status_code == 422
    assert [row["row"] for row in broken.json()["rows"]] == [3]
    not_csv = client.post("/v1/risk/lists/import", headers=editor, json={"list": "block"})
    assert not_csv.status_code == 415
    not_utf8 = client.post(
        "/v1/risk/lists/import",
        headers={**editor, "Content-Type": "text/csv"},
        content=b"list,subject\xff\n",
    )
    assert not_utf8.status_code == 422

    entry_id = body["id"]
    assert client.delete(f"/v1/risk/lists/{entry_id}", headers=reader).status_code == 403
    removed = client.delete(f"/v1/risk/lists/{entry_id}", headers=editor)
    assert removed.status_code == 200 and removed.json()["status"] == "removed"
    assert engine_lists.current().match("ip", "203.0.113.7") == ""
    assert client.delete(f"/v1/risk/lists/{entry_id}", headers=editor).status_code == 409
    assert client.delete("/v1/risk/lists/lst_missing", headers=editor).status_code == 404
    everything = client.get(
        "/v1/risk/lists", headers=reader, params={"include_removed": "true"}
    ).json()
    assert {item["status"] for item in everything} == {"active", "removed"}


def test_api_access(client: TestClient, settings: Settings) -> None:
    customer = register(client, "dora", device=False)
    reader = _auth(staff_token(settings, "auditor"))
    entry = {"list": "block", "subject": "ip", "value": "203.0.113.7", "reason": "x"}
    for method, path, kwargs in [
        ("GET", "/v1/risk/lists", {}),
        ("POST", "/v1/risk/lists", {"json": entry}),
        ("DELETE", "/v1/risk/lists/lst_x", {}),
        ("GET", "/v1/risk/lists/export.csv", {}),
        (
            "POST",
            "/v1/risk/lists/import",
            {"content": "x", "headers": {"Content-Type": "text/csv"}},
        ),
    ]:
        headers = {**kwargs.pop("headers", {}), **customer.auth}
        assert client.request(method, path, headers=headers, **kwargs).status_code == 403
        assert client.request(method, path, **kwargs).status_code == 401
    assert client.post("/v1/risk/lists", headers=reader, json=entry).status_code == 403
    assert client.get("/v1/risk/lists", headers=reader).status_code == 200


# ---------------------------------------------------------------- CLI


runner = CliRunner()


@pytest.fixture
def cli_db(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sqlite_template: Path
) -> Iterator[Path]:
    database = tmp_path / "var" / "payguard.db"
    database.parent.mkdir(parents=True)
    shutil.copyfile(sqlite_template, database)
    monkeypatch.setenv("PAYGUARD_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("COLUMNS", "200")  # Rich tables as wide as a real terminal
    get_settings.cache_clear()
    yield database
    get_settings.cache_clear()


def run(*args: str, code: int = 0) -> str:
    from payguard import cli
    from payguard.risk import lists_cli

    lists_cli.console.width = 200  # the tables' columns are not cut on a narrow terminal
    result = runner.invoke(cli.app, ["risk", "lists", *args])
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    return result.output


def test_cli_add_show_remove_export_import(cli_db: Path, tmp_path: Path) -> None:
    added = run(
        "add", "block", "ip", "203.0.113.7", "--reason", "card testing", "--expires", "30d",
        "--by", "rita",
    )  # fmt: skip
    assert "added lst_" in added and "on the block list" in added
    run("add", "watch", "phone", PHONE, "--reason", "reported", "--by", "rita")
    run("add", "allow", "account", "acc_vip", "--reason", "payroll", "--by", "rita",
        "--expires", "2099-01-01T00:00:00")  # fmt: skip
    shown = run("show")
    assert "list entries: 3" in shown and "203.0.113.7" in shown and "idx:" in shown
    assert PHONE_DIGITS not in shown
    assert "203.0.113.7" not in run("show", "--list", "watch")
    assert "acc_vip" in run("show", "--subject", "account")

    refused = run("add", "block", "ip", "not-an-ip", "--reason", "x", "--by", "rita", code=2)
    assert "not an IP address" in refused
    assert "expires" in run(
        "add", "block", "ip", "1.2.3.4", "--reason", "x", "--by", "r", "--expires", "soon", code=2
    )
    assert "already on the block list" in run(
        "add", "block", "ip", "203.0.113.7", "--reason", "x", "--by", "rita", code=2
    )
    assert "list: must be one of" in run("show", "--list", "grey", code=2)

    out = tmp_path / "lists.csv"
    run("export", "--out", str(out))
    exported = out.read_text()
    assert exported.count("\n") == 4 and PHONE_DIGITS not in exported
    assert run("export") == exported
    imported = run("import", str(out), "--by", "rita")
    assert "imported 0 entries, skipped 3" in imported and "row 2 skipped" in imported

    bad = tmp_path / "bad.csv"
    bad.write_text("list,subject,value,reason,expires_at\nblock,ip,1.2.3.999,x,\n")
    rejected = run("import", str(bad), "--by", "rita", code=2)
    assert "row 2" in rejected and "nothing was imported" in rejected
    run("import", str(tmp_path / "missing.csv"), "--by", "rita", code=2)

    entry_id = added.split("added ")[1].split(":")[0]
    assert "removed" in run("remove", entry_id, "--by", "rita")
    assert "already removed" in run("remove", entry_id, "--by", "rita", code=2)
    assert "no such list entry" in run("remove", "lst_missing", "--by", "rita", code=2)
    assert "list entries: 2" in run("show")
