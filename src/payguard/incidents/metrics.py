"""Response times of incidents: time to detect, acknowledge, contain and recover.

Time to detect runs from the first evidence (the first alerted payment, the first failed
login of a burst) to detection; the other three run from detection, so they measure the
response and not how late the attack was seen.
"""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from payguard.incidents.models import Incident
from payguard.incidents.schemas import DurationStats, IncidentMetrics, IncidentTimes

_OPEN = ("reported", "confirmed", "contained", "recovered")


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def times_of(incident: Incident) -> IncidentTimes:
    return IncidentTimes(
        incident_id=incident.id,
        grade=incident.grade,
        category=incident.category,
        status=incident.status,
        drill_run_id=incident.drill_run_id,
        time_to_detect_s=_seconds(
            incident.first_evidence_at or incident.reported_at, incident.detected_at
        ),
        time_to_acknowledge_s=_seconds(incident.detected_at, incident.acknowledged_at),
        time_to_contain_s=_seconds(incident.detected_at, incident.contained_at),
        time_to_recover_s=_seconds(incident.detected_at, incident.recovered_at),
    )


def stats(values: list[float | None]) -> DurationStats:
    present = [value for value in values if value is not None]
    if not present:
        return DurationStats(count=0, mean=None, p50=None, max=None)
    return DurationStats(
        count=len(present),
        mean=round(statistics.fmean(present), 3),
        p50=round(statistics.median(present), 3),
        max=round(max(present), 3),
    )


def metrics(
    session: Session, since: datetime, until: datetime, *, drills: bool | None = None
) -> IncidentMetrics:
    """Incidents reported in [since, until). ``drills``: None counts all, True only drill
    incidents, False only real ones."""
    query = select(Incident).where(Incident.reported_at >= since, Incident.reported_at < until)
    if drills is True:
        query = query.where(Incident.drill_run_id.is_not(None))
    elif drills is False:
        query = query.where(Incident.drill_run_id.is_(None))
    incidents = list(session.scalars(query.order_by(Incident.reported_at, Incident.id)))
    times = [times_of(incident) for incident in incidents]
    return IncidentMetrics(
        since=since,
        until=until,
        count=len(incidents),
        open=sum(1 for incident in incidents if incident.status in _OPEN),
        by_grade=dict(sorted(Counter(incident.grade for incident in incidents).items())),
        by_category=dict(sorted(Counter(incident.category for incident in incidents).items())),
        by_status=dict(sorted(Counter(incident.status for incident in incidents).items())),
        time_to_detect=stats([item.time_to_detect_s for item in times]),
        time_to_acknowledge=stats([item.time_to_acknowledge_s for item in times]),
        time_to_contain=stats([item.time_to_contain_s for item in times]),
        time_to_recover=stats([item.time_to_recover_s for item in times]),
        incidents=times,
    )
