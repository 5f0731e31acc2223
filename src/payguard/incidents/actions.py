"""The containment actions a playbook step can take, each wired to a real platform control.

Every action has a pydantic parameter model (unknown or missing parameters are refused
when a playbook is loaded, and again with the rendered values before the step runs), does
its work in the caller's transaction through the owning domain's service, emits an
audited ``controls.*`` event, and returns the result that is recorded with the step.

Actions that change the platform in a way that can be reversed name their *undo*
(``suspend_channel`` → ``resume_channel``). A playbook must give such a step a recovery,
and the recovery receives the containment step's result (``undo_of``), so it undoes
exactly what the step did — the suspension it created, the amount it moved — and leaves
alone what was already so before the playbook (an account frozen earlier stays frozen).

Some actions always need a second person (``approval_required``): a playbook may not run
them without ``requires_approval: true``, and the approver must also hold the domain's own
four-eyes permission (``approver_permission``), so a playbook never lets someone do what
their role alone could not: unfreezing needs ``accounts:unfreeze``, key rotation
``keys:rotate``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import event
from sqlalchemy.orm import Session

from payguard import clock
from payguard.crypto import rotation
from payguard.crypto.envelope import envelope_for
from payguard.errors import Conflict, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.identity import devices, password_reset, sessions, stepup_segments
from payguard.identity import service as identity
from payguard.identity.permissions import Permission
from payguard.ledger import service as ledger
from payguard.ledger.models import AccountStatus, SystemAccount
from payguard.payments import channels
from payguard.payments import service as payments
from payguard.risk import lists
from payguard.settings import Settings


@dataclass
class ActionEnv:
    """What actions reach besides the session: settings, and the running platform's risk
    engine (its list cache is told at once when a step changes a list)."""

    settings: Settings
    risk: Any = None


@dataclass
class StepContext:
    env: ActionEnv
    incident_id: str
    run_id: str
    step_run_id: str
    actor: str  # "playbook:<run id>" — who the audit log shows as acting
    undo_of: dict[str, Any] | None = None  # the containment step's result, for an undo


class Skipped(Exception):
    """The step has nothing to do (recorded as skipped, with the reason)."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


Run = Callable[[Session, StepContext, Any], dict[str, Any]]


@dataclass(frozen=True)
class ActionSpec:
    name: str
    summary: str
    params: type[_Params]
    run: Run
    undo: str | None = None  # the action a recovery of this one must use
    undoes: str | None = None  # set on undo actions: which action they reverse
    approval_required: bool = False
    approver_permission: Permission | None = None
    examples: dict[str, Any] = field(default_factory=dict)


def _undo_value(ctx: StepContext, given: Any, key: str, what: str) -> Any:
    if given is not None:
        return given
    if ctx.undo_of and ctx.undo_of.get(key) is not None:
        return ctx.undo_of[key]
    raise ValidationProblem(f"params.{key}: give the {what} (or run as the recovery of a step)")


def _emit(session: Session, topic: str, ctx: StepContext, **payload: Any) -> None:
    events.emit(
        session,
        topic,
        {**payload, "incident_id": ctx.incident_id, "run_id": ctx.run_id, "actor": ctx.actor},
    )


# ------------------------------------------------------------------ accounts


class FreezeParams(_Params):
    account_id: str = Field(min_length=1, max_length=40)
    reason: str = Field(default="incident containment", min_length=1, max_length=200)


def _freeze(session: Session, ctx: StepContext, p: FreezeParams) -> dict[str, Any]:
    account = ledger.get_account(session, p.account_id)
    if account.status == AccountStatus.FROZEN:
        return {"account_id": account.id, "already_frozen": True}
    ledger.set_status(
        session, account.id, AccountStatus.FROZEN, reason=f"incident {ctx.incident_id}: {p.reason}"
    )
    _emit(session, "controls.account_frozen", ctx, account_id=account.id)
    return {"account_id": account.id, "already_frozen": False, "from": str(account.status)}


