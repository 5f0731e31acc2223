"""AML reports over HTTP: the JSON report, or its CSV as a download (docs/aml.md)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from payguard.identity.permissions import Permission
from payguard.risk import aml
from payguard.risk.aml_schemas import AmlReport
from payguard.web import ServicesDep, access

router = APIRouter(prefix="/v1/aml", tags=["aml"])


@router.get(
    "/report",
    summary="Large-value reports and suspicious cases of the payments completed in a period",
    response_model=AmlReport,
    responses={200: {"content": {"text/csv": {}}}},
    **access(Permission.AML_REPORT),
)
def report(
    svc: ServicesDep,
    period_from: Annotated[
        date, Query(alias="from", description="first day, YYYY-MM-DD (Beijing time)")
    ],
    period_to: Annotated[
        date, Query(alias="to", description="last day, YYYY-MM-DD (Beijing time), included")
    ],
    file_format: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Response:
    start, end = aml.period_bounds(period_from, period_to)
    with svc.db.read() as session:
        made = aml.build_report(session, svc.settings, start, end)
    if file_format == "csv":
        return Response(
            aml.report_csv(made),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{aml.file_stem(made)}.csv"'},
        )
    return Response(made.model_dump_json(), media_type="application/json")
