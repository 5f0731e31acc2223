"""Incidents: open, grade, move through the flow, organise people and work, keep the record.

Every change writes a timeline entry and an outbox event (topic ``incident.*``, audited) in
the caller's transaction. Records hold ids and masks only, never personal data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.errors import Conflict, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.identity import service as identity
from payguard.incidents import grading
from payguard.incidents import metrics as incident_metrics
from payguard.incidents.models import (
    Incident,
    IncidentLink,
    IncidentRole,
    IncidentTask,
    IncidentTimelineEntry,
)
from payguard.incidents.schemas import IncidentMetrics
from payguard.settings import Settings

STATUSES = ("reported", "confirmed", "contained", "recovered", "closed")
OPEN_STATUSES = ("reported", "confirmed", "contained", "recovered")
# The seed 003 flow: report, confirm, dispose (contain), recover, summarise (close). One
# step at a time; only a report that turns out not to be an incident may close at once.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "reported": ("confirmed", "closed"),
    "confirmed": ("contained",),
    "contained": ("recovered",),
    "recovered": ("closed",),
    "closed": (),
}
STATUS_TIMESTAMP = {
    "confirmed": "acknowledged_at",
    "contained": "contained_at",
    "recovered": "recovered_at",
    "closed": "closed_at",
}
SOURCES = ("alert", "manual", "drill")
ROLES = ("commander", "technical_support", "business_operations", "legal_compliance", "scribe")
ROLE_NAMES = {
    "commander": ("应急指挥", "commander"),
    "technical_support": ("技术支持", "technical support"),
    "business_operations": ("业务运营", "business operations"),
    "legal_compliance": ("法律合规", "legal and compliance"),
    "scribe": ("记录员", "scribe"),
}
# One person leads and one keeps the record; the other roles may be held by several.
SINGLE_HOLDER_ROLES = ("commander", "scribe")
LINK_KINDS = ("alert", "account", "payment", "customer", "device", "merchant")
TASK_KINDS = ("task", "improvement")
TASK_STATUSES = ("open", "done", "cancelled")
TIMELINE_KINDS = (
    "alert",
    "status",
    "action",
    "approval",
    "notification",
    "note",
    "grade",
    "role",
    "task",
    "link",
    "drill",
    "playbook",
)


# ------------------------------------------------------------------------------ opening


def open_incident(
    session: Session,
    settings: Settings,
    *,
    title: str,
    category: str,
    impact: dict[str, Any],
    source: str = "manual",
    created_by: str,
    links: Iterable[tuple[str, str]] = (),
    dedup_key: str | None = None,
    drill_run_id: str | None = None,
    detected_at: datetime | None = None,
    first_evidence_at: datetime | None = None,
    reported_at: datetime | None = None,
) -> Incident:
    """Open an incident in status ``reported`` with its grade computed from ``impact``.

    ``detected_at`` is when payguard (or a person) noticed; ``first_evidence_at`` the
    earliest sign of the attack (an alert's payment, a first failed login), for the time
    to detect. Both default to now."""
    title = title.strip()
    if not title:
        raise ValidationProblem("title: must not be empty")
    grading.check_category(category)
    if source not in SOURCES:
        raise ValidationProblem(f"source: one of {', '.join(SOURCES)}")
    stored_impact = grading.clean_impact(impact)
    thresholds = grading.load_thresholds(settings)
    grade = thresholds.grade(stored_impact)
    now = clock.now()
    reported = reported_at or now
    detected = detected_at or reported
    incident = Incident(
        id=ids.new_id("incident"),
        title=title[:500],
        category=category,
        grade=grade,
        grade_computed=grade,
        grade_override_reason=None,
        impact=stored_impact,
        status="reported",
        source=source,
        dedup_key=dedup_key,
        drill_run_id=drill_run_id,
        first_evidence_at=first_evidence_at or detected,
        reported_at=reported,
        detected_at=detected,
        created_by=created_by,
        updated_at=now,
    )
    session.add(incident)
    session.flush()
    add_timeline_entry(
        session,
        incident.id,
        kind="status",
        text=f"incident reported ({source}): {incident.title}",
        actor=created_by,
        data={"status": "reported", "source": source, "category": category},
        at=reported,
    )
    add_timeline_entry(
        session,
        incident.id,
        kind="grade",
        text=f"graded {grade}: {thresholds.reason(stored_impact)}",
        actor="system",
        data={"grade": grade, "computed": grade, "impact": stored_impact},
        at=reported,
    )
    if drill_run_id:
        add_timeline_entry(
            session,
            incident.id,
            kind="drill",
            text=f"opened during drill run {drill_run_id}",
            data={"drill_run_id": drill_run_id},
            at=reported,
        )
    for kind, ref in links:
        link(session, incident.id, kind, ref, actor=created_by)
    events.emit(
        session,
        "incident.opened",
        {
            "incident_id": incident.id,
            "category": category,
            "grade": grade,
            "source": source,
            "dedup_key": dedup_key,
            "drill_run_id": drill_run_id,
            "actor": created_by,
        },
    )
    return incident


# ------------------------------------------------------------------------------ reading


def get_incident(session: Session, incident_id: str) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"no incident '{incident_id}'")
    return incident


def list_incidents(
    session: Session,
    *,
    status: str | None = None,
    grade: str | None = None,
    category: str | None = None,
    drill_run_id: str | None = None,
    open_only: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[Incident]:
    query = select(Incident)
    if status is not None:
        if status not in STATUSES:
            raise ValidationProblem(f"status: one of {', '.join(STATUSES)}")
        query = query.where(Incident.status == status)
    if open_only:
        query = query.where(Incident.status.in_(OPEN_STATUSES))
    if grade is not None:
        query = query.where(Incident.grade == grading.check_grade(grade))
    if category is not None:
        query = query.where(Incident.category == grading.check_category(category))
    if drill_run_id is not None:
        query = query.where(Incident.drill_run_id == drill_run_id)
    if since is not None:
        query = query.where(Incident.reported_at >= since)
    if until is not None:
        query = query.where(Incident.reported_at < until)
    limit = max(1, min(limit, 1000))
    query = query.order_by(Incident.reported_at.desc(), Incident.id.desc()).limit(limit)
    return list(session.scalars(query))


def incidents_for_drill(session: Session, drill_run_id: str) -> list[Incident]:
    query = (
        select(Incident)
        .where(Incident.drill_run_id == drill_run_id)
        .order_by(Incident.reported_at, Incident.id)
    )
    return list(session.scalars(query))


def find_open_by_dedup(
    session: Session, dedup_key: str, *, since: datetime | None = None
) -> Incident | None:
    """The newest open incident with this de-duplication key (reported after ``since``)."""
    query = select(Incident).where(
        Incident.dedup_key == dedup_key, Incident.status.in_(OPEN_STATUSES)
    )
    if since is not None:
        query = query.where(Incident.reported_at >= since)
    return session.scalars(query.order_by(Incident.reported_at.desc()).limit(1)).first()


def open_incidents_linked(session: Session, kind: str, ref: str) -> list[Incident]:
    """Open incidents that have this alert/account/... linked."""
    query = (
        select(Incident)
        .join(IncidentLink, IncidentLink.incident_id == Incident.id)
        .where(
            IncidentLink.kind == kind,
            IncidentLink.ref == ref,
            Incident.status.in_(OPEN_STATUSES),
        )
        .order_by(Incident.reported_at)
    )
    return list(session.scalars(query).unique())


def timeline(session: Session, incident_id: str) -> list[IncidentTimelineEntry]:
    get_incident(session, incident_id)
    query = (
        select(IncidentTimelineEntry)
        .where(IncidentTimelineEntry.incident_id == incident_id)
        .order_by(IncidentTimelineEntry.at, IncidentTimelineEntry.id)
    )
    return list(session.scalars(query))


def roles_of(session: Session, incident_id: str) -> list[IncidentRole]:
    query = (
        select(IncidentRole)
        .where(IncidentRole.incident_id == incident_id)
        .order_by(IncidentRole.assigned_at)
    )
    return list(session.scalars(query))


def tasks_of(session: Session, incident_id: str, *, kind: str | None = None) -> list[IncidentTask]:
    query = select(IncidentTask).where(IncidentTask.incident_id == incident_id)
    if kind is not None:
        query = query.where(IncidentTask.kind == kind)
    return list(session.scalars(query.order_by(IncidentTask.created_at, IncidentTask.id)))


def links_of(session: Session, incident_id: str) -> list[IncidentLink]:
    query = (
        select(IncidentLink)
        .where(IncidentLink.incident_id == incident_id)
        .order_by(IncidentLink.linked_at, IncidentLink.kind, IncidentLink.ref)
    )
    return list(session.scalars(query))


def counts_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Incident.status, func.count()).group_by(Incident.status))
    return {status: int(count) for status, count in rows}


# ------------------------------------------------------------------------------ timeline


def add_timeline_entry(
    session: Session,
    incident_id: str,
    *,
    kind: str,
    text: str,
    actor: str = "system",
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> IncidentTimelineEntry:
    """Append one line to the incident record. Other domains (playbooks, drills, notify)
    call this for what they did; it does not emit an event of its own."""
    if kind not in TIMELINE_KINDS:
        raise ValidationProblem(f"timeline kind: one of {', '.join(TIMELINE_KINDS)}")
    text = text.strip()
    if not text:
        raise ValidationProblem("text: must not be empty")
    if session.get(Incident, incident_id) is None:
        raise NotFound(f"no incident '{incident_id}'")
    entry = IncidentTimelineEntry(
        incident_id=incident_id,
        at=at or clock.now(),
        kind=kind,
        actor=actor[:64],
        text=text[:4000],
        data=data,
    )
    session.add(entry)
    session.flush()
    return entry


def add_note(session: Session, incident_id: str, text: str, *, actor: str) -> IncidentTimelineEntry:
    """A manual line on the record, e.g. '9:25 reported to the general manager'."""
    entry = add_timeline_entry(session, incident_id, kind="note", text=text, actor=actor)
    events.emit(
        session,
        "incident.note_added",
        {"incident_id": incident_id, "entry_id": entry.id, "actor": actor},
    )
    return entry


# ------------------------------------------------------------------------------ links


def link(session: Session, incident_id: str, kind: str, ref: str, *, actor: str = "system") -> bool:
    """Link an alert, account, payment, customer, device or merchant; False if it already
    was linked (a second link of the same thing is not a new fact)."""
    if kind not in LINK_KINDS:
        raise ValidationProblem(f"link kind: one of {', '.join(LINK_KINDS)}")
    ref = ref.strip()
    if not ref or len(ref) > 64:
        raise ValidationProblem("ref: an id of 1 to 64 characters")
    get_incident(session, incident_id)
    if session.get(IncidentLink, (incident_id, kind, ref)) is not None:
        return False
    session.add(IncidentLink(incident_id=incident_id, kind=kind, ref=ref, linked_at=clock.now()))
    session.flush()
    add_timeline_entry(
        session,
        incident_id,
        kind="alert" if kind == "alert" else "link",
        text=f"linked {kind} {ref}",
        actor=actor,
        data={"kind": kind, "ref": ref},
    )
    events.emit(
        session,
        "incident.linked",
        {"incident_id": incident_id, "kind": kind, "ref": ref, "actor": actor},
    )
    return True


# ------------------------------------------------------------------------------ status


def set_status(
    session: Session,
    incident_id: str,
    status: str,
    *,
    actor: str,
    note: str | None = None,
    summary: str | None = None,
    root_cause: str | None = None,
    measures: str | None = None,
    lessons: str | None = None,
    at: datetime | None = None,
) -> Incident:
    """Move the incident one step along the flow; closing needs a summary (given now or
    recorded before). An illegal move is a 409 with the allowed next steps."""
    if status not in STATUSES:
        raise ValidationProblem(f"status: one of {', '.join(STATUSES)}")
    incident = get_incident(session, incident_id)
    allowed = TRANSITIONS[incident.status]
    if status not in allowed:
        raise Conflict(
            f"incident {incident.id} is {incident.status}; it can move to "
            + (", ".join(allowed) if allowed else "nothing (it is closed)")
            + f", not {status}",
            current_status=incident.status,
            allowed=list(allowed),
        )
    _set_record(incident, summary, root_cause, measures, lessons)
    if status == "closed" and not (incident.summary or "").strip():
        raise ValidationProblem("closing an incident needs a summary (what happened, how it ended)")
    moment = at or clock.now()
    previous = incident.status
    incident.status = status
    setattr(incident, STATUS_TIMESTAMP[status], moment)
    incident.updated_at = clock.now()
    text = f"status {previous} → {status}"
    if note:
        text += f": {note.strip()}"
    add_timeline_entry(
        session,
        incident.id,
        kind="status",
        text=text,
        actor=actor,
        data={"from": previous, "to": status},
        at=moment,
    )
    events.emit(
        session,
        "incident.status_changed",
        {
            "incident_id": incident.id,
            "from": previous,
            "status": status,
            "grade": incident.grade,
            "drill_run_id": incident.drill_run_id,
            "actor": actor,
        },
    )
    return incident


def update_record(
    session: Session,
    incident_id: str,
    *,
    actor: str,
    title: str | None = None,
    summary: str | None = None,
    root_cause: str | None = None,
    measures: str | None = None,
    lessons: str | None = None,
) -> Incident:
    """The written parts of the record: summary, root cause, measures, lessons."""
    incident = get_incident(session, incident_id)
    changed = [
        name
        for name, value in (
            ("title", title),
            ("summary", summary),
            ("root_cause", root_cause),
            ("measures", measures),
            ("lessons", lessons),
        )
        if value is not None
    ]
    if not changed:
        raise ValidationProblem(
            "give at least one of title, summary, root_cause, measures, lessons"
        )
    if title is not None:
        if not title.strip():
            raise ValidationProblem("title: must not be empty")
        incident.title = title.strip()[:500]
    _set_record(incident, summary, root_cause, measures, lessons)
    incident.updated_at = clock.now()
    add_timeline_entry(
        session,
        incident.id,
        kind="note",
        text=f"record updated: {', '.join(changed)}",
        actor=actor,
        data={"fields": changed},
    )
    events.emit(
        session,
        "incident.record_updated",
        {"incident_id": incident.id, "fields": changed, "actor": actor},
    )
    return incident


def _set_record(
    incident: Incident,
    summary: str | None,
    root_cause: str | None,
    measures: str | None,
    lessons: str | None,
) -> None:
    if summary is not None:
        incident.summary = summary.strip() or None
    if root_cause is not None:
        incident.root_cause = root_cause.strip() or None
    if measures is not None:
        incident.measures = measures.strip() or None
    if lessons is not None:
        incident.lessons = lessons.strip() or None


# ------------------------------------------------------------------------------ grade


def update_impact(
    session: Session,
    settings: Settings,
    incident_id: str,
    impact: dict[str, Any],
    *,
    actor: str,
) -> Incident:
    """New impact facts: the computed grade follows; an override stays in force."""
    incident = get_incident(session, incident_id)
    merged = {**incident.impact, **impact}
    stored = grading.clean_impact(merged)
    thresholds = grading.load_thresholds(settings)
    computed = thresholds.grade(stored)
    previous = incident.grade
    incident.impact = stored
    incident.grade_computed = computed
    if incident.grade_override_reason is None:
        incident.grade = computed
    incident.updated_at = clock.now()
    text = f"impact updated; computed grade {computed}: {thresholds.reason(stored)}"
    if incident.grade_override_reason is not None:
        text += f" (override {incident.grade} stays)"
    add_timeline_entry(
        session,
        incident.id,
        kind="grade",
        text=text,
        actor=actor,
        data={"grade": incident.grade, "computed": computed, "impact": stored},
    )
    events.emit(
        session,
        "incident.graded",
        {
            "incident_id": incident.id,
            "grade": incident.grade,
            "previous": previous,
            "computed": computed,
            "overridden": incident.grade_override_reason is not None,
            "actor": actor,
        },
    )
    return incident


def override_grade(
    session: Session, incident_id: str, grade: str, *, reason: str, actor: str
) -> Incident:
    """Set the grade by hand; the reason is required and goes on the record."""
    grading.check_grade(grade)
    reason = reason.strip()
    if not reason:
        raise ValidationProblem("reason: a grade override needs a reason")
    incident = get_incident(session, incident_id)
    if incident.status == "closed":
        raise Conflict(f"incident {incident.id} is closed; its grade is final")
    previous = incident.grade
    incident.grade = grade
    incident.grade_override_reason = reason[:2000]
    incident.updated_at = clock.now()
    add_timeline_entry(
        session,
        incident.id,
        kind="grade",
        text=(
            f"grade overridden {previous} → {grade} (computed {incident.grade_computed}): {reason}"
        ),
        actor=actor,
        data={"grade": grade, "previous": previous, "computed": incident.grade_computed},
    )
    events.emit(
        session,
        "incident.graded",
        {
            "incident_id": incident.id,
            "grade": grade,
            "previous": previous,
            "computed": incident.grade_computed,
            "overridden": True,
            "actor": actor,
        },
    )
    return incident


def clear_grade_override(session: Session, incident_id: str, *, actor: str) -> Incident:
    incident = get_incident(session, incident_id)
    if incident.grade_override_reason is None:
        raise Conflict(f"incident {incident.id} has no grade override")
    previous = incident.grade
    incident.grade = incident.grade_computed
    incident.grade_override_reason = None
    incident.updated_at = clock.now()
    add_timeline_entry(
        session,
        incident.id,
        kind="grade",
        text=f"grade override removed; {previous} → {incident.grade} (computed)",
        actor=actor,
        data={"grade": incident.grade, "previous": previous},
    )
    events.emit(
        session,
        "incident.graded",
        {"incident_id": incident.id, "grade": incident.grade, "previous": previous, "actor": actor},
    )
    return incident


# ------------------------------------------------------------------------------ roles


def resolve_staff(session: Session, staff: str) -> str:
    """A staff id from an id or a username; a person who is not staff is refused."""
    names = identity.staff_names(session)
    if staff in names:
        return staff
    by_name = {username: staff_id for staff_id, username in names.items()}
    found = by_name.get(staff.lower())
    if found is None:
        raise ValidationProblem(f"no staff member '{staff}'")
    return found


def assign_role(
    session: Session, incident_id: str, role: str, staff: str, *, actor: str
) -> IncidentRole:
    """Give a staff member a role. Commander and scribe have one holder: assigning a new
    one replaces the previous holder (recorded)."""
    if role not in ROLES:
        raise ValidationProblem(f"role: one of {', '.join(ROLES)}")
    incident = get_incident(session, incident_id)
    if incident.status == "closed":
        raise Conflict(f"incident {incident.id} is closed")
    staff_id = resolve_staff(session, staff)
    existing = session.get(IncidentRole, (incident_id, role, staff_id))
    if existing is not None:
        return existing
    replaced: list[str] = []
    if role in SINGLE_HOLDER_ROLES:
        for holder in session.scalars(
            select(IncidentRole).where(
                IncidentRole.incident_id == incident_id, IncidentRole.role == role
            )
        ):
            replaced.append(holder.staff_id)
            session.delete(holder)
        session.flush()
    assignment = IncidentRole(
        incident_id=incident_id,
        role=role,
        staff_id=staff_id,
        assigned_at=clock.now(),
        assigned_by=actor,
    )
    session.add(assignment)
    session.flush()
    text = f"{role} assigned to staff {staff_id}"
    if replaced:
        text += f" (replaces {', '.join(replaced)})"
    add_timeline_entry(
        session,
        incident_id,
        kind="role",
        text=text,
        actor=actor,
        data={"role": role, "staff_id": staff_id, "replaced": replaced},
    )
    events.emit(
        session,
        "incident.role_assigned",
        {
            "incident_id": incident_id,
            "role": role,
            "staff_id": staff_id,
            "replaced": replaced,
            "actor": actor,
        },
    )
    return assignment


def unassign_role(session: Session, incident_id: str, role: str, staff: str, *, actor: str) -> None:
    staff_id = resolve_staff(session, staff)
    existing = session.get(IncidentRole, (incident_id, role, staff_id))
    if existing is None:
        raise NotFound(f"staff {staff_id} does not hold {role} on incident {incident_id}")
    session.delete(existing)
    session.flush()
    add_timeline_entry(
        session,
        incident_id,
        kind="role",
        text=f"{role} withdrawn from staff {staff_id}",
        actor=actor,
        data={"role": role, "staff_id": staff_id, "withdrawn": True},
    )
    events.emit(
        session,
        "incident.role_withdrawn",
        {"incident_id": incident_id, "role": role, "staff_id": staff_id, "actor": actor},
    )


# ------------------------------------------------------------------------------ tasks


def add_task(
    session: Session,
    incident_id: str,
    *,
    title: str,
    actor: str,
    owner: str | None = None,
    due_at: datetime | None = None,
    kind: str = "task",
) -> IncidentTask:
    """A task during the incident, or an improvement item (kind 'improvement') for the
    post-incident report; the owner must be staff."""
    if kind not in TASK_KINDS:
        raise ValidationProblem(f"task kind: one of {', '.join(TASK_KINDS)}")
    title = title.strip()
    if not title:
        raise ValidationProblem("title: must not be empty")
    get_incident(session, incident_id)
    owner_id = resolve_staff(session, owner) if owner else None
    task = IncidentTask(
        id=ids.new_id("incident_task"),
        incident_id=incident_id,
        title=title[:1000],
        owner_staff_id=owner_id,
        due_at=due_at,
        status="open",
        kind=kind,
        created_by=actor,
        created_at=clock.now(),
    )
    session.add(task)
    session.flush()
    due = f", due {due_at.isoformat(timespec='minutes')}" if due_at else ""
    add_timeline_entry(
        session,
        incident_id,
        kind="task",
        text=f"{kind} {task.id} added: {task.title} (owner {owner_id or 'none'}{due})",
        actor=actor,
        data={"task_id": task.id, "kind": kind, "owner_staff_id": owner_id, "status": "open"},
    )
    events.emit(
        session,
        "incident.task_added",
        {
            "incident_id": incident_id,
            "task_id": task.id,
            "kind": kind,
            "owner_staff_id": owner_id,
            "actor": actor,
        },
    )
    return task


def get_task(session: Session, task_id: str) -> IncidentTask:
    task = session.get(IncidentTask, task_id)
    if task is None:
        raise NotFound(f"no incident task '{task_id}'")
    return task


def set_task_status(session: Session, task_id: str, status: str, *, actor: str) -> IncidentTask:
    if status not in TASK_STATUSES:
        raise ValidationProblem(f"task status: one of {', '.join(TASK_STATUSES)}")
    task = get_task(session, task_id)
    if task.status != "open":
        raise Conflict(f"task {task.id} is already {task.status}")
    if status == "open":
        return task
    task.status = status
    task.done_at = clock.now() if status == "done" else None
    add_timeline_entry(
        session,
        task.incident_id,
        kind="task",
        text=f"{task.kind} {task.id} {status}: {task.title}",
        actor=actor,
        data={"task_id": task.id, "status": status},
    )
    events.emit(
        session,
        "incident.task_updated",
        {"incident_id": task.incident_id, "task_id": task.id, "status": status, "actor": actor},
    )
    return task


def overdue_tasks(session: Session, *, at: datetime | None = None) -> Sequence[IncidentTask]:
    moment = at or clock.now()
    query = select(IncidentTask).where(
        IncidentTask.status == "open",
        IncidentTask.due_at.is_not(None),
        IncidentTask.due_at < moment,
    )
    return list(session.scalars(query.order_by(IncidentTask.due_at)))


class ImprovementItem(NamedTuple):
    """An improvement task, as the evaluation reads it."""

    status: str
    done_at: datetime | None
    due_at: datetime | None


def improvement_items_created_before(session: Session, end: datetime) -> list[ImprovementItem]:
    """The improvement tasks created before ``end``, whatever their status."""
    rows = session.execute(
        select(IncidentTask.status, IncidentTask.done_at, IncidentTask.due_at).where(
            IncidentTask.kind == "improvement", IncidentTask.created_at < end
        )
    ).all()
    return [ImprovementItem(row.status, row.done_at, row.due_at) for row in rows]


# ------------------------------------------------------------------------------ metrics


def metrics(
    session: Session, since: datetime, until: datetime, *, drills: bool | None = None
) -> IncidentMetrics:
    """MTTD/MTTA/MTTC/MTTR and counts by grade/category for incidents reported in
    [since, until); ``drills``: None all, True only drill incidents, False only real ones."""
    return incident_metrics.metrics(session, since, until, drills=drills)
