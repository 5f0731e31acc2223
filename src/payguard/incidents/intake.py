"""Turn outbox events into incidents and incident timelines.

``process_events`` reads the outbox after a stored cursor and, per the intake mapping
(``incidents/data/intake.yaml`` or ``settings.incident_intake_path``):

(a) opens an incident when enough matching events of one group (account, customer, ...)
    fall within a window, de-duplicated: while an open incident of the same mapping and
    group exists, a new match is linked to it instead; when the mapping names a playbook,
    it is started at once (``incidents.playbooks.start_run``);
(b) appends timeline entries for events that concern an open incident (they carry its id,
    or touch one of its linked accounts, customers, payments or devices), and links alerts
    raised on those accounts;
(c) sends the internal notifications of role assignments and status changes (notify).

It runs in the app's background thread every ``settings.incident_intake_seconds`` and by
``payguard incidents intake``; the drill runner relies on it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from payguard import clock
from payguard.clock import as_utc
from payguard.db.engine import Database
from payguard.errors import ProblemError, ValidationProblem
from payguard.events import service as events
from payguard.incidents import grading
from payguard.incidents import service as incidents
from payguard.incidents.models import (
    Incident,
    IncidentIntakeCursor,
    IncidentIntakeHit,
    PlaybookRun,
    PlaybookStepRun,
)
from payguard.observability import get_logger
from payguard.settings import Settings

if TYPE_CHECKING:
    from payguard.events.models import OutboxEvent
    from payguard.web import Services

log = get_logger("payguard.incidents.intake")

SHIPPED_INTAKE = Path(__file__).parent / "data" / "intake.yaml"
CURSOR = "intake"
ACTOR = "intake"
GROUPS = ("account", "customer", "payment", "merchant", "global")
IMPACT_SOURCES = ("alert_amount", "customers", "hits")
# An id gap younger than this may be a transaction that has not committed yet: wait for it.
SETTLE_SECONDS = 2.0


def _recorded_by_its_playbook(topic: str, payload: dict[str, Any]) -> bool:
    """A playbook writes its own timeline entries (its start, every step with its result,
    a wait for approval, its end); the events it and its actions emit would repeat them."""
    if topic.startswith("playbook."):
        return True
    return topic.startswith("controls.") and bool(
        payload.get("run_id") or payload.get("incident_id")
    )


_TIMELINE_KIND_BY_PREFIX = (
    ("risk.", "alert"),
    ("approval.", "approval"),
    ("notify.", "notification"),
    ("playbook.", "playbook"),
    ("drill.", "drill"),
)
# Payload keys that name things an incident can be linked to.
_LINK_KEYS = (
    ("account_id", "account"),
    ("customer_id", "customer"),
    ("payment_id", "payment"),
    ("device_id", "device"),
    ("merchant_id", "merchant"),
)


@dataclass(frozen=True)
class Mapping:
    name: str
    topic: str
    category: str
    title: str
    group_by: str = "account"
    count: int = 1
    window_seconds: float = 3600
    dedup_window_seconds: float = 86400
    kinds: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    reason_codes_any: tuple[str, ...] = ()
    reason_codes_all: tuple[str, ...] = ()
    subject_kinds: tuple[str, ...] = ()
    impact: dict[str, Any] = field(default_factory=dict)
    playbook: str | None = None
    playbook_params: dict[str, Any] = field(default_factory=dict)

    def matches(self, topic: str, payload: dict[str, Any]) -> bool:
        if topic != self.topic:
            return False
        if self.kinds and payload.get("kind") not in self.kinds:
            return False
        if self.severities and payload.get("severity") not in self.severities:
            return False
        if self.subject_kinds and payload.get("subject_kind") not in self.subject_kinds:
            return False
        codes = set(payload.get("reason_codes") or ())
        if self.reason_codes_any and not codes.intersection(self.reason_codes_any):
            return False
        return not (self.reason_codes_all and not codes.issuperset(self.reason_codes_all))

    def group_of(self, payload: dict[str, Any]) -> str | None:
        """The group key, or None when the event lacks what it is grouped by."""
        if self.group_by == "global":
            return "global"
        value = payload.get(f"{self.group_by}_id")
        return str(value) if value else None


@dataclass(frozen=True)
class IntakeConfig:
    mappings: tuple[Mapping, ...]
    follow_topics: tuple[str, ...]
    path: Path


def load_config(settings: Settings) -> IntakeConfig:
    return _load(settings.incident_intake_path or SHIPPED_INTAKE)


@lru_cache(maxsize=8)
def _load(path: Path) -> IntakeConfig:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValidationProblem(f"intake mapping {path}: cannot read: {error}") from error
    return parse_config(document, path)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationProblem(f"{where}: a list of strings")
    return tuple(value)


def _number(entry: dict[str, Any], key: str, default: float, where: str) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValidationProblem(f"{where}.{key}: a positive number")
    return float(value)


def parse_config(document: Any, path: Path) -> IntakeConfig:
    where = f"intake mapping {path}"
    if not isinstance(document, dict) or not isinstance(document.get("mappings"), list):
        raise ValidationProblem(f"{where}: needs a 'mappings' list")
    known = {
        "name",
        "topic",
        "match",
        "group_by",
        "count",
        "window_seconds",
        "dedup_window_seconds",
        "category",
        "title",
        "impact",
        "playbook",
        "playbook_params",
    }
    mappings: list[Mapping] = []
    names: set[str] = set()
    for index, entry in enumerate(document["mappings"]):
        at = f"{where}: mappings[{index}]"
        if not isinstance(entry, dict):
            raise ValidationProblem(f"{at}: a mapping")
        unknown = set(entry) - known
        if unknown:
            raise ValidationProblem(f"{at}: unknown field(s) {', '.join(sorted(unknown))}")
        for required in ("name", "topic", "category", "title"):
            if not isinstance(entry.get(required), str) or not entry[required].strip():
                raise ValidationProblem(f"{at}.{required}: required text")
        name = entry["name"].strip()
        if name in names:
            raise ValidationProblem(f"{at}.name: '{name}' is used twice")
        names.add(name)
        at = f"{where}: mapping '{name}'"
        try:
            grading.check_category(str(entry["category"]))
        except ValidationProblem as error:
            raise ValidationProblem(f"{at}.category: {error.detail}") from error
        group_by = entry.get("group_by", "account")
        if group_by not in GROUPS:
            raise ValidationProblem(f"{at}.group_by: one of {', '.join(GROUPS)}")
        count = entry.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValidationProblem(f"{at}.count: a whole number >= 1")
        match = entry.get("match") or {}
        if not isinstance(match, dict):
            raise ValidationProblem(f"{at}.match: a mapping")
        unknown = set(match) - {
            "kind",
            "severity",
            "reason_codes_any",
            "reason_codes_all",
            "subject_kind",
        }
        if unknown:
            raise ValidationProblem(f"{at}.match: unknown field(s) {', '.join(sorted(unknown))}")
        impact = entry.get("impact") or {}
        if not isinstance(impact, dict):
            raise ValidationProblem(f"{at}.impact: a mapping")
        for fact, value in impact.items():
            if fact not in grading.IMPACT_FACTS:
                raise ValidationProblem(f"{at}.impact.{fact}: not an impact fact")
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if not (numeric or value in IMPACT_SOURCES):
                raise ValidationProblem(
                    f"{at}.impact.{fact}: a number or one of {', '.join(IMPACT_SOURCES)}"
                )
        params = entry.get("playbook_params") or {}
        if not isinstance(params, dict):
            raise ValidationProblem(f"{at}.playbook_params: a mapping")
        playbook = entry.get("playbook")
        if playbook is not None and not isinstance(playbook, str):
            raise ValidationProblem(f"{at}.playbook: a playbook name")
        mappings.append(
            Mapping(
                name=name,
                topic=entry["topic"].strip(),
                category=str(entry["category"]),
                title=entry["title"].strip(),
                group_by=group_by,
                count=count,
                window_seconds=_number(entry, "window_seconds", 3600, at),
                dedup_window_seconds=_number(entry, "dedup_window_seconds", 86400, at),
                kinds=_strings(match.get("kind"), f"{at}.match.kind"),
                severities=_strings(match.get("severity"), f"{at}.match.severity"),
                reason_codes_any=_strings(match.get("reason_codes_any"), f"{at}.match"),
                reason_codes_all=_strings(match.get("reason_codes_all"), f"{at}.match"),
                subject_kinds=_strings(match.get("subject_kind"), f"{at}.match.subject_kind"),
                impact=dict(impact),
                playbook=playbook,
                playbook_params=dict(params),
            )
        )
    follow = _strings(document.get("follow_topics"), f"{where}: follow_topics")
    return IntakeConfig(mappings=tuple(mappings), follow_topics=follow, path=path)


# ------------------------------------------------------------------------------ the loop


def process_events(
    target: Services | Database,
    settings: Settings | None = None,
    *,
    batch: int = 500,
    max_batches: int = 20,
) -> int:
    """Handle the outbox events after the cursor; returns how many were read.

    ``target`` is the app's ``Services`` (needed to start playbooks) or a bare
    ``Database`` with ``settings`` (incidents open, playbooks are not started)."""
    if isinstance(target, Database):
        if settings is None:
            raise ValueError("process_events(db, settings): settings are required with a db")
        db, services = target, None
    else:
        db, services, settings = target.db, target, settings or target.settings
    config = load_config(settings)
    with db.read() as session:
        # A read first: an idle platform costs no write transaction every few seconds.
        after = cursor_position(session)
        if not events.any_after(session, after):
            return 0
    total = 0
    for _ in range(max_batches):
        handled = db.transact(
            lambda session: _process_batch(session, settings, services, config, batch)
        )
        total += handled
        if handled < batch:
            break
    return total


def _claim_cursor(session: Session) -> int:
    # The UPDATE comes first so that the transaction holds the write lock (SQLite) or the
    # row lock (PostgreSQL) before reading: two intake loops never take the same events.
    now = clock.now()
    touched = session.execute(
        update(IncidentIntakeCursor)
        .where(IncidentIntakeCursor.name == CURSOR)
        .values(updated_at=now)
    )
    if getattr(touched, "rowcount", 0) == 0:
        session.add(IncidentIntakeCursor(name=CURSOR, last_event_id=0, updated_at=now))
        session.flush()
    cursor = session.get(IncidentIntakeCursor, CURSOR)
    assert cursor is not None
    return int(cursor.last_event_id)


def _process_batch(
    session: Session,
    settings: Settings,
    services: Services | None,
    config: IntakeConfig,
    batch: int,
) -> int:
    after = _claim_cursor(session)
    rows = list(events.events_after(session, after, batch))
    last = after
    handled = 0
    settle_before = clock.now() - timedelta(seconds=SETTLE_SECONDS)
    for event in rows:
        if event.id != last + 1 and as_utc(event.created_at) > settle_before:
            break  # a gap: an earlier transaction may still commit its event
        if not _relevant(config, event.topic, event.payload or {}):
            last = event.id
            handled += 1
            continue
        try:
            with session.begin_nested():
                _handle(session, settings, services, config, event)
        except Exception as error:  # one bad event must not stop intake for good
            log.warning(
                "incident_intake_event_failed",
                event_id=event.id,
                topic=event.topic,
                error_type=type(error).__name__,
                error=str(error)[:300] if isinstance(error, ProblemError) else None,
            )
        last = event.id
        handled += 1
    if last != after:
        session.execute(
            update(IncidentIntakeCursor)
            .where(IncidentIntakeCursor.name == CURSOR)
            .values(last_event_id=last)
        )
    return handled


def _relevant(config: IntakeConfig, topic: str, payload: dict[str, Any]) -> bool:
    """Cheap test before any work: most events (payments, logins) concern no incident."""
    return (
        topic.startswith("incident.")
        or topic == "risk.alert_opened"
        or bool(payload.get("incident_id"))
        or topic.startswith(config.follow_topics)
        or any(mapping.topic == topic for mapping in config.mappings)
    )


def _handle(
    session: Session,
    settings: Settings,
    services: Services | None,
    config: IntakeConfig,
    event: OutboxEvent,
) -> None:
    topic, payload = event.topic, dict(event.payload or {})
    at = as_utc(event.created_at)
    if topic.startswith("incident."):
        _notify_roles(session, settings, topic, payload)
        return
    if topic == "risk.alert_opened" and payload.get("account_id"):
        _name_the_merchant(session, payload)
    # The first mapping that matches and can group the event (an alert of the assess API
    # has no customer, so a per-customer mapping passes it on to the next one).
    mapping = next(
        (
            m
            for m in config.mappings
            if m.matches(topic, payload) and m.group_of(payload) is not None
        ),
        None,
    )
    taken = False
    if mapping is not None:
        taken = _apply_mapping(session, settings, services, mapping, event, payload, at)
    if not taken:
        _follow(session, config, topic, payload, at)


def _name_the_merchant(session: Session, payload: dict[str, Any]) -> None:
    """An alert on a merchant's own account (money leaving the merchant platform, seed
    002) names the merchant, so a mapping can match ``subject_kind: merchant`` and its
    playbook can act on the merchant (secure its funds, suspend its payouts)."""
    from payguard.payments import service as payments  # the payment path imports intake's peers

    merchant = payments.merchant_of_account(session, str(payload["account_id"]))
    if merchant is not None:
        payload.setdefault("merchant_id", merchant.id)
        payload.setdefault("subject_kind", "merchant")


# ------------------------------------------------------------------------------ (a) open


def _apply_mapping(
    session: Session,
    settings: Settings,
    services: Services | None,
    mapping: Mapping,
    event: OutboxEvent,
    payload: dict[str, Any],
    at: datetime,
) -> bool:
    """True when the event was linked to an incident or opened one."""
    group = mapping.group_of(payload)
    if group is None:
        return False
    dedup_key = f"{mapping.name}:{group}"[:200]
    alert_id = payload.get("alert_id")
    existing = incidents.find_open_by_dedup(
        session, dedup_key, since=at - timedelta(seconds=mapping.dedup_window_seconds)
    )
    if existing is not None:
        _link_event(session, existing, mapping, payload, at)
        return True
    amount = _alert_amount(session, alert_id) if alert_id else None
    session.add(
        IncidentIntakeHit(
            mapping=mapping.name,
            group_key=group[:128],
            event_id=event.id,
            ref=str(alert_id) if alert_id else None,
            customer_id=payload.get("customer_id"),
            amount=amount,
            at=at,
        )
    )
    session.flush()
    window_start = at - timedelta(seconds=mapping.window_seconds)
    hits = list(
        session.scalars(
            select(IncidentIntakeHit)
            .where(
                IncidentIntakeHit.mapping == mapping.name,
                IncidentIntakeHit.group_key == group[:128],
                IncidentIntakeHit.at >= window_start,
            )
            .order_by(IncidentIntakeHit.at, IncidentIntakeHit.id)
        )
    )
    if len(hits) < mapping.count:
        _forget_old_hits(session, mapping, group, window_start)
        return False
    _open_from_hits(session, settings, services, mapping, payload, hits, dedup_key, at)
    # Consumed: the next incident of this group needs its own count of fresh events.
    session.execute(
        delete(IncidentIntakeHit).where(
            IncidentIntakeHit.mapping == mapping.name,
            IncidentIntakeHit.group_key == group[:128],
        )
    )
    return True


def _forget_old_hits(session: Session, mapping: Mapping, group: str, before: datetime) -> None:
    session.execute(
        delete(IncidentIntakeHit).where(
            IncidentIntakeHit.mapping == mapping.name,
            IncidentIntakeHit.group_key == group[:128],
            IncidentIntakeHit.at < before,
        )
    )


def _alert_amount(session: Session, alert_id: str) -> int | None:
    from payguard.risk import service as risk

    try:
        alert = risk.get_alert(session, alert_id)
    except ProblemError:
        return None
    return alert.amount


def _estimate(mapping: Mapping, hits: list[IncidentIntakeHit]) -> dict[str, Any]:
    impact: dict[str, Any] = {}
    for fact, value in mapping.impact.items():
        if value == "alert_amount":
            impact[fact] = sum(hit.amount or 0 for hit in hits)
        elif value == "customers":
            impact[fact] = len({hit.customer_id for hit in hits if hit.customer_id})
        elif value == "hits":
            impact[fact] = len(hits)
        else:
            impact[fact] = value
    return impact


def _title(mapping: Mapping, payload: dict[str, Any], hits: list[IncidentIntakeHit]) -> str:
    values = {
        "account_id": payload.get("account_id") or "-",
        "customer_id": payload.get("customer_id") or "-",
        "payment_id": payload.get("payment_id") or "-",
        "merchant_id": payload.get("merchant_id") or "-",
        "alert_id": payload.get("alert_id") or "-",
        "reason_codes": ", ".join(payload.get("reason_codes") or ()) or "-",
        "count": len(hits),
        "group": mapping.group_of(payload) or "-",
    }
    try:
        return mapping.title.format(**values)
    except (KeyError, IndexError, ValueError):
        return mapping.title


def _open_from_hits(
    session: Session,
    settings: Settings,
    services: Services | None,
    mapping: Mapping,
    payload: dict[str, Any],
    hits: list[IncidentIntakeHit],
    dedup_key: str,
    at: datetime,
) -> Incident:
    links: list[tuple[str, str]] = [("alert", hit.ref) for hit in hits if hit.ref]
    links += [
        (kind, str(payload[key]))
        for key, kind in _LINK_KEYS
        if payload.get(key) and len(str(payload[key])) <= 64
    ]
    for hit in hits:
        if hit.customer_id and ("customer", hit.customer_id) not in links:
            links.append(("customer", hit.customer_id))
    drill_run_id = settings.incident_drill_run_id or payload.get("drill_run_id")
    incident = incidents.open_incident(
        session,
        settings,
        title=_title(mapping, payload, hits),
        category=mapping.category,
        impact=_estimate(mapping, hits),
        source="alert",
        created_by=ACTOR,
        links=list(dict.fromkeys(links)),
        dedup_key=dedup_key,
        drill_run_id=str(drill_run_id) if drill_run_id else None,
        detected_at=at,
        first_evidence_at=min(hit.at for hit in hits),
    )
    incidents.add_timeline_entry(
        session,
        incident.id,
        kind="alert",
        text=(
            f"opened by intake mapping '{mapping.name}': {len(hits)} matching "
            f"{mapping.topic} event(s) within {mapping.window_seconds:g} s"
        ),
        actor=ACTOR,
        data={"mapping": mapping.name, "events": [hit.event_id for hit in hits]},
        at=at,
    )
    if mapping.playbook:
        _start_playbook(session, settings, services, mapping, incident, payload)
    log.info(
        "incident_opened_by_intake",
        incident_id=incident.id,
        mapping=mapping.name,
        grade=incident.grade,
        drill_run_id=incident.drill_run_id,
    )
    return incident


def _link_event(
    session: Session,
    incident: Incident,
    mapping: Mapping,
    payload: dict[str, Any],
    at: datetime,
) -> None:
    alert_id = payload.get("alert_id")
    linked = False
    if alert_id:
        linked = incidents.link(session, incident.id, "alert", str(alert_id), actor=ACTOR)
    for key, kind in _LINK_KEYS:
        if payload.get(key) and len(str(payload[key])) <= 64:
            incidents.link(session, incident.id, kind, str(payload[key]), actor=ACTOR)
    if alert_id and linked:
        codes = ", ".join(payload.get("reason_codes") or ()) or "-"
        incidents.add_timeline_entry(
            session,
            incident.id,
            kind="alert",
            text=(
                f"another alert {alert_id} ({payload.get('kind')}/{payload.get('severity')}: "
                f"{codes}) matched '{mapping.name}'; linked, no new incident"
            ),
            actor=ACTOR,
            data={"mapping": mapping.name, "alert_id": alert_id},
            at=at,
        )


def _start_playbook(
    session: Session,
    settings: Settings,
    services: Services | None,
    mapping: Mapping,
    incident: Incident,
    payload: dict[str, Any],
) -> None:
    assert mapping.playbook is not None
    playbooks = _playbooks_module()
    if playbooks is None or not hasattr(playbooks, "start_run"):
        log.warning("incident_playbook_unavailable", playbook=mapping.playbook)
        incidents.add_timeline_entry(
            session,
            incident.id,
            kind="playbook",
            text=f"playbook '{mapping.playbook}' not started: the playbooks module is missing",
            actor=ACTOR,
        )
        return
    if services is None:
        incidents.add_timeline_entry(
            session,
            incident.id,
            kind="playbook",
            text=f"playbook '{mapping.playbook}' not started: intake ran without the services",
            actor=ACTOR,
        )
        return
    params = {
        **mapping.playbook_params,
        **{key: payload[key] for key, _ in _LINK_KEYS if payload.get(key)},
    }
    if payload.get("alert_id"):
        params["alert_id"] = payload["alert_id"]
    if payload.get("staff_id"):  # staff watch events: the staff member concerned
        params.setdefault("staff_id", payload["staff_id"])
    try:
        with session.begin_nested():
            playbooks.start_run(
                session,
                settings,
                services,
                incident_id=incident.id,
                playbook=mapping.playbook,
                started_by=ACTOR,
                params=params,
            )
    except Exception as error:  # the incident stays open; people take over
        detail = error.detail if isinstance(error, ProblemError) else type(error).__name__
        log.warning(
            "incident_playbook_failed_to_start",
            incident_id=incident.id,
            playbook=mapping.playbook,
            error_type=type(error).__name__,
        )
        incidents.add_timeline_entry(
            session,
            incident.id,
            kind="playbook",
            text=f"playbook '{mapping.playbook}' could not start: {detail}",
            actor=ACTOR,
        )


def _playbooks_module() -> Any:
    if importlib.util.find_spec("payguard.incidents.playbooks") is None:
        return None
    return importlib.import_module("payguard.incidents.playbooks")


# ------------------------------------------------------------------------------ (b) follow


def _follow(
    session: Session, config: IntakeConfig, topic: str, payload: dict[str, Any], at: datetime
) -> None:
    targets: list[Incident] = []
    incident_id = payload.get("incident_id")
    if incident_id:
        found = session.get(Incident, str(incident_id))
        if found is not None:
            targets.append(found)
    related = topic == "risk.alert_opened" or topic.startswith(config.follow_topics)
    if not related:
        return
    if targets and _recorded_by_its_playbook(topic, payload):
        return
    if not targets:
        for key, kind in _LINK_KEYS:
            if payload.get(key):
                for incident in incidents.open_incidents_linked(session, kind, str(payload[key])):
                    if incident not in targets:
                        targets.append(incident)
        target = payload.get("target")
        if isinstance(target, str) and target:
            ref = target.split(":", 1)[-1]
            direct = _incident_of_ref(session, ref)
            if direct is not None and direct not in targets:
                targets.append(direct)
            for kind in ("account", "customer", "payment", "merchant", "device"):
                for incident in incidents.open_incidents_linked(session, kind, ref):
                    if incident not in targets:
                        targets.append(incident)
    for incident in targets:
        if topic == "risk.alert_opened" and payload.get("alert_id"):
            if incidents.link(session, incident.id, "alert", str(payload["alert_id"]), actor=ACTOR):
                incidents.add_timeline_entry(
                    session,
                    incident.id,
                    kind="alert",
                    text=_describe(topic, payload),
                    actor=ACTOR,
                    data={"topic": topic, **_ids(payload)},
                    at=at,
                )
            continue
        incidents.add_timeline_entry(
            session,
            incident.id,
            kind=_timeline_kind(topic),
            text=_describe(topic, payload),
            actor=str(payload.get("actor") or payload.get("by_staff_id") or "system")[:64],
            data={"topic": topic, **_ids(payload)},
            at=at,
        )


def _incident_of_ref(session: Session, ref: str) -> Incident | None:
    """An approval's target may be the incident itself, a playbook run or one of its steps."""
    if ref.startswith("inc_"):
        return session.get(Incident, ref)
    run_id = ref
    if ref.startswith("pbs_"):
        step = session.get(PlaybookStepRun, ref)
        if step is None:
            return None
        run_id = step.run_id
    if run_id.startswith("pbr_"):
        run = session.get(PlaybookRun, run_id)
        return session.get(Incident, run.incident_id) if run is not None else None
    return None


