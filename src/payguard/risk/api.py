"""The risk engine over HTTP: one router gathering the risk domain's routes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
