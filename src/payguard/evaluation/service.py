"""Evaluations: measure every indicator over a period, score, compare, store, report.

An evaluation covers [period_start, period_end): by default the ``period`` up to now, or
up to the end of the ``as_of`` UTC day. Each indicator is compared with the previous
stored evaluation (the trend the table shows) and with the period just before this one.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.db.engine import Database
from payguard.errors import NotFound, ValidationProblem
from payguard.evaluation import indicators, measures
from payguard.evaluation.indicators import IndicatorSpec, IndicatorSystem
from payguard.evaluation.models import EvaluationRun, EvaluationValue
from payguard.evaluation.schemas import (
    EvaluationOut,
    EvaluationSummary,
    GroupScoreOut,
    IndicatorResultOut,
    Trend,
)
from payguard.events import service as events
from payguard.settings import Settings

_PERIOD = re.compile(r"^\s*(\d{1,4})\s*([hdw])\s*$")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
MAX_PERIOD = timedelta(days=3660)


def parse_period(text: str) -> timedelta:
    """'30d', '12h', '2w' -> a timedelta; anything else is a clear error."""
    found = _PERIOD.match(text or "")
    if found is None:
        raise ValidationProblem(
            f"period: '{text}' is not a period; use a number and h, d or w (e.g. 30d)"
        )
    length = int(found.group(1)) * _UNITS[found.group(2)]
    if not timedelta(0) < length <= MAX_PERIOD:
        raise ValidationProblem("period: between 1h and 3660d")
    return length


def window(period: str, as_of: date | None = None) -> tuple[datetime, datetime]:
    """The evaluated window: ``period`` ending now, or at the end of the ``as_of`` day."""
    length = parse_period(period)
    if as_of is None:
        end = clock.now()
    else:
        end = datetime.combine(as_of + timedelta(days=1), time.min, tzinfo=UTC)
    return end - length, end


# ------------------------------------------------------------------------- measuring


def measure(
    session: Session, system: IndicatorSystem, start: datetime, end: datetime
) -> dict[str, measures.Measurement]:
    sources = measures.Sources(session, measures.Window(start, end))
    return {
        spec.id: measures.MEASURES[spec.id](sources, spec.config.params)
        for spec in system.indicators
    }


def trend(value: float | None, before: float | None, direction: str) -> Trend:
    if value is None or before is None:
        return "none"
    if abs(value - before) <= 1e-9 * max(1.0, abs(before)):
        return "same"
    improved = value > before if direction == "higher" else value < before
    return "better" if improved else "worse"


def _result(
    spec: IndicatorSpec,
    system: IndicatorSystem,
    found: measures.Measurement,
    before: float | None,
    previous_period: measures.Measurement,
) -> IndicatorResultOut:
    config = spec.config
    group_weight = system.config.groups[spec.group].weight
    value = found.value if indicators.is_number(found.value) else None
    if value is None:
        state, points = "no_data", None
    else:
        state = "pass" if indicators.passes(value, config) else "fail"
        points = round(indicators.score(value, config, system.config.pass_score), 2)
    last_period = previous_period.value if indicators.is_number(previous_period.value) else None
    return IndicatorResultOut(
        id=spec.id,
        group=spec.group,
        name_en=config.name_en,
        name_zh=config.name_zh,
        direction=config.direction,
        unit=config.unit,
        value=value,
        numerator=found.numerator,
        denominator=found.denominator,
        target=config.target,
        threshold=config.threshold,
        weight=config.weight,
        effective_weight=round(group_weight * config.weight, 6),
        state=state,
        score=points,
        detail=found.detail,
        previous_value=before,
        trend=trend(value, before, config.direction),
        previous_period_value=last_period,
        period_trend=trend(value, last_period, config.direction),
    )


def _groups(
    system: IndicatorSystem, results: list[IndicatorResultOut]
) -> tuple[list[GroupScoreOut], float | None, float]:
    groups: list[GroupScoreOut] = []
    for group_id, group in system.config.groups.items():
        mine = [result for result in results if result.group == group_id]
        points, coverage = indicators.weighted_mean([(item.weight, item.score) for item in mine])
        groups.append(
            GroupScoreOut(
                id=group_id,
                name_en=group.name_en,
                name_zh=group.name_zh,
                weight=group.weight,
                score=points,
                coverage=round(coverage, 6),
                passed=sum(1 for item in mine if item.state == "pass"),
                failed=sum(1 for item in mine if item.state == "fail"),
                no_data=sum(1 for item in mine if item.state == "no_data"),
            )
        )
    overall, _ = indicators.weighted_mean([(group.weight, group.score) for group in groups])
    coverage = sum(item.effective_weight for item in results if item.state != "no_data")
    return groups, overall, round(coverage, 6)


def compute(
    session: Session,
    system: IndicatorSystem,
    *,
    period: str,
    start: datetime,
    end: datetime,
    created_by: str,
) -> EvaluationOut:
    """Measure and score, comparing with the newest stored evaluation; stores nothing."""
    current = measure(session, system, start, end)
    before = measure(session, system, start - (end - start), start)
    previous = _previous_run(session, period)
    previous_values = (
        {
            row.indicator: row.value
            for row in session.scalars(
                select(EvaluationValue).where(EvaluationValue.run_id == previous.id)
            )
        }
        if previous is not None
        else {}
    )
    results = [
        _result(spec, system, current[spec.id], previous_values.get(spec.id), before[spec.id])
        for spec in system.indicators
    ]
    groups, overall, coverage = _groups(system, results)
    pass_score = system.config.pass_score
    if overall is None or coverage < system.config.min_coverage:
        verdict = "no_data"
    else:
        verdict = "pass" if overall >= pass_score else "fail"
    return EvaluationOut(
        id=None,
        period=period.strip(),
        period_start=start,
        period_end=end,
        overall_score=overall,
        coverage=coverage,
        verdict=verdict,
        pass_score=pass_score,
        passed=sum(1 for item in results if item.state == "pass"),
        failed=sum(1 for item in results if item.state == "fail"),
        no_data=sum(1 for item in results if item.state == "no_data"),
        groups=groups,
        indicators=results,
        previous_run_id=previous.id if previous is not None else None,
        previous_overall_score=previous.overall_score if previous is not None else None,
        config_sha=system.sha256,
        config_source=system.source,
        created_by=created_by,
        created_at=clock.now(),
    )


def _previous_run(session: Session, period: str) -> EvaluationRun | None:
    """The newest stored evaluation, of the same period length when there is one."""
    newest = select(EvaluationRun).order_by(
        EvaluationRun.created_at.desc(), EvaluationRun.id.desc()
    )
    same = session.scalars(newest.where(EvaluationRun.period == period.strip()).limit(1)).first()
    return same or session.scalars(newest.limit(1)).first()


# ----------------------------------------------------------------------- storing


def store(session: Session, evaluation: EvaluationOut) -> EvaluationOut:
    run_id = ids.new_id("evaluation")
    session.add(
        EvaluationRun(
            id=run_id,
            period=evaluation.period,
            period_start=evaluation.period_start,
            period_end=evaluation.period_end,
            overall_score=evaluation.overall_score,
            coverage=evaluation.coverage,
            pass_score=evaluation.pass_score,
            verdict=evaluation.verdict,
            passed=evaluation.passed,
            failed=evaluation.failed,
            no_data=evaluation.no_data,
            group_scores={
                group.id: group.model_dump(exclude={"id"}) for group in evaluation.groups
            },
            previous_run_id=evaluation.previous_run_id,
            config_sha=evaluation.config_sha,
            config_source=evaluation.config_source,
            report_dir=evaluation.report_dir,
            created_by=evaluation.created_by,
            created_at=evaluation.created_at,
        )
    )
    session.flush()  # the run before its values (PostgreSQL checks the foreign key)
    for position, item in enumerate(evaluation.indicators):
        session.add(
            EvaluationValue(
                run_id=run_id,
                position=position,
                indicator=item.id,
                group=item.group,
                state=item.state,
                value=item.value,
                numerator=item.numerator,
                denominator=item.denominator,
                target=item.target,
                threshold=item.threshold,
                direction=item.direction,
                unit=item.unit,
                weight=item.weight,
                score=item.score,
                detail={
                    "facts": item.detail,
                    "name_en": item.name_en,
                    "name_zh": item.name_zh,
                    "effective_weight": item.effective_weight,
                    "previous_value": item.previous_value,
                    "trend": item.trend,
                    "previous_period_value": item.previous_period_value,
                    "period_trend": item.period_trend,
                },
            )
        )
    events.emit(
        session,
        "evaluation.completed",
        {
            "evaluation_id": run_id,
            "period": evaluation.period,
            "overall_score": evaluation.overall_score,
            "verdict": evaluation.verdict,
            "failed": [item.id for item in evaluation.indicators if item.state == "fail"],
            "actor": evaluation.created_by,
        },
    )
    return evaluation.model_copy(update={"id": run_id})


def set_report_dir(session: Session, run_id: str, report_dir: str) -> None:
    run = session.get(EvaluationRun, run_id)
    if run is None:
        raise NotFound(f"no evaluation '{run_id}'")
    run.report_dir = report_dir


def evaluate(
    db: Database,
    settings: Settings,
    *,
    period: str = "30d",
    as_of: date | None = None,
    created_by: str = "system",
    save: bool = True,
    report_dir: Path | None = None,
) -> EvaluationOut:
    """Compute the evaluation, store it (``save``), and write its reports (``report_dir``)."""
    system = indicators.load(settings)
    start, end = window(period, as_of)
    with db.read() as session:
        evaluation = compute(
            session, system, period=period, start=start, end=end, created_by=created_by
        )
    if save:
        evaluation = db.transact(lambda session: store(session, evaluation))
    if report_dir is not None:
        from payguard.evaluation import report

        with db.read() as session:
            earlier = history(session, limit=report.TREND_RUNS)
        files = report.write(evaluation, earlier, system, report_dir)
        evaluation = evaluation.model_copy(
            update={"report_dir": str(report_dir), "report_files": [str(path) for path in files]}
        )
        if evaluation.id is not None:
            run_id = evaluation.id
            db.transact(lambda session: set_report_dir(session, run_id, str(report_dir)))
    return evaluation


def default_report_dir(settings: Settings) -> Path:
    """<evaluation_reports_dir or var_dir/reports/evaluation>/<the time of the run>."""
    base = settings.evaluation_reports_dir or settings.var_dir / "reports" / "evaluation"
    return Path(base) / clock.now().strftime("%Y%m%dT%H%M%SZ")


# ----------------------------------------------------------------------- reading


def _out(session: Session, run: EvaluationRun) -> EvaluationOut:
    values = session.scalars(
        select(EvaluationValue)
        .where(EvaluationValue.run_id == run.id)
        .order_by(EvaluationValue.position)
    )
    results: list[IndicatorResultOut] = []
    for row in values:
        detail: dict[str, Any] = row.detail or {}
        results.append(
            IndicatorResultOut(
                id=row.indicator,
                group=row.group,
                name_en=str(detail.get("name_en", row.indicator)),
                name_zh=str(detail.get("name_zh", row.indicator)),
                direction=row.direction,
                unit=row.unit,
                value=row.value,
                numerator=row.numerator,
                denominator=row.denominator,
                target=row.target,
                threshold=row.threshold,
                weight=row.weight,
                effective_weight=float(detail.get("effective_weight", 0.0)),
                state=row.state,
                score=row.score,
                detail=detail.get("facts", {}),
                previous_value=detail.get("previous_value"),
                trend=detail.get("trend", "none"),
                previous_period_value=detail.get("previous_period_value"),
                period_trend=detail.get("period_trend", "none"),
            )
        )
    groups = [GroupScoreOut(id=group_id, **data) for group_id, data in run.group_scores.items()]
    previous = session.get(EvaluationRun, run.previous_run_id) if run.previous_run_id else None
    return EvaluationOut(
        id=run.id,
        period=run.period,
        period_start=run.period_start,
        period_end=run.period_end,
        overall_score=run.overall_score,
        coverage=run.coverage,
        verdict=run.verdict,
        pass_score=run.pass_score,
        passed=run.passed,
        failed=run.failed,
        no_data=run.no_data,
        groups=groups,
        indicators=results,
        previous_run_id=run.previous_run_id,
        previous_overall_score=previous.overall_score if previous is not None else None,
        config_sha=run.config_sha,
        config_source=run.config_source,
        report_dir=run.report_dir,
        created_by=run.created_by,
        created_at=run.created_at,
    )


def get_run(session: Session, run_id: str) -> EvaluationOut:
    run = session.get(EvaluationRun, run_id)
    if run is None:
        raise NotFound(f"no evaluation '{run_id}'")
    return _out(session, run)


def latest(session: Session) -> EvaluationOut:
    run = session.scalars(
        select(EvaluationRun)
        .order_by(EvaluationRun.created_at.desc(), EvaluationRun.id.desc())
        .limit(1)
    ).first()
    if run is None:
        raise NotFound("no evaluation has been stored yet; run `payguard evaluate`")
    return _out(session, run)


def history(session: Session, *, limit: int = 20) -> list[EvaluationSummary]:
    """Stored evaluations, newest first."""
    runs = session.scalars(
        select(EvaluationRun)
        .order_by(EvaluationRun.created_at.desc(), EvaluationRun.id.desc())
        .limit(limit)
    )
    return [
        EvaluationSummary(
            id=run.id,
            period=run.period,
            period_start=run.period_start,
            period_end=run.period_end,
            overall_score=run.overall_score,
            verdict=run.verdict,
            passed=run.passed,
            failed=run.failed,
            no_data=run.no_data,
            group_scores={key: value.get("score") for key, value in run.group_scores.items()},
            created_by=run.created_by,
            created_at=run.created_at,
        )
        for run in runs
    ]


def indicator_history(
    session: Session, indicator: str, *, limit: int = 20
) -> list[tuple[datetime, float | None]]:
    """One indicator's stored values, oldest first (for the trend chart)."""
    rows = session.execute(
        select(EvaluationRun.created_at, EvaluationValue.value)
        .join(EvaluationRun, EvaluationRun.id == EvaluationValue.run_id)
        .where(EvaluationValue.indicator == indicator)
        .order_by(EvaluationRun.created_at.desc())
        .limit(limit)
    ).all()
    return [(at, value) for at, value in reversed(rows)]
