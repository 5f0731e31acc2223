"""Drill runs over HTTP (read only): running a drill is the CLI's job, since it starts a
sandbox platform of its own."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter

from payguard.drills import service
from payguard.drills.schemas import DrillRunOut, DrillRunSummary
from payguard.identity.permissions import Permission
from payguard.web import ServicesDep, access

router = APIRouter(prefix="/v1/drills", tags=["drills"])


@router.get(
    "/runs",
    summary="Drill runs with their scores, oldest first",
    **access(Permission.DRILLS_READ),
)
def list_runs(
    svc: ServicesDep,
    since: datetime | None = None,
    until: datetime | None = None,
    scenario: str | None = None,
) -> list[DrillRunSummary]:
    with svc.db.read() as session:
        return service.list_runs(session, since=since, until=until, scenario=scenario)


@router.get(
    "/runs/{run_id}",
    summary="One drill run: steps, detections, containment, money checks, timeline",
    **access(Permission.DRILLS_READ),
)
def get_run(run_id: str, svc: ServicesDep) -> DrillRunOut:
    with svc.db.read() as session:
        return service.get_run(session, run_id)
