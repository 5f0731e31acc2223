"""Drill tables: plans, runs (with their scored result) and cron schedules.

No personal data: drill actors are referred to by ids and their drill_ usernames only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from payguard.db.base import Base, UTCDateTime


class DrillPlan(Base):
    """What a drill is for and how it is run (seed 000: goals, scenario, participants)."""

    __tablename__ = "drill_plans"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    scenario: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(Text)
    # [{"role": "commander", "name": "...", "duty": "..."}]: staff names are work roles.
    participants: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    schedule: Mapped[str | None] = mapped_column(String(120))  # cron or a date/time
    environment: Mapped[str] = mapped_column(String(300))  # "sandbox" or a target URL
    method: Mapped[str] = mapped_column(String(64))  # e.g. "simulated, hands-on"
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DrillRun(Base):
    """One execution of a scenario and its score."""

    __tablename__ = "drill_runs"
    __table_args__ = (Index("ix_drill_runs_scenario", "scenario", "started_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    plan_id: Mapped[str | None] = mapped_column(String(40))
    scenario: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    target: Mapped[str] = mapped_column(String(300))  # "sandbox" or the URL attacked
    status: Mapped[str] = mapped_column(String(16))  # running | finished | error
    passed: Mapped[bool | None] = mapped_column(Boolean)
    score: Mapped[int | None] = mapped_column(Integer)
    # steps, detections, containment, money checks, disabled controls (scoring.DrillResult)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    record_dir: Mapped[str | None] = mapped_column(String(500))


class DrillSchedule(Base):
    """A scenario to run whenever its cron expression comes due."""

    __tablename__ = "drill_schedules"
    __table_args__ = (Index("ix_drill_schedules_due", "enabled", "next_run_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    scenario: Mapped[str] = mapped_column(String(64))
    cron: Mapped[str] = mapped_column(String(120))
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_run_id: Mapped[str | None] = mapped_column(String(40))
