"""The console's Drills pages: the runs with their scores and the trend per scenario, and
one run with its scored steps, its timeline drawn by lane and its record files.

Read only (``drills:read``): a drill is run by ``payguard drill run``, which starts a
sandbox platform of its own; the pages read what the drills service stored.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from payguard.clock import as_utc
from payguard.console import charts
from payguard.console.incident_pages import duration
from payguard.console.rendering import ConsoleRoute, render
from payguard.console.security import StaffDep
from payguard.drills import service as drills
from payguard.drills.schemas import DrillRunSummary
from payguard.errors import Forbidden, NotFound
from payguard.identity import permissions
from payguard.identity.permissions import Permission
from payguard.identity.service import Principal
from payguard.incidents import service as incidents
from payguard.incidents.schemas import IncidentOut
from payguard.web import ServicesDep

router = APIRouter(prefix="/console", tags=["console"], route_class=ConsoleRoute)

LIST_SIZE = 100
TIMELINE_TABLE_OPEN = 60  # longer timelines start folded
LANES = ["attack", "detect", "contain", "platform", "drill"]
FILE_TYPES = {
    ".pdf": "application/pdf",
    ".md": "text/markdown; charset=utf-8",
    ".png": "image/png",
    ".json": "application/json",
}


def _need(principal: Principal, permission: Permission) -> None:
    if not permissions.holds(principal, permission):
        raise Forbidden(f"this needs the permission '{permission.value}'")


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, str) and value:
        try:
            return as_utc(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def record_files(folder: str | None, listed: list[str] | None = None) -> list[Path]:
    """The files of a record folder that may be downloaded: regular files directly inside
    it (the ones the run listed, or else whatever is there) with a known type."""
    if not folder:
        return []
    base = Path(folder)
    if not base.is_dir():
        return []
    candidates = [Path(item) for item in listed] if listed else sorted(base.iterdir())
    found: list[Path] = []
    for path in candidates:
        path = base / path.name  # only ever inside the folder
        if path.is_file() and path.suffix in FILE_TYPES and path not in found:
            found.append(path)
    return found


def file_download(files: list[Path], name: str) -> FileResponse:
    chosen = next((path for path in files if path.name == name), None)
    if chosen is None:
        raise NotFound(f"no record file '{name[:80]}'")
    return FileResponse(chosen, media_type=FILE_TYPES[chosen.suffix], filename=chosen.name)


# ---------------------------------------------------------------- the runs


def _trend(runs: list[DrillRunSummary]) -> charts.TrendChart:
    series: dict[str, list[tuple[datetime, float, bool]]] = {}
    for run in runs:
        if run.status == "finished":
            series.setdefault(run.scenario, []).append(
                (as_utc(run.started_at), float(run.score), run.passed)
            )
    return charts.trend_chart(series, what="drill scores")


def _scenarios(runs: list[DrillRunSummary]) -> list[dict[str, Any]]:
    """Per scenario: its newest finished run, and how many runs passed."""
    by_name: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run.status != "finished":
            continue
        entry = by_name.setdefault(run.scenario, {"scenario": run.scenario, "runs": 0, "passed": 0})
        entry["runs"] += 1
        entry["passed"] += int(run.passed)
        entry["latest"] = run
        entry["best"] = max(entry.get("best", run.score), run.score)
    return sorted(by_name.values(), key=lambda entry: entry["scenario"])


@router.get("/drills", summary="Drill runs with scores, pass/fail and the trend")
def drills_page(request: Request, principal: StaffDep, svc: ServicesDep) -> Response:
    _need(principal, Permission.DRILLS_READ)
    with svc.db.read() as session:
        runs = drills.list_runs(session, include_unfinished=True)
        changes = {row.id: row.score_change for row in drills.history(session, limit=100_000)}
    chart = _trend(runs)
    newest = list(reversed(runs))[:LIST_SIZE]
    return render(
        request,
        "drills.html",
        {
            "runs": newest,
            "total": len(runs),
            "changes": changes,
            "scenarios": _scenarios(runs),
            "chart": chart,
            "list_size": LIST_SIZE,
            "currency": svc.settings.default_currency,
            "duration": duration,
        },
    )


# ---------------------------------------------------------------- one run


def _timeline(result: dict[str, Any]) -> tuple[list[dict[str, Any]], charts.TimelineChart]:
    lines: list[dict[str, Any]] = []
    for line in result.get("timeline") or []:
        moment = _moment(line.get("at"))
        if moment is None:
            continue
        lines.append(
            {
                "at": moment,
                "lane": str(line.get("lane", "platform")),
                "en": str(line.get("en", "")),
                "zh": str(line.get("zh", "")),
            }
        )
    chart = charts.timeline_chart(
        [(line["at"], line["lane"], line["en"]) for line in lines], LANES, what="drill events"
    )
    return lines, chart


@router.get("/drills/{run_id}", summary="One drill run: scored steps, timeline, record")
def drill_page(request: Request, run_id: str, principal: StaffDep, svc: ServicesDep) -> Response:
    _need(principal, Permission.DRILLS_READ)
    with svc.db.read() as session:
        run = drills.get_run(session, run_id)
        # Incidents opened in this database (a drill with --target); a sandbox drill's
        # incidents lived in the sandbox and are listed from the result only.
        here = [
            IncidentOut.model_validate(item)
            for item in incidents.incidents_for_drill(session, run.id)
        ]
    result = run.result or {}
    steps = [step for step in result.get("steps") or [] if isinstance(step, dict)]
    lines, chart = _timeline(result)
    local_ids = {item.id for item in here}
    recorded = [item for item in result.get("incidents") or [] if isinstance(item, dict)]
    return render(
        request,
        "drill.html",
        {
            "run": run,
            "result": result,
            "steps": steps,
            "lines": lines,
            "chart": chart,
            "lanes": LANES,
            "timeline_open": len(lines) <= TIMELINE_TABLE_OPEN,
            "incidents_here": here,
            "incidents_recorded": [item for item in recorded if item.get("id") not in local_ids],
            "files": record_files(run.record_dir, result.get("record_files")),
            "score_parts": result.get("score_parts") or {},
            "integrity": result.get("integrity") or {},
            "currency": svc.settings.default_currency,
            "duration": duration,
        },
    )


@router.get("/drills/{run_id}/files/{name}", summary="A file of the drill record")
def drill_file(run_id: str, name: str, principal: StaffDep, svc: ServicesDep) -> Response:
    _need(principal, Permission.DRILLS_READ)
    with svc.db.read() as session:
        run = drills.get_run(session, run_id)
    return file_download(record_files(run.record_dir, (run.result or {}).get("record_files")), name)
