"""Least privilege: what each staff role may do, and who may call each route.

Every ``/v1`` route declares its access with ``payguard.web.access`` (one call gives
both the check and the ``x-payguard-access`` entry of its OpenAPI operation, so the
declaration and the enforcement cannot drift apart). A test walks the OpenAPI document
and calls every route with every role: a route without a declaration fails it.

Operations marked four-eyes in :data:`FOUR_EYES` are never executed by one person: the
permission lets a staff member *request* them and *approve another's request*
(``identity/approvals.py``).
"""

from __future__ import annotations

from enum import StrEnum

from payguard.errors import Forbidden
from payguard.identity.service import STAFF_ROLES, Principal


class Permission(StrEnum):
    CUSTOMERS_READ = "customers:read"
    KYC_TIER_CHANGE = "kyc:tier-change"  # four-eyes
    ACCOUNTS_READ = "accounts:read"
    ACCOUNTS_FREEZE = "accounts:freeze"
    ACCOUNTS_UNFREEZE = "accounts:unfreeze"  # four-eyes
    LEDGER_VERIFY = "ledger:verify"
    LEDGER_ADJUST = "ledger:adjust"  # four-eyes
    LIMITS_OVERRIDE = "limits:override"  # four-eyes
    PAYMENTS_READ = "payments:read"
    PAYMENTS_REFUND = "payments:refund"
    PAYOUTS_RELEASE = "payouts:release"  # four-eyes
    EVIDENCE_READ = "evidence:read"
    MERCHANTS_MANAGE = "merchants:manage"
    SETTLEMENT_READ = "settlement:read"
    LOGINS_UNLOCK = "logins:unlock"
    APPROVALS_READ = "approvals:read"
    STAFF_MANAGE = "staff:manage"
    AUDIT_READ = "audit:read"
    KEYS_ROTATE = "keys:rotate"  # four-eyes
    RISK_ASSESS = "risk:assess"  # external payment systems ask for a decision
    RISK_READ = "risk:read"  # decisions, receipts, rules, lists, models, alerts
    RISK_RULES_EDIT = "risk:rules-edit"
    RISK_RULES_PUBLISH = "risk:rules-publish"  # four-eyes
    RISK_LISTS_EDIT = "risk:lists-edit"
    RISK_ALERTS_HANDLE = "risk:alerts-handle"
    RISK_REVIEW = "risk:review"  # approve/reject held payments; four-eyes above a line
    RISK_MODELS_TRAIN = "risk:models-train"
    RISK_MODELS_ACTIVATE = "risk:models-activate"  # four-eyes
    AML_REPORT = "aml:read"  # read the large-value and suspicious-transaction reports
    INCIDENTS_READ = "incidents:read"  # incidents, timelines, reports
    INCIDENTS_MANAGE = "incidents:manage"  # open, grade, assign roles, tasks, status
    PLAYBOOKS_RUN = "playbooks:run"  # run containment steps; some steps need a second person
    PLAYBOOKS_APPROVE = "playbooks:approve"  # four-eyes: approve a guarded playbook step
    NOTIFY_SEND = "notify:send"  # send internal / customer / regulator notifications
    DRILLS_RUN = "drills:run"  # plan and run security drills
    DRILLS_READ = "drills:read"  # drill plans, runs, records
    EVALUATION_READ = "evaluation:read"  # the indicator system and its reports


FOUR_EYES = frozenset(
    {
        Permission.KYC_TIER_CHANGE,
        Permission.ACCOUNTS_UNFREEZE,
        Permission.LEDGER_ADJUST,
        Permission.LIMITS_OVERRIDE,
        Permission.PAYOUTS_RELEASE,
        Permission.KEYS_ROTATE,
        Permission.RISK_RULES_PUBLISH,
        Permission.RISK_MODELS_ACTIVATE,
        Permission.PLAYBOOKS_APPROVE,
    }
)

