"""The console's Incidents pages: the incident list, one incident with its record and its
timeline drawn by lane, the playbook runs, and the forms to add a note or move the status.

Thin like every console route: parse and check the input, authorise (``incidents:read``
to look, ``incidents:manage`` to write), call the incidents services, render or redirect.
The post-incident report is written on demand by the incidents reports module and sent as
a download.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from payguard import clock
from payguard.clock import as_utc
from payguard.console import charts, security
from payguard.console.api import BadRequest
from payguard.console.rendering import ConsoleRoute, render
from payguard.console.security import StaffDep
from payguard.errors import Forbidden
from payguard.identity import permissions
from payguard.identity import service as identity
from payguard.identity.permissions import Permission
from payguard.identity.service import Principal
from payguard.incidents import grading, playbooks, reports, service
from payguard.incidents import metrics as incident_metrics
from payguard.incidents.schemas import (
    IncidentOut,
    LinkOut,
    RoleOut,
    TaskOut,
    TimelineEntryOut,
)
from payguard.web import ServicesDep

router = APIRouter(prefix="/console", tags=["console"], route_class=ConsoleRoute)

LIST_SIZE = 100
METRICS_DAYS = 30
# The drawn timeline's lanes, and which timeline kinds go in each.
LANES = ["alert", "action", "status", "notification", "note"]
LANE_OF_KIND = {
    "alert": "alert",
    "link": "alert",
    "action": "action",
    "playbook": "action",
    "approval": "action",
    "status": "status",
    "grade": "status",
    "drill": "status",
    "notification": "notification",
    "note": "note",
    "role": "note",
    "task": "note",
}
STATUS_TONES = {
    "reported": "bad",
    "confirmed": "warn",
    "contained": "info",
    "recovered": "good",
    "closed": "muted",
}
GRADE_TONES = {"I": "bad", "II": "bad", "III": "warn", "IV": "info"}
RUN_TONES = {
    "running": "info",
    "waiting_approval": "warn",
    "completed": "good",
    "failed": "bad",
    "recovered": "muted",
}
STEP_TONES = {
    "pending": "muted",
    "waiting_approval": "warn",
    "done": "good",
    "failed": "bad",
    "skipped": "muted",
    "undone": "info",
}
NOTICES = {
    "note_added": "Note added to the timeline.",
    "status_changed": "Status changed; the move is on the timeline.",
}


def _need(principal: Principal, permission: Permission) -> None:
    if not permissions.holds(principal, permission):
        raise Forbidden(f"this needs the permission '{permission.value}'")


def _choice(value: str | None, allowed: tuple[str, ...] | list[str], what: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise BadRequest(f"unknown {what} '{value}'; one of: {', '.join(allowed)}")
    return value


def duration(seconds: float | None) -> str:
    """``42 s``, ``7 min 5 s``, ``3 h 12 min``, ``2 d 4 h``; a dash when unknown."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def timeline_figure(entries: list[TimelineEntryOut]) -> charts.TimelineChart:
    points = [
        (as_utc(entry.at), LANE_OF_KIND.get(entry.kind, "note"), f"{entry.kind}: {entry.text}")
        for entry in entries
    ]
    return charts.timeline_chart(points, LANES, what="timeline entries")


# ---------------------------------------------------------------- the list


@router.get("/incidents", summary="Incidents, newest first, with a status filter")
def incidents_page(
    request: Request,
    principal: StaffDep,
    svc: ServicesDep,
    status: str | None = None,
    grade: str | None = None,
    category: str | None = None,
) -> Response:
    _need(principal, Permission.INCIDENTS_READ)
    status = _choice(status, service.STATUSES, "status")
    grade = _choice(grade, grading.GRADES, "grade")
    category = _choice(category, list(grading.CATEGORIES), "category")
    now = clock.now()
    with svc.db.read() as session:
        found = service.list_incidents(
            session, status=status, grade=grade, category=category, limit=LIST_SIZE
        )
        rows = [
            {
                "incident": IncidentOut.model_validate(item),
                "times": incident_metrics.times_of(item),
            }
            for item in found
        ]
        counts = service.counts_by_status(session)
        summary = service.metrics(session, now - timedelta(days=METRICS_DAYS), now)
    return render(
        request,
        "incidents.html",
        {
            "rows": rows,
            "counts": counts,
            "total": sum(counts.values()),
            "statuses": list(service.STATUSES),
            "grades": list(grading.GRADES),
            "categories": grading.CATEGORIES,
            "status": status,
            "grade": grade,
            "category": category,
            "summary": summary,
            "metrics_days": METRICS_DAYS,
            "list_size": LIST_SIZE,
            "status_tones": STATUS_TONES,
            "grade_tones": GRADE_TONES,
            "grade_names": {key: value[1] for key, value in grading.GRADE_NAMES.items()},
            "duration": duration,
        },
    )


# ---------------------------------------------------------------- one incident


