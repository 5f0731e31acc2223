"""Containment playbooks: YAML files of steps that act on the platform, run on an incident.

A playbook (shipped in ``incidents/playbooks/``, custom ones in ``settings.playbooks_dir``)
is validated when it is loaded; an error names the file, the step (position, id, line)
and the field. A step is an action of :mod:`payguard.incidents.actions` with parameters
templated from the incident (``{{ incident.links.merchant }}``, ``{{ params.ip }}``,
``{{ item }}`` in a ``for_each`` step), an optional four-eyes approval and a recorded
result. A step that changes the platform reversibly carries its ``recovery``.

:func:`start_run` creates the run and runs steps in order, in the caller's transaction,
until a step needs approval: that step files a ``playbook.step`` four-eyes request and
waits. :func:`approve_step` (a *different* staff member with ``playbooks:approve``)
runs it and continues. Every step appends an incident timeline entry and emits
``playbook.step_done`` / ``playbook.step_failed``; a completed containment run moves the
incident to ``contained``. :func:`run_recovery` undoes what the containment did, in
reverse order, as a recovery run of its own, and then moves the incident to
``recovered``.

Templates are deliberately small: ``{{ a.b.c }}`` lookups in a fixed scope, no
expressions, no filters, nothing evaluated. A whole-value template keeps the value's type
(a number stays a number); inside text it is inserted as text.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.errors import Conflict, Forbidden, NotFound, ProblemError, ValidationProblem
from payguard.events import service as events
from payguard.identity import approvals, permissions
from payguard.identity import service as identity
from payguard.identity.approvals import Action, ActionCatalogue
from payguard.identity.models import ApprovalRequest
from payguard.identity.permissions import Permission
from payguard.identity.service import Principal
from payguard.incidents import actions
from payguard.incidents import service as incidents
from payguard.incidents.models import Incident, PlaybookRun, PlaybookStepRun
from payguard.observability import get_logger
from payguard.settings import Settings

log = get_logger("payguard.incidents.playbooks")

SHIPPED_DIR = Path(__file__).parent / "playbooks"
PLAYBOOK_STEP = "playbook.step"  # the four-eyes catalogue entry (approval_actions.py)
PHASES = ("containment", "recovery")
RUN_STATUSES = ("running", "waiting_approval", "completed", "failed", "recovered")
STEP_STATUSES = ("pending", "waiting_approval", "done", "failed", "skipped", "undone")
LINK_KINDS = incidents.LINK_KINDS
TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
_STEP_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"


# ------------------------------------------------------------------ the YAML shape


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamSpec(_Strict):
    description: str = Field(min_length=1)
    required: bool = False
    default: Any = None


class RecoverySpec(_Strict):
    action: str
    params: dict[str, Any] = Field(default_factory=dict)
    requires_approval: bool = False


class StepSpec(_Strict):
    id: str = Field(pattern=_STEP_ID)
    action: str
    description: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    requires_approval: bool = False
    # Run the step once per value: incident.links.<kind> (every linked ref of that kind)
    # or params.<name> (a list parameter); {{ item }} is the value.
    for_each: str | None = None
    on_error: Literal["stop", "continue"] = "stop"
    recovery: RecoverySpec | None = None


class Playbook(_Strict):
    name: str = Field(pattern=_NAME)
    version: int = Field(ge=1)
    title: str = Field(min_length=1)
    title_zh: str | None = None
    description: str = Field(min_length=1)
    threat: str | None = None  # what it answers (seed and case)
    categories: list[str] = Field(default_factory=list)  # GB/T 20986-2023 classes
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(min_length=1)
    # Run after the undo steps (an all-clear notice, a lessons task).
    recovery_steps: list[StepSpec] = Field(default_factory=list)
    # Filled by the loader.
    source: str = ""
    sha: str = ""

    @property
    def version_tag(self) -> str:
        return f"v{self.version}@{self.sha[:12]}"


class PlaybookError(ValidationProblem):
    """A playbook file that does not validate; ``errors`` lists every problem found."""

    code, status, title = "playbook-invalid", 422, "The playbook is not valid"


# ------------------------------------------------------------------ loading and validation


def _step_lines(text: str) -> dict[tuple[str, int], int]:
    """(section, index) → line number of each step, from the YAML node tree."""
    lines: dict[tuple[str, int], int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        if key.value in ("steps", "recovery_steps") and isinstance(value, yaml.SequenceNode):
            for index, item in enumerate(value.value):
                lines[(key.value, index)] = item.start_mark.line + 1
    return lines


def _where(error: Any) -> str:
    return ".".join(str(part) for part in error.get("loc", ())) or "(top level)"


def parse(text: str, source: str) -> Playbook:
    """Validate a playbook document; every problem is reported, each naming its place."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise PlaybookError(
            f"{source}:{where} not valid YAML ({error.__class__.__name__})"
        ) from None
    if not isinstance(document, dict):
        raise PlaybookError(f"{source}: a playbook is a mapping with name, version, steps")
    lines = _step_lines(text)
    try:
        playbook = Playbook.model_validate(document)
    except ValidationError as invalid:
        problems = []
        for item in invalid.errors():
            loc = item.get("loc", ())
            if len(loc) >= 2 and loc[0] in ("steps", "recovery_steps") and isinstance(loc[1], int):
                line = lines.get((str(loc[0]), loc[1]))
                rest = ".".join(str(part) for part in loc[2:]) or "(the step)"
                problems.append(
                    f"{source}: {loc[0]}[{loc[1] + 1}]"
                    + (f" (line {line})" if line else "")
                    + f": {rest}: {item['msg']}"
                )
            else:
                problems.append(f"{source}: {_where(item)}: {item['msg']}")
        raise PlaybookError("; ".join(problems), errors=problems) from None
    problems = _check(playbook, source, lines)
    if problems:
        raise PlaybookError("; ".join(problems), errors=problems)
    playbook.source = source
    playbook.sha = hashlib.sha256(text.encode()).hexdigest()
    return playbook


