"""Least privilege: every route declares who may call it, and every role is held to it.

The matrix is built from the OpenAPI document, so a new route is covered the moment it
is mounted, and a route without a declaration fails here."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from payguard.identity.permissions import FOUR_EYES, ROLE_PERMISSIONS, Permission
from payguard.identity.service import STAFF_ROLES
from payguard.settings import Settings
from payguard.web import CUSTOMERS, PUBLIC, SIGNED_IN
from tests.factories import register, staff_token

# These end the caller's own session(s); they are exercised in test_sessions.py.
ENDS_THE_CALLERS_SESSION = {("DELETE", "/v1/sessions"), ("DELETE", "/v1/sessions/current")}


def operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    paths = client.get("/openapi.json").json()["paths"]
    return [
        (method.upper(), path, operation)
        for path, methods in paths.items()
        if path.startswith("/v1")
        for method, operation in methods.items()
    ]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x_1", path)


def test_every_route_declares_its_access(client: TestClient) -> None:
    undeclared = [
        f"{method} {path}"
        for method, path, operation in operations(client)
        if "x-payguard-access" not in operation
    ]
    assert undeclared == []
    for method, path, operation in operations(client):
        declared = operation["x-payguard-access"]
        assert declared.get("audience") in (None, PUBLIC, SIGNED_IN, CUSTOMERS), path
        if declared.get("permission"):
            Permission(declared.get("permission"))  # a real permission, not a typo


def test_every_role_gets_exactly_what_its_permissions_allow(
    client: TestClient, settings: Settings
) -> None:
    tokens = {role: staff_token(settings, role) for role in STAFF_ROLES}
    customer = register(client, "matrix", device=False)
    checked = 0
    for method, path, operation in operations(client):
        declared = operation["x-payguard-access"]
        if declared.get("audience") == PUBLIC or (method, path) in ENDS_THE_CALLERS_SESSION:
            continue
        callers = {f"staff:{role}": token for role, token in tokens.items()}
        callers["customer"] = customer.token
        for caller, token in callers.items():
            if caller == "customer":
                allowed = declared.get("audience") in (CUSTOMERS, SIGNED_IN)
            else:
                role = caller.split(":", 1)[1]
                allowed = declared.get("audience") == SIGNED_IN or (
                    declared.get("permission") is not None
                    and Permission(declared.get("permission")) in ROLE_PERMISSIONS[role]
                )
            reply = client.request(
                method,
                concrete(path),
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "matrix-1"},
                json={},
            )
            refused = reply.status_code == 403 and reply.json().get("code") == "forbidden"
            assert refused != allowed, (
                f"{caller} {method} {path}: {reply.status_code} {reply.text[:200]}"
            )
            checked += 1
    assert checked > 8 * 40


def test_roles_are_least_privilege() -> None:
    # Read-only roles change nothing.
    for role in ("viewer", "auditor"):
        changing = {p for p in ROLE_PERMISSIONS[role] if not p.value.endswith(":read")}
        assert changing <= {Permission.LEDGER_VERIFY}, role
    # Those who stop money in an incident cannot start it again alone.
    for role in ("risk_analyst", "incident_commander"):
        assert Permission.ACCOUNTS_FREEZE in ROLE_PERMISSIONS[role]
        assert Permission.ACCOUNTS_UNFREEZE not in ROLE_PERMISSIONS[role]
    # Only admin manages staff; every four-eyes permission has two roles to hold it.
    assert [r for r in STAFF_ROLES if Permission.STAFF_MANAGE in ROLE_PERMISSIONS[r]] == ["admin"]
    for permission in FOUR_EYES:
        assert sum(permission in ROLE_PERMISSIONS[r] for r in STAFF_ROLES) >= 2, permission
