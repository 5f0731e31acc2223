"""Intake: real alerts and security events become incidents, de-duplicated and counted."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from payguard import clock
from payguard.db.engine import Database
from payguard.errors import ValidationProblem
from payguard.events import service as events
from payguard.incidents import intake
from payguard.incidents import service as incidents
from payguard.risk import service as risk
from payguard.settings import Settings
from tests.conftest import make_settings
from tests.factories import register, staff_auth
from tests.incidents.helpers import make_staff, open_one


def _alert(db: Database, codes: list[str], *, customer: str, kind: str = "review") -> str:
    alert = db.transact(
        lambda s: risk.open_alert(
            s,
            kind=kind,
            severity="high",
            title="payment held for review",
            reason_codes=codes,
            payment_id=f"pay_{customer}_{len(codes)}",
            account_id=f"acc_{customer}",
            customer_id=f"cus_{customer}",
            amount=1_500_000,
            currency="CNY",
        )
    )
    return alert.id


def test_an_alert_opens_an_incident_and_a_second_is_linked(
    db: Database, settings: Settings
) -> None:
    first = _alert(db, ["NEW_DEVICE_LARGE_AMOUNT"], customer="a")
    assert intake.process_events(db, settings) >= 1
    with db.read() as session:
        [incident] = incidents.list_incidents(session)
        links = {(link.kind, link.ref) for link in incidents.links_of(session, incident.id)}
        texts = [entry.text for entry in incidents.timeline(session, incident.id)]
    assert incident.source == "alert" and incident.category == "02"
    assert incident.dedup_key == "account-takeover:cus_a"
    assert incident.impact["money_at_risk"] == 1_500_000
    assert incident.impact["people_affected"] == 1
    assert {("alert", first), ("account", "acc_a"), ("customer", "cus_a")} <= links
    assert any("opened by intake mapping 'account-takeover'" in text for text in texts)
    # Without the app's services the mapped playbook is not started, and the record says so.
    assert any("playbook 'account-takeover' not started" in text for text in texts)

    second = _alert(db, ["FAILED_LOGINS_THEN_PAY"], customer="a")
    intake.process_events(db, settings)
    with db.read() as session:
        assert len(incidents.list_incidents(session)) == 1
        links = {(link.kind, link.ref) for link in incidents.links_of(session, incident.id)}
        texts = [entry.text for entry in incidents.timeline(session, incident.id)]
    assert ("alert", second) in links
    assert any(f"another alert {second}" in text for text in texts)
    # Nothing is read twice.
    assert intake.process_events(db, settings) == 0 or len(_all(db)) == 1


def _all(db: Database) -> list[str]:
    with db.read() as session:
        return [incident.id for incident in incidents.list_incidents(session)]


def test_other_customers_and_unmatched_alerts(db: Database, settings: Settings) -> None:
    _alert(db, ["NEW_DEVICE_LARGE_AMOUNT"], customer="a")
    _alert(db, ["NEW_DEVICE_LARGE_AMOUNT"], customer="b")
    _alert(db, ["UNUSUAL_HOUR"], customer="c")  # matches no mapping
    intake.process_events(db, settings)
    with db.read() as session:
        keys = sorted(str(i.dedup_key) for i in incidents.list_incidents(session))
    assert keys == ["account-takeover:cus_a", "account-takeover:cus_b"]


def test_count_within_the_window(db: Database, settings: Settings) -> None:
    # mule-accounts opens at the second matching alert within a day, across customers.
    _alert(db, ["SHARED_DEVICE"], customer="m1")
    intake.process_events(db, settings)
    assert _all(db) == []
    _alert(db, ["PAYEE_FAN_IN"], customer="m2")
    intake.process_events(db, settings)
    with db.read() as session:
        [incident] = incidents.list_incidents(session)
        links = {(link.kind, link.ref) for link in incidents.links_of(session, incident.id)}
    assert incident.dedup_key == "mule-accounts:global"
    assert {("customer", "cus_m1"), ("customer", "cus_m2")} <= links
    assert incident.impact["people_affected"] == 2
    assert incident.impact["money_at_risk"] == 3_000_000
    assert incident.first_evidence_at is not None
    assert incident.first_evidence_at <= incident.detected_at


def _custom(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "intake.yaml"
    path.write_text(text, encoding="utf-8")
    return path


WINDOWED = """
mappings:
  - name: pairs
    topic: risk.alert_opened
    match: {reason_codes_any: [PASS_THROUGH]}
    group_by: global
    count: 2
    window_seconds: 60
    dedup_window_seconds: 60
    category: "08"
    title: "two pass-through alerts"
    impact: {money_at_risk: alert_amount}