class UnfreezeParams(_Params):
    account_id: str | None = Field(default=None, min_length=1, max_length=40)
    reason: str = Field(default="incident recovered", min_length=1, max_length=200)


def _unfreeze(session: Session, ctx: StepContext, p: UnfreezeParams) -> dict[str, Any]:
    if ctx.undo_of and ctx.undo_of.get("already_frozen"):
        raise Skipped("the account was frozen before the playbook ran; it stays frozen")
    account_id = _undo_value(ctx, p.account_id, "account_id", "account to unfreeze")
    account = ledger.get_account(session, account_id)
    if account.status != AccountStatus.FROZEN:
        raise Skipped(f"the account is {account.status}, not frozen")
    ledger.set_status(
        session, account_id, AccountStatus.ACTIVE, reason=f"incident {ctx.incident_id}: {p.reason}"
    )
    _emit(session, "controls.account_unfrozen", ctx, account_id=account_id)
    return {"account_id": account_id, "status": AccountStatus.ACTIVE.value}


# ------------------------------------------------------------------ payment channels


class SuspendParams(_Params):
    scope: str = Field(min_length=1, max_length=80)
    reason: str = Field(default="incident containment", min_length=1, max_length=500)


def _suspend(session: Session, ctx: StepContext, p: SuspendParams) -> dict[str, Any]:
    found, created = channels.suspend(
        session,
        scope=p.scope,
        reason=f"incident {ctx.incident_id}: {p.reason}",
        by=ctx.actor,
        incident_id=ctx.incident_id,
    )
    return {"suspension_id": found.id, "scope": found.scope, "created": created}


class ResumeParams(_Params):
    scope: str | None = Field(default=None, min_length=1, max_length=80)
    suspension_id: str | None = Field(default=None, min_length=1, max_length=40)


def _resume(session: Session, ctx: StepContext, p: ResumeParams) -> dict[str, Any]:
    if ctx.undo_of is not None and not ctx.undo_of.get("created", True):
        raise Skipped("the channel was suspended before the playbook ran; its owner resumes it")
    if p.scope is None and p.suspension_id is None:
        suspension_id = _undo_value(ctx, None, "suspension_id", "suspension to lift")
        lifted = channels.resume(
            session, by=ctx.actor, suspension_id=suspension_id, reason="incident recovered"
        )
    else:
        lifted = channels.resume(
            session,
            by=ctx.actor,
            suspension_id=p.suspension_id,
            scope=p.scope,
            reason="incident recovered",
        )
    return {"suspension_id": lifted.id, "scope": lifted.scope, "resumed": True}


# ------------------------------------------------------------------ sessions, passwords


class SubjectParams(_Params):
    subject: Literal["customer", "staff"] = "customer"
    id: str = Field(min_length=1, max_length=40)


def _check_subject(session: Session, p: SubjectParams) -> None:
    if p.subject == "staff" and not identity.staff_exists(session, p.id):
        raise NotFound(f"no staff member '{p.id}'")
    if p.subject == "customer":
        identity.get_customer(session, p.id)


def _revoke_sessions(session: Session, ctx: StepContext, p: SubjectParams) -> dict[str, Any]:
    _check_subject(session, p)
    revoked = sessions.revoke_all(session, p.subject, p.id, reason="revoked")
    _emit(
        session,
        "controls.sessions_revoked",
        ctx,
        subject_kind=p.subject,
        **{"customer_id" if p.subject == "customer" else "staff_id": p.id},
        sessions_revoked=revoked,
    )
    return {"subject": p.subject, "id": p.id, "sessions_revoked": revoked}


class ForceResetParams(SubjectParams):
    reason: str = Field(default="credentials exposed", min_length=1, max_length=200)


def _force_reset(session: Session, ctx: StepContext, p: ForceResetParams) -> dict[str, Any]:
    outcome = password_reset.force(
        session,
        subject_kind=p.subject,
        subject_id=p.id,
        by=ctx.actor,
        reason=p.reason,
        incident_id=ctx.incident_id,
    )
    return {"subject": p.subject, "id": p.id, **outcome}


