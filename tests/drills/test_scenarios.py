"""Every shipped scenario, played in its own sandbox: it must pass as shipped, and the
main controls of the scenarios that have one must be what stops the attack."""

from __future__ import annotations

from pathlib import Path

import pytest

from payguard.db.engine import Database
from payguard.drills import runner, scenarios
from payguard.drills import service as drills
from payguard.drills.controls import CONTROLS
from payguard.settings import Settings

# Scenario -> the controls that, switched off, must make it fail. D2/D3: add yours.
DISABLED_MUST_FAIL: dict[str, tuple[str, ...]] = {
    "phishing_takeover": ("signed_instructions",),
    "instruction_tampering": ("signed_instructions",),
    "credential_stuffing": ("login_throttle",),
    "merchant_payout_leak": ("payout_four_eyes", "risk_rules"),
}

SEED_002_HEADINGS = {
    "zh": [
        "一、指导思想",
        "二、组织机构",
        "三、演练方案",
        "（二）演练内容记录",
        "事件根源",
        "（五）事件调查",
        "五、演练效果评估",
        "六、评分",
        "七、改进事项",
    ],
    "en": [
        "1. Guiding principle",
        "2. Organisation and duties",
        "3. The drill plan",
        "4.2 Record of events",
        "4.4 Root cause and fixes",
        "4.5 Investigation",
        "5. Evaluation",
        "6. Scores",
        "7. Improvement items",
    ],
}


@pytest.mark.parametrize("name", sorted(scenarios.registry()))
def test_scenario_passes_in_its_sandbox(name: str, home_settings: Settings, tmp_path: Path) -> None:
    result = runner.run(name, home_settings, runner.RunOptions(out_dir=tmp_path / "records"))

    assert result["passed"], result["failures"]
    assert result["score"] >= 80, result["score_parts"]
    attacks = [step for step in result["steps"] if step["attack"]]
    assert attacks and all(step["detected"] and step["contained"] for step in attacks)
    assert result["money_lost"] == 0 and result["money_at_risk"] >= 0
    assert result["integrity"]["ok"] and result["integrity"]["acknowledged_payments"] > 0
    # Legitimate customers paid while the attack went on.
    assert result["background"]["payments"] > 0
    assert all(actor.startswith("drill_") for actor in result["actors"])
    # The record: Markdown and PDF in both languages, with the timeline chart.
    folder = tmp_path / "records" / result["run_id"]
    for language in ("zh", "en"):
        markdown = (folder / f"drill-record-{language}.md").read_text("utf-8")
        for heading in SEED_002_HEADINGS[language]:
            assert heading in markdown
        assert f"timeline-{language}.png" in markdown
        assert (folder / f"drill-record-{language}.pdf").read_bytes().startswith(b"%PDF")
        assert (folder / f"timeline-{language}.png").read_bytes().startswith(b"\x89PNG")
    # Stored in the drill history.
    db = Database(home_settings.database_url)
    try:
        with db.read() as session:
            [stored] = drills.list_runs(session, scenario=name)
    finally:
        db.dispose()
    assert stored.id == result["run_id"] and stored.passed and stored.score == result["score"]
    assert stored.attacks == stored.attacks_defended == len(attacks)


@pytest.mark.parametrize(
    ("name", "disabled"), sorted(DISABLED_MUST_FAIL.items()), ids=sorted(DISABLED_MUST_FAIL)
)
def test_scenario_fails_with_its_control_switched_off(
    name: str, disabled: tuple[str, ...], home_settings: Settings
) -> None:
    assert set(disabled) <= set(CONTROLS) and set(disabled) <= set(scenarios.get(name).controls)

    result = runner.run(name, home_settings, runner.RunOptions(disabled=disabled))

    assert not result["passed"]
    assert result["score"] < 100
    assert result["disabled_controls"] == list(disabled)
    undefended = [step for step in result["steps"] if step["attack"] and not step["defended"]]
    assert undefended, result["steps"]
    assert any(disabled[0] in item["en"] for item in result["improvements"])


def test_there_are_at_least_three_controls_tested_off() -> None:
    assert len(DISABLED_MUST_FAIL) >= 3
    assert set(DISABLED_MUST_FAIL) <= set(scenarios.registry())
