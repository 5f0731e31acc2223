"""The staff watch (identity/staff_watch.py): bulk reads of customer data by a staff
session raise an alert and are then refused; refused staff operations are audited and,
repeated, raise an alert that incident intake turns into the insider-abuse playbook."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from payguard.audit.models import AuditRecord
from payguard.identity.staff_watch import read_weight
from payguard.incidents import intake
from payguard.incidents.models import Incident
from payguard.risk.models import RiskAlert
from tests.conftest import app_client, outbox_payloads
from tests.factories import register, staff_token

WATCHED: dict[str, object] = {
    "staff_read_alert_records": 300,
    "staff_read_block_records": 700,
    "staff_refusal_alert_count": 3,
}


def watched(database_url: str, tmp_path: Path, **overrides: object) -> TestClient:
    return app_client(database_url, tmp_path, WATCHED, **overrides)


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with watched(database_url, tmp_path) as made:
        yield made


def staff(client: TestClient, role: str) -> tuple[str, dict[str, str]]:
    services = client.app.state.services  # type: ignore[attr-defined]
    auth = {"Authorization": f"Bearer {staff_token(services.settings, role)}"}
    me = client.get("/v1/me", headers=auth)
    assert me.status_code == 200, me.text
    return str(me.json()["id"]), auth


def events(client: TestClient, topic: str) -> list[dict[str, Any]]:
    return outbox_payloads(client.app.state.services.db, topic)  # type: ignore[attr-defined]


def alerts(client: TestClient, kind: str) -> list[RiskAlert]:
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.read() as session:
        found = session.scalars(select(RiskAlert).where(RiskAlert.kind == kind)).all()
        session.expunge_all()
        return list(found)


def test_a_read_counts_the_records_it_asks_for() -> None:
    assert read_weight("/v1/accounts", b"limit=200") == 200
    assert read_weight("/v1/accounts", b"") == 50
    assert read_weight("/v1/payments", b"limit=oops") == 50
    assert read_weight("/v1/accounts/acc_1", b"limit=200") == 1
    assert read_weight("/v1/accounts/acc_1/statement", b"") == 1


def test_bulk_reads_by_a_staff_session_alert_then_are_refused(client: TestClient) -> None:
    staff_id, auth = staff(client, "viewer")
    page = {"limit": 200}
    assert client.get("/v1/accounts", headers=auth, params=page).status_code == 200
    assert alerts(client, "staff_read_volume") == []
    assert client.get("/v1/payments", headers=auth, params=page).status_code == 200  # 400
    [alert] = alerts(client, "staff_read_volume")
    assert alert.reason_codes == ["STAFF_BULK_READ"] and alert.severity == "high"
    assert alert.customer_id is None and staff_id in alert.title
    [raised] = events(client, "security.staff_read_volume")
    assert raised["staff_id"] == staff_id and raised["alert_id"] == alert.id
    assert raised["records"] == 400 and raised["role"] == "viewer"

    for _ in range(2):  # 600, then 800: past the block line (this read is still served)
        assert client.get("/v1/accounts", headers=auth, params=page).status_code == 200
    refused = client.get("/v1/accounts/acc_whatever", headers=auth)
    assert refused.status_code == 429
    assert refused.json()["code"] == "read-volume-exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    assert client.get("/v1/me", headers=auth).status_code == 200  # only data reads stop
    assert len(alerts(client, "staff_read_volume")) == 1  # one alert per window
    [blocked] = events(client, "security.staff_reads_blocked")
    assert blocked["staff_id"] == staff_id and blocked["records"] == 800
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.read() as session:
        audited = session.scalars(
            select(AuditRecord).where(AuditRecord.action == "security.staff_read_volume")
        ).all()
    assert [record.actor for record in audited] == [f"staff:{staff_id}"]


def test_the_block_lifts_when_the_window_has_room(database_url: str, tmp_path: Path) -> None:
    with watched(
        database_url,
        tmp_path,
        staff_read_window_seconds=1.5,
        staff_read_alert_records=100,
        staff_read_block_records=250,
    ) as client:
        _staff_id, auth = staff(client, "viewer")
        for _ in range(2):
            assert (
                client.get("/v1/accounts", headers=auth, params={"limit": 200}).status_code == 200
            )
        assert client.get("/v1/accounts", headers=auth).status_code == 429
        time.sleep(1.7)
        assert client.get("/v1/accounts", headers=auth).status_code == 200


def test_customers_reading_their_own_data_are_not_counted(client: TestClient) -> None:
    customer = register(client, f"reader-{uuid.uuid4().hex[:6]}", device=False)
    for _ in range(6):
        reply = client.get("/v1/accounts", headers=customer.auth, params={"limit": 200})
        assert reply.status_code == 200
    assert alerts(client, "staff_read_volume") == []


def test_refused_staff_operations_are_audited_and_repeats_raise_an_alert(
    client: TestClient,
) -> None:
    customer = register(client, f"frozen-{uuid.uuid4().hex[:6]}", device=False)
    staff_id, auth = staff(client, "viewer")  # may read, may not freeze
    path = f"/v1/accounts/{customer.wallet_id}/freeze"
    for number in range(1, 4):
        reply = client.post(path, headers=auth, json={"reason": "just looking"})
        assert reply.status_code == 403
        assert len(events(client, "security.staff_operation_refused")) == number
    refused = events(client, "security.staff_operation_refused")
    assert {item["route"] for item in refused} == {"/v1/accounts/{account_id}/freeze"}
    assert {item["staff_id"] for item in refused} == {staff_id}
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.db.read() as session:
        audited = session.scalars(
            select(AuditRecord).where(AuditRecord.action == "security.staff_operation_refused")
        ).all()
        assert {(record.actor, record.outcome) for record in audited} == {
            (f"staff:{staff_id}", "refused")
        }
    [alert] = alerts(client, "staff_refusals")
    assert alert.reason_codes == ["STAFF_REPEATED_REFUSALS"]
    [repeated] = events(client, "security.staff_refusals_repeated")
    assert repeated["count"] == 3 and repeated["alert_id"] == alert.id


def test_a_self_approval_ends_in_the_insider_playbook(database_url: str, tmp_path: Path) -> None:
    with watched(database_url, tmp_path, staff_refusal_alert_count=1) as client:
        customer = register(client, f"mule-{uuid.uuid4().hex[:6]}", device=False)
        _analyst, analyst = staff(client, "risk_analyst")
        frozen = client.post(
            f"/v1/accounts/{customer.wallet_id}/freeze", headers=analyst, json={"reason": "mule"}
        )
        assert frozen.status_code == 200, frozen.text
        insider_id, insider = staff(client, "operations")
        asked = client.post(
            f"/v1/accounts/{customer.wallet_id}/unfreeze",
            headers=insider,
            json={"reason": "customer called"},
        )
        assert asked.status_code == 202, asked.text
        own = client.post(
            f"/v1/approvals/{asked.json()['id']}/approve", headers=insider, json={"note": "me"}
        )
        assert own.status_code == 403
        [repeated] = events(client, "security.staff_refusals_repeated")
        assert repeated["staff_id"] == insider_id

        services = client.app.state.services  # type: ignore[attr-defined]
        intake.process_events(services)
        with services.db.read() as session:
            [opened] = session.scalars(select(Incident)).all()
            assert opened.source == "alert" and opened.dedup_key.startswith(
                "staff-repeated-refusals"
            )
        # The playbook ended the insider's sessions; the analyst's still works.
        assert client.get("/v1/me", headers=insider).status_code == 401
        assert client.get("/v1/me", headers=analyst).status_code == 200
        [revoked] = events(client, "controls.sessions_revoked")
        assert revoked["staff_id"] == insider_id
