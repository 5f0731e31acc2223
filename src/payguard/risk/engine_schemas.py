"""Request and reply bodies of the engine's own routes: assess, decisions, alerts, reviews."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceFacts(_Strict):
    id: str = Field(min_length=1, max_length=128)
    new: bool = Field(default=False, description="the device has not paid before")
    registered_at: datetime | None = None


class SessionFacts(_Strict):
    started_at: datetime | None = None
    second_factor_at: datetime | None = Field(
        default=None, description="when the payer last passed a second factor"
    )
    failed_logins_1h: int = Field(default=0, ge=0, le=100_000)
    password_changed_at: datetime | None = None


class GeoPoint(_Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class AssessRequest(_Strict):
    """One payment of an outside system. Identifiers should be unique across the systems
    that share this engine (prefix them with your scheme, e.g. ``bankx:12345``)."""

    reference: str | None = Field(default=None, max_length=64, description="your payment id")
    kind: Literal["p2p", "merchant", "top_up", "withdrawal"] = "p2p"
    payer: str | None = Field(default=None, min_length=1, max_length=64)
    payee: str | None = Field(default=None, min_length=1, max_length=64)
    amount: int = Field(gt=0, le=10**15, description="minor units (fen for CNY)")
    currency: str = Field(min_length=3, max_length=3)
    channel: str = Field(default="api", max_length=16)
    time: datetime | None = Field(default=None, description="when it happened; default now")
    ip: str | None = Field(default=None, max_length=45)
    device: DeviceFacts | None = None
    session: SessionFacts | None = None
    geo: GeoPoint | None = None
    kyc_tier: int | None = Field(default=None, ge=0, le=3)
    bank_token: str | None = Field(default=None, max_length=64)


class ReasonOut(BaseModel):
    code: str
    text_en: str
    text_zh: str


class AssessReply(BaseModel):
    decision_id: str
    action: str
    score: int
    reasons: list[ReasonOut]
    customer_tip: str | None
    customer_tip_zh: str | None
    ruleset_version: str
    model_version: str
    model_score: float | None
    fallback: str | None
    elapsed_ms: float
    features: dict[str, Any]


class ReceiptOut(BaseModel):
    id: str
    payment_id: str | None
    source: str
    kind: str
    amount: int
    currency: str
    at: datetime
    action: str
    score: int
    reasons: list[dict[str, Any]]
    rule_hits: list[dict[str, Any]]
    ruleset_version: str
    model_version: str
    model_score: float | None
    contributions: list[dict[str, Any]] | None
    elapsed_ms: float
    fallback: bool
    features: dict[str, Any]
    context: dict[str, Any]

    model_config = ConfigDict(from_attributes=True)


class AlertOut(BaseModel):
    id: str
    kind: str
    severity: str
    status: str
    disposition: str | None
    title: str
    reason_codes: list[str]
    payment_id: str | None
    account_id: str | None
    customer_id: str | None
    amount: int | None
    currency: str | None
    assignee: str | None
    note: str | None
    created_at: datetime
    acknowledged_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None

    model_config = ConfigDict(from_attributes=True)


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None


class AssignRequest(_Strict):
    assignee: str = Field(min_length=1, max_length=40, description="a staff id")


class CloseRequest(_Strict):
    disposition: Literal["fraud", "legitimate", "false_positive", "duplicate", "no_action"]
    note: str | None = Field(default=None, max_length=2000)


class ReviewDecisionRequest(_Strict):
    reason: str = Field(min_length=1, max_length=500)


class ReviewOutcome(BaseModel):
    payment_id: str
    outcome: Literal["approved", "rejected", "approval_requested"]
    payment_status: str
    approval_id: str | None = None