def _check(playbook: Playbook, source: str, lines: dict[tuple[str, int], int]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for section, steps in (("steps", playbook.steps), ("recovery_steps", playbook.recovery_steps)):
        for index, step in enumerate(steps):
            line = lines.get((section, index))
            label = (
                f"{source}: {section}[{index + 1}] '{step.id}'"
                + (f" (line {line})" if line else "")
                + f" ({step.action})"
            )
            if step.id in seen:
                problems.append(f"{label}: id: another step has this id")
            seen.add(step.id)
            problems += _check_step(playbook, step, label, in_recovery=section != "steps")
    return problems


def _check_step(playbook: Playbook, step: StepSpec, label: str, *, in_recovery: bool) -> list[str]:
    spec = actions.ACTIONS.get(step.action)
    if spec is None:
        return [f"{label}: action: unknown action; one of {', '.join(sorted(actions.ACTIONS))}"]
    problems = _check_params(playbook, spec, step.params, label, for_each=step.for_each)
    if step.for_each is not None:
        root, _, rest = step.for_each.partition(".")
        ok = (root == "incident" and rest.startswith("links.") and rest[6:] in LINK_KINDS) or (
            root == "params" and rest in playbook.params
        )
        if not ok:
            problems.append(
                f"{label}: for_each: incident.links.<{'|'.join(LINK_KINDS)}> "
                "or params.<a declared parameter>"
            )
    if spec.approval_required and not step.requires_approval:
        problems.append(
            f"{label}: requires_approval: {step.action} is a four-eyes operation; "
            "set requires_approval: true"
        )
    if spec.undo is not None and not in_recovery:
        if step.recovery is None:
            problems.append(
                f"{label}: recovery: {step.action} changes the platform until undone; add "
                f"recovery: {{action: {spec.undo}}}"
            )
        elif step.recovery.action != spec.undo:
            problems.append(
                f"{label}: recovery.action: the recovery of {step.action} is {spec.undo}, "
                f"not {step.recovery.action}"
            )
        else:
            undo = actions.ACTIONS[spec.undo]
            problems += _check_params(
                playbook,
                undo,
                step.recovery.params,
                f"{label}: recovery",
                for_each=step.for_each,
                undo=True,
            )
            if undo.approval_required and not step.recovery.requires_approval:
                problems.append(
                    f"{label}: recovery.requires_approval: {undo.name} is a four-eyes "
                    "operation; set requires_approval: true"
                )
    elif step.recovery is not None:
        problems.append(
            f"{label}: recovery: {step.action} has nothing to undo"
            + (" (recovery steps are not undone)" if in_recovery else "")
        )
    return problems


def _check_params(
    playbook: Playbook,
    spec: actions.ActionSpec,
    params: dict[str, Any],
    label: str,
    *,
    for_each: str | None,
    undo: bool = False,
) -> list[str]:
    problems: list[str] = []
    templated: set[str] = set()
    literal: dict[str, Any] = {}
    fields = spec.params.model_fields
    for key, value in params.items():
        refs = _references(value)
        if refs and key not in fields:
            problems.append(
                f"{label}: params.{key}: Extra inputs are not permitted "
                f"({spec.name} takes {', '.join(fields)})"
            )
        elif refs:
            templated.add(key)
            for ref in refs:
                problem = _check_reference(playbook, ref, for_each=for_each)
                if problem:
                    problems.append(f"{label}: params.{key}: {{{{ {ref} }}}}: {problem}")
        else:
            literal[key] = value
    try:
        spec.params.model_validate(literal)
    except ValidationError as invalid:
        for item in invalid.errors():
            field = str(item["loc"][0]) if item.get("loc") else ""
            if item["type"] == "missing" and field in templated:
                continue  # filled in from the incident when the step runs
            if item["type"] == "missing" and undo:
                continue  # an undo takes it from the containment step's result
            problems.append(f"{label}: params.{_where(item)}: {item['msg']}")
    return problems


def _references(value: Any) -> list[str]:
    if isinstance(value, str):
        return TEMPLATE.findall(value)
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _references(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _references(item)]
    return []


INCIDENT_FIELDS = ("id", "title", "category", "grade", "status")


def _check_reference(playbook: Playbook, ref: str, *, for_each: str | None) -> str | None:
    parts = ref.split(".")
    if parts[0] == "incident":
        if len(parts) == 2 and parts[1] in INCIDENT_FIELDS:
            return None
        if len(parts) == 3 and parts[1] == "links" and parts[2] in LINK_KINDS:
            return None
        return f"incident.<{'|'.join(INCIDENT_FIELDS)}> or incident.links.<{'|'.join(LINK_KINDS)}>"
    if parts[0] == "params":
        if len(parts) == 2 and parts[1] in playbook.params:
            return None
        return "params.<name> of a parameter declared under params:"
    if parts == ["item"]:
        return None if for_each else "{{ item }} only in a step with for_each"
    if parts == ["run", "id"]:
        return None
    return "known roots: incident, params, item, run.id"


def _read(path: Path) -> Playbook:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PlaybookError(f"{path}: cannot be read ({error.strerror})") from None
    return parse(text, str(path))


def validate_file(path: Path | str) -> Playbook:
    """The playbook in ``path``, or PlaybookError naming the file, step and field."""
    return _read(Path(path))


_CACHE: dict[tuple[str, int], Playbook] = {}


def _cached(path: Path) -> Playbook:
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    found = _CACHE.get(key)
    if found is None:
        found = _CACHE[key] = _read(path)
    return found


def load_report(settings: Settings) -> tuple[dict[str, Playbook], dict[str, str]]:
    """Every loadable playbook by name (custom ones replace shipped ones of the same
    name), and the problems of the files that did not load (by file)."""
    found: dict[str, Playbook] = {}
    problems: dict[str, str] = {}
    folders = [SHIPPED_DIR]
    if settings.playbooks_dir is not None:
        folders.append(Path(settings.playbooks_dir))
    for folder in folders:
        if not folder.is_dir():
            if folder != SHIPPED_DIR:
                problems[str(folder)] = f"{folder}: the playbooks folder does not exist"
            continue
        for path in sorted(folder.glob("*.yaml")):
            try:
                playbook = _cached(path)
            except ProblemError as error:
                problems[str(path)] = error.detail
                continue
            found[playbook.name] = playbook
    return found, problems


def load_all(settings: Settings) -> dict[str, Playbook]:
    return load_report(settings)[0]


def get_playbook(settings: Settings, name: str) -> Playbook:
    found, problems = load_report(settings)
    if name in found:
        return found[name]
    broken = [detail for path, detail in problems.items() if Path(path).stem == name]
    if broken:
        raise PlaybookError(broken[0])
    raise NotFound(f"no playbook '{name}'; known: {', '.join(sorted(found)) or 'none'}")


# ------------------------------------------------------------------ templating


class _Missing(Exception):
    pass


@dataclass
class _Scope:
    incident: dict[str, Any]
    links: dict[str, list[str]]
    params: dict[str, Any]
    run_id: str
    item: Any = None
    has_item: bool = False

    def lookup(self, ref: str) -> Any:
        parts = ref.split(".")
        if parts[0] == "incident":
            if len(parts) == 3 and parts[1] == "links":
                refs = self.links.get(parts[2]) or []
                if not refs:
                    raise _Missing(f"the incident has no {parts[2]} link")
                return refs[0]
            value = self.incident.get(parts[1]) if len(parts) == 2 else None
            if value is None:
                raise _Missing(f"the incident has no {ref[9:]}")
            return value
        if parts[0] == "params":
            value = self.params.get(parts[1]) if len(parts) == 2 else None
            if value is None or value == "":
                raise _Missing(f"the run was started without the parameter {parts[1]}")
            return value
        if parts == ["item"] and self.has_item:
            return self.item
        if parts == ["run", "id"]:
            return self.run_id
        raise _Missing(f"unknown reference {ref}")

    def each(self, for_each: str) -> list[Any]:
        root, _, rest = for_each.partition(".")
        if root == "incident":
            return list(self.links.get(rest[6:]) or [])
        value = self.params.get(rest)
        if value is None or value == "":
            return []
        return list(value) if isinstance(value, list | tuple) else [value]


def render(value: Any, scope: _Scope) -> Any:
    if isinstance(value, str):
        whole = TEMPLATE.fullmatch(value.strip())
        if whole:
            return scope.lookup(whole.group(1))
        return TEMPLATE.sub(lambda match: str(scope.lookup(match.group(1))), value)
    if isinstance(value, dict):
        return {key: render(item, scope) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, scope) for item in value]
    return value


