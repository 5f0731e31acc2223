"""The score formula and the pass rule (docs/drills.md), on hand-made step results."""

from __future__ import annotations

from datetime import UTC, datetime

from payguard.drills import scoring
from payguard.drills.scoring import Integrity, StepScore

START = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
SOUND = Integrity(True, [], 5, [], [])


def step(key: str = "s", **values: object) -> StepScore:
    defaults: dict[str, object] = {
        "title_en": key,
        "title_zh": key,
        "attack": True,
        "required": True,
        "started_at": START,
        "money_at_risk": 1000,
        "money_lost": 0,
        "detected": True,
        "detected_by": "refused",
        "time_to_detect_s": 1.0,
        "detect_within_s": 5.0,
        "contained": True,
        "contained_by": "refused",
        "time_to_contain_s": 2.0,
        "contain_within_s": 5.0,
    }
    defaults.update(values)
    return StepScore(key=key, **defaults)  # type: ignore[arg-type]


def test_a_defended_drill_scores_100_and_passes() -> None:
    graded = scoring.score([step("a"), step("b")], SOUND)
    assert graded.score == 100 and graded.passed and graded.failures == []


def test_an_undetected_step_costs_detection_timeliness_and_fails() -> None:
    missed = step(
        "b",
        detected=False,
        detected_by="",
        time_to_detect_s=None,
        contained=False,
        time_to_contain_s=None,
        money_lost=0,
    )
    graded = scoring.score([step("a"), missed], SOUND)
    # 40/2 + 15/2 + 20/2 + 15 + 10
    assert graded.score == round(20 + 7.5 + 10 + 15 + 10)
    assert not graded.passed
    assert "b: not detected" in graded.failures and "b: not contained" in graded.failures


def test_money_lost_is_scored_against_money_at_risk() -> None:
    drained = step("a", money_at_risk=1000, money_lost=250, contained=False)
    graded = scoring.score([drained], SOUND)
    assert graded.parts["money"] == 15 * 0.75
    assert graded.parts["containment"] == 0
    assert "money lost: 250" in graded.failures and not graded.passed


def test_slow_detection_fails_the_drill_but_keeps_most_points() -> None:
    slow = step("a", time_to_detect_s=9.0, detect_within_s=5.0)
    graded = scoring.score([slow], SOUND)
    assert graded.score == 85 and not graded.passed
    assert graded.failures == ["a: detected after 9.0 s (limit 5 s)"]


def test_broken_money_checks_fail_and_cost_the_integrity_points() -> None:
    broken = Integrity(False, ["balance drift on acc_1"], 3, ["pay_1"], ["pay_2"])
    graded = scoring.score([step("a")], broken)
    assert graded.score == 90 and not graded.passed
    assert any("ledger invariants broken" in failure for failure in graded.failures)
    assert any("pay_1" in failure for failure in graded.failures)
    assert any("pay_2" in failure for failure in graded.failures)


def test_an_optional_step_counts_in_the_score_but_not_for_pass() -> None:
    optional = step("b", required=False, detected=False, time_to_detect_s=None)
    graded = scoring.score([step("a"), optional], SOUND)
    assert graded.passed and graded.score < 100


def test_preparation_steps_are_not_scored_and_a_drill_needs_an_attack() -> None:
    preparation = step("login", attack=False, detected=False, contained=False)
    assert scoring.score([preparation, step("a")], SOUND).score == 100
    graded = scoring.score([preparation], SOUND)
    assert not graded.passed and graded.parts["detection"] == 0


def test_a_breach_without_money_counts_as_loss_when_nothing_was_at_risk() -> None:
    breach = step("a", money_at_risk=0, money_lost=0, contained=False)
    assert scoring.score([breach], SOUND).parts["money"] == 15
    breach_with_loss = step("a", money_at_risk=0, money_lost=10, contained=False)
    assert scoring.score([breach_with_loss], SOUND).parts["money"] == 0


def test_worst_time_is_the_slowest_known_time() -> None:
    assert scoring.worst_time([1.0, None, 3.5]) == 3.5
    assert scoring.worst_time([None]) is None
