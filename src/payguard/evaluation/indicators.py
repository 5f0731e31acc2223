"""The indicator system (seed 001 §6): its YAML file, its validation, and its scoring.

An indicator has a direction (higher or lower is better), a threshold (the pass line),
a target (where it scores full marks) and a weight within its group; groups have weights
too. Scores run 0-100: the target or better is 100, exactly the threshold is the pass score
(60 by default, the usual pass mark), in between is linear; beyond the threshold the score
falls towards 0 in proportion. "No data" is a state of its own: it neither passes nor fails
and its weight goes to the indicators of its group that have data (the coverage says how
much weight that was).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from payguard.errors import ValidationProblem
from payguard.settings import Settings

Direction = Literal["higher", "lower"]
Unit = Literal["ratio", "count", "ms", "minutes"]
State = Literal["pass", "fail", "no_data"]

# The indicators the platform knows how to measure (evaluation/measures.py), with the
# parameters each accepts in its `params:` mapping.
KNOWN_INDICATORS: dict[str, frozenset[str]] = {
    "drill_defence_rate": frozenset(),
    "open_vulnerabilities": frozenset(),
    "payment_failure_rate": frozenset(),
    "data_leak_events": frozenset({"categories"}),
    "payment_latency_p95": frozenset(),
    "legit_step_up_rate": frozenset(),
    "login_success_rate": frozenset(),
    "detection_rate": frozenset(),
    "false_positive_rate": frozenset(),
    "mean_time_to_dispose": frozenset(),
}
WEIGHT_TOLERANCE = 0.001


class IndicatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name_en: str = Field(min_length=1)
    name_zh: str = Field(min_length=1)
    direction: Direction
    unit: Unit
    weight: float = Field(gt=0, le=1)
    threshold: float = Field(ge=0)
    target: float = Field(ge=0)
    source: str = ""  # where the default numbers come from (shown in docs and reports)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> IndicatorConfig:
        if self.unit == "ratio" and (self.threshold > 1 or self.target > 1):
            raise ValueError("a ratio's threshold and target are between 0 and 1 (0.9 = 90%)")
        if self.direction == "higher" and self.target < self.threshold:
            raise ValueError("higher is better: the target must be at or above the threshold")
        if self.direction == "lower" and self.target > self.threshold:
            raise ValueError("lower is better: the target must be at or below the threshold")
        return self


class GroupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name_en: str = Field(min_length=1)
    name_zh: str = Field(min_length=1)
    weight: float = Field(gt=0, le=1)
    indicators: dict[str, IndicatorConfig] = Field(min_length=1)


class SystemConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    pass_score: float = Field(default=60.0, gt=0, lt=100)
    # Below this share of the weight with data the verdict is "no_data" (too little to
    # judge), whatever the score of the few indicators that had data.
    min_coverage: float = Field(default=0.5, ge=0, le=1)
    groups: dict[str, GroupConfig] = Field(min_length=1)


@dataclass(frozen=True)
class IndicatorSpec:
    """One indicator as evaluated: its config plus the group it belongs to."""

    id: str
    group: str
    position: int
    config: IndicatorConfig


@dataclass(frozen=True)
class IndicatorSystem:
    config: SystemConfig
    sha256: str
    source: str  # "shipped" or the path of the custom file
    indicators: list[IndicatorSpec] = field(default_factory=list)

    def group_name(self, group: str, language: str) -> str:
        found = self.config.groups[group]
        return found.name_zh if language == "zh-CN" else found.name_en


def shipped_path() -> Path:
    return Path(str(resources.files("payguard.evaluation") / "data" / "indicators.yaml"))


def load(settings: Settings) -> IndicatorSystem:
    """The indicator system in force: the custom file of the settings, or the shipped one."""
    custom = settings.evaluation_indicators_path
    if custom is None:
        return validate_file(shipped_path(), source="shipped")
    return validate_file(Path(custom))


def validate_file(path: Path, *, source: str | None = None) -> IndicatorSystem:
    """Read and check an indicators YAML; every problem is named with its place in the file."""
    where = str(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ValidationProblem(
            f"{where}: cannot read the indicators file ({error.strerror})"
        ) from None
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise ValidationProblem(f"{where}: not valid YAML{at}: {problem}") from None
    if not isinstance(document, dict):
        raise ValidationProblem(f"{where}: expected a mapping with 'groups' at the top")
    try:
        config = SystemConfig.model_validate(document)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in item['loc']) or '(top)'}: "
            f"{item['msg'].removeprefix('Value error, ')}"
            for item in error.errors()
        ]
        raise ValidationProblem(f"{where}: " + "; ".join(problems)) from None
    problems = _semantic_problems(config)
    if problems:
        raise ValidationProblem(f"{where}: " + "; ".join(problems))
    specs: list[IndicatorSpec] = []
    for group_id, group in config.groups.items():
        for indicator_id, indicator in group.indicators.items():
            specs.append(IndicatorSpec(indicator_id, group_id, len(specs), indicator))
    return IndicatorSystem(
        config=config,
        sha256=hashlib.sha256(raw).hexdigest(),
        source=source or where,
        indicators=specs,
    )


def _semantic_problems(config: SystemConfig) -> list[str]:
    problems: list[str] = []
    group_sum = sum(group.weight for group in config.groups.values())
    if abs(group_sum - 1.0) > WEIGHT_TOLERANCE:
        problems.append(f"groups: the group weights add up to {group_sum:g}, they must add up to 1")
    seen: dict[str, str] = {}
    for group_id, group in config.groups.items():
        weights = sum(indicator.weight for indicator in group.indicators.values())
        if abs(weights - 1.0) > WEIGHT_TOLERANCE:
            problems.append(
                f"groups.{group_id}.indicators: the weights add up to {weights:g}, "
                "they must add up to 1"
            )
        for indicator_id, indicator in group.indicators.items():
            place = f"groups.{group_id}.indicators.{indicator_id}"
            if indicator_id not in KNOWN_INDICATORS:
                known = ", ".join(KNOWN_INDICATORS)
                problems.append(f"{place}: unknown indicator (the platform measures: {known})")
                continue
            if indicator_id in seen:
                problems.append(f"{place}: already listed under groups.{seen[indicator_id]}")
            seen[indicator_id] = group_id
            unknown = set(indicator.params) - KNOWN_INDICATORS[indicator_id]
            if unknown:
                problems.append(
                    f"{place}.params: unknown parameter(s) {', '.join(sorted(unknown))}"
                )
            categories = indicator.params.get("categories")
            if categories is not None and not (
                isinstance(categories, list)
                and categories
                and all(isinstance(code, str) and code for code in categories)
            ):
                problems.append(f"{place}.params.categories: a list of incident category codes")
    return problems


# ------------------------------------------------------------------------- scoring


def score(value: float, config: IndicatorConfig, pass_score: float) -> float:
    """0-100: the target or better 100, the threshold ``pass_score``, linear in between;
    past the threshold the score shrinks in proportion to how far past it the value is."""
    threshold, target = config.threshold, config.target
    if config.direction == "higher":
        if value >= target:
            return 100.0
        if value >= threshold:
            span = target - threshold
            return pass_score + (100.0 - pass_score) * ((value - threshold) / span if span else 1)
        # Below the pass line: pass_score x value/threshold (0 at value 0).
        return pass_score * max(0.0, value) / threshold if threshold > 0 else 0.0
    if value <= target:
        return 100.0
    if value <= threshold:
        span = threshold - target
        return pass_score + (100.0 - pass_score) * ((threshold - value) / span if span else 1)
    # Above the pass line: pass_score x threshold/value (a zero-tolerance line scores 0).
    return pass_score * threshold / value if threshold > 0 else 0.0


def passes(value: float, config: IndicatorConfig) -> bool:
    if config.direction == "higher":
        return value >= config.threshold
    return value <= config.threshold


def weighted_mean(pairs: list[tuple[float, float | None]]) -> tuple[float | None, float]:
    """Mean of the scores that exist, weighted; and the share of the weight they carry."""
    total = sum(weight for weight, _ in pairs)
    present = [(weight, value) for weight, value in pairs if value is not None]
    carried = sum(weight for weight, _ in present)
    if not present or carried <= 0:
        return None, 0.0
    mean = sum(weight * value for weight, value in present) / carried
    return round(mean, 2), (carried / total if total else 0.0)


def is_number(value: float | None) -> bool:
    return value is not None and not math.isnan(value) and not math.isinf(value)