"""


def test_hits_outside_the_window_do_not_count(
    database_url: str, tmp_path: Path, db: Database
) -> None:
    settings = make_settings(
        database_url, tmp_path, incident_intake_path=_custom(tmp_path, WINDOWED)
    )
    frozen = clock.FrozenClock(clock.now())
    previous = clock.set_clock(frozen)
    try:
        _alert(db, ["PASS_THROUGH"], customer="w1")
        intake.process_events(db, settings)
        frozen.advance(timedelta(seconds=61))
        _alert(db, ["PASS_THROUGH"], customer="w2")
        intake.process_events(db, settings)
        assert _all(db) == []  # the first one fell out of the 60 s window
        frozen.advance(timedelta(seconds=30))
        _alert(db, ["PASS_THROUGH"], customer="w3")
        intake.process_events(db, settings)
        assert len(_all(db)) == 1
        # After the dedup window, a new pair opens a new incident.
        frozen.advance(timedelta(seconds=120))
        _alert(db, ["PASS_THROUGH"], customer="w4")
        _alert(db, ["PASS_THROUGH"], customer="w5")
        intake.process_events(db, settings)
        assert len(_all(db)) == 2
    finally:
        clock.set_clock(previous)


def test_credential_stuffing_burst_and_drill_tag(
    database_url: str, tmp_path: Path, db: Database
) -> None:
    settings = make_settings(database_url, tmp_path, incident_drill_run_id="drl_test")

    def failures(count: int) -> None:
        def work(session: Session) -> None:
            for _ in range(count):
                events.emit(session, "identity.login_failed", {"subject_kind": "customer"})

        db.transact(work)

    failures(29)
    intake.process_events(db, settings)
    assert _all(db) == []
    failures(1)
    intake.process_events(db, settings)
    with db.read() as session:
        [incident] = incidents.list_incidents(session)
        assert [i.id for i in incidents.incidents_for_drill(session, "drl_test")] == [incident.id]
    assert incident.dedup_key == "credential-stuffing:global"
    failures(40)  # the same burst goes on: no second incident
    intake.process_events(db, settings)
    assert len(_all(db)) == 1


def test_events_about_an_open_incident_reach_its_timeline(db: Database, settings: Settings) -> None:
    incident = db.transact(lambda s: open_one(s, settings, links=[("account", "acc_z")]))
    alert_id = _alert(db, ["UNUSUAL_HOUR"], customer="z")  # on the linked account

    def more(session: Session) -> None:
        events.emit(
            session,
            "notify.sent",
            {
                "notification_id": "ntf_1",
                "incident_id": incident.id,
                "audience": "internal",
                "template": "incident_role_assigned",
                "channel": "outbox",
            },
        )
        events.emit(
            session,
            "approval.requested",
            {"approval_id": "apr_1", "action": "account.unfreeze", "target": "acc_z"},
        )

    db.transact(more)
    intake.process_events(db, settings)
    with db.read() as session:
        entries = incidents.timeline(session, incident.id)
        links = {(link.kind, link.ref) for link in incidents.links_of(session, incident.id)}
    kinds = {entry.kind for entry in entries}
    assert ("alert", alert_id) in links
    assert {"alert", "notification", "approval"} <= kinds
    assert any("incident_role_assigned" in entry.text for entry in entries)


def test_a_bad_mapping_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValidationProblem, match="group_by"):
        intake.parse_config(
            {
                "mappings": [
                    {
                        "name": "x",
                        "topic": "t",
                        "category": "02",
                        "title": "t",
                        "group_by": "planet",
                    }
                ]
            },
            tmp_path / "x.yaml",
        )
    with pytest.raises(ValidationProblem, match="category"):
        intake.parse_config(
            {"mappings": [{"name": "x", "topic": "t", "category": "77", "title": "t"}]},
            tmp_path / "x.yaml",
        )
    with pytest.raises(ValidationProblem, match=r"impact\.money_at_risk"):
        intake.parse_config(
            {
                "mappings": [
                    {
                        "name": "x",
                        "topic": "t",
                        "category": "02",
                        "title": "t",
                        "impact": {"money_at_risk": "plenty"},
                    }
                ]
            },
            tmp_path / "x.yaml",
        )


def test_the_shipped_mapping_loads() -> None:
    config = intake._load(intake.SHIPPED_INTAKE)
    names = [mapping.name for mapping in config.mappings]
    assert "account-takeover" in names and "credential-stuffing" in names


def test_intake_starts_the_mapped_playbook(client: TestClient, settings: Settings) -> None:
    """A real customer's alert: intake, given the app's services, opens the incident and
    starts the account-takeover playbook, which freezes the real wallet."""
    customer = register(client, f"victim{uuid.uuid4().hex[:6]}")
    services = client.app.state.services  # type: ignore[attr-defined]
    services.db.transact(
        lambda s: risk.open_alert(
            s,
            kind="review",
            severity="high",
            title="payment held for review",
            reason_codes=["NEW_DEVICE_LARGE_AMOUNT"],
            account_id=customer.wallet_id,
            customer_id=customer.id,
            amount=800_000,
            currency="CNY",
        )
    )
    assert intake.process_events(services) >= 1
    with services.db.read() as session:
        [incident] = incidents.list_incidents(session)
        entries = incidents.timeline(session, incident.id)
    kinds = [entry.kind for entry in entries]
    assert "action" in kinds, [entry.text for entry in entries]
    assert not any("could not start" in entry.text for entry in entries)
    account = client.get(
        f"/v1/accounts/{customer.wallet_id}", headers=staff_auth(settings, "auditor")
    )
    assert account.status_code == 200 and account.json()["status"] == "frozen"


def test_role_holders_are_notified_and_the_record_shows_it(
    db: Database, settings: Settings
) -> None:
    commander = db.transact(lambda s: make_staff(s, settings))
    incident = db.transact(lambda s: open_one(s, settings))
    db.transact(lambda s: incidents.assign_role(s, incident.id, "commander", commander, actor="a"))
    db.transact(lambda s: incidents.set_status(s, incident.id, "confirmed", actor="a"))
    intake.process_events(db, settings)  # sends the two internal notifications (outbox)
    intake.process_events(db, settings)  # picks up their notify.sent events
    with db.read() as session:
        entries = [e for e in incidents.timeline(session, incident.id) if e.kind == "notification"]
    texts = " ".join(entry.text for entry in entries)
    assert "incident_role_assigned" in texts and "incident_status_changed" in texts


def test_an_alert_without_the_group_goes_to_the_next_mapping(
    db: Database, settings: Settings
) -> None:
    # An assess-API alert has an account but no customer: account-takeover (per customer)
    # cannot group it, blocked-severe (per account) takes it.
    db.transact(
        lambda s: risk.open_alert(
            s,
            kind="block",
            severity="critical",
            title="payment blocked",
            reason_codes=["NEW_DEVICE_LARGE_AMOUNT", "BLOCK_LISTED_PAYER"],
            account_id="acc_outside",
        )
    )
    intake.process_events(db, settings)
    with db.read() as session:
        [incident] = incidents.list_incidents(session)
    assert incident.dedup_key == "blocked-severe:acc_outside"
    assert incident.category == "08"


def test_an_alert_on_a_merchant_account_runs_the_merchant_playbook(
    client: TestClient, settings: Settings
) -> None:
    """Seed 002: money leaving a merchant's own account is held; intake names the
    merchant, opens the merchant-platform incident and starts the leaked-credentials
    playbook, which suspends that merchant's payouts."""
    from tests.factories import create_merchant

    owner = register(client, f"owner{uuid.uuid4().hex[:6]}")
    shop = create_merchant(client, settings, "Harbour Shop", owner)
    services = client.app.state.services  # type: ignore[attr-defined]
    services.db.transact(
        lambda s: risk.open_alert(
            s,
            kind="block",
            severity="high",
            title="payment blocked",
            reason_codes=["NEW_DEVICE_LARGE_AMOUNT"],
            account_id=shop["account_id"],
            customer_id=owner.id,
            amount=5_400_000,
            currency="CNY",
        )
    )
    assert intake.process_events(services) >= 1
    with services.db.read() as session:
        [incident] = incidents.list_incidents(session)
        links = {(link.kind, link.ref) for link in incidents.links_of(session, incident.id)}
        texts = [entry.text for entry in incidents.timeline(session, incident.id)]
    assert incident.dedup_key == f"merchant-platform-abuse:{shop['id']}"
    assert ("merchant", shop["id"]) in links and ("customer", owner.id) in links
    assert any("leaked-merchant-credentials" in text for text in texts), texts
    # The playbook writes its own entries; intake does not repeat its events.
    assert intake.process_events(services) >= 0
    with services.db.read() as session:
        texts = [entry.text for entry in incidents.timeline(session, incident.id)]
    assert not [text for text in texts if text.startswith(("playbook.", "controls."))], texts
    suspended = client.get("/v1/controls", headers=staff_auth(settings, "admin"))
    assert suspended.status_code == 200, suspended.text
    assert f"merchant_payouts:{shop['id']}" in suspended.text
