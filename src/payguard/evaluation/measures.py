"""What each indicator measures, read from the platform's own records over [start, end).

Every function returns a ``Measurement``: the value (None = no data), the counts it was
computed from, and a detail mapping of ids-free facts for the report. Everything here
only reads. Drills come through drills.service.list_runs and incidents through
incidents.service.metrics; the payments, identity and risk records, and the improvement
items among the incident tasks, through those domains' read functions (payments.reports,
identity.service, risk.service, incidents.service), never their tables.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from payguard.drills import service as drills
from payguard.identity import service as identity
from payguard.incidents import service as incidents
from payguard.incidents.schemas import IncidentMetrics
from payguard.payments import reports as payment_reports
from payguard.risk import service as risk


@dataclass
class Measurement:
    value: float | None
    numerator: float | None = None
    denominator: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


# Risk actions that put a control in front of a payment.
INTERVENED = frozenset({"challenge", "review", "block"})
FLAGGED = frozenset({"review", "block"})
# Failures a control chose (an analyst's rejection) are not counted as payment failures.
CHOSEN_FAILURES = frozenset({"review_rejected"})
STEP_UP_PASSED = "step-up passed"


@dataclass
class _PaymentFacts:
    """One payment of the window, with what its lifecycle and decision say about it."""

    id: str
    kind: str
    status: str
    failure_code: str | None
    action: str | None
    label: str | None = None
    stepped_up: bool = False
    held_for_review: bool = False
    received_at: datetime | None = None
    confirmed_at: datetime | None = None

    @property
    def intervened(self) -> bool:
        return self.stepped_up or self.action in INTERVENED

    @property
    def flagged(self) -> bool:
        return self.action in FLAGGED


class Sources:
    """The window's payments, read once and shared by the indicators that need them."""

    def __init__(self, session: Session, window: Window) -> None:
        self.session = session
        self.window = window
        self._payments: list[_PaymentFacts] | None = None
        self.incident_metrics: IncidentMetrics | None = None

    def payments(self) -> list[_PaymentFacts]:
        if self._payments is None:
            self._payments = self._read_payments()
        return self._payments

    def _read_payments(self) -> list[_PaymentFacts]:
        start, end = self.window.start, self.window.end
        facts: dict[str, _PaymentFacts] = {}
        for row in payment_reports.payments_created_between(self.session, start, end):
            decision = row.decision if isinstance(row.decision, dict) else {}
            facts[row.id] = _PaymentFacts(
                row.id, row.kind, row.status, row.failure_code, decision.get("action")
            )
        if not facts:
            return []
        events = payment_reports.lifecycle_of_payments_created_between(self.session, start, end)
        for payment_id, status, detail, at in events:
            item = facts.get(payment_id)
            if item is None:
                continue
            if status == "received" and item.received_at is None:
                item.received_at = at
            elif status == "confirmed":
                item.confirmed_at = at
            elif status == "held_for_review":
                item.held_for_review = True
            elif status == "verified" and (detail or "").startswith(STEP_UP_PASSED):
                item.stepped_up = True
        labels = risk.labels_for(self.session, list(facts))
        for payment_id, label in labels.items():
            if payment_id in facts:
                facts[payment_id].label = label
        return list(facts.values())


def _ratio(numerator: int, denominator: int, **detail: Any) -> Measurement:
    if denominator == 0:
        return Measurement(None, numerator, denominator, detail)
    return Measurement(numerator / denominator, numerator, denominator, detail)


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``share`` of them at or
    below it (no interpolation, so it is always a value that was measured)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


# ------------------------------------------------------------------------- security


def drill_defence_rate(sources: Sources, params: dict[str, Any]) -> Measurement:
    """Attack steps defended over attack steps played, over the drills run in the window.

    A drill played with a control switched off on purpose (to prove the drill fails
    without it) says nothing about the platform as configured: it is left out."""
    runs = drills.list_runs(sources.session, since=sources.window.start, until=sources.window.end)
    counted = [run for run in runs if not run.disabled_controls]
    attacks = sum(run.attacks for run in counted)
    defended = sum(run.attacks_defended for run in counted)
    return _ratio(
        defended,
        attacks,
        drills=len(counted),
        drills_with_controls_off=len(runs) - len(counted),
        scenarios=sorted({run.scenario for run in counted}),
        scenarios_failed=sorted({run.scenario for run in counted if not run.passed}),
        money_lost=sum(run.money_lost for run in counted),
    )


