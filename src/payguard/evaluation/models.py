"""Evaluation tables: one row per evaluation run, one row per indicator value in it.

Runs are kept so each evaluation can be compared with the ones before it (the trend).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from payguard.db.base import Base, BigIntPK, UTCDateTime


class EvaluationRun(Base):
    """One evaluation of the platform over a period [period_start, period_end)."""

    __tablename__ = "evaluation_runs"
    __table_args__ = (Index("ix_evaluation_runs_created", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    period: Mapped[str] = mapped_column(String(16))  # as asked, e.g. "30d"
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    # None when no indicator had data: there is nothing to score.
    overall_score: Mapped[float | None] = mapped_column(Float)
    coverage: Mapped[float] = mapped_column(Float)  # share of the weight that had data
    pass_score: Mapped[float] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(12))  # pass | fail | no_data
    passed: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    no_data: Mapped[int] = mapped_column(Integer)
    # group id -> {name_en, name_zh, weight, score, coverage, passed, failed, no_data}
    group_scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    previous_run_id: Mapped[str | None] = mapped_column(String(40))
    config_sha: Mapped[str] = mapped_column(String(64))  # sha256 of the indicators YAML
    config_source: Mapped[str] = mapped_column(Text)  # "shipped" or the custom file's path
    report_dir: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class EvaluationValue(Base):
    """One indicator's value in one run, with the target, threshold and weight it met."""

    __tablename__ = "evaluation_values"
    __table_args__ = (
        Index("ix_evaluation_values_run", "run_id", "position"),
        Index("ix_evaluation_values_indicator", "indicator", "run_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("evaluation_runs.id"))
    position: Mapped[int] = mapped_column(Integer)
    indicator: Mapped[str] = mapped_column(String(48))
    group: Mapped[str] = mapped_column(String(24))
    state: Mapped[str] = mapped_column(String(8))  # pass | fail | no_data
    value: Mapped[float | None] = mapped_column(Float)
    numerator: Mapped[float | None] = mapped_column(Float)
    denominator: Mapped[float | None] = mapped_column(Float)
    target: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    direction: Mapped[str] = mapped_column(String(8))  # higher | lower
    unit: Mapped[str] = mapped_column(String(12))
    weight: Mapped[float] = mapped_column(Float)  # within the group
    score: Mapped[float | None] = mapped_column(Float)  # 0-100; None without data
    # {facts (what was counted, no personal data), name_en, name_zh, effective_weight,
    #  previous_value, trend, previous_period_value, period_trend}
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
