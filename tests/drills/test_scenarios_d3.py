"""D3's scenarios (data_scraping, request_flood, insider_abuse, signing_key_compromise):
with the control each one brings switched off, the drill must fail — the control is
what stops the attack. (That they pass as shipped is tests/drills/test_scenarios.py.)"""

from __future__ import annotations

import pytest

from payguard.drills import runner, scenarios
from payguard.drills.controls import CONTROLS
from payguard.settings import Settings

D3 = ("data_scraping", "request_flood", "insider_abuse", "signing_key_compromise")
# Scenario -> its control and the attack step that must go undefended without it.
MUST_FAIL = {
    "data_scraping": ("staff_read_volume", "bulk-export"),
    "request_flood": ("rate_limits", "session-flood"),
    "signing_key_compromise": ("risk_rule_new_network", "key-and-password"),
}


def test_each_d3_scenario_brings_a_control_that_can_be_switched_off() -> None:
    registry = scenarios.registry()
    for name in D3:
        scenario = registry[name]
        assert scenario.controls and set(scenario.controls) <= set(CONTROLS), name
        assert scenario.threat_zh and scenario.root_cause_zh and scenario.fixes_zh, name
        assert len(scenario.fixes_en) == len(scenario.fixes_zh), name
    assert registry["insider_abuse"].controls == ("staff_refusal_watch",)
    assert CONTROLS["rate_limits"].env == {"PAYGUARD_RATE_LIMIT_ENABLED": "false"}


@pytest.mark.parametrize("name", sorted(MUST_FAIL))
def test_the_drill_fails_with_its_control_switched_off(name: str, home_settings: Settings) -> None:
    control, step_key = MUST_FAIL[name]

    result = runner.run(name, home_settings, runner.RunOptions(disabled=(control,)))

    assert not result["passed"] and result["score"] < 100
    assert result["disabled_controls"] == [control]
    [step] = [step for step in result["steps"] if step["key"] == step_key]
    assert step["attack"] and not step["defended"], step
    assert any(control in item["en"] for item in result["improvements"])
    # Switching a control off never breaks the money checks: the ledger stays right.
    assert result["integrity"]["invariants_ok"]
    if name == "signing_key_compromise":
        assert result["money_lost"] > 0  # the copied key paid the new payee
    if name == "data_scraping":
        assert step["breaches"] and not result["incidents"]
