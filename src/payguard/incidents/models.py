"""Incident tables: incidents, roles, tasks, links, timeline, playbook runs, intake state.

No personal data is stored here: people are staff ids, customers and accounts are ids.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from payguard.db.base import Base, BigIntPK, UTCDateTime


class Incident(Base):
    """One security incident, from report to closing summary (seed 003 flow)."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_status", "status", "reported_at"),
        Index("ix_incidents_dedup", "dedup_key", "status"),
        Index("ix_incidents_drill_run", "drill_run_id"),
        Index("ix_incidents_reported_at", "reported_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(16))  # GB/T 20986-2023 class code
    grade: Mapped[str] = mapped_column(String(4))  # I | II | III | IV (in force)
    grade_computed: Mapped[str] = mapped_column(String(4))  # what the impact facts give
    grade_override_reason: Mapped[str | None] = mapped_column(Text)
    # {people_affected, money_at_risk (minor units), currency, hours_interrupted,
    #  regions_affected}
    impact: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # reported|confirmed|contained|recovered|closed
    source: Mapped[str] = mapped_column(String(16))  # alert | manual | drill
    dedup_key: Mapped[str | None] = mapped_column(String(200))
    drill_run_id: Mapped[str | None] = mapped_column(String(40))
    summary: Mapped[str | None] = mapped_column(Text)
    root_cause: Mapped[str | None] = mapped_column(Text)
    measures: Mapped[str | None] = mapped_column(Text)
    lessons: Mapped[str | None] = mapped_column(Text)
    first_evidence_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    contained_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recovered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IncidentRole(Base):
    """A staff member holding one role (seed 003 organisation) on one incident."""

    __tablename__ = "incident_roles"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    # commander | technical_support | business_operations | legal_compliance | scribe
    role: Mapped[str] = mapped_column(String(24), primary_key=True)
    staff_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    assigned_by: Mapped[str] = mapped_column(String(64))


class IncidentTask(Base):
    """Work to do during the incident, or an improvement item after it."""

    __tablename__ = "incident_tasks"
    __table_args__ = (Index("ix_incident_tasks_incident", "incident_id", "status"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"))
    title: Mapped[str] = mapped_column(Text)
    owner_staff_id: Mapped[str | None] = mapped_column(String(40))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12))  # open | done | cancelled
    kind: Mapped[str] = mapped_column(String(12))  # task | improvement
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IncidentLink(Base):
    """An alert, account, payment, customer, device or merchant the incident concerns."""

    __tablename__ = "incident_links"
    __table_args__ = (Index("ix_incident_links_ref", "kind", "ref"),)

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    ref: Mapped[str] = mapped_column(String(64), primary_key=True)
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IncidentTimelineEntry(Base):
    """One timestamped line of the incident record (the seed 002 timeline)."""

    __tablename__ = "incident_timeline"
    __table_args__ = (Index("ix_incident_timeline_incident", "incident_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # alert | status | action | approval | notification | note | grade | role | task | link
    # | drill | playbook
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class PlaybookRun(Base):
    """One execution of a containment or recovery playbook on an incident (helper P)."""

    __tablename__ = "playbook_runs"
    __table_args__ = (Index("ix_playbook_runs_incident", "incident_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"))
    playbook: Mapped[str] = mapped_column(String(64))
    playbook_version: Mapped[str] = mapped_column(String(64))  # version or content sha
    # running | waiting_approval | completed | failed | recovered
    status: Mapped[str] = mapped_column(String(20))
    phase: Mapped[str] = mapped_column(String(12))  # containment | recovery
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # A recovery run points at the containment run it undoes.
    parent_run_id: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[str | None] = mapped_column(Text)
    started_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PlaybookStepRun(Base):
    """One step of a playbook run: the action, its parameters and its recorded result."""

    __tablename__ = "playbook_step_runs"
    __table_args__ = (Index("ix_playbook_step_runs_run", "run_id", "position"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("playbook_runs.id"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(64))  # the step's id in the YAML
    action: Mapped[str] = mapped_column(String(40))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    requires_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    approval_id: Mapped[str | None] = mapped_column(String(40))
    # pending | waiting_approval | done | failed | skipped | undone
    status: Mapped[str] = mapped_column(String(20))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class IncidentIntakeCursor(Base):
    """How far intake has read the outbox (one row per consumer name)."""

    __tablename__ = "incident_intake_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IncidentIntakeHit(Base):
    """One event that matched an intake mapping, kept to count hits within a window."""

    __tablename__ = "incident_intake_hits"
    __table_args__ = (Index("ix_incident_intake_hits_key", "mapping", "group_key", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    mapping: Mapped[str] = mapped_column(String(64))
    group_key: Mapped[str] = mapped_column(String(128))
    event_id: Mapped[int] = mapped_column(BigInteger)
    ref: Mapped[str | None] = mapped_column(String(64))  # the alert id, when there is one
    customer_id: Mapped[str | None] = mapped_column(String(40))
    amount: Mapped[int | None] = mapped_column(BigInteger)  # minor units, of an alert
    at: Mapped[datetime] = mapped_column(UTCDateTime)
