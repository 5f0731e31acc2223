"""Every template renders in both languages, and a missing value is an error."""

from __future__ import annotations

import re

import pytest

from payguard.errors import ValidationProblem
from payguard.notify import templates

REQUIRED = {
    "incident_role_assigned",
    "incident_status_changed",
    "account_frozen",
    "new_device",
    "payment_blocked",
    "regulator_report",
    "channel_suspended",
    "password_reset_required",
}
CONTEXT = {
    "incident_id": "inc_0193",
    "title": "Abnormal merchant payouts",
    "grade": "II",
    "status": "contained",
    "from_status": "confirmed",
    "role": "commander",
    "category": "02",
    "scope": "withdrawals",
    "reason": "leaked password",
    "account_id": "acc_1",
    "device_name": "Pixel 9",
    "payment_id": "pay_1",
    "amount": 123456,
    "currency": "CNY",
    "detected_at": "2026-12-01 09:15:00 +0800",
    "first_evidence_at": None,
    "contained_at": "2026-12-01 09:20:00 +0800",
    "recovered_at": None,
    "report_due_at": "2026-12-01 10:15:00 +0800",
    "deadline_minutes": 60,
    "overdue": False,
    "measures": ["09:20 payouts suspended"],
    "trend": "contained",
    "summary": None,
}
CJK = re.compile(r"[\u4e00-\u9fff]")


def test_the_contract_templates_exist_in_both_languages() -> None:
    assert set(templates.names()) >= REQUIRED


@pytest.mark.parametrize("language", ["zh-CN", "en"])
@pytest.mark.parametrize("name", sorted(REQUIRED | {"notify_test"}))
def test_template_renders(name: str, language: str) -> None:
    rendered = templates.render(name, language, CONTEXT)
    assert rendered.subject and "\n" not in rendered.subject
    assert rendered.body.strip()
    assert "{{" not in rendered.body and "{%" not in rendered.body
    assert "\n\n\n" not in rendered.body  # skipped optional parts leave no holes
    assert bool(CJK.search(rendered.subject + rendered.body)) == (language == "zh-CN")


def test_filters_translate_roles_statuses_and_money() -> None:
    zh = templates.render("incident_role_assigned", "zh-CN", CONTEXT)
    assert "应急指挥" in zh.subject and "已控制" in zh.body and "重大" in zh.body
    en = templates.render("payment_blocked", "en", CONTEXT)
    assert "1,234.56 CNY" in en.body
    status = templates.render("incident_status_changed", "en", CONTEXT)
    assert "from confirmed to contained" in status.body


def test_missing_value_and_unknown_template_are_clear_errors() -> None:
    with pytest.raises(ValidationProblem, match="needs a value"):
        templates.render("incident_role_assigned", "en", {"incident_id": "inc_1"})
    with pytest.raises(ValidationProblem, match="no template 'nope'"):
        templates.render("nope", "en", {})
    with pytest.raises(ValidationProblem, match="no template"):
        templates.render("../en/new_device", "en", {})
    with pytest.raises(ValidationProblem, match="language"):
        templates.render("new_device", "fr", {})
