"""What the platform did during a drill, read from its own records.

Detections and containment are never taken from the attacker's word alone: besides
the problem replies the attacker got, the observer reads the platform's risk alerts,
its outbox events (security, approvals, account freezes, controls), the incidents it
opened for the drill run and their playbook steps, and checks the money: the ledger's
invariants, every acknowledged payment, and no payment debited twice.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

from sqlalchemy.orm import Session

from payguard import clock
from payguard.db.engine import Database
from payguard.drills.context import DrillContext, StepRecord
from payguard.drills.scenario import Signal
from payguard.events import service as events
from payguard.ledger import service as ledger
from payguard.payments import service as payments
from payguard.risk import service as risk

# Statuses of an attacker's payment whose money has left (or is leaving) the victim.
LOST_STATUSES = frozenset({"confirmed", "posted"})
HELD_STATUSES = frozenset({"held_for_review"})
# Events worth a line in the drill's timeline.
TIMELINE_PREFIXES = (
    "security.",
    "risk.alert_opened",
    "incident.",
    "playbook.",
    "controls.",
    "notify.",
    "approval.",
    "ledger.account_status_changed",
)


@dataclass(frozen=True)
class Observation:
    at: datetime
    kind: str  # refused | rejected | held | alert | event | incident | playbook | frozen
    detail: str
    ref: str = ""


@dataclass
class IncidentSeen:
    id: str
    title: str
    grade: str
    status: str
    reported_at: datetime
    contained_at: datetime | None
    playbook_steps: list[tuple[datetime, str, str]] = field(default_factory=list)


@dataclass
class Records:
    """The platform's records since the drill started."""

    alerts: list[tuple[datetime, str, str, str | None, str | None, list[str]]]
    events: list[tuple[datetime, str, dict[str, Any]]]
    incidents: list[IncidentSeen]
    payment_status: dict[str, str]


@dataclass
class MoneyChecks:
    invariants_ok: bool
    invariant_problems: list[str]
    acknowledged: int
    acknowledged_lost: list[str]
    duplicate_debits: list[str]

    @property
    def ok(self) -> bool:
        return self.invariants_ok and not self.acknowledged_lost and not self.duplicate_debits


