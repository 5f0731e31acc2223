"""What crosses the API boundary: evaluations, their indicator values and group scores."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

State = Literal["pass", "fail", "no_data"]
# Better / worse / same as the comparison value, or "none" when there is nothing to compare.
Trend = Literal["better", "worse", "same", "none"]


class IndicatorResultOut(BaseModel):
    id: str
    group: str
    name_en: str
    name_zh: str
    direction: Literal["higher", "lower"]
    unit: str
    value: float | None
    numerator: float | None = None
    denominator: float | None = None
    target: float
    threshold: float
    weight: float  # within the group
    effective_weight: float  # group weight x weight: its share of the overall score
    state: State
    score: float | None
    detail: dict[str, Any] = Field(default_factory=dict)
    # The previous stored evaluation's value, and the value over the period before this one.
    previous_value: float | None = None
    trend: Trend = "none"
    previous_period_value: float | None = None
    period_trend: Trend = "none"


class GroupScoreOut(BaseModel):
    id: str
    name_en: str
    name_zh: str
    weight: float
    score: float | None
    coverage: float  # share of the group's weight that had data
    passed: int
    failed: int
    no_data: int


class EvaluationOut(BaseModel):
    id: str | None  # None when not stored
    period: str
    period_start: datetime
    period_end: datetime
    overall_score: float | None
    coverage: float
    verdict: Literal["pass", "fail", "no_data"]
    pass_score: float
    passed: int
    failed: int
    no_data: int
    groups: list[GroupScoreOut]
    indicators: list[IndicatorResultOut]
    previous_run_id: str | None = None
    previous_overall_score: float | None = None
    config_sha: str
    config_source: str
    report_dir: str | None = None
    report_files: list[str] = Field(default_factory=list)
    created_by: str
    created_at: datetime


class EvaluationSummary(BaseModel):
    id: str
    period: str
    period_start: datetime
    period_end: datetime
    overall_score: float | None
    verdict: str
    passed: int
    failed: int
    no_data: int
    group_scores: dict[str, float | None]
    created_by: str
    created_at: datetime


class EvaluateRequest(BaseModel):
    period: str = Field(default="30d", pattern=r"^\s*\d{1,4}\s*[hdw]\s*$", max_length=16)
    as_of: date | None = Field(
        default=None, description="evaluate the period ending at the end of this UTC day"
    )
    report: bool = Field(default=False, description="also write the Markdown and PDF reports")
