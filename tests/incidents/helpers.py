"""Shared set-up of the incident tests: staff members and incidents made the real way."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from payguard.identity import service as identity
from payguard.incidents import service as incidents
from payguard.incidents.models import Incident
from payguard.settings import Settings


def make_staff(session: Session, settings: Settings, role: str = "incident_commander") -> str:
    staff, _issued = identity.create_staff(
        session, settings, username=f"{role}-{uuid.uuid4().hex[:8]}", role=role, password=None
    )
    return staff.id


def open_one(session: Session, settings: Settings, **overrides: Any) -> Incident:
    values: dict[str, Any] = {
        "title": "Abnormal merchant-platform payouts",
        "category": "02",
        "impact": {"people_affected": 3, "money_at_risk": 250_000},
        "created_by": "stf_test",
    }
    values.update(overrides)
    return incidents.open_incident(session, settings, **values)
