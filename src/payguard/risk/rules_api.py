"""Rule sets over HTTP: list, read, save a draft, what is in force, backtest.

Publishing a draft is a four-eyes operation through ``POST /v1/approvals`` with action
``risk.ruleset_publish`` and the version as target; once approved, every server process
picks it up within ``PAYGUARD_RISK_RELOAD_SECONDS``."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from pydantic import AwareDatetime

from payguard import clock
from payguard.errors import ValidationProblem
from payguard.identity.permissions import Permission
from payguard.risk import rules
from payguard.risk.models import RuleSet
from payguard.risk.schemas import (
    ActiveRuleSetOut,
    BacktestOut,
    RuleSetIn,
    RuleSetOut,
    RuleSetSummary,
)
from payguard.web import PrincipalDep, ServicesDep, access

router = APIRouter(prefix="/v1/risk/rulesets", tags=["risk"])
MAX_BACKTEST_DAYS = 366


def _summary(record: RuleSet) -> RuleSetSummary:
    return RuleSetSummary(
        version=record.version,
        status=record.status,
        rule_count=len(record.rules),
        note=record.note,
        created_by=record.created_by,
        created_at=record.created_at,
        published_at=record.published_at,
        approval_id=record.approval_id,
    )


@router.get("", summary="Rule set versions, newest first", **access(Permission.RISK_READ))
def list_rulesets(
    svc: ServicesDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[RuleSetSummary]:
    with svc.db.read() as session:
        return [_summary(record) for record in rules.list_rulesets(session, limit=limit)]


@router.get(
    "/active",
    summary="The rules in force: the newest published version, or the built-in pack",
    **access(Permission.RISK_READ),
)
def active(svc: ServicesDep) -> ActiveRuleSetOut:
    with svc.db.read() as session:
        ruleset, record = rules.active_ruleset(session)
    return ActiveRuleSetOut(
        version=ruleset.version,
        source="builtin" if record is None else "published",
        published_at=record.published_at if record else None,
        approval_id=record.approval_id if record else None,
        rules=ruleset.definitions,
    )


@router.get("/{version}", summary="One rule set version", **access(Permission.RISK_READ))
def get_ruleset(version: Annotated[int, Path(ge=1)], svc: ServicesDep) -> RuleSetOut:
    with svc.db.read() as session:
        return RuleSetOut.model_validate(rules.get_ruleset(session, version))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Save a draft rule set (checked whole; in force only once published)",
    **access(Permission.RISK_RULES_EDIT),
)
def save_draft(body: RuleSetIn, principal: PrincipalDep, svc: ServicesDep) -> RuleSetOut:
    return svc.db.transact(
        lambda session: RuleSetOut.model_validate(
            rules.save_draft(session, body.rules, body.note, principal.subject_id)
        )
    )


@router.post(
    "/{version}/backtest",
    summary="Replay stored decisions of [from, to) through a version (or 'builtin')",
    **access(Permission.RISK_READ),
)
def backtest(
    version: Annotated[str, Path(max_length=20, description="a version number or 'builtin'")],
    svc: ServicesDep,
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
) -> BacktestOut:
    end_at: datetime = end or clock.now()
    start_at: datetime = start or end_at - timedelta(days=7)
    if end_at - start_at > timedelta(days=MAX_BACKTEST_DAYS):
        raise ValidationProblem(f"from: a backtest covers at most {MAX_BACKTEST_DAYS} days")
    with svc.db.read() as session:
        ruleset = rules.resolve_ruleset(session, version)
        report = rules.backtest(session, ruleset, start_at, end_at, svc.settings)
    return BacktestOut.model_validate(asdict(report))
