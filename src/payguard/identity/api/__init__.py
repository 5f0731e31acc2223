"""The identity routes, one module per area: customers and sessions, factors, devices, approvals."""

from __future__ import annotations

from fastapi import APIRouter

from payguard.identity.api import approvals, customers, devices, factors

router = APIRouter()
for area in (customers, factors, devices, approvals):
    router.include_router(area.router)