# ------------------------------------------------------------------ devices and IPs


class BlockDeviceParams(_Params):
    device_id: str = Field(min_length=1, max_length=40)
    reason: str = Field(default="device used in an incident", min_length=1, max_length=200)
    hours: int | None = Field(default=None, ge=1, le=24 * 365)


def _expiry(hours: int | None) -> Any:
    return clock.now() + timedelta(hours=hours) if hours else None


def _add_block(
    session: Session, ctx: StepContext, subject: str, value: str, reason: str, hours: int | None
) -> tuple[str | None, bool]:
    """(entry id, created): an entry already on the block list is left to its owner."""
    try:
        entry = lists.add_entry(
            session,
            ctx.env.settings,
            list_name="block",
            subject=subject,
            value=value,
            reason=f"incident {ctx.incident_id}: {reason}",
            expires_at=_expiry(hours),
            by=ctx.actor,
        )
    except Conflict as taken:
        return str(taken.extra.get("entry_id") or "") or None, False
    _refresh_lists(session, ctx)
    return entry.id, True


def _refresh_lists(session: Session, ctx: StepContext) -> None:
    """Tell this process's risk engine once the change is committed (a reload before the
    commit would read the old lists and keep them for a reload interval)."""
    cache = getattr(ctx.env.risk, "lists", None)
    if cache is None or session.info.get("payguard_lists_listener"):
        return
    session.info["payguard_lists_listener"] = True

    def ended(_session: Session, transaction: Any) -> None:
        # The step runs in a savepoint: only the end of the outermost transaction counts
        # (after a rollback the extra reload is harmless).
        if transaction.parent is None:
            lists.invalidate(cache)

    event.listen(session, "after_transaction_end", ended)


def _block_device(session: Session, ctx: StepContext, p: BlockDeviceParams) -> dict[str, Any]:
    device = devices.find_device(session, p.device_id)
    if device is None:
        raise NotFound(f"no device '{p.device_id}'")
    devices.revoke(session, ctx.env.settings, device.customer_id, device.id, actor=ctx.actor)
    entry_id, created = _add_block(session, ctx, "device", device.id, p.reason, p.hours)
    _emit(session, "controls.device_blocked", ctx, device_id=device.id, list_entry_id=entry_id)
    return {
        "device_id": device.id,
        "customer_id": device.customer_id,
        "device_revoked": True,
        "list_entry_id": entry_id,
        "created": created,
    }


class UnblockParams(_Params):
    list_entry_id: str | None = Field(default=None, min_length=1, max_length=40)


def _unblock(session: Session, ctx: StepContext, p: UnblockParams) -> dict[str, Any]:
    if ctx.undo_of is not None and not ctx.undo_of.get("created", True):
        raise Skipped("the block list entry existed before the playbook ran; it stays")
    entry_id = _undo_value(ctx, p.list_entry_id, "list_entry_id", "block list entry")
    entry = lists.get_entry(session, entry_id)
    if entry.removed_at is not None:
        raise Skipped(f"the block list entry was already removed by {entry.removed_by}")
    lists.remove_entry(session, entry_id, by=ctx.actor)
    _refresh_lists(session, ctx)
    _emit(session, "controls.unblocked", ctx, list_entry_id=entry_id, subject=entry.subject)
    # A revoked device stays revoked: the customer registers it again with a second factor.
    return {"list_entry_id": entry_id, "subject": entry.subject, "removed": True}


class BlockIpParams(_Params):
    ip: str = Field(min_length=2, max_length=64, description="an address or a CIDR range")
    reason: str = Field(default="source of an attack", min_length=1, max_length=200)
    hours: int | None = Field(default=24, ge=1, le=24 * 365)


