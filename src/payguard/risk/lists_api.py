"""Block, watch and allow lists over HTTP: read, add, remove, export and import as CSV.

A change reaches every server process's engine within ``PAYGUARD_RISK_RELOAD_SECONDS``;
this process's engine looks again at once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy.orm import Session

from payguard.errors import ProblemError, ValidationProblem
from payguard.identity.permissions import Permission
from payguard.risk import lists
from payguard.risk.lists_schemas import ImportOut, ListEntryIn, ListEntryOut, ListName, Subject
from payguard.web import PrincipalDep, Services, ServicesDep, access

router = APIRouter(prefix="/v1/risk/lists", tags=["risk"])
CSV_TYPES = ("text/csv", "text/plain", "application/csv")


class UnsupportedMediaType(ProblemError):
    code, status, title = "unsupported-media-type", 415, "Unsupported media type"


def _changed(svc: Services) -> None:
    lists.invalidate(getattr(svc.risk, "lists", None))


@router.get("", summary="List entries, newest first", **access(Permission.RISK_READ))
def list_entries(
    svc: ServicesDep,
    list_name: Annotated[ListName | None, Query(alias="list")] = None,
    subject: Annotated[Subject | None, Query()] = None,
    include_removed: Annotated[bool, Query(description="also removed and expired entries")] = False,
) -> list[ListEntryOut]:
    with svc.db.read() as session:
        entries = lists.list_entries(session, list_name, subject, include_removed)
        return [ListEntryOut.of(entry) for entry in entries]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Put an account, payee, device, IP, range or phone on a list",
    **access(Permission.RISK_LISTS_EDIT),
)
def add_entry(body: ListEntryIn, principal: PrincipalDep, svc: ServicesDep) -> ListEntryOut:
    out = svc.db.transact(
        lambda session: ListEntryOut.of(
            lists.add_entry(
                session,
                svc.settings,
                list_name=body.list_name,
                subject=body.subject,
                value=body.value,
                reason=body.reason,
                expires_at=body.expires_at,
                by=principal.subject_id,
            )
        )
    )
    _changed(svc)
    return out


@router.get(
    "/export.csv",
    summary="Active entries as CSV: list,subject,value,reason,expires_at",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
    **access(Permission.RISK_READ),
)
def export_entries(svc: ServicesDep) -> Response:
    with svc.db.read() as session:
        text = lists.export_csv(session)
    return Response(
        text,
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="risk-lists.csv"'},
    )


def _csv_body(keywords: dict[str, Any]) -> dict[str, Any]:
    """Route keywords plus the request body's description (read by hand, not parsed)."""
    body = {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    return {**keywords, "openapi_extra": {**keywords["openapi_extra"], "requestBody": body}}


@router.post(
    "/import",
    summary="Add the entries of a CSV file, all or nothing (rows already listed are skipped)",
    **_csv_body(access(Permission.RISK_LISTS_EDIT)),
)
async def import_entries(request: Request, principal: PrincipalDep, svc: ServicesDep) -> ImportOut:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in CSV_TYPES:
        raise UnsupportedMediaType(
            "send the file as the body with 'Content-Type: text/csv' (columns "
            f"{','.join(lists.CSV_COLUMNS)})"
        )
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValidationProblem("the file must be UTF-8 text") from error

    def work(session: Session) -> ImportOut:
        return ImportOut.of(lists.import_csv(session, svc.settings, text, principal.subject_id))

    out: ImportOut = await run_in_threadpool(svc.db.transact, work)
    _changed(svc)
    return out


@router.delete(
    "/{entry_id}",
    summary="Take an entry off its list (kept, marked removed)",
    **access(Permission.RISK_LISTS_EDIT),
)
def remove_entry(
    entry_id: Annotated[str, Path(max_length=40)], principal: PrincipalDep, svc: ServicesDep
) -> ListEntryOut:
    out = svc.db.transact(
        lambda session: ListEntryOut.of(lists.remove_entry(session, entry_id, principal.subject_id))
    )
    _changed(svc)
    return out
