"""Drill runs, history with trends, plans and cron schedules, and the read API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from payguard import clock, ids
from payguard.db.engine import Database
from payguard.drills import schedule
from payguard.drills import service as drills
from payguard.drills.schemas import DrillPlanIn, Participant
from payguard.errors import NotFound, ValidationProblem
from payguard.settings import Settings
from tests.factories import register, staff_auth


def result(score: int, passed: bool, defended: int, lost: int = 0) -> dict[str, Any]:
    return {
        "passed": passed,
        "score": score,
        "attacks": 3,
        "attacks_defended": defended,
        "time_to_detect_s": 0.5,
        "time_to_contain_s": 1.5,
        "money_at_risk": 10_000,
        "money_lost": lost,
        "disabled_controls": [] if passed else ["signed_instructions"],
        "steps": [],
    }


def store(db: Database, scenario: str, outcome: dict[str, Any], at: datetime) -> str:
    run_id = ids.new_id("drill_run")
    previous = clock.set_clock(clock.FrozenClock(at))
    try:
        db.transact(
            lambda session: drills.start_run(
                session, run_id=run_id, scenario=scenario, target="sandbox"
            )
        )
        db.transact(lambda session: drills.finish_run(session, run_id, outcome, None))
    finally:
        clock.set_clock(previous)
    return run_id


def test_history_shows_the_difference_to_the_previous_run(db: Database) -> None:
    start = datetime(2026, 11, 1, 3, tzinfo=UTC)
    store(db, "phishing_takeover", result(100, True, 3), start)
    store(db, "credential_stuffing", result(100, True, 3), start + timedelta(hours=1))
    store(db, "phishing_takeover", result(46, False, 1, lost=285_000), start + timedelta(days=1))
    fixed = store(db, "phishing_takeover", result(100, True, 3), start + timedelta(days=2))

    with db.read() as session:
        rows = drills.history(session, "phishing_takeover")
        everything = drills.history(session)
        window = drills.list_runs(
            session, since=start + timedelta(minutes=30), until=start + timedelta(days=1, hours=1)
        )
    assert [row.score for row in rows] == [100, 46, 100]
    assert [row.score_change for row in rows] == [None, -54, 54]
    assert rows[-1].id == fixed and rows[-1].previous_passed is False
    assert rows[-1].defended_change == 2 and rows[-1].money_lost_change == -285_000
    assert rows[1].disabled_controls == ["signed_instructions"]
    assert len(everything) == 4
    assert [run.scenario for run in window] == ["credential_stuffing", "phishing_takeover"]
    assert window[1].money_lost == 285_000 and not window[1].passed


def test_a_run_that_could_not_play_is_kept_but_not_listed(db: Database) -> None:
    run_id = ids.new_id("drill_run")
    db.transact(
        lambda session: drills.start_run(
            session, run_id=run_id, scenario="phishing_takeover", target="sandbox"
        )
    )
    db.transact(lambda session: drills.fail_run(session, run_id, "the sandbox did not start"))
    with db.read() as session:
        assert drills.list_runs(session) == []
        assert [run.status for run in drills.list_runs(session, include_unfinished=True)] == [
            "error"
        ]
        assert drills.get_run(session, run_id).result == {"error": "the sandbox did not start"}
        with pytest.raises(NotFound):
            drills.get_run(session, "drl_nope")


def test_plans_record_purpose_participants_schedule_environment_method(db: Database) -> None:
    plan = DrillPlanIn(
        scenario="merchant_payout_leak",
        purpose="Test the payout controls against a leaked merchant password (seed 002).",
        participants=[
            Participant(role="commander", name="duty manager", duty="decides and reports"),
            Participant(role="technical_support", name="on-call engineer"),
        ],
        schedule="0 3 * * 1",
        environment="sandbox",
        method="simulated, hands-on",
    )
    made = db.transact(lambda session: drills.create_plan(session, plan, "staff:stf_1"))
    with db.read() as session:
        again = drills.get_plan(session, made.id)
        plans = drills.list_plans(session)
    assert again.participants[0] == {
        "role": "commander",
        "name": "duty manager",
        "duty": "decides and reports",
    }
    assert again.schedule == "0 3 * * 1" and [item.id for item in plans] == [made.id]
    unknown = plan.model_copy(update={"scenario": "no_such_scenario"})
    with pytest.raises(NotFound):
        db.transact(lambda session: drills.create_plan(session, unknown, "cli"))
    with pytest.raises(NotFound):
        db.transact(
            lambda session: drills.start_run(
                session, run_id="drl_x", scenario="x", target="sandbox", plan_id="dpl_nope"
            )
        )


def test_cron_schedules_come_due_and_move_on(db: Database) -> None:
    monday = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # a Monday, 02:00 UTC
    assert schedule.next_after("0 3 * * 1", monday) == monday.replace(hour=3)
    assert schedule.next_after("0 3 * * 1", monday.replace(hour=3)) == datetime(
        2026, 12, 7, 3, tzinfo=UTC
    )
    assert schedule.is_valid("*/15 * * * *") and not schedule.is_valid("every monday")
    with pytest.raises(ValidationProblem):
        schedule.next_after("61 * * * *", monday)

    previous = clock.set_clock(clock.FrozenClock(monday))
    try:
        weekly = db.transact(
            lambda session: drills.add_schedule(session, "phishing_takeover", "0 3 * * 1")
        )
        daily = db.transact(
            lambda session: drills.add_schedule(session, "credential_stuffing", "30 4 * * *")
        )
        with pytest.raises(ValidationProblem):
            db.transact(lambda session: drills.add_schedule(session, "phishing_takeover", "x"))
    finally:
        clock.set_clock(previous)
    assert weekly.next_run_at == monday.replace(hour=3)

    ran: list[str] = []

    def run_one(scenario: str) -> str:
        ran.append(scenario)
        if scenario == "credential_stuffing":
            raise RuntimeError("the sandbox did not start")
        return "drl_weekly"

    # 03:10: only the weekly one is due.
    assert schedule.run_due(db, run_one, monday.replace(hour=3, minute=10)) == [
        ("phishing_takeover", "drl_weekly")
    ]
    # 05:00: the daily one is due; its failure does not stop it from moving on.
    assert schedule.run_due(db, run_one, monday.replace(hour=5)) == [("credential_stuffing", None)]
    assert schedule.run_due(db, run_one, monday.replace(hour=5, minute=1)) == []
    assert ran == ["phishing_takeover", "credential_stuffing"]
    with db.read() as session:
        by_id = {item.id: item for item in drills.list_schedules(session)}
    assert by_id[weekly.id].next_run_at == datetime(2026, 12, 7, 3, tzinfo=UTC)
    assert by_id[weekly.id].last_run_id == "drl_weekly"
    assert by_id[daily.id].next_run_at == datetime(2026, 12, 1, 4, 30, tzinfo=UTC)

    db.transact(lambda session: drills.set_schedule_enabled(session, weekly.id, False))
    assert schedule.run_due(db, run_one, datetime(2026, 12, 8, tzinfo=UTC)) == [
        ("credential_stuffing", None)
    ]


def test_the_api_lists_runs_for_staff_who_may_read_drills(
    client: TestClient, settings: Settings, db: Database
) -> None:
    run_id = store(db, "phishing_takeover", result(100, True, 3), datetime(2026, 11, 1, tzinfo=UTC))
    auditor = staff_auth(settings, "auditor")

    listed = client.get(
        "/v1/drills/runs", headers=auditor, params={"scenario": "phishing_takeover"}
    )
    assert listed.status_code == 200, listed.text
    assert [item["id"] for item in listed.json()] == [run_id]
    assert listed.json()[0]["attacks_defended"] == 3
    one = client.get(f"/v1/drills/runs/{run_id}", headers=auditor)
    assert one.status_code == 200 and one.json()["result"]["score"] == 100
    missing = client.get("/v1/drills/runs/drl_missing", headers=auditor)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert client.get("/v1/drills/runs").status_code == 401
    customer = register(client, "drill_reader", device=False)
    assert client.get("/v1/drills/runs", headers=customer.auth).status_code == 403
    assert (
        client.get("/v1/drills/runs", headers=staff_auth(settings, "operations")).status_code == 403
    )