def open_vulnerabilities(sources: Sources, params: dict[str, Any]) -> Measurement:
    """Improvement items open at the end of the window (opened before it, not yet done)."""
    end = sources.window.end
    rows = incidents.improvement_items_created_before(sources.session, end)
    still_open = [
        row
        for row in rows
        if row.status == "open" or (row.status == "done" and row.done_at and row.done_at >= end)
    ]
    overdue = sum(1 for row in still_open if row.due_at is not None and row.due_at < end)
    return Measurement(float(len(still_open)), detail={"overdue": overdue})


def payment_failure_rate(sources: Sources, params: dict[str, Any]) -> Measurement:
    """Failed payments over payments that went ahead and finished (confirmed or failed)."""
    finished = [
        item
        for item in sources.payments()
        if item.status == "confirmed"
        or (item.status == "failed" and item.failure_code not in CHOSEN_FAILURES)
    ]
    failed = [item for item in finished if item.status == "failed"]
    codes: dict[str, int] = defaultdict(int)
    for item in failed:
        codes[item.failure_code or "unknown"] += 1
    return _ratio(len(failed), len(finished), failure_codes=dict(sorted(codes.items())))


def data_leak_events(sources: Sources, params: dict[str, Any]) -> Measurement:
    """Real incidents (not drills) of the data-leak categories reported in the window."""
    categories = tuple(str(code) for code in params.get("categories", ["03"]))
    found = _incident_metrics(sources)
    leaks = {
        code: count for code, count in found.by_category.items() if code.startswith(categories)
    }
    return Measurement(
        float(sum(leaks.values())),
        detail={"categories": list(categories), "by_category": leaks, "incidents": found.count},
    )


def _incident_metrics(sources: Sources) -> IncidentMetrics:
    """incidents.service.metrics over the window, real incidents only; read once."""
    if sources.incident_metrics is None:
        sources.incident_metrics = incidents.metrics(
            sources.session, sources.window.start, sources.window.end, drills=False
        )
    return sources.incident_metrics


# ------------------------------------------------------------------ user experience


def payment_latency_p95(sources: Sources, params: dict[str, Any]) -> Measurement:
    """p95 of received -> confirmed (ms) over confirmed payments never held for review."""
    latencies = [
        (item.confirmed_at - item.received_at).total_seconds() * 1000
        for item in sources.payments()
        if item.status == "confirmed"
        and not item.held_for_review
        and item.received_at is not None
        and item.confirmed_at is not None
    ]
    risk_ms = risk.pipeline_decision_times_ms(
        sources.session, sources.window.start, sources.window.end
    )
    detail: dict[str, Any] = {
        "payments": len(latencies),
        "risk_decisions": len(risk_ms),
        "risk_decision_p95_ms": round(percentile(risk_ms, 0.95), 3) if risk_ms else None,
    }
    if not latencies:
        return Measurement(None, detail=detail)
    detail["p50_ms"] = round(percentile(latencies, 0.50), 3)
    detail["max_ms"] = round(max(latencies), 3)
    return Measurement(round(percentile(latencies, 0.95), 3), detail=detail)


def legit_step_up_rate(sources: Sources, params: dict[str, Any]) -> Measurement:
    """Payments not labelled fraud (customers' kinds) that needed a step-up."""
    legit = [
        item
        for item in sources.payments()
        if item.kind != "refund" and item.label != "fraud" and item.status != "rejected"
    ]
    stepped = [item for item in legit if item.stepped_up]
    # Challenges nobody completed left no payment; counted for the report, not the ratio
    # (an attacker's abandoned challenge is not a legitimate user's friction).
    abandoned = identity.step_up_challenges_not_used(
        sources.session, sources.window.start, sources.window.end
    )
    return _ratio(len(stepped), len(legit), challenges_not_completed=abandoned)