def _scope(session: Session, incident: Incident, params: dict[str, Any], run_id: str) -> _Scope:
    links: dict[str, list[str]] = {}
    for link in incidents.links_of(session, incident.id):
        links.setdefault(link.kind, []).append(link.ref)
    return _Scope(
        incident={name: getattr(incident, name) for name in INCIDENT_FIELDS},
        links=links,
        params=params,
        run_id=run_id,
    )


# ------------------------------------------------------------------ runs


class StepOut(BaseModel):
    position: int
    name: str | None
    action: str
    params: dict[str, Any]
    requires_approval: bool
    approval_id: str | None
    status: str
    result: dict[str, Any] | None
    error: str | None
    started_at: Any = None
    finished_at: Any = None


class RunOut(BaseModel):
    id: str
    incident_id: str
    playbook: str
    playbook_version: str
    status: str
    phase: str
    parent_run_id: str | None
    params: dict[str, Any]
    error: str | None
    started_by: str
    started_at: Any
    finished_at: Any = None
    steps: list[StepOut]


def run_out(session: Session, run: PlaybookRun) -> RunOut:
    steps = [
        StepOut(
            position=step.position,
            name=step.name,
            action=step.action,
            params=step.params,
            requires_approval=step.requires_approval,
            approval_id=step.approval_id,
            status=step.status,
            result={k: v for k, v in (step.result or {}).items() if k != "plan"} or None,
            error=step.error,
            started_at=step.started_at,
            finished_at=step.finished_at,
        )
        for step in _steps(session, run.id)
    ]
    return RunOut(
        id=run.id,
        incident_id=run.incident_id,
        playbook=run.playbook,
        playbook_version=run.playbook_version,
        status=run.status,
        phase=run.phase,
        parent_run_id=run.parent_run_id,
        params=run.params or {},
        error=run.error,
        started_by=run.started_by,
        started_at=run.started_at,
        finished_at=run.finished_at,
        steps=steps,
    )


