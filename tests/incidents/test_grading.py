"""Grades from impact facts against each documented threshold of the shipped YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from payguard.errors import ValidationProblem
from payguard.incidents import grading
from payguard.settings import Settings

SHIPPED = grading._load(grading.SHIPPED_GRADING)


@pytest.mark.parametrize(
    ("impact", "grade"),
    [
        ({}, "IV"),
        # PBoC 2025 No. 4: 2+ regions for 3 h, or one region for 6 h.
        ({"hours_interrupted": 3, "regions_affected": 2}, "I"),
        ({"hours_interrupted": 2.99, "regions_affected": 2}, "II"),
        ({"hours_interrupted": 6, "regions_affected": 1}, "I"),
        ({"hours_interrupted": 5.99, "regions_affected": 1}, "II"),
        ({"hours_interrupted": 6, "regions_affected": 0}, "IV"),
        ({"people_affected": 100_000_000}, "I"),
        ({"people_affected": 99_999_999}, "II"),
        ({"money_at_risk": 10_000_000_000}, "I"),
        ({"money_at_risk": 9_999_999_999}, "II"),
        # II
        ({"hours_interrupted": 2, "regions_affected": 1}, "II"),
        ({"hours_interrupted": 1.99, "regions_affected": 1}, "III"),
        ({"people_affected": 10_000_000}, "II"),
        ({"people_affected": 9_999_999}, "III"),
        ({"money_at_risk": 5_000_000_000}, "II"),
        ({"money_at_risk": 4_999_999_999}, "III"),
        # III
        ({"hours_interrupted": 0.5, "regions_affected": 1}, "III"),
        ({"hours_interrupted": 0.49, "regions_affected": 1}, "IV"),
        ({"people_affected": 1_000_000}, "III"),
        ({"people_affected": 999_999}, "IV"),
        ({"money_at_risk": 500_000_000}, "III"),
        ({"money_at_risk": 499_999_999}, "IV"),
        # The most severe fact decides.
        ({"people_affected": 5, "money_at_risk": 10_000_000_000}, "I"),
    ],
)
def test_shipped_thresholds(impact: dict[str, float], grade: str) -> None:
    assert SHIPPED.grade(impact) == grade


def test_reason_names_the_rule() -> None:
    reason = SHIPPED.reason({"hours_interrupted": 7, "regions_affected": 1})
    assert reason.startswith("hours_interrupted >= 6, regions_affected >= 1")
    assert "PBoC 2025 No. 4" in reason


def test_bad_impact_is_refused() -> None:
    with pytest.raises(ValidationProblem, match="must not be negative"):
        SHIPPED.grade({"people_affected": -1})
    with pytest.raises(ValidationProblem, match="a number"):
        SHIPPED.grade({"money_at_risk": "lots"})
    with pytest.raises(ValidationProblem, match="unknown field"):
        grading.clean_impact({"victims": 3})


def test_thresholds_come_from_settings(tmp_path: Path) -> None:
    custom = tmp_path / "grading.yaml"
    custom.write_text(
        "grades:\n  II:\n    - {money_at_risk: 1000}\n  III:\n    - {people_affected: 2}\n",
        encoding="utf-8",
    )
    settings = Settings(env="test", incident_grading_path=custom)
    assert grading.compute_grade(settings, {"money_at_risk": 1000}) == "II"
    assert grading.compute_grade(settings, {"people_affected": 2}) == "III"
    assert grading.compute_grade(settings, {"people_affected": 1}) == "IV"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("grades: []", "needs a 'grades' mapping"),
        ("grades:\n  IV:\n    - {people_affected: 1}\n", "IV is the floor"),
        ("grades:\n  I:\n    - {victims: 1}\n", "unknown fact 'victims'"),
        ("grades:\n  I:\n    - {people_affected: -3}\n", "non-negative number"),
        ("grades:\n  I:\n    - {source: x}\n", "names no fact"),
    ],
)
def test_bad_threshold_files_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationProblem, match=problem):
        grading._load(path)


def test_categories_are_the_ten_classes() -> None:
    assert len(grading.CATEGORIES) == 10
    assert grading.category_name("03", "zh-CN") == "数据安全事件"
    with pytest.raises(ValidationProblem, match="category: one of"):
        grading.check_category("99")