def _block_ip(session: Session, ctx: StepContext, p: BlockIpParams) -> dict[str, Any]:
    subject = "cidr" if "/" in p.ip else "ip"
    value = lists.normalise_value(ctx.env.settings, subject, p.ip)
    entry_id, created = _add_block(session, ctx, subject, value, p.reason, p.hours)
    _emit(session, "controls.ip_blocked", ctx, subject=subject, value=value, list_entry_id=entry_id)
    return {"subject": subject, "value": value, "list_entry_id": entry_id, "created": created}


# ------------------------------------------------------------------ step-up


class StepUpParams(_Params):
    segment: Literal["all", "kyc_tier", "new_devices", "customer"]
    value: str | int | None = None
    hours: int = Field(default=24, ge=1, le=stepup_segments.MAX_HOURS)
    reason: str = Field(default="incident containment", min_length=1, max_length=500)


def _raise_step_up(session: Session, ctx: StepContext, p: StepUpParams) -> dict[str, Any]:
    segment = stepup_segments.raise_step_up(
        session,
        segment=p.segment,
        value=p.value,
        hours=p.hours,
        reason=f"incident {ctx.incident_id}: {p.reason}",
        by=ctx.actor,
        incident_id=ctx.incident_id,
    )
    return {
        "segment_id": segment.id,
        "segment": segment.segment,
        "value": segment.value,
        "expires_at": segment.expires_at.isoformat(),
    }


class LiftStepUpParams(_Params):
    segment_id: str | None = Field(default=None, min_length=1, max_length=40)


def _lift_step_up(session: Session, ctx: StepContext, p: LiftStepUpParams) -> dict[str, Any]:
    segment_id = _undo_value(ctx, p.segment_id, "segment_id", "step-up segment")
    found = stepup_segments.get(session, segment_id)
    if found.lifted_at is not None:
        raise Skipped("the step-up segment was already lifted")
    if found.expires_at <= clock.now():
        raise Skipped("the step-up segment has expired already")
    stepup_segments.lift(session, segment_id, by=ctx.actor)
    return {"segment_id": segment_id, "lifted": True}


# ------------------------------------------------------------------ money


class MerchantParams(_Params):
    merchant_id: str = Field(min_length=1, max_length=40)


def _secure_funds(session: Session, ctx: StepContext, p: MerchantParams) -> dict[str, Any]:
    """Move the merchant's available balance to SUSPENSE (seed 002 "funds secured")."""
    merchant = payments.find_merchant(session, p.merchant_id)
    if merchant is None:
        raise NotFound(f"no merchant '{p.merchant_id}'")
    balance = ledger.get_balance(session, merchant.account_id)
    result: dict[str, Any] = {
        "merchant_id": merchant.id,
        "account_id": merchant.account_id,
        "currency": balance.currency,
        "amount": 0,
        "transfer_id": None,
    }
    if balance.available <= 0:
        return result  # nothing to secure; held funds are already out of reach
    suspense = ledger.system_account_id(session, SystemAccount.SUSPENSE, balance.currency)
    posted = ledger.post_transfer(
        session,
        debit_account_id=merchant.account_id,
        credit_account_id=suspense,
        amount=balance.available,
        currency=balance.currency,
        kind="incident_secure",
        reference=ctx.incident_id,
        # Securing must work on an account an earlier step froze.
        allow_frozen_debit=True,
    )
    result.update(amount=balance.available, transfer_id=posted.id, suspense_account_id=suspense)
    _emit(
        session,
        "controls.funds_secured",
        ctx,
        account_id=merchant.account_id,
        merchant_id=merchant.id,
        amount=balance.available,
        currency=balance.currency,
        transfer_id=posted.id,
    )
    return result


class ReleaseFundsParams(_Params):
    transfer_id: str | None = Field(default=None, min_length=1, max_length=40)


