"""The evaluation indicator system over HTTP: the latest evaluation, history, compute one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from payguard.evaluation import service
from payguard.evaluation.schemas import EvaluateRequest, EvaluationOut, EvaluationSummary
from payguard.identity.permissions import Permission
from payguard.web import PrincipalDep, ServicesDep, access

router = APIRouter(prefix="/v1/evaluation", tags=["evaluation"])


@router.get("", summary="The latest stored evaluation", **access(Permission.EVALUATION_READ))
def latest(svc: ServicesDep) -> EvaluationOut:
    with svc.db.read() as session:
        return service.latest(session)


@router.get(
    "/runs", summary="Stored evaluations, newest first", **access(Permission.EVALUATION_READ)
)
def runs(
    svc: ServicesDep, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> list[EvaluationSummary]:
    with svc.db.read() as session:
        return service.history(session, limit=limit)


@router.get("/runs/{run_id}", summary="One stored evaluation", **access(Permission.EVALUATION_READ))
def run(run_id: str, svc: ServicesDep) -> EvaluationOut:
    with svc.db.read() as session:
        return service.get_run(session, run_id)


@router.post(
    "/runs",
    status_code=201,
    summary="Compute and store an evaluation (optionally with its reports)",
    **access(Permission.EVALUATION_READ),
)
async def evaluate(
    body: EvaluateRequest, principal: PrincipalDep, svc: ServicesDep
) -> EvaluationOut:
    service.parse_period(body.period)  # a bad period is a 400 before any work

    def work() -> EvaluationOut:
        out = service.default_report_dir(svc.settings) if body.report else None
        return service.evaluate(
            svc.db,
            svc.settings,
            period=body.period,
            as_of=body.as_of,
            created_by=f"staff:{principal.subject_id}",
            report_dir=out,
        )

    # Measuring reads a period of records and may draw charts: off the event loop.
    return await run_in_threadpool(work)