def login_success_rate(sources: Sources, params: dict[str, Any]) -> Measurement:
    """Customers' login attempts on existing accounts that succeeded."""
    start, end = sources.window.start, sources.window.end
    rows = identity.customer_login_outcomes(sources.session, start, end)
    total = sum(int(row[2]) for row in rows)
    succeeded = sum(int(row[2]) for row in rows if row[0])
    reasons = {str(row[1]): int(row[2]) for row in rows if not row[0]}
    unknown = identity.unknown_customer_logins(sources.session, start, end)
    return _ratio(
        succeeded,
        total,
        failure_reasons=dict(sorted(reasons.items())),
        unknown_account_attempts=unknown,
    )


# --------------------------------------------------------------------- risk control


def detection_rate(sources: Sources, params: dict[str, Any]) -> Measurement:
    """Fraud-labelled payments a control stood in front of (challenge, review, block)."""
    fraud = [item for item in sources.payments() if item.label == "fraud"]
    caught = [item for item in fraud if item.intervened]
    by_control = {
        "blocked": sum(1 for item in caught if item.action == "block"),
        "reviewed": sum(1 for item in caught if item.action == "review"),
        "challenged": sum(1 for item in caught if item.action not in FLAGGED),
    }
    return _ratio(len(caught), len(fraud), missed=len(fraud) - len(caught), **by_control)


def false_positive_rate(sources: Sources, params: dict[str, Any]) -> Measurement:
    """Legitimate payments held for review or blocked, over legitimate payments.

    Legitimate: labelled so, or unlabelled and let through (nobody flagged or reported it).
    An unlabelled payment that was held or blocked is undetermined until an analyst labels
    it; it is counted in the detail, not in the ratio."""
    legit: list[_PaymentFacts] = []
    undetermined = 0
    for item in sources.payments():
        if item.kind == "refund" or item.label == "fraud":
            continue
        if item.label == "legitimate" or not item.flagged:
            legit.append(item)
        else:
            undetermined += 1
    flagged = [item for item in legit if item.flagged]
    return _ratio(
        len(flagged),
        len(legit),
        labelled_legitimate=sum(1 for item in legit if item.label == "legitimate"),
        undetermined=undetermined,
    )


def mean_time_to_dispose(sources: Sources, params: dict[str, Any]) -> Measurement:
    """Mean minutes from opening to disposal, alerts and incidents together: alerts closed
    in the window (opened to closed), and real incidents reported in the window that were
    contained (detected to contained, incidents.service.metrics)."""
    start, end = sources.window.start, sources.window.end
    alert_minutes = [
        (closed - created).total_seconds() / 60
        for created, closed in risk.alerts_closed_between(sources.session, start, end)
    ]
    # Incidents reported in the window and contained, from detection to containment.
    incident_minutes = [
        times.time_to_contain_s / 60
        for times in _incident_metrics(sources).incidents
        if times.time_to_contain_s is not None
    ]
    together = alert_minutes + incident_minutes
    detail: dict[str, Any] = {
        "alerts": len(alert_minutes),
        "incidents": len(incident_minutes),
        "alerts_mean_minutes": round(sum(alert_minutes) / len(alert_minutes), 2)
        if alert_minutes
        else None,
        "incidents_mean_minutes": round(sum(incident_minutes) / len(incident_minutes), 2)
        if incident_minutes
        else None,
    }
    if not together:
        return Measurement(None, detail=detail)
    total = sum(together)
    return Measurement(round(total / len(together), 3), round(total, 3), len(together), detail)


MEASURES: dict[str, Callable[[Sources, dict[str, Any]], Measurement]] = {
    "drill_defence_rate": drill_defence_rate,
    "open_vulnerabilities": open_vulnerabilities,
    "payment_failure_rate": payment_failure_rate,
    "data_leak_events": data_leak_events,
    "payment_latency_p95": payment_latency_p95,
    "legit_step_up_rate": legit_step_up_rate,
    "login_success_rate": login_success_rate,
    "detection_rate": detection_rate,
    "false_positive_rate": false_positive_rate,
    "mean_time_to_dispose": mean_time_to_dispose,
}
