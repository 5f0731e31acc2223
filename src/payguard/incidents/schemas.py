"""Pydantic models of the incidents domain that cross the API boundary."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Grade = Literal["I", "II", "III", "IV"]
Status = Literal["reported", "confirmed", "contained", "recovered", "closed"]
RoleName = Literal[
    "commander", "technical_support", "business_operations", "legal_compliance", "scribe"
]
LinkKind = Literal["alert", "account", "payment", "customer", "device", "merchant"]
TaskKind = Literal["task", "improvement"]
TaskStatus = Literal["open", "done", "cancelled"]
Language = Literal["zh-CN", "en"]
LANGUAGES: tuple[Language, ...] = ("zh-CN", "en")


class Impact(BaseModel):
    """The facts a grade is computed from."""

    model_config = ConfigDict(extra="forbid")

    people_affected: int = Field(default=0, ge=0, description="persons affected")
    money_at_risk: int = Field(default=0, ge=0, description="minor units (fen for CNY)")
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    hours_interrupted: float = Field(default=0, ge=0, description="hours of interruption")
    regions_affected: int = Field(default=0, ge=0, description="provincial-level regions hit")
    note: str | None = Field(default=None, max_length=500)


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: LinkKind
    ref: str = Field(min_length=1, max_length=64)


class IncidentOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=500)
    category: str = Field(min_length=2, max_length=2, description="GB/T 20986-2023 class code")
    impact: Impact = Field(default_factory=Impact)
    links: list[LinkIn] = Field(default_factory=list, max_length=100)
    detected_at: datetime | None = None
    first_evidence_at: datetime | None = None


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status
    note: str | None = Field(default=None, max_length=4000)
    summary: str | None = Field(default=None, max_length=20000)
    root_cause: str | None = Field(default=None, max_length=20000)
    measures: str | None = Field(default=None, max_length=20000)
    lessons: str | None = Field(default=None, max_length=20000)


class GradeIn(BaseModel):
    """Override the grade (grade + reason), or give new impact facts (impact)."""

    model_config = ConfigDict(extra="forbid")

    grade: Grade | None = None
    reason: str | None = Field(default=None, max_length=2000)
    impact: Impact | None = None
    clear_override: bool = False


class RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=500)
    summary: str | None = Field(default=None, max_length=20000)
    root_cause: str | None = Field(default=None, max_length=20000)
    measures: str | None = Field(default=None, max_length=20000)
    lessons: str | None = Field(default=None, max_length=20000)


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: RoleName
    staff: str = Field(min_length=1, max_length=64, description="staff id or username")


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=1000)
    owner: str | None = Field(default=None, max_length=64, description="staff id or username")
    due_at: datetime | None = None
    kind: TaskKind = "task"


class TaskStatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TaskStatus


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000)


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    languages: list[Language] = Field(default_factory=lambda: list(LANGUAGES))


# ------------------------------------------------------------------------------ replies


class IncidentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    category: str
    grade: Grade
    grade_computed: Grade
    grade_override_reason: str | None
    impact: dict[str, Any]
    status: Status
    source: str
    dedup_key: str | None
    drill_run_id: str | None
    summary: str | None
    root_cause: str | None
    measures: str | None
    lessons: str | None
    first_evidence_at: datetime | None
    reported_at: datetime
    detected_at: datetime
    acknowledged_at: datetime | None
    contained_at: datetime | None
    recovered_at: datetime | None
    closed_at: datetime | None
    created_by: str
    updated_at: datetime


class RoleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    role: RoleName
    staff_id: str
    assigned_at: datetime
    assigned_by: str


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    incident_id: str
    title: str
    owner_staff_id: str | None
    due_at: datetime | None
    status: TaskStatus
    kind: TaskKind
    created_by: str
    created_at: datetime
    done_at: datetime | None


class LinkOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: LinkKind
    ref: str
    linked_at: datetime


class TimelineEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    kind: str
    actor: str
    text: str
    data: dict[str, Any] | None


class IncidentDetail(IncidentOut):
    roles: list[RoleOut]
    tasks: list[TaskOut]
    links: list[LinkOut]


class IncidentList(BaseModel):
    items: list[IncidentOut]


class TimelineOut(BaseModel):
    incident_id: str
    entries: list[TimelineEntryOut]


class DurationStats(BaseModel):
    """Seconds; None when no incident in the period has the two moments."""

    count: int
    mean: float | None
    p50: float | None
    max: float | None


class IncidentTimes(BaseModel):
    """One incident's times in seconds: detect from first evidence; the others from
    detection."""

    incident_id: str
    grade: str
    category: str
    status: str
    drill_run_id: str | None
    time_to_detect_s: float | None
    time_to_acknowledge_s: float | None
    time_to_contain_s: float | None
    time_to_recover_s: float | None


class IncidentMetrics(BaseModel):
    since: datetime
    until: datetime
    count: int
    open: int
    by_grade: dict[str, int]
    by_category: dict[str, int]
    by_status: dict[str, int]
    time_to_detect: DurationStats
    time_to_acknowledge: DurationStats
    time_to_contain: DurationStats
    time_to_recover: DurationStats
    incidents: list[IncidentTimes]


class ReportOut(BaseModel):
    incident_id: str
    files: dict[str, dict[str, str]]  # language -> {"markdown": path, "pdf": path}


class IntakeResult(BaseModel):
    processed: int
