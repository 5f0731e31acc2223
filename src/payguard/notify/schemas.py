"""What crosses the API boundary: notifications, their attempts, regulator report drafts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Audience = Literal["internal", "customer", "external"]
Channel = Literal["outbox", "webhook", "smtp"]
Language = Literal["zh-CN", "en"]


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    audience: str
    template: str
    language: str
    channel: str
    status: str  # queued | sent | failed
    recipient_kind: str
    recipient_ref: str | None
    recipient_masked: str | None
    subject: str
    incident_id: str | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_by: str
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    channel: str
    at: datetime
    outcome: str
    status_code: int | None
    error: str | None
    duration_ms: int
    next_attempt_at: datetime | None


class NotificationDetail(NotificationOut):
    body: str
    attempt_log: list[AttemptOut]


class NotificationList(BaseModel):
    items: list[NotificationOut]


class DeadlineOut(BaseModel):
    grade: str
    minutes: int
    clock_starts_at: datetime
    report_due_at: datetime
    seconds_left: int
    overdue: bool
    full_report_minutes: int
    full_report_due_at: datetime
    final_report_days: int  # working days after the incident is closed
    basis: str


class RegulatorReportOut(BaseModel):
    incident_id: str
    language: str
    title: str
    grade: str
    category: str
    status: str
    time: dict[str, datetime | None]
    scope: list[str]
    trend: str
    measures: list[str]
    deadline: DeadlineOut
    subject: str
    text: str
    extra: dict[str, Any] = {}