def _incident_context(session: Session, incident_id: str) -> dict[str, Any]:
    incident = service.get_incident(session, incident_id)
    entries = [
        TimelineEntryOut.model_validate(item) for item in service.timeline(session, incident.id)
    ]
    runs = [playbooks.run_out(session, run) for run in playbooks.runs_of(session, incident.id)]
    return {
        "incident": IncidentOut.model_validate(incident),
        "times": incident_metrics.times_of(incident),
        "roles": [RoleOut.model_validate(item) for item in service.roles_of(session, incident.id)],
        "tasks": [TaskOut.model_validate(item) for item in service.tasks_of(session, incident.id)],
        "links": [LinkOut.model_validate(item) for item in service.links_of(session, incident.id)],
        "entries": entries,
        "runs": runs,
        "names": identity.staff_names(session),
    }


@router.get("/incidents/{incident_id}", summary="One incident: record, timeline, playbooks")
def incident_page(
    request: Request,
    incident_id: str,
    principal: StaffDep,
    svc: ServicesDep,
    notice: str | None = None,
) -> Response:
    _need(principal, Permission.INCIDENTS_READ)
    with svc.db.read() as session:
        context = _incident_context(session, incident_id)
    incident: IncidentOut = context["incident"]
    impact = incident.impact or {}
    return render(
        request,
        "incident.html",
        {
            **context,
            "chart": timeline_figure(context["entries"]),
            "lanes": LANES,
            "impact": impact,
            "currency": impact.get("currency") or svc.settings.default_currency,
            "category_name": grading.category_name(incident.category),
            "category_name_zh": grading.category_name(incident.category, "zh-CN"),
            "grade_name": grading.grade_name(incident.grade),
            "grade_name_zh": grading.grade_name(incident.grade, "zh-CN"),
            "role_names": service.ROLE_NAMES,
            "next_statuses": list(service.TRANSITIONS.get(incident.status, ())),
            "can_manage": permissions.holds(principal, Permission.INCIDENTS_MANAGE),
            "can_see_approvals": permissions.holds(principal, Permission.APPROVALS_READ),
            "status_tones": STATUS_TONES,
            "grade_tones": GRADE_TONES,
            "run_tones": RUN_TONES,
            "step_tones": STEP_TONES,
            "duration": duration,
            "notice": NOTICES.get(notice or ""),
        },
    )


# ---------------------------------------------------------------- forms


@router.post("/incidents/{incident_id}/notes", summary="Add a note to the incident timeline")
def add_note(
    request: Request,
    incident_id: str,
    principal: StaffDep,
    svc: ServicesDep,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    text: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    security.check_csrf(request.state.session_token, csrf_token)
    _need(principal, Permission.INCIDENTS_MANAGE)
    if not text.strip():
        raise BadRequest("write the note first; an empty line is not kept")
    svc.db.transact(
        lambda session: service.add_note(session, incident_id, text, actor=principal.subject_id)
    )
    return RedirectResponse(
        f"/console/incidents/{incident_id}?notice=note_added#timeline", status_code=303
    )


@router.post("/incidents/{incident_id}/status", summary="Move the incident along its flow")
def move_status(
    request: Request,
    incident_id: str,
    principal: StaffDep,
    svc: ServicesDep,
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    status: Annotated[str, Form(max_length=16)] = "",
    note: Annotated[str, Form(max_length=4000)] = "",
    summary: Annotated[str, Form(max_length=20000)] = "",
) -> Response:
    security.check_csrf(request.state.session_token, csrf_token)
    _need(principal, Permission.INCIDENTS_MANAGE)
    if status not in service.STATUSES:
        raise BadRequest(f"choose the next status: one of {', '.join(service.STATUSES)}")
    svc.db.transact(
        lambda session: service.set_status(
            session,
            incident_id,
            status,
            actor=principal.subject_id,
            note=note.strip() or None,
            summary=summary.strip() or None,
        )
    )
    return RedirectResponse(
        f"/console/incidents/{incident_id}?notice=status_changed", status_code=303
    )


# ---------------------------------------------------------------- the report


@router.get("/incidents/{incident_id}/report", summary="Download the post-incident report")
def incident_report(
    incident_id: str,
    principal: StaffDep,
    svc: ServicesDep,
    language: Literal["en", "zh-CN"] = "en",
    format: Literal["pdf", "md"] = "pdf",
) -> Response:
    _need(principal, Permission.INCIDENTS_READ)
    with svc.db.read() as session:
        # Written fresh each time: the record may have changed since the last download.
        report = reports.write_incident_report(
            session, svc.settings, incident_id, languages=[language], chart=format == "pdf"
        )
    files = report.files[language]
    path: Path = files.pdf if format == "pdf" else files.markdown
    media = "application/pdf" if format == "pdf" else "text/markdown; charset=utf-8"
    return FileResponse(
        path, media_type=media, filename=f"post-incident-{report.incident_id}-{language}.{format}"
    )