def _timeline_kind(topic: str) -> str:
    for prefix, kind in _TIMELINE_KIND_BY_PREFIX:
        if topic.startswith(prefix):
            return kind
    return "action"


_KEPT_KEYS = frozenset(
    {
        "kind",
        "severity",
        "status",
        "action",
        "template",
        "channel",
        "audience",
        "reason_codes",
        "disposition",
        "scope",
    }
)


def _ids(payload: dict[str, Any]) -> dict[str, Any]:
    """Only identifiers and short codes go to the record, never free text."""
    return {
        key: value
        for key, value in payload.items()
        if (key.endswith("_id") or key in _KEPT_KEYS)
        and (value is None or isinstance(value, str | int | float | bool | list))
    }


def _describe(topic: str, payload: dict[str, Any]) -> str:
    if topic == "risk.alert_opened":
        codes = ", ".join(payload.get("reason_codes") or ()) or "-"
        return (
            f"alert {payload.get('alert_id')} ({payload.get('kind')}/{payload.get('severity')}: "
            f"{codes}) on a linked {_subject(payload)}"
        )
    if topic == "risk.alert_closed":
        return f"alert {payload.get('alert_id')} closed ({payload.get('disposition') or '-'})"
    if topic.startswith("approval."):
        return (
            f"approval {payload.get('approval_id')} {topic.split('.', 1)[1]}: "
            f"{payload.get('action')} on {payload.get('target')}"
        )
    if topic.startswith("notify."):
        return (
            f"notification {payload.get('notification_id')} {topic.split('.', 1)[1]}: "
            f"{payload.get('template')} ({payload.get('audience')}, {payload.get('channel')})"
        )
    details = ", ".join(
        f"{key}={value}" for key, value in _ids(payload).items() if value not in (None, "", [])
    )
    return f"{topic}" + (f": {details}" if details else "")


