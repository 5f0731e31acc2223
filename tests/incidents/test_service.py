"""The incident record: flow, grade override, roles, tasks, links and the timeline."""

from __future__ import annotations

from datetime import timedelta

import pytest

from payguard import clock
from payguard.db.engine import Database
from payguard.errors import Conflict, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.incidents import service as incidents
from payguard.settings import Settings
from tests.incidents.helpers import make_staff, open_one


def _kinds(db: Database, incident_id: str) -> list[str]:
    with db.read() as session:
        return [entry.kind for entry in incidents.timeline(session, incident_id)]


def test_open_grades_and_records(db: Database, settings: Settings) -> None:
    incident = db.transact(
        lambda s: open_one(
            s,
            settings,
            impact={"people_affected": 1_200_000, "money_at_risk": 10},
            links=[("account", "acc_1"), ("payment", "pay_1")],
        )
    )
    assert incident.status == "reported"
    assert incident.grade == incident.grade_computed == "III"
    with db.read() as session:
        entries = incidents.timeline(session, incident.id)
        links = {(link.kind, link.ref) for link in incidents.links_of(session, incident.id)}
        topics = [event.topic for event in events.recent(session, limit=20)]
    assert [entry.kind for entry in entries][:2] == ["status", "grade"]
    assert "people_affected >= 1000000" in entries[1].text
    assert links == {("account", "acc_1"), ("payment", "pay_1")}
    assert "incident.opened" in topics and "incident.linked" in topics


def test_bad_input_is_refused(db: Database, settings: Settings) -> None:
    with pytest.raises(ValidationProblem, match="category"):
        db.transact(lambda s: open_one(s, settings, category="42"))
    with pytest.raises(ValidationProblem, match="title"):
        db.transact(lambda s: open_one(s, settings, title="  "))
    with pytest.raises(ValidationProblem, match="link kind"):
        db.transact(lambda s: open_one(s, settings, links=[("wallet", "x")]))
    with pytest.raises(NotFound):
        db.transact(lambda s: incidents.get_incident(s, "inc_missing"))


def test_status_flow_is_enforced(db: Database, settings: Settings) -> None:
    incident = db.transact(lambda s: open_one(s, settings))
    with pytest.raises(Conflict) as refused:
        db.transact(lambda s: incidents.set_status(s, incident.id, "contained", actor="a"))
    assert refused.value.status == 409
    assert refused.value.extra["allowed"] == ["confirmed", "closed"]
    for status in ("confirmed", "contained", "recovered"):
        with db.write() as session:
            incidents.set_status(session, incident.id, status, actor="a")
    with pytest.raises(Conflict):  # no going back
        db.transact(lambda s: incidents.set_status(s, incident.id, "confirmed", actor="a"))
    with pytest.raises(ValidationProblem, match="needs a summary"):
        db.transact(lambda s: incidents.set_status(s, incident.id, "closed", actor="a"))
    closed = db.transact(
        lambda s: incidents.set_status(
            s, incident.id, "closed", actor="a", summary="payouts secured", lessons="rotate"
        )
    )
    assert closed.status == "closed" and closed.summary == "payouts secured"
    assert closed.acknowledged_at and closed.contained_at and closed.recovered_at
    assert closed.closed_at is not None
    with pytest.raises(Conflict, match="closed"):
        db.transact(lambda s: incidents.set_status(s, incident.id, "recovered", actor="a"))
    assert _kinds(db, incident.id).count("status") == 5


def test_a_false_report_closes_at_once_with_a_summary(db: Database, settings: Settings) -> None:
    incident = db.transact(lambda s: open_one(s, settings))
    closed = db.transact(
        lambda s: incidents.set_status(
            s, incident.id, "closed", actor="a", summary="not an incident: test payouts"
        )
    )
    assert closed.status == "closed"


def test_grade_override_needs_a_reason_and_is_recorded(db: Database, settings: Settings) -> None:
    incident = db.transact(lambda s: open_one(s, settings))
    assert incident.grade == "IV"
    with pytest.raises(ValidationProblem, match="reason"):
        db.transact(lambda s: incidents.override_grade(s, incident.id, "II", reason=" ", actor="a"))
    with pytest.raises(ValidationProblem, match="grade"):
        db.transact(lambda s: incidents.override_grade(s, incident.id, "V", reason="x", actor="a"))
    overridden = db.transact(
        lambda s: incidents.override_grade(
            s, incident.id, "II", reason="merchant platform of a regulated bank", actor="stf_a"
        )
    )
    assert (overridden.grade, overridden.grade_computed) == ("II", "IV")
    # New facts move the computed grade; the override stays in force.
    updated = db.transact(
        lambda s: incidents.update_impact(
            s, settings, incident.id, {"people_affected": 2_000_000}, actor="a"
        )
    )
    assert (updated.grade, updated.grade_computed) == ("II", "III")
    cleared = db.transact(lambda s: incidents.clear_grade_override(s, incident.id, actor="a"))
    assert cleared.grade == "III" and cleared.grade_override_reason is None
    with db.read() as session:
        texts = [e.text for e in incidents.timeline(session, incident.id) if e.kind == "grade"]
    assert any("overridden IV → II" in text and "regulated bank" in text for text in texts)
    assert any("override II stays" in text for text in texts)


