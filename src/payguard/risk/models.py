"""Risk tables: decision receipts, rule sets, lists, models, alerts and analyst labels."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from payguard.db.base import Base, UTCDateTime


class RiskReceipt(Base):
    """One decision with everything needed to explain or replay it later."""

    __tablename__ = "risk_receipts"
    __table_args__ = (
        Index("ix_risk_receipts_at", "at"),
        Index("ix_risk_receipts_payment", "payment_id"),
        Index("ix_risk_receipts_customer", "customer_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str | None] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(16))  # pipeline | api
    customer_id: Mapped[str | None] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    payer: Mapped[str | None] = mapped_column(String(64))
    payee: Mapped[str | None] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)  # the inputs, no personal data
    features: Mapped[dict[str, Any]] = mapped_column(JSON)
    action: Mapped[str] = mapped_column(String(16))
    score: Mapped[int] = mapped_column(Integer)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    rule_hits: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # shadow hits too
    ruleset_version: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[str] = mapped_column(String(32))
    model_score: Mapped[float | None] = mapped_column(Float)
    contributions: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    elapsed_ms: Mapped[float] = mapped_column(Float)
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)


class RuleSet(Base):
    """A numbered version of the rules; the newest published one is in force."""

    __tablename__ = "risk_rulesets"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # draft | published | superseded
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approval_id: Mapped[str | None] = mapped_column(String(40))


class ListEntry(Base):
    """A block, allow or watch list entry for one subject (account, device, IP, ...)."""

    __tablename__ = "risk_list_entries"
    __table_args__ = (Index("ix_risk_list_entries_subject", "subject", "value"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    list_name: Mapped[str] = mapped_column(String(8))  # block | allow | watch
    subject: Mapped[str] = mapped_column(String(16))  # account|device|ip|cidr|payee|phone
    # The value matched; a phone is kept as its blind index, never in clear.
    value: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    removed_by: Mapped[str | None] = mapped_column(String(64))


class RiskModel(Base):
    """A trained model: the booster as LightGBM's own text format, never a pickle."""

    __tablename__ = "risk_models"

    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # trained | active | retired
    algorithm: Mapped[str] = mapped_column(String(32))
    feature_names: Mapped[list[str]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    booster: Mapped[str] = mapped_column(Text)
    data_source: Mapped[str] = mapped_column(Text)
    trained_by: Mapped[str] = mapped_column(String(64))
    trained_at: Mapped[datetime] = mapped_column(UTCDateTime)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RiskAlert(Base):
    __tablename__ = "risk_alerts"
    __table_args__ = (Index("ix_risk_alerts_status", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))  # review | block | fallback | list_hit | aml
    severity: Mapped[str] = mapped_column(String(8))  # low | medium | high | critical
    status: Mapped[str] = mapped_column(String(16))  # open | acknowledged | closed
    disposition: Mapped[str | None] = mapped_column(String(24))
    title: Mapped[str] = mapped_column(Text)
    reason_codes: Mapped[list[str]] = mapped_column(JSON)
    payment_id: Mapped[str | None] = mapped_column(String(40), index=True)
    account_id: Mapped[str | None] = mapped_column(String(40))
    customer_id: Mapped[str | None] = mapped_column(String(40))
    amount: Mapped[int | None] = mapped_column(Integer)
    currency: Mapped[str | None] = mapped_column(String(3))
    assignee: Mapped[str | None] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(40))


class RiskLabel(Base):
    """An analyst's verdict on a payment: training data for the next model."""

    __tablename__ = "risk_labels"

    payment_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    label: Mapped[str] = mapped_column(String(12))  # fraud | legitimate
    source: Mapped[str] = mapped_column(String(16))  # review | alert | import
    by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