def get_run(session: Session, run_id: str) -> PlaybookRun:
    run = session.get(PlaybookRun, run_id)
    if run is None:
        raise NotFound(f"no playbook run '{run_id}'")
    return run


def runs_of(session: Session, incident_id: str) -> list[PlaybookRun]:
    query = (
        select(PlaybookRun)
        .where(PlaybookRun.incident_id == incident_id)
        .order_by(PlaybookRun.started_at, PlaybookRun.id)
    )
    return list(session.scalars(query))


def _steps(session: Session, run_id: str) -> list[PlaybookStepRun]:
    query = (
        select(PlaybookStepRun)
        .where(PlaybookStepRun.run_id == run_id)
        .order_by(PlaybookStepRun.position)
    )
    return list(session.scalars(query))


def _env(settings: Settings, services: Any) -> actions.ActionEnv:
    return actions.ActionEnv(settings=settings, risk=getattr(services, "risk", None))


def _clean_params(playbook: Playbook, given: dict[str, Any]) -> dict[str, Any]:
    values = {key: value for key, value in (given or {}).items() if value is not None}
    for name, spec in playbook.params.items():
        if name not in values and spec.default is not None:
            values[name] = spec.default
        if spec.required and values.get(name) in (None, ""):
            raise ValidationProblem(
                f"params.{name}: the playbook {playbook.name} needs it ({spec.description})"
            )
    for key, value in values.items():
        if not isinstance(value, str | int | float | bool | list):
            raise ValidationProblem(f"params.{key}: a text, number, yes/no or list")
    return values


