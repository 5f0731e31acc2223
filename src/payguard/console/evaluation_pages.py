"""The console's Evaluation page: the latest stored evaluation of the indicator system
(seed 001 §6) with each indicator against its threshold and target, the group scores, the
trend of the overall score, and the report files when they were written.

Read only (``evaluation:read``): evaluations are computed by ``payguard evaluate``.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from payguard.clock import as_utc
from payguard.console import charts
from payguard.console.drill_pages import file_download, record_files
from payguard.console.rendering import ConsoleRoute, render
from payguard.console.security import StaffDep
from payguard.errors import Forbidden, NotFound
from payguard.evaluation import service as evaluation
from payguard.evaluation.schemas import EvaluationOut, EvaluationSummary
from payguard.identity import permissions
from payguard.identity.permissions import Permission
from payguard.identity.service import Principal
from payguard.web import ServicesDep

router = APIRouter(prefix="/console", tags=["console"], route_class=ConsoleRoute)

TREND_RUNS = 30
STATE_TONES = {"pass": "good", "fail": "bad", "no_data": "muted"}
TREND_MARKS = {"better": "▲ better", "worse": "▼ worse", "same": "= same", "none": ""}


def _need(principal: Principal, permission: Permission) -> None:
    if not permissions.holds(principal, permission):
        raise Forbidden(f"this needs the permission '{permission.value}'")


def indicator_value(value: float | None, unit: str) -> str:
    """A value in its unit: ratios as percentages, durations with their unit."""
    if value is None:
        return "—"
    if unit == "ratio":
        return f"{value * 100:.2f}%"
    if unit == "count":
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    if unit == "ms":
        return f"{value:,.0f} ms"
    if unit == "minutes":
        return f"{value:,.1f} min"
    return f"{value:g} {unit}"


def _chart(latest: EvaluationOut) -> charts.ThresholdChart:
    return charts.threshold_chart(
        [
            charts.ThresholdItem(
                name=item.name_en,
                value=item.value,
                threshold=item.threshold,
                target=item.target,
                state=item.state,
                value_text=indicator_value(item.value, item.unit),
                threshold_text=indicator_value(item.threshold, item.unit),
                target_text=indicator_value(item.target, item.unit),
            )
            for item in latest.indicators
        ]
    )


def _trend(history: list[EvaluationSummary], pass_score: float) -> charts.TrendChart:
    series: dict[str, list[tuple[datetime, float, bool]]] = {"overall": []}
    for run in reversed(history):  # oldest first
        if run.overall_score is not None:
            series["overall"].append(
                (as_utc(run.created_at), run.overall_score, run.verdict == "pass")
            )
        for group, score in run.group_scores.items():
            if score is not None:
                series.setdefault(group, []).append(
                    (as_utc(run.created_at), score, score >= pass_score)
                )
    return charts.trend_chart(series, what="evaluation scores")


@router.get("/evaluation", summary="The latest evaluation of the indicator system")
def evaluation_page(request: Request, principal: StaffDep, svc: ServicesDep) -> Response:
    _need(principal, Permission.EVALUATION_READ)
    with svc.db.read() as session:
        try:
            latest: EvaluationOut | None = evaluation.latest(session)
        except NotFound:
            latest = None
        history = evaluation.history(session, limit=TREND_RUNS)
    groups = {group.id: group for group in latest.groups} if latest else {}
    return render(
        request,
        "evaluation.html",
        {
            "latest": latest,
            "history": history,
            "groups": groups,
            "chart": _chart(latest) if latest and latest.indicators else None,
            "trend": _trend(history, latest.pass_score) if latest and len(history) > 1 else None,
            "files": record_files(latest.report_dir) if latest else [],
            "value": indicator_value,
            "state_tones": STATE_TONES,
            "trend_marks": TREND_MARKS,
        },
    )


@router.get("/evaluation/{run_id}/files/{name}", summary="A file of an evaluation report")
def evaluation_file(run_id: str, name: str, principal: StaffDep, svc: ServicesDep) -> Response:
    _need(principal, Permission.EVALUATION_READ)
    with svc.db.read() as session:
        run = evaluation.get_run(session, run_id)
    return file_download(record_files(run.report_dir), name)