_READ = {Permission.CUSTOMERS_READ, Permission.ACCOUNTS_READ, Permission.PAYMENTS_READ}
_RISK_WORK = {
    Permission.RISK_READ,
    Permission.RISK_RULES_EDIT,
    Permission.RISK_RULES_PUBLISH,
    Permission.RISK_LISTS_EDIT,
    Permission.RISK_ALERTS_HANDLE,
    Permission.RISK_REVIEW,
    Permission.RISK_MODELS_TRAIN,
    Permission.RISK_MODELS_ACTIVATE,
}

ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    # Looks, changes nothing.
    "viewer": frozenset(_READ | {Permission.SETTLEMENT_READ}),
    # Investigates fraud: may stop money (freeze) but not start it again (unfreeze).
    "risk_analyst": frozenset(
        _READ
        | _RISK_WORK
        | {Permission.ACCOUNTS_FREEZE, Permission.EVIDENCE_READ, Permission.APPROVALS_READ}
    ),
    # Runs an incident: containment (freeze), evidence; release is someone else's call.
    "incident_commander": frozenset(
        _READ
        | {
            Permission.ACCOUNTS_FREEZE,
            Permission.EVIDENCE_READ,
            Permission.APPROVALS_READ,
            Permission.RISK_READ,
            Permission.RISK_LISTS_EDIT,
            Permission.RISK_ALERTS_HANDLE,
            Permission.INCIDENTS_READ,
            Permission.INCIDENTS_MANAGE,
            Permission.PLAYBOOKS_RUN,
            Permission.PLAYBOOKS_APPROVE,
            Permission.NOTIFY_SEND,
            Permission.DRILLS_RUN,
            Permission.DRILLS_READ,
            Permission.EVALUATION_READ,
        }
    ),
    # Day-to-day money operations, each sensitive one behind a second person.
    "operations": frozenset(
        _READ
        | {
            Permission.ACCOUNTS_FREEZE,
            Permission.ACCOUNTS_UNFREEZE,
            Permission.KYC_TIER_CHANGE,
            Permission.LIMITS_OVERRIDE,
            Permission.LEDGER_ADJUST,
            Permission.PAYOUTS_RELEASE,
            Permission.PAYMENTS_REFUND,
            Permission.MERCHANTS_MANAGE,
            Permission.SETTLEMENT_READ,
            Permission.LOGINS_UNLOCK,
            Permission.LEDGER_VERIFY,
            Permission.APPROVALS_READ,
        }
    ),
    # KYC and AML: identity tiers and limits, evidence, the ledger's integrity.
    "compliance": frozenset(
        _READ
        | {
            Permission.KYC_TIER_CHANGE,
            Permission.LIMITS_OVERRIDE,
            Permission.EVIDENCE_READ,
            Permission.LEDGER_VERIFY,
            Permission.SETTLEMENT_READ,
            Permission.APPROVALS_READ,
            Permission.AUDIT_READ,
            Permission.KEYS_ROTATE,
            Permission.RISK_READ,
            Permission.AML_REPORT,
            Permission.INCIDENTS_READ,
            Permission.NOTIFY_SEND,
            Permission.DRILLS_READ,
            Permission.EVALUATION_READ,
        }
    ),
    # Reads everything that is evidence, changes nothing.
    "auditor": frozenset(
        _READ
        | {
            Permission.RISK_READ,
            Permission.AML_REPORT,
            Permission.EVIDENCE_READ,
            Permission.LEDGER_VERIFY,
            Permission.SETTLEMENT_READ,
            Permission.APPROVALS_READ,
            Permission.AUDIT_READ,
            Permission.INCIDENTS_READ,
            Permission.DRILLS_READ,
            Permission.EVALUATION_READ,
        }
    ),
    # An outside payment system: asks the risk engine for decisions, sees nothing else.
    "risk_client": frozenset({Permission.RISK_ASSESS}),
    # Everything, including staff management; four-eyes still needs a second person.
    "admin": frozenset(Permission),
}
assert set(ROLE_PERMISSIONS) == set(STAFF_ROLES), "every role needs its permissions"


def role_has(role: str | None, permission: Permission) -> bool:
    return role is not None and permission in ROLE_PERMISSIONS.get(role, frozenset())


def holds(principal: Principal, permission: Permission) -> bool:
    return principal.is_staff and role_has(principal.role, permission)


def demand(principal: Principal, permission: Permission) -> None:
    """Raise Forbidden unless ``principal`` is staff holding ``permission``."""
    if not principal.is_staff:
        raise Forbidden("this is a staff operation")
    if not role_has(principal.role, permission):
        raise Forbidden(f"the role '{principal.role}' lacks the permission '{permission}'")


def roles_with(permission: Permission) -> list[str]:
    return [role for role in STAFF_ROLES if permission in ROLE_PERMISSIONS[role]]