def start_run(
    session: Session,
    settings: Settings,
    services: Any,
    *,
    incident_id: str,
    playbook: str,
    started_by: str,
    params: dict[str, Any] | None = None,
    phase: str = "containment",
) -> PlaybookRun:
    """Start a containment playbook on an incident; automatic steps run now, a guarded
    step waits for a second person. Runs in the caller's transaction."""
    if phase != "containment":
        raise ValidationProblem("phase: a run starts as containment; use run_recovery to undo")
    book = get_playbook(settings, playbook)
    incident = incidents.get_incident(session, incident_id)
    if incident.status in ("recovered", "closed"):
        raise Conflict(f"incident {incident.id} is {incident.status}; containment is over")
    values = _clean_params(book, params or {})
    now = clock.now()
    run = PlaybookRun(
        id=ids.new_id("playbook_run"),
        incident_id=incident.id,
        playbook=book.name,
        playbook_version=book.version_tag,
        status="running",
        phase="containment",
        params=values,
        parent_run_id=None,
        started_by=started_by[:64],
        started_at=now,
    )
    session.add(run)
    session.flush()
    scope = _scope(session, incident, values, run.id)
    position = 0
    for step in book.steps:
        for item, has_item in _expand(step, scope):
            position += 1
            scope.item, scope.has_item = item, has_item
            _plan_step(session, run, position, step, scope, item if has_item else None)
    scope.has_item = False
    incidents.add_timeline_entry(
        session,
        incident.id,
        kind="playbook",
        text=f"playbook {book.name} ({book.version_tag}) started: {position} steps",
        actor=started_by,
        data={"run_id": run.id, "playbook": book.name, "phase": "containment"},
    )
    events.emit(
        session,
        "playbook.run_started",
        {"run_id": run.id, "incident_id": incident.id, "playbook": book.name, "actor": started_by},
    )
    _advance(session, _env(settings, services), run)
    return run


def _expand(step: StepSpec, scope: _Scope) -> list[tuple[Any, bool]]:
    if step.for_each is None:
        return [(None, False)]
    values = scope.each(step.for_each)
    # Nothing to iterate over: one step, recorded as skipped with the reason.
    return [(value, True) for value in values] or [(None, False)]


def _plan_step(
    session: Session,
    run: PlaybookRun,
    position: int,
    step: StepSpec | RecoverySpec,
    scope: _Scope,
    item: Any,
    *,
    name: str | None = None,
    plan: dict[str, Any] | None = None,
    requires_approval: bool | None = None,
) -> PlaybookStepRun:
    spec = actions.get(step.action)
    status, error, params = "pending", None, {}
    if isinstance(step, StepSpec) and step.for_each is not None and not scope.has_item:
        status, error = "skipped", f"nothing to do: {step.for_each} is empty"
    else:
        try:
            params = render(step.params, scope)
        except _Missing as missing:
            status, error = "skipped", f"not applicable: {missing}"
    details = {
        "on_error": step.on_error if isinstance(step, StepSpec) else "continue",
        **({"item": item} if item is not None else {}),
        **(plan or {}),
    }
    row = PlaybookStepRun(
        id=ids.new_id("playbook_step"),
        run_id=run.id,
        position=position,
        name=name or (step.id if isinstance(step, StepSpec) else None),
        action=step.action,
        params=params,
        requires_approval=(
            bool(step.requires_approval) or spec.approval_required
            if requires_approval is None
            else requires_approval
        ),
        approval_id=None,
        status=status,
        result={"plan": details},
        error=error,
        started_at=None,
        finished_at=clock.now() if status == "skipped" else None,
    )
    session.add(row)
    session.flush()
    if status == "skipped":
        _record(session, run, row, actor="system")
    return row


def _advance(session: Session, env: actions.ActionEnv, run: PlaybookRun) -> None:
    """Run pending steps in order until one needs approval, one stops the run, or none
    are left."""
    run.status = "running"
    stopped = False
    for step in _steps(session, run.id):
        if stopped:
            if step.status == "pending":
                step.status, step.error = "skipped", "not run: an earlier step failed"
                step.finished_at = clock.now()
            continue
        if step.status == "waiting_approval":
            run.status = "waiting_approval"
            return
        if step.status != "pending":
            continue
        if step.requires_approval:
            _ask_approval(session, env, run, step)
            run.status = "waiting_approval"
            return
        _execute(session, env, run, step, actor=f"playbook:{run.id}")
        if step.status == "failed" and _plan(step).get("on_error") == "stop":
            stopped = True
    _finish(session, env, run, stopped=stopped)


def _plan(step: PlaybookStepRun) -> dict[str, Any]:
    plan = (step.result or {}).get("plan")
    return plan if isinstance(plan, dict) else {}


def _requester(session: Session, started_by: str) -> Principal:
    """Who asks for a guarded step's approval: the staff member who started the run, or
    the platform itself (intake, a drill) acting as incident commander."""
    found = identity.staff_role(session, started_by)
    role = found if found is not None else "incident_commander"
    return Principal(kind="staff", subject_id=started_by, session_id="playbook", role=role)


