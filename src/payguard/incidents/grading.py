"""Incident categories (GB/T 20986-2023 classes) and grades computed from impact facts.

The grade thresholds live in a YAML file (shipped: ``incidents/data/grading.yaml``; another
one by ``settings.incident_grading_path``) so compliance can change them without code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from payguard.errors import ValidationProblem
from payguard.settings import Settings

SHIPPED_GRADING = Path(__file__).parent / "data" / "grading.yaml"

# Most severe first. IV is the floor: an incident that meets no higher rule.
GRADES = ("I", "II", "III", "IV")
GRADE_NAMES = {
    "I": ("特别重大", "particularly serious"),
    "II": ("重大", "serious"),
    "III": ("较大", "relatively serious"),
    "IV": ("一般", "ordinary"),
}
IMPACT_FACTS = ("people_affected", "money_at_risk", "hours_interrupted", "regions_affected")

# The ten top-level classes of GB/T 20986-2023 §5.2, by a two-digit code (the class part of
# its Annex B codes; "01" is confirmed by the published ransomware example 01007, the order
# of the others follows §5.2 as read here — see docs/incidents.md).
CATEGORIES: dict[str, tuple[str, str]] = {
    "01": ("恶意程序事件", "malicious program incident"),
    "02": ("网络攻击事件", "network attack incident"),
    "03": ("数据安全事件", "data security incident"),
    "04": ("信息内容安全事件", "information content security incident"),
    "05": ("设备设施故障事件", "equipment and facility failure incident"),
    "06": ("违规操作事件", "non-compliant operation incident"),
    "07": ("安全隐患事件", "security hazard (vulnerability) incident"),
    "08": ("异常行为事件", "abnormal behaviour incident"),
    "09": ("不可抗力事件", "force majeure incident"),
    "10": ("其他事件", "other incident"),
}


def category_name(code: str, language: str = "en") -> str:
    zh, en = CATEGORIES.get(code, (code, code))
    return zh if language == "zh-CN" else en


def grade_name(grade: str, language: str = "en") -> str:
    zh, en = GRADE_NAMES.get(grade, (grade, grade))
    return zh if language == "zh-CN" else en


def check_category(code: str) -> str:
    if code not in CATEGORIES:
        choices = ", ".join(f"{key} ({value[1]})" for key, value in CATEGORIES.items())
        raise ValidationProblem(f"category: one of {choices}")
    return code


def check_grade(grade: str) -> str:
    if grade not in GRADES:
        raise ValidationProblem(f"grade: one of {', '.join(GRADES)}")
    return grade


@dataclass(frozen=True)
class Rule:
    """All named facts at or above their minimum."""

    minimums: dict[str, float]
    source: str

    def holds(self, impact: dict[str, float]) -> bool:
        return all(impact.get(fact, 0) >= value for fact, value in self.minimums.items())


@dataclass(frozen=True)
class Thresholds:
    rules: dict[str, tuple[Rule, ...]]  # grade -> rules, for I, II, III
    path: Path

    def grade(self, impact: dict[str, Any]) -> str:
        facts = normalise_impact(impact)
        for grade in GRADES[:-1]:
            if any(rule.holds(facts) for rule in self.rules.get(grade, ())):
                return grade
        return "IV"

    def reason(self, impact: dict[str, Any]) -> str:
        """Which rule gave the grade, for the timeline."""
        facts = normalise_impact(impact)
        for grade in GRADES[:-1]:
            for rule in self.rules.get(grade, ()):
                if rule.holds(facts):
                    named = ", ".join(
                        f"{key} >= {_number(value)}" for key, value in rule.minimums.items()
                    )
                    return f"{named} ({rule.source})" if rule.source else named
        return "no threshold of grade III or above met"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def normalise_impact(impact: dict[str, Any]) -> dict[str, float]:
    """The four facts as non-negative numbers; refuses anything else with a clear problem."""
    facts: dict[str, float] = {}
    for fact in IMPACT_FACTS:
        value = impact.get(fact, 0)
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationProblem(f"impact.{fact}: a number, not {type(value).__name__}")
        if value < 0:
            raise ValidationProblem(f"impact.{fact}: must not be negative")
        facts[fact] = float(value)
    return facts


def clean_impact(impact: dict[str, Any]) -> dict[str, Any]:
    """What is stored: the four facts (ints where whole), plus the currency if given."""
    facts = normalise_impact(impact)
    unknown = set(impact) - set(IMPACT_FACTS) - {"currency", "note"}
    if unknown:
        raise ValidationProblem(
            f"impact: unknown field(s) {', '.join(sorted(unknown))}; "
            f"use {', '.join(IMPACT_FACTS)}, currency"
        )
    stored: dict[str, Any] = {
        fact: int(value) if fact != "hours_interrupted" else value for fact, value in facts.items()
    }
    if impact.get("currency"):
        stored["currency"] = str(impact["currency"]).upper()[:3]
    if impact.get("note"):
        stored["note"] = str(impact["note"])[:500]
    return stored


def load_thresholds(settings: Settings) -> Thresholds:
    return _load(settings.incident_grading_path or SHIPPED_GRADING)


@lru_cache(maxsize=8)
def _load(path: Path) -> Thresholds:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValidationProblem(f"grading thresholds {path}: cannot read: {error}") from error
    return parse_thresholds(document, path)


def parse_thresholds(document: Any, path: Path) -> Thresholds:
    if not isinstance(document, dict) or not isinstance(document.get("grades"), dict):
        raise ValidationProblem(f"grading thresholds {path}: needs a 'grades' mapping")
    rules: dict[str, tuple[Rule, ...]] = {}
    for grade, entries in document["grades"].items():
        where = f"grading thresholds {path}: grades.{grade}"
        if grade not in GRADES[:-1]:
            raise ValidationProblem(f"{where}: grade must be I, II or III (IV is the floor)")
        if not isinstance(entries, list) or not entries:
            raise ValidationProblem(f"{where}: a list of rules")
        parsed: list[Rule] = []
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValidationProblem(f"{where}[{index}]: a mapping of fact: minimum")
            minimums: dict[str, float] = {}
            for key, value in entry.items():
                if key == "source":
                    continue
                if key not in IMPACT_FACTS:
                    raise ValidationProblem(
                        f"{where}[{index}]: unknown fact '{key}'; one of {', '.join(IMPACT_FACTS)}"
                    )
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValidationProblem(f"{where}[{index}].{key}: a non-negative number")
                minimums[key] = float(value)
            if not minimums:
                raise ValidationProblem(f"{where}[{index}]: names no fact")
            parsed.append(Rule(minimums=minimums, source=str(entry.get("source", ""))))
        rules[grade] = tuple(parsed)
    return Thresholds(rules=rules, path=path)


def compute_grade(settings: Settings, impact: dict[str, Any]) -> str:
    return load_thresholds(settings).grade(impact)
