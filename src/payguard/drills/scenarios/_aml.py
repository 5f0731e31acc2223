"""The compliance officer's AML report during a drill (shared by the AML-minded scenarios).

The officer is a drill staff member with the compliance role; the report is the
platform's own, read through its API (``GET /v1/aml/report``, docs/aml.md) exactly as the
officer would, over the Beijing-time days the drill ran. Only cases whose subject is a
drill actor's wallet are kept: a drill against a running instance never reports on real
customers.
"""

from __future__ import annotations

from typing import Any

from payguard import clock
from payguard.drills.context import DrillContext
from payguard.risk.aml import REPORTING_TIMEZONE


def aml_cases(ctx: DrillContext, names: list[str]) -> list[dict[str, Any]]:
    """Large-value reports and suspicious cases of the report on the named actors."""
    officer = ctx.staff("compliance", "compliance")
    today = clock.now().astimezone(REPORTING_TIMEZONE).date()
    started = ctx.started_at.astimezone(REPORTING_TIMEZONE).date()
    reply = ctx.http().get(
        "/v1/aml/report",
        params={"from": min(started, today).isoformat(), "to": today.isoformat()},
        headers={"Authorization": f"Bearer {officer.client.token}"},
    )
    reply.raise_for_status()
    report = reply.json()
    wallets = {ctx.actor(name).wallet_id for name in names}
    return [
        case
        for case in [*report.get("large_value", []), *report.get("suspicious", [])]
        if case.get("subject_account") in wallets
    ]


def note_aml_report(ctx: DrillContext, names: list[str]) -> list[dict[str, Any]]:
    """Pull the report and put what it says about the named actors in the timeline."""
    cases = aml_cases(ctx, names)
    found = sorted({f"{case['typology']} ({case['direction']})" for case in cases})
    ctx.note(
        f"Compliance pulled the AML report (GET /v1/aml/report): {len(cases)} case(s) on the "
        f"drill accounts{': ' + ', '.join(found) if found else ''}.",
        f"合规人员调取反洗钱报告（GET /v1/aml/report）：涉及演练账户的案例 {len(cases)} 个"
        f"{'：' + '、'.join(found) if found else ''}。",
    )
    return cases