def _ask_approval(
    session: Session, env: actions.ActionEnv, run: PlaybookRun, step: PlaybookStepRun
) -> None:
    catalogue = ActionCatalogue()
    catalogue.add(approval_action(env.settings, env.risk))
    record = approvals.request(
        session,
        env.settings,
        catalogue,
        _requester(session, run.started_by),
        action=PLAYBOOK_STEP,
        target=step.id,
        params={},
        reason=(
            f"incident {run.incident_id}: playbook {run.playbook} step {step.position} "
            f"{step.action} {_brief(step.params)}"
        )[:500],
    )
    step.approval_id = record.id
    step.status = "waiting_approval"
    incidents.add_timeline_entry(
        session,
        run.incident_id,
        kind="approval",
        text=(
            f"playbook {run.playbook} step {step.position} {step.action} waits for a second "
            f"person's approval ({record.id})"
        ),
        actor=f"playbook:{run.id}",
        data={"run_id": run.id, "position": step.position, "approval_id": record.id},
    )
    events.emit(
        session,
        "playbook.step_waiting",
        {
            "run_id": run.id,
            "incident_id": run.incident_id,
            "position": step.position,
            "action": step.action,
            "approval_id": record.id,
        },
    )


def _brief(params: dict[str, Any]) -> str:
    shown = ", ".join(f"{key}={value}" for key, value in params.items() if key != "context")
    return f"({shown})" if shown else ""


def _execute(
    session: Session,
    env: actions.ActionEnv,
    run: PlaybookRun,
    step: PlaybookStepRun,
    *,
    actor: str,
) -> None:
    spec = actions.get(step.action)
    plan = _plan(step)
    undo_of = None
    if plan.get("undo_of"):
        undone = session.get(PlaybookStepRun, plan["undo_of"])
        undo_of = {k: v for k, v in ((undone.result if undone else None) or {}).items()}
        undo_of.pop("plan", None)
    ctx = actions.StepContext(
        env=env,
        incident_id=run.incident_id,
        run_id=run.id,
        step_run_id=step.id,
        actor=actor,
        undo_of=undo_of,
    )
    step.started_at = clock.now()
    output: dict[str, Any] = {}
    try:
        with session.begin_nested():
            parsed = spec.params.model_validate(step.params)
            output = spec.run(session, ctx, parsed)
        step.status, step.error = "done", None
    except actions.Skipped as why:
        step.status, step.error = "skipped", str(why)
    except ValidationError as invalid:
        first = invalid.errors()[0]
        step.status, step.error = "failed", f"params.{_where(first)}: {first['msg']}"
    except ProblemError as problem:
        step.status, step.error = "failed", problem.detail[:1000]
    step.result = {**output, "plan": plan}
    step.finished_at = clock.now()
    _record(session, run, step, actor=actor)


def _record(session: Session, run: PlaybookRun, step: PlaybookStepRun, *, actor: str) -> None:
    """The timeline entry and event of a finished step."""
    result = {k: v for k, v in (step.result or {}).items() if k != "plan"}
    text = f"playbook {run.playbook} step {step.position} {step.action}: {step.status}"
    if step.error:
        text += f" — {step.error}"
    elif result:
        text += f" — {_brief(result)}"
    incidents.add_timeline_entry(
        session,
        run.incident_id,
        kind="action",
        text=text,
        actor=actor,
        data={
            "run_id": run.id,
            "phase": run.phase,
            "position": step.position,
            "action": step.action,
            "status": step.status,
            "result": result,
        },
    )
    events.emit(
        session,
        "playbook.step_failed" if step.status == "failed" else "playbook.step_done",
        {
            "run_id": run.id,
            "incident_id": run.incident_id,
            "phase": run.phase,
            "position": step.position,
            "action": step.action,
            "status": step.status,
            "error": step.error,
            "actor": actor,
        },
    )


def _finish(session: Session, env: actions.ActionEnv, run: PlaybookRun, *, stopped: bool) -> None:
    steps = _steps(session, run.id)
    failed = [step for step in steps if step.status == "failed"]
    run.finished_at = clock.now()
    if stopped or (run.phase == "recovery" and failed):
        run.status = "failed"
        run.error = "; ".join(f"step {s.position} {s.action}: {s.error}" for s in failed)[:2000]
    else:
        run.status = "completed"
    incidents.add_timeline_entry(
        session,
        run.incident_id,
        kind="playbook",
        text=(
            f"playbook {run.playbook} {run.phase} {run.status}: "
            f"{sum(s.status == 'done' for s in steps)} done, {len(failed)} failed, "
            f"{sum(s.status == 'skipped' for s in steps)} skipped"
        ),
        actor=f"playbook:{run.id}",
        data={"run_id": run.id, "phase": run.phase, "status": run.status},
    )
    events.emit(
        session,
        "playbook.run_finished",
        {
            "run_id": run.id,
            "incident_id": run.incident_id,
            "playbook": run.playbook,
            "phase": run.phase,
            "status": run.status,
        },
    )
    if run.phase == "recovery":
        _after_recovery(session, run, steps)
    elif run.status == "completed":
        _move_incident(session, run, "contained")


