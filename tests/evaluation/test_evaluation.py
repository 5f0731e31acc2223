"""`payguard evaluate` over a small real dataset made through the platform's API.

The dataset (clock frozen, one minute between steps), and what it implies:

    P1 top-up 5,000.00 by alice, her device's first payment: step-up (new device), confirmed
    P2 alice -> bob 100.00, confirmed; labelled legitimate
    P3 alice -> carol 1,500.00, a new payee above the step-up line: step-up, confirmed;
       labelled fraud (caught by the challenge)
    P4 alice -> dave 50.00, dave block-listed: blocked; its alert closed as fraud after 26 min
    P5 alice -> bob 200.00, confirmed; labelled fraud (missed)
    P6 alice -> erin 30.00, erin block-listed: blocked; its alert closed as legitimate after
       60 min (a false positive)
    P7 top-up 1,000.00, the bank rail refuses it: failed
    logins: five customers sign in once at registration, alice four times more, once with a
       wrong password, and one attempt names nobody (not counted)
    incident: a data-leak incident (GB/T 20986 class 03), contained 30 min after its report,
       with two open improvement items (one overdue) and one ordinary task
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from payguard import clock
from payguard.app import create_app
from payguard.db.engine import Database
from payguard.evaluation import service
from payguard.evaluation.schemas import EvaluationOut
from payguard.incidents import service as incidents
from payguard.payments.rails import SimulatedRail
from payguard.settings import Settings
from tests.conftest import make_settings
from tests.factories import (
    PASSWORD,
    Customer,
    allow_list,
    pay,
    register,
    set_tier,
    staff_auth,
    top_up,
)

MINUTE = timedelta(minutes=1)


@pytest.fixture
def frozen() -> Iterator[clock.FrozenClock]:
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=3)
    fixed = clock.FrozenClock(start)
    previous = clock.set_clock(fixed)
    try:
        yield fixed
    finally:
        clock.set_clock(previous)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # No background intake (it would open incidents of its own from the block alerts) and
    # no wallet freeze on a block (alice keeps paying after her blocked payments).
    return make_settings(
        database_url, tmp_path, incident_intake_seconds=0, risk_freeze_on_block=False
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


def _block_payee(client: httpx.Client, settings: Settings, customer: Customer) -> None:
    reply = client.post(
        "/v1/risk/lists",
        headers=staff_auth(settings, "risk_analyst"),
        json={
            "list": "block",
            "subject": "payee",
            "value": customer.wallet_id,
            "reason": "reported mule account",
        },
    )
    assert reply.status_code == 201, reply.text


def _label(client: httpx.Client, auth: dict[str, str], payment_id: str, label: str) -> None:
    reply = client.post(
        "/v1/risk/labels", headers=auth, json={"payment_id": payment_id, "label": label}
    )
    assert reply.status_code == 200, reply.text


def _alert_of(client: httpx.Client, auth: dict[str, str], payment_id: str) -> str:
    alerts = client.get("/v1/risk/alerts", headers=auth, params={"status": "open"}).json()
    found = [item["id"] for item in alerts["items"] if item["payment_id"] == payment_id]
    assert len(found) == 1, alerts
    return str(found[0])


def _close(client: httpx.Client, auth: dict[str, str], alert_id: str, disposition: str) -> None:
    reply = client.post(
        f"/v1/risk/alerts/{alert_id}/close",
        headers=auth,
        json={"disposition": disposition, "note": "checked"},
    )
    assert reply.status_code == 200, reply.text


def _history(reply: httpx.Response) -> list[str]:
    return [str(event.get("detail") or "") for event in reply.json().get("history", [])]


def build_dataset(
    client: TestClient, settings: Settings, frozen: clock.FrozenClock
) -> dict[str, Any]:
    analyst = staff_auth(settings, "risk_analyst")
    alice = register(client, "alice")
    bob, carol, dave, erin = (
        register(client, name, device=False) for name in ("bob", "carol", "dave", "erin")
    )
    set_tier(client, settings, alice, 2)
    allow_list(client, settings, alice)  # the habit and velocity rules stay out of it
    _block_payee(client, settings, dave)
    _block_payee(client, settings, erin)
    for _ in range(3):
        assert (
            client.post(
                "/v1/sessions", json={"username": "alice", "password": PASSWORD}
            ).status_code
            == 201
        )
    assert client.post(
        "/v1/sessions", json={"username": "alice", "password": "wrong-password-here"}
    ).status_code in (400, 401)
    assert (
        client.post("/v1/sessions", json={"username": "alice", "password": PASSWORD}).status_code
        == 201
    )
    assert client.post(
        "/v1/sessions", json={"username": "nobody-at-all", "password": PASSWORD}
    ).status_code in (400, 401)

    frozen.advance(MINUTE)
    p1 = top_up(client, alice, 500_000)
    assert any(detail.startswith("step-up passed") for detail in _history_of(p1))
    frozen.advance(MINUTE)
    p2 = pay(client, alice, kind="p2p", amount=10_000, payee_account_id=bob.wallet_id)
    assert p2.status_code == 201, p2.text
    assert not any(detail.startswith("step-up passed") for detail in _history(p2))
    frozen.advance(MINUTE)
    p3 = pay(client, alice, kind="p2p", amount=150_000, payee_account_id=carol.wallet_id)
    assert p3.status_code == 201, p3.text
    assert any(detail.startswith("step-up passed") for detail in _history(p3))
    frozen.advance(MINUTE)
    blocked_at = clock.now()
    p4 = pay(client, alice, kind="p2p", amount=5_000, payee_account_id=dave.wallet_id)
    assert p4.status_code == 422 and p4.json()["status"] == "rejected", p4.text
    frozen.advance(MINUTE)
    p5 = pay(client, alice, kind="p2p", amount=20_000, payee_account_id=bob.wallet_id)
    assert p5.status_code == 201, p5.text
    frozen.advance(MINUTE)
    p6 = pay(client, alice, kind="p2p", amount=3_000, payee_account_id=erin.wallet_id)
    assert p6.status_code == 422 and p6.json()["status"] == "rejected", p6.text
    frozen.advance(MINUTE)
    services = client.app.state.services  # type: ignore[attr-defined]
    rail = services.payments.rail
    services.payments.rail = SimulatedRail(failure_rate=1.0)
    try:
        p7 = pay(client, alice, kind="top_up", amount=100_000, bank_account="6222020200112233")
    finally:
        services.payments.rail = rail
    assert p7.json()["status"] == "failed", p7.text

    _label(client, analyst, p2.json()["id"], "legitimate")
    _label(client, analyst, p3.json()["id"], "fraud")
    _label(client, analyst, p5.json()["id"], "fraud")

    # The data-leak incident: reported now (blocked_at + 6 min), contained 30 min later.
    database = Database(settings.database_url)
    try:
        staff_id = database.transact(lambda session: _staff_id(session))
        incident_id = database.transact(
            lambda session: (
                incidents.open_incident(
                    session,
                    settings,
                    title="customer records exported by a stolen staff session",
                    category="03",
                    impact={"people_affected": 12},
                    created_by="staff:test",
                ).id
            )
        )
        database.transact(
            lambda session: [
                incidents.add_task(
                    session,
                    incident_id,
                    title=title,
                    actor="staff:test",
                    owner=staff_id,
                    due_at=due,
                    kind=kind,
                )
                for title, due, kind in (
                    ("separate the export permission", clock.now() + MINUTE, "improvement"),
                    ("second verification on bulk export", None, "improvement"),
                    ("collect the access logs", None, "task"),
                )
            ]
        )
        frozen.advance(10 * MINUTE)
        database.transact(
            lambda session: incidents.set_status(
                session, incident_id, "confirmed", actor="staff:test", note="confirmed"
            )
        )
        frozen.advance(20 * MINUTE)
        database.transact(
            lambda session: incidents.set_status(
                session, incident_id, "contained", actor="staff:test", note="sessions revoked"
            )
        )
    finally:
        database.dispose()

    # The block alerts: P4's closed 26 minutes after it opened, P6's 60 minutes after.
    frozen.advance((blocked_at + 26 * MINUTE) - clock.now())
    analyst = staff_auth(settings, "risk_analyst")  # a fresh session: time has passed
    _close(client, analyst, _alert_of(client, analyst, p4.json()["id"]), "fraud")
    frozen.advance((blocked_at + 2 * MINUTE + 60 * MINUTE) - clock.now())
    analyst = staff_auth(settings, "risk_analyst")
    _close(client, analyst, _alert_of(client, analyst, p6.json()["id"]), "legitimate")
    frozen.advance(30 * MINUTE)
    return {"alice": alice, "bob": bob, "analyst": analyst}


def _history_of(payment: dict[str, Any]) -> list[str]:
    return [str(event.get("detail") or "") for event in payment.get("history", [])]


def _drill(session: Any, number: int, attacks: int, defended: int, off: list[str]) -> None:
    from payguard import ids
    from payguard.drills import service as drills

    run_id = ids.new_id("drill_run")
    drills.start_run(session, run_id=run_id, scenario=f"scenario-{number}", target="sandbox")
    drills.finish_run(
        session,
        run_id,
        {
            "passed": attacks == defended,
            "score": round(100 * defended / attacks),
            "attacks": attacks,
            "attacks_defended": defended,
            "disabled_controls": off,
        },
        None,
    )


def _staff_id(session: Any) -> str:
    from sqlalchemy import select

    from payguard.identity.models import StaffUser

    found = session.scalars(select(StaffUser.id).limit(1)).first()
    assert found is not None
    return str(found)


def by_id(evaluation: EvaluationOut) -> dict[str, Any]:
    return {item.id: item for item in evaluation.indicators}


def test_each_indicator_is_what_the_data_implies(
    client: TestClient, settings: Settings, frozen: clock.FrozenClock, tmp_path: Path
) -> None:
    people = build_dataset(client, settings, frozen)
    database = Database(settings.database_url)
    try:
        first = service.evaluate(database, settings, period="30d", created_by="test")
    finally:
        database.dispose()
    found = by_id(first)

    # Security. No drill ran: no data, which neither passes nor fails.
    assert found["drill_defence_rate"].state == "no_data"
    assert found["drill_defence_rate"].value is None and found["drill_defence_rate"].score is None
    assert found["open_vulnerabilities"].value == 2  # two improvement items, the task is not
    assert found["open_vulnerabilities"].detail["overdue"] == 1
    assert found["open_vulnerabilities"].state == "pass"
    assert found["open_vulnerabilities"].score == pytest.approx(60 + 40 * 3 / 5)  # 84
    assert found["payment_failure_rate"].value == pytest.approx(1 / 5)  # P7 of P1-3, P5, P7
    assert (found["payment_failure_rate"].numerator, found["payment_failure_rate"].denominator) == (
        1,
        5,
    )
    assert found["payment_failure_rate"].state == "fail"
    assert found["payment_failure_rate"].score == pytest.approx(60 * 0.01 / 0.2)  # 3
    assert found["data_leak_events"].value == 1
    assert found["data_leak_events"].state == "fail" and found["data_leak_events"].score == 0

    # User experience. The clock stood still within each request: every lifecycle took 0 ms.
    assert found["payment_latency_p95"].value == 0
    assert found["payment_latency_p95"].detail["payments"] == 4  # P1, P2, P3, P5
    assert found["payment_latency_p95"].score == 100
    assert found["legit_step_up_rate"].value == pytest.approx(1 / 3)  # P1 of P1, P2, P7
    assert found["legit_step_up_rate"].state == "fail"
    assert found["legit_step_up_rate"].score == pytest.approx(60 * 0.10 / (1 / 3))  # 18
    assert found["login_success_rate"].value == pytest.approx(9 / 10)
    assert found["login_success_rate"].detail["unknown_account_attempts"] == 1
    assert found["login_success_rate"].state == "pass"  # exactly at the threshold
    assert found["login_success_rate"].score == pytest.approx(60)

    # Risk control.
    assert found["detection_rate"].value == pytest.approx(2 / 3)  # P3, P4 of P3, P4, P5
    assert found["detection_rate"].detail["missed"] == 1
    assert found["detection_rate"].state == "fail"
    assert found["detection_rate"].score == pytest.approx(60 * (2 / 3) / 0.8)  # 50
    assert found["false_positive_rate"].value == pytest.approx(1 / 4)  # P6 of P1, P2, P6, P7
    assert found["false_positive_rate"].score == pytest.approx(60 * 0.05 / 0.25)  # 12
    mean_minutes = (26 + 60 + 30) / 3
    assert found["mean_time_to_dispose"].value == pytest.approx(mean_minutes, abs=1e-3)
    assert found["mean_time_to_dispose"].detail["alerts"] == 2
    assert found["mean_time_to_dispose"].detail["incidents"] == 1
    dispose_score = 60 + 40 * (240 - mean_minutes) / (240 - 30)
    assert found["mean_time_to_dispose"].score == pytest.approx(dispose_score, abs=0.01)

    # Groups: the no-data indicator's weight goes to the others of its group.
    groups = {group.id: group for group in first.groups}
    security = (0.20 * 84 + 0.20 * 3 + 0.30 * 0) / 0.70
    assert groups["security"].score == pytest.approx(security, abs=0.01)
    assert groups["security"].coverage == pytest.approx(0.70)
    experience = 0.40 * 100 + 0.30 * 18 + 0.30 * 60
    assert groups["user_experience"].score == pytest.approx(experience, abs=0.01)
    risk = 0.40 * 50 + 0.30 * 12 + 0.30 * dispose_score
    assert groups["risk_control"].score == pytest.approx(risk, abs=0.01)
    assert first.overall_score == pytest.approx(
        0.40 * security + 0.25 * experience + 0.35 * risk, abs=0.02
    )
    assert first.coverage == pytest.approx(1 - 0.40 * 0.30)
    assert first.verdict == "fail"
    assert (first.passed, first.failed, first.no_data) == (4, 5, 1)
    assert first.id is not None and first.previous_run_id is None
    assert all(item.trend == "none" for item in first.indicators)

    # One more good payment; the second evaluation compares with the first.
    frozen.advance(MINUTE)
    alice = people["alice"]
    login = client.post(
        "/v1/sessions",
        json={"username": "alice", "password": PASSWORD, "device_id": alice.device_id},
    )
    assert login.status_code == 201, login.text
    alice.token = login.json()["token"]
    more = pay(
        client, people["alice"], kind="p2p", amount=1_000, payee_account_id=people["bob"].wallet_id
    )
    assert more.status_code == 201, more.text
    # Three drills: 3 of 4 attack steps defended, 5 of 5, and one played with a control
    # switched off on purpose (0 of 4), which says nothing about the platform as it runs.
    database = Database(settings.database_url)
    try:
        for number, (attacks, defended, disabled) in enumerate(
            ((4, 3, []), (5, 5, []), (4, 0, ["risk_rules"]))
        ):
            database.transact(
                lambda session, n=number, a=attacks, d=defended, off=disabled: _drill(
                    session, n, a, d, off
                )
            )
    finally:
        database.dispose()
    frozen.advance(MINUTE)
    database = Database(settings.database_url)
    try:
        second = service.evaluate(
            database, settings, period="30d", created_by="test", report_dir=tmp_path / "report"
        )
        with database.read() as session:
            stored = service.latest(session)
            runs = service.history(session)
    finally:
        database.dispose()
    again = by_id(second)
    assert second.previous_run_id == first.id
    assert second.previous_overall_score == first.overall_score
    assert again["payment_failure_rate"].value == pytest.approx(1 / 6)
    assert again["payment_failure_rate"].previous_value == pytest.approx(1 / 5)
    assert again["payment_failure_rate"].trend == "better"
    assert again["legit_step_up_rate"].trend == "better"  # 1 of 4 now
    assert again["data_leak_events"].trend == "same"
    assert again["drill_defence_rate"].value == pytest.approx(8 / 9)
    assert again["drill_defence_rate"].detail["drills_with_controls_off"] == 1
    assert again["drill_defence_rate"].detail["scenarios_failed"] == ["scenario-0"]
    assert again["drill_defence_rate"].state == "fail"  # below 90%
    assert again["drill_defence_rate"].score == pytest.approx(60 * (8 / 9) / 0.9, abs=0.01)
    assert again["drill_defence_rate"].trend == "none"  # no data the first time
    # The period before this one held nothing.
    assert again["payment_failure_rate"].previous_period_value is None
    assert [run.id for run in runs] == [second.id, first.id]

    # What is stored reads back the same.
    assert stored.id == second.id
    assert stored.report_dir == str(tmp_path / "report")
    assert [item.model_dump() for item in stored.indicators] == [
        item.model_dump() for item in second.indicators
    ]
    assert stored.groups == second.groups

    # The reports, in both languages, with charts and suggestions for the failures.
    folder = tmp_path / "report"
    for stem in ("evaluation-report-zh", "evaluation-report-en"):
        assert (folder / f"{stem}.md").stat().st_size > 0
        assert (folder / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
    chinese = (folder / "evaluation-report-zh.md").read_text("utf-8")
    english = (folder / "evaluation-report-en.md").read_text("utf-8")
    assert "优化建议" in chinese and "误报率" in chinese and "未达标" in chinese
    assert "`payguard risk backtest`" in chinese
    assert "False-positive rate above threshold" in english
    assert "1 fraud payment(s) of the period passed every control." in english
    assert "Drill attacks defended" in english and "no data" in english
    assert (
        "payment_latency_p95"
        not in english.split("Optimisation suggestions")[1].split("Indicators without data")[0]
    )
    images = sorted(path.name for path in folder.rglob("*.png"))
    assert "scores.png" in images and "trend.png" in images
    assert "indicator-false_positive_rate.png" in images