def _optional(module: str) -> ModuleType | None:
    """Another domain's module built in parallel (incidents): used once it exists."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _incidents(session: Session, run_id: str) -> list[IncidentSeen]:
    service = _optional("payguard.incidents.service")
    finder = getattr(service, "incidents_for_drill", None) if service else None
    if finder is None:
        return []
    seen = []
    for found in finder(session, run_id):
        seen.append(
            IncidentSeen(
                id=str(found.id),
                title=str(found.title),
                grade=str(getattr(found, "grade", "")),
                status=str(found.status),
                reported_at=clock.as_utc(found.reported_at),
                contained_at=clock.as_utc(found.contained_at) if found.contained_at else None,
                playbook_steps=_playbook_steps(session, str(found.id)),
            )
        )
    return seen


def _playbook_steps(session: Session, incident_id: str) -> list[tuple[datetime, str, str]]:
    """(finished at, "playbook/action", status) of the playbook steps run on the incident."""
    module = _optional("payguard.incidents.playbooks")
    if module is None or not hasattr(module, "runs_of"):
        return []
    steps: list[tuple[datetime, str, str]] = []
    for run in module.runs_of(session, incident_id):
        for item in module.run_out(session, run).steps:
            at = item.finished_at or item.started_at
            if at is not None:
                steps.append((clock.as_utc(at), f"{run.playbook}/{item.action}", str(item.status)))
    return sorted(steps)


class Observer:
    def __init__(self, db: Database, context: DrillContext) -> None:
        self.db = db
        self.context = context

    # ------------------------------------------------------------ reading

    def records(self) -> Records:
        since = self.context.started_at - timedelta(seconds=1)
        with self.db.read() as session:
            alerts = self._alerts(session, since)
            found_events = [
                (clock.as_utc(item.created_at), item.topic, dict(item.payload))
                for item in events.recent(session, None, limit=5000)
                if clock.as_utc(item.created_at) >= since
            ]
            found_events.reverse()
            incidents = _incidents(session, self.context.run_id)
            attack_ids = [
                payment.payment_id for step in self.context.steps for payment in step.payments
            ]
            statuses = payments.payment_statuses(session, attack_ids)
        return Records(alerts, found_events, incidents, statuses)

    def _alerts(
        self, session: Session, since: datetime
    ) -> list[tuple[datetime, str, str, str | None, str | None, list[str]]]:
        found = []
        cursor = None
        while True:
            page, cursor = risk.list_alerts(session, limit=200, cursor=cursor)
            for item in page:
                at = clock.as_utc(item.created_at)
                if at >= since:
                    found.append(
                        (
                            at,
                            item.id,
                            item.kind,
                            item.customer_id,
                            item.account_id,
                            list(item.reason_codes),
                        )
                    )
            oldest = clock.as_utc(page[-1].created_at) if page else since
            if cursor is None or oldest < since:
                break
        found.sort()
        return found

    # ------------------------------------------------------------ matching

    def _actor_ids(self, step: StepRecord) -> set[str]:
        names = step.actors or tuple(self.context.actors)
        ids: set[str] = set()
        for name in names:
            actor = self.context.actors.get(name)
            if actor is not None:
                ids.update({actor.customer_id, actor.wallet_id})
        for merchant in self.context.merchants.values():
            owner = merchant.get("owner_customer_id")
            if owner in ids or not step.actors:
                ids.add(str(merchant["account_id"]))
        return ids

    def resolve(self, step: StepRecord, signal: Signal, records: Records) -> list[Observation]:
        """Every observation of ``signal`` for ``step``, earliest first."""
        start = step.started_at - timedelta(milliseconds=50)
        found: list[Observation] = []
        if signal.kind == "refused":
            found = [
                Observation(refusal.at, "refused", f"{refusal.status} {refusal.code}")
                for refusal in step.refusals
                if not signal.codes or refusal.code in signal.codes
            ]
        elif signal.kind in ("rejected", "held"):
            wanted = {"rejected"} if signal.kind == "rejected" else HELD_STATUSES
            for payment in step.payments:
                status = records.payment_status.get(payment.payment_id, payment.status)
                if payment.status in wanted or status in wanted:
                    found.append(
                        Observation(
                            payment.at, signal.kind, f"payment {payment.payment_id} {status}"
                        )
                    )
        elif signal.kind == "alert":
            ids = self._actor_ids(step)
            for at, alert_id, kind, customer_id, account_id, codes in records.alerts:
                if at < start or not ({customer_id, account_id} & ids):
                    continue
                if signal.codes and not set(signal.codes) & set(codes):
                    continue
                found.append(Observation(at, "alert", f"alert {alert_id} {kind} {','.join(codes)}"))
        elif signal.kind == "event":
            found = self._events(step, signal, records, start)
        elif signal.kind == "incident":
            found = [
                Observation(item.reported_at, "incident", f"incident {item.id} {item.grade}")
                for item in records.incidents
                if item.reported_at >= start
            ]
        elif signal.kind == "playbook":
            for item in records.incidents:
                for at, action, status in item.playbook_steps:
                    name = action.split("/", 1)[-1]
                    if (
                        at >= start
                        and status == "done"
                        and (not signal.topic or signal.topic in (name, action))
                    ):
                        found.append(Observation(at, "playbook", f"{action} on {item.id}"))
        elif signal.kind == "frozen":
            ids = self._actor_ids(step)
            for at, topic, payload in records.events:
                if (
                    topic == "ledger.account_status_changed"
                    and payload.get("to") == "frozen"
                    and payload.get("account_id") in ids
                    and at >= start
                ):
                    found.append(Observation(at, "frozen", f"account {payload['account_id']}"))
        return sorted(found, key=lambda item: item.at)

    def _events(
        self, step: StepRecord, signal: Signal, records: Records, start: datetime
    ) -> list[Observation]:
        ids = self._actor_ids(step) if step.actors else set()
        found = []
        for at, topic, payload in records.events:
            if at < start or not topic.startswith(signal.topic):
                continue
            if any(payload.get(key) != value for key, value in signal.match):
                continue
            concerned = {payload.get("customer_id"), payload.get("account_id")} - {None}
            if ids and concerned and not concerned & ids:
                continue
            found.append(Observation(at, "event", topic))
        return found

    # ------------------------------------------------------------ money

    def money(self) -> MoneyChecks:
        context = self.context
        with self.db.read() as session:
            report = ledger.check_invariants(session)
            acknowledged = dict(context.acknowledged)
            statuses = payments.payment_statuses(session, list(acknowledged))
            lost = [
                payment_id for payment_id in acknowledged if statuses.get(payment_id) != "confirmed"
            ]
            duplicates = self._duplicates(session, self._drill_accounts())
        problems = [
            *(f"unbalanced currency {item}" for item in report.unbalanced_currencies),
            *(f"unbalanced transfer {item}" for item in report.unbalanced_transfers),
            *(f"balance drift on {item}" for item in report.drifted_accounts),
            *(f"held amount mismatch on {item}" for item in report.held_mismatches),
            *(f"below floor {item}" for item in report.below_floor),
        ]
        return MoneyChecks(report.ok, problems, len(acknowledged), lost, duplicates)

    def _drill_accounts(self) -> list[str]:
        accounts = [actor.wallet_id for actor in self.context.actors.values()]
        accounts += [str(item["account_id"]) for item in self.context.merchants.values()]
        return accounts

    def _duplicates(self, session: Session, accounts: Iterable[str]) -> list[str]:
        """Payments debited by more than one ledger transfer from one account."""
        since = self.context.started_at - timedelta(minutes=1)
        until = clock.now() + timedelta(minutes=1)
        duplicates: list[str] = []
        for account_id in accounts:
            lines = ledger.statement(session, account_id, since, until).lines
            transfers: dict[str, set[str]] = {}
            for line in lines:
                if line.amount < 0 and line.reference:
                    transfers.setdefault(line.reference, set()).add(line.transfer_id)
            duplicates += [ref for ref, ids in transfers.items() if len(ids) > 1]
        return sorted(set(duplicates))

    def timeline(self, records: Records) -> list[Observation]:
        """The platform's side of the drill's timeline."""
        lines = [
            Observation(at, "alert", f"risk alert {kind}: {', '.join(codes) or '-'}", alert_id)
            for at, alert_id, kind, _customer, _account, codes in records.alerts
        ]
        lines += [
            Observation(at, "event", topic, "")
            for at, topic, _payload in records.events
            if topic.startswith(TIMELINE_PREFIXES) and topic != "risk.alert_opened"
        ]
        for item in records.incidents:
            lines.append(
                Observation(
                    item.reported_at, "incident", f"incident opened, grade {item.grade}", item.id
                )
            )
            lines += [
                Observation(at, "playbook", f"playbook step {action}: {status}", item.id)
                for at, action, status in item.playbook_steps
            ]
        return sorted(lines, key=lambda item: item.at)
