"""Routes of containment playbooks: list them, run one on an incident, approve a guarded
step, recover; and the platform controls in force (incidents/playbooks.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from payguard.identity import stepup_segments
from payguard.identity.permissions import Permission
from payguard.incidents import playbooks
from payguard.payments import channels
from payguard.web import PrincipalDep, ServicesDep, access

router = APIRouter(prefix="/v1", tags=["incidents"])


class PlaybookSummary(BaseModel):
    name: str
    version: str
    title: str
    title_zh: str | None
    threat: str | None
    categories: list[str]
    params: dict[str, Any]
    steps: list[dict[str, Any]]
    recovery_steps: list[dict[str, Any]]
    source: str


class PlaybookList(BaseModel):
    playbooks: list[PlaybookSummary]
    problems: dict[str, str]


class StartRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    playbook: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)


class ApproveStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=500)


class ControlsOut(BaseModel):
    channel_suspensions: list[dict[str, Any]]
    step_up_segments: list[dict[str, Any]]


def _summary(book: playbooks.Playbook) -> PlaybookSummary:
    return PlaybookSummary(
        name=book.name,
        version=book.version_tag,
        title=book.title,
        title_zh=book.title_zh,
        threat=book.threat,
        categories=book.categories,
        params={name: spec.model_dump() for name, spec in book.params.items()},
        steps=[step.model_dump(exclude_none=True) for step in book.steps],
        recovery_steps=[step.model_dump(exclude_none=True) for step in book.recovery_steps],
        source=book.source,
    )


@router.get(
    "/playbooks",
    summary="The containment playbooks, and the files that did not validate",
    **access(Permission.INCIDENTS_READ),
)
def list_playbooks(svc: ServicesDep) -> PlaybookList:
    found, problems = playbooks.load_report(svc.settings)
    return PlaybookList(
        playbooks=[_summary(found[name]) for name in sorted(found)], problems=problems
    )


@router.get("/playbooks/{name}", summary="One playbook", **access(Permission.INCIDENTS_READ))
def show_playbook(name: str, svc: ServicesDep) -> PlaybookSummary:
    return _summary(playbooks.get_playbook(svc.settings, name))


@router.post(
    "/incidents/{incident_id}/playbook-runs",
    status_code=status.HTTP_201_CREATED,
    summary="Run a containment playbook on the incident (guarded steps wait for approval)",
    **access(Permission.PLAYBOOKS_RUN),
)
def start_run(
    incident_id: str, body: StartRun, principal: PrincipalDep, svc: ServicesDep
) -> playbooks.RunOut:
    def work(session: Any) -> playbooks.RunOut:
        run = playbooks.start_run(
            session,
            svc.settings,
            svc,
            incident_id=incident_id,
            playbook=body.playbook,
            started_by=principal.subject_id,
            params=body.params,
        )
        return playbooks.run_out(session, run)

    out: playbooks.RunOut = svc.db.transact(work)
    return out


@router.get(
    "/incidents/{incident_id}/playbook-runs",
    summary="The playbook runs of an incident",
    **access(Permission.INCIDENTS_READ),
)
def list_runs(incident_id: str, svc: ServicesDep) -> list[playbooks.RunOut]:
    with svc.db.read() as session:
        return [playbooks.run_out(session, run) for run in playbooks.runs_of(session, incident_id)]


@router.get(
    "/playbook-runs/{run_id}", summary="One playbook run", **access(Permission.INCIDENTS_READ)
)
def get_run(run_id: str, svc: ServicesDep) -> playbooks.RunOut:
    with svc.db.read() as session:
        return playbooks.run_out(session, playbooks.get_run(session, run_id))


@router.post(
    "/playbook-runs/{run_id}/steps/{position}/approve",
    summary="Approve a guarded step (four-eyes: not the one who started the run)",
    **access(Permission.PLAYBOOKS_APPROVE),
)
def approve_step(
    run_id: str, position: int, body: ApproveStep, principal: PrincipalDep, svc: ServicesDep
) -> playbooks.RunOut:
    def work(session: Any) -> playbooks.RunOut:
        run = playbooks.approve_step(
            session,
            svc.settings,
            svc,
            run_id=run_id,
            position=position,
            approver=principal,
            note=body.note,
        )
        return playbooks.run_out(session, run)

    out: playbooks.RunOut = svc.db.transact(work)
    return out


@router.post(
    "/playbook-runs/{run_id}/recover",
    status_code=status.HTTP_201_CREATED,
    summary="Undo a containment run (a recovery run; guarded undo steps wait for approval)",
    **access(Permission.PLAYBOOKS_RUN),
)
def recover(run_id: str, principal: PrincipalDep, svc: ServicesDep) -> playbooks.RunOut:
    def work(session: Any) -> playbooks.RunOut:
        run = playbooks.run_recovery(
            session, svc.settings, svc, run_id=run_id, started_by=principal.subject_id
        )
        return playbooks.run_out(session, run)

    out: playbooks.RunOut = svc.db.transact(work)
    return out


@router.get(
    "/controls",
    summary="Platform controls in force: suspended payment channels, raised step-up",
    **access(Permission.INCIDENTS_READ),
)
def controls(svc: ServicesDep) -> ControlsOut:
    with svc.db.read() as session:
        suspended = channels.list_suspensions(session)
        segments = stepup_segments.active(session)
    return ControlsOut(
        channel_suspensions=[
            {
                "id": item.id,
                "scope": item.scope,
                "reason": item.reason,
                "incident_id": item.incident_id,
                "suspended_by": item.suspended_by,
                "suspended_at": item.suspended_at.isoformat(),
            }
            for item in suspended
        ],
        step_up_segments=[
            {
                "id": item.id,
                "segment": item.segment,
                "value": item.value,
                "reason": item.reason,
                "incident_id": item.incident_id,
                "expires_at": item.expires_at.isoformat(),
            }
            for item in segments
        ],
    )