def _after_recovery(session: Session, run: PlaybookRun, steps: list[PlaybookStepRun]) -> None:
    for step in steps:
        undone_id = _plan(step).get("undo_of")
        if undone_id and step.status in ("done", "skipped"):
            undone = session.get(PlaybookStepRun, undone_id)
            if undone is not None and undone.status == "done":
                undone.status = "undone"
    if run.status != "completed" or run.parent_run_id is None:
        return
    parent = get_run(session, run.parent_run_id)
    parent.status = "recovered"
    _move_incident(session, run, "recovered")


def _move_incident(session: Session, run: PlaybookRun, status: str) -> None:
    """contained after containment, recovered after recovery, when the flow allows (a
    report that reached containment was evidently confirmed)."""
    incident = incidents.get_incident(session, run.incident_id)
    path = {"contained": ("confirmed", "contained"), "recovered": ("recovered",)}[status]
    note = f"playbook {run.playbook} {run.phase} completed ({run.id})"
    for target in path:
        if incident.status == target:
            continue
        if target not in incidents.TRANSITIONS.get(incident.status, ()):
            if target == "confirmed":
                continue
            incidents.add_timeline_entry(
                session,
                incident.id,
                kind="note",
                text=f"{note}; the incident stays {incident.status} (not moved to {target})",
                actor=f"playbook:{run.id}",
            )
            return
        incident = incidents.set_status(
            session, incident.id, target, actor=f"playbook:{run.id}", note=note
        )


# ------------------------------------------------------------------ approval


def approval_action(settings: Settings, risk: Any = None) -> Action:
    """The ``playbook.step`` four-eyes entry: approving it runs the waiting step (in the
    approving transaction) and continues the run."""

    def check(session: Session, target: str, params: dict[str, Any]) -> dict[str, Any]:
        step = session.get(PlaybookStepRun, target)
        if step is None:
            raise NotFound(f"no playbook step '{target}'")
        if step.status not in ("pending", "waiting_approval"):
            raise Conflict(f"the step is {step.status}; nothing waits for approval")
        return {}

    def execute(session: Session, record: ApprovalRequest) -> dict[str, Any]:
        assert record.target is not None
        step = session.get(PlaybookStepRun, record.target)
        assert step is not None
        spec = actions.get(step.action)
        approver = record.decided_by or ""
        if spec.approver_permission is not None:
            role = identity.staff_role(session, approver)
            if role is None or not permissions.role_has(role, spec.approver_permission):
                raise Forbidden(
                    f"approving {step.action} also needs the permission "
                    f"'{spec.approver_permission}' (a playbook does not widen a role)"
                )
        run = get_run(session, step.run_id)
        env = actions.ActionEnv(settings=settings, risk=risk)
        _execute(session, env, run, step, actor=f"staff:{approver}")
        _advance(session, env, run)
        return {"step_status": step.status, "run_status": run.status, "run_id": run.id}

    return Action(
        PLAYBOOK_STEP,
        Permission.PLAYBOOKS_APPROVE,
        "run a guarded playbook step (containment or recovery)",
        check,
        execute,
    )


def approve_step(
    session: Session,
    settings: Settings,
    services: Any,
    *,
    run_id: str,
    position: int,
    approver: Principal,
    note: str | None = None,
) -> PlaybookRun:
    """A second staff member approves the waiting step: it runs now and the run goes on."""
    run = get_run(session, run_id)
    step = next((s for s in _steps(session, run.id) if s.position == position), None)
    if step is None:
        raise NotFound(f"run {run_id} has no step {position}")
    if step.status != "waiting_approval" or step.approval_id is None:
        raise Conflict(f"step {position} is {step.status}; nothing waits for approval")
    catalogue = getattr(services, "approvals", None)
    if catalogue is None or PLAYBOOK_STEP not in catalogue.actions:
        catalogue = ActionCatalogue()
        catalogue.add(approval_action(settings, getattr(services, "risk", None)))
    approvals.approve(session, catalogue, approver, step.approval_id, note)
    session.refresh(run)
    return run


# ------------------------------------------------------------------ recovery


