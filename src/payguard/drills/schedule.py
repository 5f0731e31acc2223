"""Scheduled drills by cron expression (croniter).

The server does not run drills itself: ``payguard drill schedule run-due`` runs what is
due and moves each schedule to its next time. Run it from the system's cron or a
systemd timer every few minutes (docs/drills.md); a drill's sandbox is a separate
process tree, so the API servers never carry a drill's load.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from croniter import croniter
from sqlalchemy.orm import Session

from payguard import clock
from payguard.db.engine import Database
from payguard.drills import service as drills
from payguard.drills.schemas import DrillScheduleOut
from payguard.errors import ValidationProblem


def is_valid(cron: str) -> bool:
    return bool(croniter.is_valid(cron.strip()))


def next_after(cron: str, moment: datetime) -> datetime:
    """The first time strictly after ``moment`` the expression matches (UTC)."""
    if not is_valid(cron):
        raise ValidationProblem(f"cron: '{cron[:60]}' is not a cron expression")
    following = croniter(cron.strip(), moment.astimezone(UTC)).get_next(datetime)
    assert isinstance(following, datetime)
    return following if following.tzinfo else following.replace(tzinfo=UTC)


def _mark(
    schedule_id: str, run_id: str | None, moment: datetime
) -> Callable[[Session], DrillScheduleOut]:
    return lambda session: drills.mark_schedule_ran(session, schedule_id, run_id, moment)


def run_due(
    db: Database,
    run_one: Callable[[str], str | None],
    now: datetime | None = None,
) -> list[tuple[str, str | None]]:
    """Run every enabled schedule that is due; ``run_one(scenario)`` returns the run id
    (None when the drill could not run). Each schedule moves on even when its drill
    failed, so one broken drill does not block the others."""
    moment = now or clock.now()
    done: list[tuple[str, str | None]] = []
    for item in db.transact(lambda session: drills.due_schedules(session, moment)):
        try:
            run_id = run_one(item.scenario)
        except Exception:  # recorded as a failed run by the runner; move on
            run_id = None
        db.transact(_mark(item.id, run_id, moment))
        done.append((item.scenario, run_id))
    return done
