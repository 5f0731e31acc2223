"""Incidents over HTTP: open, grade, move through the flow, organise, record, report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from payguard import clock
from payguard.errors import ValidationProblem
from payguard.identity.permissions import Permission
from payguard.incidents import intake, reports, service
from payguard.incidents.models import Incident
from payguard.incidents.schemas import (
    GradeIn,
    IncidentDetail,
    IncidentList,
    IncidentMetrics,
    IncidentOpen,
    IncidentOut,
    IntakeResult,
    LinkIn,
    LinkOut,
    NoteIn,
    RecordIn,
    ReportIn,
    ReportOut,
    RoleIn,
    RoleOut,
    StatusIn,
    TaskIn,
    TaskOut,
    TaskStatusIn,
    TimelineEntryOut,
    TimelineOut,
)
from payguard.web import PrincipalDep, Services, ServicesDep, access

router = APIRouter(prefix="/v1/incidents", tags=["incidents"])


def detail(session: Session, incident: Incident) -> IncidentDetail:
    base = IncidentOut.model_validate(incident).model_dump()
    return IncidentDetail(
        **base,
        roles=[RoleOut.model_validate(role) for role in service.roles_of(session, incident.id)],
        tasks=[TaskOut.model_validate(task) for task in service.tasks_of(session, incident.id)],
        links=[LinkOut.model_validate(link) for link in service.links_of(session, incident.id)],
    )


def _changed(svc: Services, change: Callable[[Session], Incident]) -> IncidentDetail:
    """Run ``change`` in one transaction and answer the incident it returns, in detail."""

    def work(session: Session) -> IncidentDetail:
        return detail(session, change(session))

    return svc.db.transact(work)


@router.get("", summary="Incidents, newest first", **access(Permission.INCIDENTS_READ))
def list_incidents(
    svc: ServicesDep,
    status: str | None = None,
    grade: str | None = None,
    category: str | None = None,
    drill_run_id: str | None = None,
    open_only: Annotated[bool, Query(alias="open")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> IncidentList:
    with svc.db.read() as session:
        found = service.list_incidents(
            session,
            status=status,
            grade=grade,
            category=category,
            drill_run_id=drill_run_id,
            open_only=open_only,
            limit=limit,
        )
        return IncidentList(items=[IncidentOut.model_validate(item) for item in found])


@router.post(
    "",
    status_code=201,
    summary="Open an incident by hand",
    **access(Permission.INCIDENTS_MANAGE),
)
def open_incident(body: IncidentOpen, principal: PrincipalDep, svc: ServicesDep) -> IncidentDetail:
    def change(session: Session) -> Incident:
        return service.open_incident(
            session,
            svc.settings,
            title=body.title,
            category=body.category,
            impact=body.impact.model_dump(exclude_none=True),
            source="manual",
            created_by=principal.subject_id,
            links=[(link.kind, link.ref) for link in body.links],
            detected_at=body.detected_at,
            first_evidence_at=body.first_evidence_at,
        )

    return _changed(svc, change)


@router.get(
    "/metrics",
    summary="Time to detect, acknowledge, contain, recover; counts by grade and category",
    **access(Permission.INCIDENTS_READ),
)
def incident_metrics(
    svc: ServicesDep,
    since: datetime | None = None,
    until: datetime | None = None,
    drills: bool | None = None,
) -> IncidentMetrics:
    end = until or clock.now()
    start = since or end - timedelta(days=30)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationProblem("since/until: give a time zone (e.g. 2026-12-01T00:00:00Z)")
    if start >= end:
        raise ValidationProblem("since must be before until")
    with svc.db.read() as session:
        return service.metrics(session, start, end, drills=drills)


@router.post(
    "/intake",
    summary="Turn new outbox events into incidents now (it also runs in the background)",
    **access(Permission.INCIDENTS_MANAGE),
)
def run_intake(svc: ServicesDep) -> IntakeResult:
    return IntakeResult(processed=intake.process_events(svc))


@router.get("/{incident_id}", summary="One incident", **access(Permission.INCIDENTS_READ))
def get_incident(incident_id: str, svc: ServicesDep) -> IncidentDetail:
    with svc.db.read() as session:
        return detail(session, service.get_incident(session, incident_id))


@router.patch(
    "/{incident_id}",
    summary="Write the record: title, summary, root cause, measures, lessons",
    **access(Permission.INCIDENTS_MANAGE),
)
def update_record(
    incident_id: str, body: RecordIn, principal: PrincipalDep, svc: ServicesDep
) -> IncidentDetail:
    def change(session: Session) -> Incident:
        return service.update_record(
            session, incident_id, actor=principal.subject_id, **body.model_dump()
        )

    return _changed(svc, change)


@router.post(
    "/{incident_id}/status",
    summary="Move along reported → confirmed → contained → recovered → closed",
    **access(Permission.INCIDENTS_MANAGE),
)
def set_status(
    incident_id: str, body: StatusIn, principal: PrincipalDep, svc: ServicesDep
) -> IncidentDetail:
    def change(session: Session) -> Incident:
        return service.set_status(
            session,
            incident_id,
            body.status,
            actor=principal.subject_id,
            note=body.note,
            summary=body.summary,
            root_cause=body.root_cause,
            measures=body.measures,
            lessons=body.lessons,
        )

    return _changed(svc, change)


@router.post(
    "/{incident_id}/grade",
    summary="Override the grade with a reason, or give new impact facts",
    **access(Permission.INCIDENTS_MANAGE),
)
def grade(
    incident_id: str, body: GradeIn, principal: PrincipalDep, svc: ServicesDep
) -> IncidentDetail:
    if body.grade is None and body.impact is None and not body.clear_override:
        raise ValidationProblem("give grade and reason, impact, or clear_override")

    def change(session: Session) -> Incident:
        actor = principal.subject_id
        if body.impact is not None:
            service.update_impact(
                session,
                svc.settings,
                incident_id,
                body.impact.model_dump(exclude_unset=True, exclude_none=True),
                actor=actor,
            )
        if body.clear_override:
            service.clear_grade_override(session, incident_id, actor=actor)
        if body.grade is not None:
            service.override_grade(
                session, incident_id, body.grade, reason=body.reason or "", actor=actor
            )
        return service.get_incident(session, incident_id)

    return _changed(svc, change)


@router.post(
    "/{incident_id}/roles",
    status_code=201,
    summary="Assign a role (commander, technical_support, ...) to a staff member",
    **access(Permission.INCIDENTS_MANAGE),
)
def assign_role(
    incident_id: str, body: RoleIn, principal: PrincipalDep, svc: ServicesDep
) -> RoleOut:
    return svc.db.transact(
        lambda session: RoleOut.model_validate(
            service.assign_role(
                session, incident_id, body.role, body.staff, actor=principal.subject_id
            )
        )
    )


@router.post(
    "/{incident_id}/tasks",
    status_code=201,
    summary="Add a task or an improvement item",
    **access(Permission.INCIDENTS_MANAGE),
)
def add_task(incident_id: str, body: TaskIn, principal: PrincipalDep, svc: ServicesDep) -> TaskOut:
    return svc.db.transact(
        lambda session: TaskOut.model_validate(
            service.add_task(
                session,
                incident_id,
                title=body.title,
                owner=body.owner,
                due_at=body.due_at,
                kind=body.kind,
                actor=principal.subject_id,
            )
        )
    )


@router.post(
    "/{incident_id}/tasks/{task_id}/status",
    summary="Mark a task done or cancelled",
    **access(Permission.INCIDENTS_MANAGE),
)
def set_task_status(
    incident_id: str, task_id: str, body: TaskStatusIn, principal: PrincipalDep, svc: ServicesDep
) -> TaskOut:
    def work(session: Session) -> TaskOut:
        task = service.get_task(session, task_id)
        if task.incident_id != incident_id:
            raise ValidationProblem(f"task {task_id} belongs to another incident")
        changed = service.set_task_status(session, task_id, body.status, actor=principal.subject_id)
        return TaskOut.model_validate(changed)

    return svc.db.transact(work)


@router.post(
    "/{incident_id}/links",
    status_code=201,
    summary="Link an alert, account, payment, customer, device or merchant",
    **access(Permission.INCIDENTS_MANAGE),
)
def add_link(incident_id: str, body: LinkIn, principal: PrincipalDep, svc: ServicesDep) -> LinkOut:
    def work(session: Session) -> LinkOut:
        service.link(session, incident_id, body.kind, body.ref, actor=principal.subject_id)
        found = next(
            link
            for link in service.links_of(session, incident_id)
            if (link.kind, link.ref) == (body.kind, body.ref.strip())
        )
        return LinkOut.model_validate(found)

    return svc.db.transact(work)


@router.post(
    "/{incident_id}/notes",
    status_code=201,
    summary="Add a manual timeline entry",
    **access(Permission.INCIDENTS_MANAGE),
)
def add_note(
    incident_id: str, body: NoteIn, principal: PrincipalDep, svc: ServicesDep
) -> TimelineEntryOut:
    return svc.db.transact(
        lambda session: TimelineEntryOut.model_validate(
            service.add_note(session, incident_id, body.text, actor=principal.subject_id)
        )
    )


@router.get(
    "/{incident_id}/timeline",
    summary="The incident's timeline, oldest first",
    **access(Permission.INCIDENTS_READ),
)
def get_timeline(incident_id: str, svc: ServicesDep) -> TimelineOut:
    with svc.db.read() as session:
        entries = service.timeline(session, incident_id)
        return TimelineOut(
            incident_id=incident_id,
            entries=[TimelineEntryOut.model_validate(entry) for entry in entries],
        )


@router.post(
    "/{incident_id}/report",
    summary="Write the post-incident report (Markdown and PDF) on the server",
    **access(Permission.INCIDENTS_READ),
)
def write_report(incident_id: str, body: ReportIn, svc: ServicesDep) -> ReportOut:
    with svc.db.read() as session:
        report = reports.write_incident_report(
            session, svc.settings, incident_id, languages=body.languages
        )
    return ReportOut(
        incident_id=report.incident_id,
        files={
            language: {"markdown": str(files.markdown), "pdf": str(files.pdf)}
            for language, files in report.files.items()
        },
    )


@router.get(
    "/{incident_id}/report",
    summary="Download the post-incident report",
    response_class=FileResponse,
    **access(Permission.INCIDENTS_READ),
)
def download_report(
    incident_id: str,
    svc: ServicesDep,
    language: Literal["zh-CN", "en"] = "en",
    format: Literal["pdf", "md"] = "pdf",
) -> FileResponse:
    with svc.db.read() as session:
        report = reports.write_incident_report(
            session, svc.settings, incident_id, languages=[language], chart=format == "pdf"
        )
    files = report.files[language]
    path: Path = files.pdf if format == "pdf" else files.markdown
    media = "application/pdf" if format == "pdf" else "text/markdown; charset=utf-8"
    return FileResponse(path, media_type=media, filename=f"{incident_id}-{language}.{format}")
