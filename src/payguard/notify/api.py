"""Notifications over HTTP: what was sent to whom (masked), and regulator report drafts.

Reading needs INCIDENTS_READ (every role holding NOTIFY_SEND holds it too)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from payguard.identity.permissions import Permission
from payguard.notify import service
from payguard.notify.schemas import (
    Language,
    NotificationDetail,
    NotificationList,
    NotificationOut,
    RegulatorReportOut,
)
from payguard.web import ServicesDep, access

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])


@router.get("", summary="Notifications, newest first", **access(Permission.INCIDENTS_READ))
def list_notifications(
    svc: ServicesDep,
    incident_id: str | None = None,
    status: str | None = None,
    audience: str | None = None,
    staff_id: str | None = None,
    customer_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> NotificationList:
    with svc.db.read() as session:
        rows = service.list_notifications(
            session,
            incident_id=incident_id,
            status=status,
            audience=audience,
            staff_id=staff_id,
            customer_id=customer_id,
            limit=limit,
        )
        return NotificationList(items=[NotificationOut.model_validate(row) for row in rows])


@router.get(
    "/regulator-draft/{incident_id}",
    summary="Draft of the regulator report of an incident, with its deadline clock",
    **access(Permission.NOTIFY_SEND),
)
def regulator_draft(
    svc: ServicesDep, incident_id: str, language: Language | None = None
) -> RegulatorReportOut:
    with svc.db.read() as session:
        draft = service.regulator_report_draft(
            session, svc.settings, incident_id, language=language
        )
        return draft.to_out()


@router.get(
    "/{notification_id}",
    summary="One notification: its text and every delivery attempt",
    **access(Permission.INCIDENTS_READ),
)
def get_notification(svc: ServicesDep, notification_id: str) -> NotificationDetail:
    with svc.db.read() as session:
        return service.detail(session, svc.settings, notification_id)