def test_roles_need_staff_and_commander_is_single(db: Database, settings: Settings) -> None:
    first, second, support = db.transact(
        lambda s: (make_staff(s, settings), make_staff(s, settings), make_staff(s, settings))
    )
    incident = db.transact(lambda s: open_one(s, settings))
    with pytest.raises(ValidationProblem, match="no staff member"):
        db.transact(
            lambda s: incidents.assign_role(s, incident.id, "commander", "cus_x", actor="a")
        )
    with pytest.raises(ValidationProblem, match="role"):
        db.transact(lambda s: incidents.assign_role(s, incident.id, "hero", first, actor="a"))
    db.transact(lambda s: incidents.assign_role(s, incident.id, "commander", first, actor="a"))
    db.transact(lambda s: incidents.assign_role(s, incident.id, "commander", second, actor="a"))
    db.transact(
        lambda s: incidents.assign_role(s, incident.id, "technical_support", first, actor="a")
    )
    db.transact(
        lambda s: incidents.assign_role(s, incident.id, "technical_support", support, actor="a")
    )
    with db.read() as session:
        roles = sorted((r.role, r.staff_id) for r in incidents.roles_of(session, incident.id))
        role_texts = [e.text for e in incidents.timeline(session, incident.id) if e.kind == "role"]
    assert roles == sorted(
        [("commander", second), ("technical_support", first), ("technical_support", support)]
    )
    assert any(f"replaces {first}" in text for text in role_texts)


def test_tasks_and_improvements(db: Database, settings: Settings) -> None:
    owner = db.transact(lambda s: make_staff(s, settings))
    incident = db.transact(lambda s: open_one(s, settings))
    due = clock.now() + timedelta(hours=2)
    task = db.transact(
        lambda s: incidents.add_task(
            s, incident.id, title="scan the servers", owner=owner, due_at=due, actor="a"
        )
    )
    improvement = db.transact(
        lambda s: incidents.add_task(
            s, incident.id, title="second verification on payouts", kind="improvement", actor="a"
        )
    )
    with pytest.raises(ValidationProblem, match="task kind"):
        db.transact(
            lambda s: incidents.add_task(s, incident.id, title="x", kind="chore", actor="a")
        )
    done = db.transact(lambda s: incidents.set_task_status(s, task.id, "done", actor="a"))
    assert done.status == "done" and done.done_at is not None
    with pytest.raises(Conflict):
        db.transact(lambda s: incidents.set_task_status(s, task.id, "cancelled", actor="a"))
    with db.read() as session:
        assert [t.id for t in incidents.tasks_of(session, incident.id, kind="improvement")] == [
            improvement.id
        ]
        overdue = incidents.overdue_tasks(session, at=due + timedelta(hours=1))
    assert improvement.id not in [t.id for t in overdue] and task.id not in [t.id for t in overdue]
    assert _kinds(db, incident.id).count("task") == 3


def test_links_notes_and_drill_lookup(db: Database, settings: Settings) -> None:
    incident = db.transact(lambda s: open_one(s, settings, drill_run_id="drl_1"))
    other = db.transact(lambda s: open_one(s, settings))
    assert db.transact(lambda s: incidents.link(s, incident.id, "merchant", "mer_1"))
    assert not db.transact(lambda s: incidents.link(s, incident.id, "merchant", "mer_1"))
    db.transact(lambda s: incidents.add_note(s, incident.id, "9:25 told the GM", actor="stf_a"))
    with db.read() as session:
        assert [i.id for i in incidents.incidents_for_drill(session, "drl_1")] == [incident.id]
        assert [i.id for i in incidents.open_incidents_linked(session, "merchant", "mer_1")] == [
            incident.id
        ]
        assert other.id in [i.id for i in incidents.list_incidents(session, open_only=True)]
    kinds = _kinds(db, incident.id)
    assert "drill" in kinds and "link" in kinds and "note" in kinds
    with pytest.raises(ValidationProblem, match="timeline kind"):
        db.transact(lambda s: incidents.add_timeline_entry(s, incident.id, kind="gossip", text="x"))
