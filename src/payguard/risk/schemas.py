"""Pydantic models of the risk domain that cross the API boundary (and rule files)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# ---------------------------------------------------------------------- rules
# A rule of the risk engine (risk/rules.py), as written in a rule file, stored in a
# rule set version and sent to /v1/risk/rulesets; and the rule set routes' bodies.

RuleAction = Literal["challenge", "review", "block"]
RuleMode = Literal["active", "shadow"]
RULE_ID_PATTERN = r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$"
REASON_CODE_PATTERN = r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$"


class RuleDefinition(BaseModel):
    """One rule: a CEL expression over the payment's features that must yield a bool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        min_length=1, max_length=64, pattern=RULE_ID_PATTERN, description="a slug: new-device-large"
    )
    description: str = Field(
        min_length=1, max_length=2000, description="the threat it catches, for analysts"
    )
    expression: str = Field(
        min_length=1,
        max_length=4000,
        description="CEL over the feature dictionary, yielding a bool (docs/risk-rules.md)",
    )
    action: RuleAction | None = Field(
        default=None, description="what a hit does at least; null: it only adds points"
    )
    score: int = Field(default=0, ge=0, le=100, description="points a hit adds (0-100)")
    reason_code: str = Field(
        min_length=1, max_length=64, pattern=REASON_CODE_PATTERN, description="UPPER_SNAKE"
    )
    reason_en: str = Field(min_length=1, max_length=300, description="the reason, for staff")
    reason_zh: str = Field(min_length=1, max_length=300, description="the reason in Chinese")
    tip_en: str | None = Field(
        default=None, max_length=500, description="a plain-language warning for the payer"
    )
    tip_zh: str | None = Field(default=None, max_length=500, description="the tip in Chinese")
    mode: RuleMode = Field(
        default="active", description="shadow: evaluated and recorded, changes nothing"
    )
    enabled: bool = Field(default=True, description="disabled rules are not evaluated")
    severe: bool = Field(
        default=False, description="a block for this reason also freezes the payer's wallet"
    )

    @model_validator(mode="after")
    def _severe_blocks(self) -> RuleDefinition:
        if self.severe and self.action != "block":
            raise ValueError("severe: only a rule whose action is block can be severe")
        return self


class RuleSetIn(BaseModel):
    """A new draft rule set: the whole list of rules, replacing none until published."""

    model_config = ConfigDict(extra="forbid")

    rules: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=500,
        description="rule objects (fields as in docs/risk-rules.md); checked as a whole",
    )
    note: str = Field(default="", max_length=2000, description="what changed and why")


class RuleSetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    status: Literal["draft", "published", "superseded"]
    rules: list[RuleDefinition]
    note: str
    created_by: str
    created_at: datetime
    published_at: datetime | None
    approval_id: str | None


class RuleSetSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    status: Literal["draft", "published", "superseded"]
    rule_count: int
    note: str
    created_by: str
    created_at: datetime
    published_at: datetime | None
    approval_id: str | None


class ActiveRuleSetOut(BaseModel):
    """What is in force: the newest published version, or the built-in pack."""

    version: str = Field(description="a published version number, or builtin-<sha256 prefix>")
    source: Literal["published", "builtin"]
    published_at: datetime | None
    approval_id: str | None
    rules: list[RuleDefinition]


class ChangedDecisionOut(BaseModel):
    payment_id: str
    decision_id: str
    at: datetime
    old_action: str
    new_action: str
    old_score: int
    new_score: int


class BacktestOut(BaseModel):
    ruleset_version: str
    start: datetime
    end: datetime
    receipts: int
    skipped: int = Field(description="receipts without stored features (not replayed)")
    changed_count: int
    changed: list[ChangedDecisionOut] = Field(description="the first changed decisions")
    old_actions: dict[str, int]
    new_actions: dict[str, int]
    labelled: int
    precision: float | None
    recall: float | None
    old_precision: float | None
    old_recall: float | None
    alerts_per_day: dict[str, int] = Field(description="review + block per UTC day, replayed")
    old_alerts_per_day: dict[str, int]
