"""Drill models that cross the API and CLI boundary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class DrillRunSummary(BaseModel):
    """One finished drill run, as the evaluation and the history read it."""

    id: str
    scenario: str
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "finished"
    target: str = "sandbox"
    passed: bool
    score: int
    attacks: int
    attacks_defended: int
    time_to_detect_s: float | None
    time_to_contain_s: float | None
    money_at_risk: int
    money_lost: int
    disabled_controls: list[str] = Field(default_factory=list)


class DrillRunOut(DrillRunSummary):
    plan_id: str | None
    record_dir: str | None
    result: dict[str, Any]


class HistoryRow(DrillRunSummary):
    """A run with its difference to the previous run of the same scenario."""

    score_change: int | None
    previous_passed: bool | None
    defended_change: int | None
    money_lost_change: int | None


class Participant(BaseModel):
    role: str = Field(min_length=1, max_length=64)  # e.g. commander, technical_support
    name: str = Field(min_length=1, max_length=120)  # a work role or staff id, not a person
    duty: str = Field(default="", max_length=500)


class DrillPlanIn(BaseModel):
    scenario: str
    purpose: str = Field(min_length=1, max_length=4000)
    participants: list[Participant] = Field(default_factory=list)
    schedule: str | None = Field(default=None, max_length=120)
    environment: str = Field(default="sandbox", max_length=300)
    method: str = Field(default="simulated, hands-on", max_length=64)


class DrillPlanOut(BaseModel):
    id: str
    scenario: str
    purpose: str
    participants: list[dict[str, Any]]
    schedule: str | None
    environment: str
    method: str
    created_by: str
    created_at: datetime


class DrillScheduleOut(BaseModel):
    id: str
    scenario: str
    cron: str
    next_run_at: datetime
    enabled: bool
    last_run_id: str | None