def _subject(payload: dict[str, Any]) -> str:
    for key, kind in _LINK_KEYS:
        if payload.get(key):
            return f"{kind} {payload[key]}"
    return "subject"


# ------------------------------------------------------------------------------ (c) notify


def _notify_roles(
    session: Session, settings: Settings, topic: str, payload: dict[str, Any]
) -> None:
    """Internal notifications (seed 003: tell the organisation) when notify is there."""
    if topic not in ("incident.role_assigned", "incident.status_changed"):
        return
    incident = session.get(Incident, str(payload.get("incident_id")))
    if incident is None:
        return
    notify = _notify_module()
    if notify is None or not hasattr(notify, "send"):
        return
    context: dict[str, Any] = {
        "incident_id": incident.id,
        "title": incident.title,
        "grade": incident.grade,
        "status": incident.status,
        "category": incident.category,
    }
    if topic == "incident.role_assigned":
        recipients = [(str(payload.get("staff_id")), "incident_role_assigned")]
        context["role"] = payload.get("role")
    else:
        context["from_status"] = payload.get("from")
        recipients = [
            (role.staff_id, "incident_status_changed")
            for role in incidents.roles_of(session, incident.id)
        ]
    for staff_id, template in dict(recipients).items():  # one message per person
        try:
            with session.begin_nested():
                notify.send(
                    session,
                    settings,
                    audience="internal",
                    template=template,
                    language=None,
                    context=context,
                    to_staff_id=staff_id,
                    incident_id=incident.id,
                )
        except Exception as error:  # a notification problem must not stop intake
            log.warning(
                "incident_notification_failed",
                incident_id=incident.id,
                template=template,
                error_type=type(error).__name__,
            )


def _notify_module() -> Any:
    if importlib.util.find_spec("payguard.notify.service") is None:
        return None
    return importlib.import_module("payguard.notify.service")


def cursor_position(session: Session) -> int:
    cursor = session.get(IncidentIntakeCursor, CURSOR)
    return int(cursor.last_event_id) if cursor else 0


def pending_events(session: Session) -> int:
    after = cursor_position(session)
    return int(events.count_after(session, after))
