"""D2's scenarios with their own new control switched off: the attack must get through.

tests/drills/test_scenarios.py plays every scenario as shipped (it must pass); here the
platform controls added with these scenarios are shown to be what stops them:
``tamper_step_up`` (a tampered instruction makes the customer step up) for the malware
auto-debit, ``new_device_payee_review`` (rule new-device-new-payee-large) for the SIM
swap.
"""

from __future__ import annotations

import pytest

from payguard.drills import runner, scenarios
from payguard.drills.controls import CONTROLS
from payguard.settings import Settings

D2_DISABLED_MUST_FAIL: dict[str, tuple[str, str]] = {
    # scenario: (control switched off, the attack step that then loses money)
    "malware_autodebit": ("tamper_step_up", "auto-debit"),
    "sim_swap_otp": ("new_device_payee_review", "take-over"),
}


@pytest.mark.parametrize(
    ("name", "control", "step_key"),
    [(name, *value) for name, value in sorted(D2_DISABLED_MUST_FAIL.items())],
    ids=sorted(D2_DISABLED_MUST_FAIL),
)
def test_the_new_control_is_what_stops_the_attack(
    name: str, control: str, step_key: str, home_settings: Settings
) -> None:
    scenario = scenarios.get(name)  # imports the module, which registers its control
    assert control in CONTROLS and control in scenario.controls

    result = runner.run(name, home_settings, runner.RunOptions(disabled=(control,)))

    assert not result["passed"]
    assert result["disabled_controls"] == [control]
    [step] = [item for item in result["steps"] if item["key"] == step_key]
    assert step["attack"] and not step["defended"]
    assert step["money_lost"] > 0
    assert result["money_lost"] >= step["money_lost"]
    assert any(control in item["en"] for item in result["improvements"])
    # Even when money moved, the ledger itself stayed right.
    assert result["integrity"]["ok"], result["integrity"]


def test_the_d2_scenarios_are_registered() -> None:
    registry = scenarios.registry()
    for name in ("sim_swap_otp", "malware_autodebit", "mule_accounts", "aml_structuring"):
        assert name in registry
        assert set(registry[name].controls) <= set(CONTROLS)
