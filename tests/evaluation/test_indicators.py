"""The indicator system file: the shipped defaults, validation errors, and the scoring."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from payguard.errors import ValidationProblem
from payguard.evaluation import indicators, service
from payguard.evaluation.indicators import IndicatorConfig


def _config(
    direction: str, threshold: float, target: float, unit: str = "ratio"
) -> IndicatorConfig:
    return IndicatorConfig(
        name_en="x",
        name_zh="x",
        direction=direction,  # type: ignore[arg-type]
        unit=unit,  # type: ignore[arg-type]
        weight=1,
        threshold=threshold,
        target=target,
    )


def test_the_shipped_system_has_three_groups_whose_weights_add_up() -> None:
    system = indicators.validate_file(indicators.shipped_path(), source="shipped")
    assert list(system.config.groups) == ["security", "user_experience", "risk_control"]
    assert sum(group.weight for group in system.config.groups.values()) == pytest.approx(1)
    for group in system.config.groups.values():
        assert sum(item.weight for item in group.indicators.values()) == pytest.approx(1)
        # Every default says where its numbers come from.
        assert all(item.source for item in group.indicators.values())
    assert {spec.id for spec in system.indicators} == set(indicators.KNOWN_INDICATORS)


def test_scores_run_from_the_threshold_to_the_target() -> None:
    higher = _config("higher", threshold=0.8, target=0.95)
    assert indicators.score(0.95, higher, 60) == 100
    assert indicators.score(1.0, higher, 60) == 100
    assert indicators.score(0.8, higher, 60) == 60
    assert indicators.score(0.875, higher, 60) == pytest.approx(80)
    assert indicators.score(0.4, higher, 60) == pytest.approx(30)  # half the threshold
    assert indicators.passes(0.8, higher) and not indicators.passes(0.79, higher)

    lower = _config("lower", threshold=0.05, target=0.01)
    assert indicators.score(0.01, lower, 60) == 100
    assert indicators.score(0.03, lower, 60) == pytest.approx(80)
    assert indicators.score(0.25, lower, 60) == pytest.approx(12)  # five times the line
    assert indicators.passes(0.05, lower) and not indicators.passes(0.051, lower)

    zero_tolerance = _config("lower", threshold=0, target=0, unit="count")
    assert indicators.score(0, zero_tolerance, 60) == 100
    assert indicators.score(1, zero_tolerance, 60) == 0
    assert not indicators.passes(1, zero_tolerance)


def test_weighted_mean_leaves_out_missing_values_and_reports_coverage() -> None:
    mean, coverage = indicators.weighted_mean([(0.3, None), (0.2, 84.0), (0.2, 3.0), (0.3, 0.0)])
    assert mean == pytest.approx((0.2 * 84 + 0.2 * 3) / 0.7, abs=0.01)
    assert coverage == pytest.approx(0.7)
    assert indicators.weighted_mean([(0.5, None), (0.5, None)]) == (None, 0.0)


def _write(tmp_path: Path, document: object, name: str = "indicators.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def _shipped() -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load(indicators.shipped_path().read_text("utf-8"))
    return loaded


def _problem(path: Path) -> str:
    with pytest.raises(ValidationProblem) as caught:
        indicators.validate_file(path)
    return caught.value.detail


def test_weights_that_do_not_add_up_are_named(tmp_path: Path) -> None:
    document = _shipped()
    groups = document["groups"]
    assert isinstance(groups, dict)
    groups["security"]["indicators"]["open_vulnerabilities"]["weight"] = 0.1
    groups["risk_control"]["weight"] = 0.5
    detail = _problem(_write(tmp_path, document))
    assert str(tmp_path / "indicators.yaml") in detail
    assert "groups.security.indicators: the weights add up to 0.9, they must add up to 1" in detail
    assert "groups: the group weights add up to 1.15, they must add up to 1" in detail


def test_field_problems_name_their_place(tmp_path: Path) -> None:
    document = _shipped()
    groups = document["groups"]
    assert isinstance(groups, dict)
    security = groups["security"]["indicators"]
    del security["drill_defence_rate"]["direction"]
    security["payment_failure_rate"]["threshold"] = 5  # a ratio above 1
    groups["risk_control"]["indicators"]["detection_rate"]["target"] = 0.5  # below threshold
    detail = _problem(_write(tmp_path, document))
    assert "groups.security.indicators.drill_defence_rate.direction: Field required" in detail
    assert "groups.security.indicators.payment_failure_rate: a ratio's threshold" in detail
    assert (
        "groups.risk_control.indicators.detection_rate: higher is better: the target must be "
        "at or above the threshold"
    ) in detail


def test_unknown_indicators_and_parameters_are_refused(tmp_path: Path) -> None:
    document = _shipped()
    groups = document["groups"]
    assert isinstance(groups, dict)
    security = groups["security"]["indicators"]
    security["uptime"] = dict(security.pop("open_vulnerabilities"))
    security["data_leak_events"]["params"] = {"categories": "03", "colour": "red"}
    detail = _problem(_write(tmp_path, document))
    assert "groups.security.indicators.uptime: unknown indicator" in detail
    assert "data_leak_events.params: unknown parameter(s) colour" in detail
    assert "data_leak_events.params.categories: a list of incident category codes" in detail


def test_broken_yaml_says_where(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("groups:\n  security:\n    weight: [0.4\n", encoding="utf-8")
    detail = _problem(path)
    assert "not valid YAML at line" in detail
    assert "cannot read" in _problem(tmp_path / "missing.yaml")
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n", encoding="utf-8")
    assert "expected a mapping" in _problem(top)


def test_periods_are_checked() -> None:
    assert service.parse_period("30d").days == 30
    assert service.parse_period("12h").total_seconds() == 12 * 3600
    assert service.parse_period("2w").days == 14
    for bad in ("30", "d30", "0d", "30y", ""):
        with pytest.raises(ValidationProblem):
            service.parse_period(bad)
