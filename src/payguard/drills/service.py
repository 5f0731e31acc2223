"""Drill runs, plans and schedules: the stored side of the drills domain."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.drills.models import DrillPlan, DrillRun, DrillSchedule
from payguard.drills.schemas import (
    DrillPlanIn,
    DrillPlanOut,
    DrillRunOut,
    DrillRunSummary,
    DrillScheduleOut,
    HistoryRow,
)
from payguard.errors import NotFound, ValidationProblem
from payguard.events import service as events

# ------------------------------------------------------------------ runs


def start_run(
    session: Session, *, run_id: str, scenario: str, target: str, plan_id: str | None = None
) -> DrillRun:
    if plan_id is not None and session.get(DrillPlan, plan_id) is None:
        raise NotFound(f"no drill plan '{plan_id}'")
    run = DrillRun(
        id=run_id,
        plan_id=plan_id,
        scenario=scenario,
        started_at=clock.now(),
        target=target[:300],
        status="running",
    )
    session.add(run)
    session.flush()
    events.emit(
        session,
        "drill.run_started",
        {"drill_run_id": run_id, "scenario": scenario, "target": run.target},
    )
    return run


def finish_run(
    session: Session, run_id: str, result: dict[str, Any], record_dir: str | None
) -> DrillRun:
    run = _run(session, run_id)
    run.status = "finished"
    run.finished_at = clock.now()
    run.passed = bool(result["passed"])
    run.score = int(result["score"])
    run.result = result
    run.record_dir = record_dir
    events.emit(
        session,
        "drill.run_finished",
        {
            "drill_run_id": run_id,
            "scenario": run.scenario,
            "passed": run.passed,
            "score": run.score,
            "disabled_controls": result.get("disabled_controls", []),
        },
    )
    return run


def fail_run(session: Session, run_id: str, detail: str) -> DrillRun:
    """The drill could not be played (the platform did not start...): no score."""
    run = _run(session, run_id)
    run.status = "error"
    run.finished_at = clock.now()
    run.passed = False
    run.result = {"error": detail}
    events.emit(session, "drill.run_failed", {"drill_run_id": run_id, "scenario": run.scenario})
    return run


def _run(session: Session, run_id: str) -> DrillRun:
    run = session.get(DrillRun, run_id)
    if run is None:
        raise NotFound(f"no drill run '{run_id}'")
    return run


def _summary(run: DrillRun) -> DrillRunSummary:
    result = run.result or {}
    return DrillRunSummary(
        id=run.id,
        scenario=run.scenario,
        started_at=run.started_at,
        finished_at=run.finished_at,
        status=run.status,
        target=run.target,
        passed=bool(run.passed),
        score=run.score or 0,
        attacks=int(result.get("attacks", 0)),
        attacks_defended=int(result.get("attacks_defended", 0)),
        time_to_detect_s=result.get("time_to_detect_s"),
        time_to_contain_s=result.get("time_to_contain_s"),
        money_at_risk=int(result.get("money_at_risk", 0)),
        money_lost=int(result.get("money_lost", 0)),
        disabled_controls=list(result.get("disabled_controls", [])),
    )


def list_runs(
    session: Session,
    since: datetime | None = None,
    until: datetime | None = None,
    scenario: str | None = None,
    *,
    include_unfinished: bool = False,
    limit: int = 1000,
) -> list[DrillRunSummary]:
    """Finished drill runs, oldest first (the evaluation's source for drill indicators).

    Runs with controls switched off on purpose are included; ``disabled_controls`` says
    so, and the evaluation leaves them out of "attacks defended"."""
    # The newest ``limit`` runs, returned oldest first.
    query = select(DrillRun).order_by(DrillRun.started_at.desc(), DrillRun.id.desc()).limit(limit)
    if not include_unfinished:
        query = query.where(DrillRun.status == "finished")
    if since is not None:
        query = query.where(DrillRun.started_at >= since)
    if until is not None:
        query = query.where(DrillRun.started_at < until)
    if scenario is not None:
        query = query.where(DrillRun.scenario == scenario)
    return [_summary(run) for run in reversed(list(session.scalars(query)))]


def get_run(session: Session, run_id: str) -> DrillRunOut:
    run = _run(session, run_id)
    summary = _summary(run)
    return DrillRunOut(
        **summary.model_dump(),
        plan_id=run.plan_id,
        record_dir=run.record_dir,
        result=run.result or {},
    )


def history(session: Session, scenario: str | None = None, limit: int = 50) -> list[HistoryRow]:
    """Runs with the trend: the score's difference to the previous run of the scenario."""
    runs = list_runs(session, scenario=scenario)
    previous: dict[str, DrillRunSummary] = {}
    rows: list[HistoryRow] = []
    for run in runs:
        before = previous.get(run.scenario)
        rows.append(
            HistoryRow(
                **run.model_dump(),
                score_change=None if before is None else run.score - before.score,
                previous_passed=None if before is None else before.passed,
                defended_change=None
                if before is None
                else run.attacks_defended - before.attacks_defended,
                money_lost_change=None if before is None else run.money_lost - before.money_lost,
            )
        )
        previous[run.scenario] = run
    return rows[-limit:]


# ------------------------------------------------------------------ plans


def create_plan(session: Session, plan: DrillPlanIn, created_by: str) -> DrillPlanOut:
    from payguard.drills import scenarios

    scenarios.get(plan.scenario)
    record = DrillPlan(
        id=ids.new_id("drill_plan"),
        scenario=plan.scenario,
        purpose=plan.purpose,
        participants=[item.model_dump() for item in plan.participants],
        schedule=plan.schedule,
        environment=plan.environment,
        method=plan.method,
        created_by=created_by[:64],
        created_at=clock.now(),
    )
    session.add(record)
    session.flush()
    events.emit(
        session,
        "drill.plan_created",
        {"drill_plan_id": record.id, "scenario": record.scenario, "created_by": created_by},
    )
    return plan_out(record)


def plan_out(record: DrillPlan) -> DrillPlanOut:
    return DrillPlanOut.model_validate(record, from_attributes=True)


def get_plan(session: Session, plan_id: str) -> DrillPlanOut:
    record = session.get(DrillPlan, plan_id)
    if record is None:
        raise NotFound(f"no drill plan '{plan_id}'")
    return plan_out(record)


def list_plans(session: Session) -> list[DrillPlanOut]:
    return [plan_out(item) for item in session.scalars(select(DrillPlan).order_by(DrillPlan.id))]


# ------------------------------------------------------------------ schedules


def add_schedule(session: Session, scenario: str, cron: str) -> DrillScheduleOut:
    from payguard.drills import scenarios, schedule

    scenarios.get(scenario)
    record = DrillSchedule(
        id=ids.new_id("drill_schedule"),
        scenario=scenario,
        cron=cron.strip(),
        next_run_at=schedule.next_after(cron, clock.now()),
        enabled=True,
    )
    session.add(record)
    session.flush()
    events.emit(
        session,
        "drill.schedule_added",
        {"drill_schedule_id": record.id, "scenario": scenario, "cron": record.cron},
    )
    return schedule_out(record)


def schedule_out(record: DrillSchedule) -> DrillScheduleOut:
    return DrillScheduleOut.model_validate(record, from_attributes=True)


def list_schedules(session: Session) -> list[DrillScheduleOut]:
    rows = session.scalars(select(DrillSchedule).order_by(DrillSchedule.next_run_at))
    return [schedule_out(item) for item in rows]


def set_schedule_enabled(session: Session, schedule_id: str, enabled: bool) -> DrillScheduleOut:
    record = session.get(DrillSchedule, schedule_id)
    if record is None:
        raise NotFound(f"no drill schedule '{schedule_id}'")
    record.enabled = enabled
    events.emit(
        session,
        "drill.schedule_changed",
        {"drill_schedule_id": schedule_id, "enabled": enabled},
    )
    return schedule_out(record)


def due_schedules(session: Session, now: datetime) -> list[DrillScheduleOut]:
    rows = session.scalars(
        select(DrillSchedule)
        .where(DrillSchedule.enabled.is_(True), DrillSchedule.next_run_at <= now)
        .order_by(DrillSchedule.next_run_at)
    )
    return [schedule_out(item) for item in rows]


def mark_schedule_ran(
    session: Session, schedule_id: str, run_id: str | None, now: datetime
) -> DrillScheduleOut:
    """Move the schedule to its next time after ``now`` (missed times are not replayed)."""
    from payguard.drills import schedule

    record = session.get(DrillSchedule, schedule_id)
    if record is None:
        raise NotFound(f"no drill schedule '{schedule_id}'")
    record.next_run_at = schedule.next_after(record.cron, now)
    record.last_run_id = run_id
    return schedule_out(record)


def check_cron(cron: str) -> None:
    from payguard.drills import schedule

    if not schedule.is_valid(cron):
        raise ValidationProblem(f"cron: '{cron[:60]}' is not a cron expression")