def _release_funds(session: Session, ctx: StepContext, p: ReleaseFundsParams) -> dict[str, Any]:
    """Move exactly the secured amount from SUSPENSE back to the merchant's account."""
    transfer_id = _undo_value(ctx, p.transfer_id, "transfer_id", "securing transfer")
    secured = ledger.get_transfer(session, transfer_id)
    if secured.kind != "incident_secure":
        raise ValidationProblem("params.transfer_id: not a transfer that secured funds")
    if secured.reversed_amount:
        raise Skipped("the secured funds were already returned")
    posted = ledger.reverse_transfer(
        session, secured.id, amount=secured.amount, reference=ctx.incident_id
    )
    _emit(
        session,
        "controls.funds_released",
        ctx,
        account_id=secured.debit_account_id,
        amount=secured.amount,
        currency=secured.currency,
        transfer_id=posted.id,
    )
    return {
        "account_id": secured.debit_account_id,
        "amount": secured.amount,
        "currency": secured.currency,
        "transfer_id": posted.id,
        "reverses_transfer_id": secured.id,
    }


# ------------------------------------------------------------------ keys


class RotateParams(_Params):
    targets: list[str] = Field(default_factory=lambda: ["kek"], min_length=1, max_length=5)


def _rotate(session: Session, ctx: StepContext, p: RotateParams) -> dict[str, Any]:
    """Rotate the KEK (every data key re-wrapped) and/or the data keys of a purpose.

    The audit log's Ed25519 tree-head key is not rotated here: tree heads already
    published must stay verifiable under the key their witnesses hold."""
    allowed = ("kek", *rotation.PURPOSES)
    for target in p.targets:
        if target not in allowed:
            raise ValidationProblem(f"params.targets: each one of {', '.join(allowed)}")
    envelope = envelope_for(ctx.env.settings)
    done: dict[str, Any] = {}
    for target in p.targets:
        if target == "kek":
            kek_id, rewrapped = rotation.rotate_kek(session, envelope)
            done["kek"] = {"active_kek": kek_id, "data_keys_rewrapped": rewrapped}
        else:
            owners = rotation.rotate_data_keys(session, envelope, target)
            done[target] = {"owners_with_new_keys": owners, "next": "payguard keys reencrypt"}
    _emit(session, "controls.keys_rotated", ctx, targets=list(p.targets))
    return {"rotated": done}


# ------------------------------------------------------------------ people


class NotifyParams(_Params):
    audience: Literal["internal", "customer", "external"] = "internal"
    template: str = Field(min_length=1, max_length=64)
    language: Literal["zh-CN", "en"] | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    to_staff_id: str | None = Field(default=None, max_length=40)
    to_customer_id: str | None = Field(default=None, max_length=40)
    channel: Literal["outbox", "webhook", "smtp"] | None = None


def _notify(session: Session, ctx: StepContext, p: NotifyParams) -> dict[str, Any]:
    try:
        notify: Any = importlib.import_module("payguard.notify.service")
    except ImportError:
        notify = None
    send = getattr(notify, "send", None)
    if send is None:
        # Recorded as intent: the timeline shows who should have been told.
        _emit(session, "controls.notify_recorded", ctx, template=p.template, audience=p.audience)
        return {"sent": False, "recorded_only": True, "why": "the notify service is not installed"}
    if p.template == "regulator_report" and p.audience == "external":
        # The draft with the fields seed 002 lists and the PBoC deadline, from the incident.
        out = notify.send_regulator_report(
            session, ctx.env.settings, ctx.incident_id, language=p.language, channel=p.channel
        )
    else:
        out = send(
            session,
            ctx.env.settings,
            audience=p.audience,
            template=p.template,
            language=p.language,
            context={**_incident_facts(session, ctx.incident_id), **p.context},
            to_staff_id=p.to_staff_id,
            to_customer_id=p.to_customer_id,
            channel=p.channel,
            incident_id=ctx.incident_id,
            created_by=ctx.actor[:64],
        )
    return {
        "sent": True,
        "notification_id": getattr(out, "id", None),
        "status": getattr(out, "status", None),
        "channel": getattr(out, "channel", None),
    }