def _withdraw_pending(
    session: Session, settings: Settings, services: Any, run: PlaybookRun
) -> None:
    """Recovery while a guarded step still waits: the run withdraws its approval request
    (as its maker), the steps not run are skipped, and the run counts as stopped."""
    catalogue = ActionCatalogue()
    catalogue.add(approval_action(settings, getattr(services, "risk", None)))
    maker = _requester(session, run.started_by)
    for step in _steps(session, run.id):
        if step.status == "waiting_approval" and step.approval_id is not None:
            record = approvals.get(session, step.approval_id)
            if approvals.effective_status(record) == approvals.PENDING:
                # If it cannot be withdrawn it stays pending, and its check refuses it once
                # the step no longer waits.
                with contextlib.suppress(ProblemError):
                    approvals.reject(
                        session, catalogue, maker, step.approval_id, "withdrawn: recovery started"
                    )
        if step.status in ("pending", "waiting_approval"):
            step.status, step.error = "skipped", "not run: recovery started before it ran"
            step.finished_at = clock.now()
    run.status = "failed"
    run.finished_at = clock.now()
    run.error = "stopped by recovery before every step ran"
    incidents.add_timeline_entry(
        session,
        run.incident_id,
        kind="playbook",
        text=f"playbook {run.playbook} stopped before its guarded steps ran: recovery started",
        actor=f"playbook:{run.id}",
        data={"run_id": run.id},
    )


def run_recovery(
    session: Session,
    settings: Settings,
    services: Any,
    *,
    run_id: str,
    started_by: str,
) -> PlaybookRun:
    """Undo a containment run's steps in reverse order (a recovery run of its own), then
    run the playbook's recovery_steps; guarded undo steps wait for approval."""
    parent = get_run(session, run_id)
    if parent.phase != "containment":
        raise Conflict("this is a recovery run; recover its containment run instead")
    if parent.status == "running":
        raise Conflict("the containment run is still running; recover it when it stops")
    if parent.status == "waiting_approval":
        _withdraw_pending(session, settings, services, parent)
    if parent.status == "recovered":
        raise Conflict("the containment run was recovered already")
    earlier = [
        run
        for run in runs_of(session, parent.incident_id)
        if run.parent_run_id == parent.id and run.status in ("running", "waiting_approval")
    ]
    if earlier:
        raise Conflict(f"recovery run {earlier[0].id} is still in progress")
    book = get_playbook(settings, parent.playbook)
    specs = {step.id: step for step in book.steps}
    incident = incidents.get_incident(session, parent.incident_id)
    now = clock.now()
    run = PlaybookRun(
        id=ids.new_id("playbook_run"),
        incident_id=parent.incident_id,
        playbook=parent.playbook,
        playbook_version=book.version_tag,
        status="running",
        phase="recovery",
        params=parent.params or {},
        parent_run_id=parent.id,
        started_by=started_by[:64],
        started_at=now,
    )
    session.add(run)
    session.flush()
    scope = _scope(session, incident, parent.params or {}, run.id)
    position = 0
    for done in reversed(_steps(session, parent.id)):
        step_spec = specs.get(done.name or "")
        if done.status != "done" or step_spec is None or step_spec.recovery is None:
            continue
        item = _plan(done).get("item")
        scope.item, scope.has_item = item, item is not None
        position += 1
        undo_spec = actions.get(step_spec.recovery.action)
        _plan_step(
            session,
            run,
            position,
            step_spec.recovery,
            scope,
            None,
            name=f"undo-{done.name}",
            plan={"undo_of": done.id, "undoes_position": done.position},
            requires_approval=step_spec.recovery.requires_approval or undo_spec.approval_required,
        )
    scope.has_item = False
    for extra in book.recovery_steps:
        for item, has_item in _expand(extra, scope):
            position += 1
            scope.item, scope.has_item = item, has_item
            _plan_step(session, run, position, extra, scope, item if has_item else None)
    incidents.add_timeline_entry(
        session,
        parent.incident_id,
        kind="playbook",
        text=f"recovery of playbook {parent.playbook} started: {position} steps",
        actor=started_by,
        data={"run_id": run.id, "parent_run_id": parent.id, "phase": "recovery"},
    )
    events.emit(
        session,
        "playbook.run_started",
        {
            "run_id": run.id,
            "incident_id": parent.incident_id,
            "playbook": parent.playbook,
            "phase": "recovery",
            "actor": started_by,
        },
    )
    _advance(session, _env(settings, services), run)
    return run


__all__ = [
    "PLAYBOOK_STEP",
    "Playbook",
    "PlaybookError",
    "RunOut",
    "StepOut",
    "approval_action",
    "approve_step",
    "get_playbook",
    "get_run",
    "load_all",
    "load_report",
    "parse",
    "run_out",
    "run_recovery",
    "runs_of",
    "start_run",
    "validate_file",
]