def _incident_facts(session: Session, incident_id: str) -> dict[str, Any]:
    """What the incident templates show (ids and grades; no personal data)."""
    from payguard.incidents import service as incidents

    incident = incidents.get_incident(session, incident_id)
    return {
        "incident_id": incident.id,
        "title": incident.title,
        "grade": incident.grade,
        "status": incident.status,
        "category": incident.category,
    }


class TaskParams(_Params):
    title: str = Field(min_length=1, max_length=500)
    owner: str | None = Field(default=None, max_length=64)
    due_hours: int | None = Field(default=None, ge=1, le=24 * 90)
    kind: Literal["task", "improvement"] = "task"


def _task(session: Session, ctx: StepContext, p: TaskParams) -> dict[str, Any]:
    """A human step (scan the servers, read the logs): an incident task with an owner."""
    from payguard.incidents import service as incidents

    task = incidents.add_task(
        session,
        ctx.incident_id,
        title=p.title,
        actor=ctx.actor,
        owner=p.owner,
        due_at=clock.now() + timedelta(hours=p.due_hours) if p.due_hours else None,
        kind=p.kind,
    )
    return {"task_id": task.id, "title": task.title}


# ------------------------------------------------------------------ the catalogue

ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec("freeze_account", "freeze a ledger account (no debits)", FreezeParams,
                   _freeze, undo="unfreeze_account"),
        ActionSpec("unfreeze_account", "unfreeze an account (four-eyes)", UnfreezeParams,
                   _unfreeze, undoes="freeze_account", approval_required=True,
                   approver_permission=Permission.ACCOUNTS_UNFREEZE),
        ActionSpec("suspend_channel", "suspend a payment channel", SuspendParams, _suspend,
                   undo="resume_channel"),
        ActionSpec("resume_channel", "resume a suspended payment channel", ResumeParams,
                   _resume, undoes="suspend_channel"),
        ActionSpec("revoke_sessions", "end every session of a customer or staff member",
                   SubjectParams, _revoke_sessions),
        ActionSpec("force_password_reset", "the password signs in no more until reset",
                   ForceResetParams, _force_reset),
        ActionSpec("block_device", "revoke a device and put it on the block list",
                   BlockDeviceParams, _block_device, undo="unblock_device"),
        ActionSpec("unblock_device", "take a device off the block list", UnblockParams,
                   _unblock, undoes="block_device"),
        ActionSpec("block_ip", "put an IP address or range on the block list", BlockIpParams,
                   _block_ip, undo="unblock_ip"),
        ActionSpec("unblock_ip", "take an IP address or range off the block list",
                   UnblockParams, _unblock, undoes="block_ip"),
        ActionSpec("raise_step_up", "demand step-up of a payer segment for a while",
                   StepUpParams, _raise_step_up, undo="lift_step_up"),
        ActionSpec("lift_step_up", "lift a raised step-up segment", LiftStepUpParams,
                   _lift_step_up, undoes="raise_step_up"),
        ActionSpec("secure_merchant_funds", "move a merchant's available balance to suspense",
                   MerchantParams, _secure_funds, undo="release_merchant_funds"),
        ActionSpec("release_merchant_funds", "return secured funds to the merchant (four-eyes)",
                   ReleaseFundsParams, _release_funds, undoes="secure_merchant_funds",
                   approval_required=True),
        ActionSpec("rotate_signing_keys", "rotate the KEK and/or data keys (four-eyes)",
                   RotateParams, _rotate, approval_required=True,
                   approver_permission=Permission.KEYS_ROTATE),
        ActionSpec("notify", "send a notification (internal, customer, external)",
                   NotifyParams, _notify),
        ActionSpec("create_task", "open an incident task for a person", TaskParams, _task),
    )
}  # fmt: skip


def get(name: str) -> ActionSpec:
    spec = ACTIONS.get(name)
    if spec is None:
        raise ValidationProblem(f"unknown action '{name}'; one of {', '.join(sorted(ACTIONS))}")
    return spec


__all__ = ["ACTIONS", "ActionEnv", "ActionSpec", "Skipped", "StepContext", "get"]
