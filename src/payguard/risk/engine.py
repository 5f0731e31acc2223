"""The risk hook point of the payment pipeline.

``payments`` calls ``Assessor.assess`` for every payment and follows the action.
This module ships only ``PassThroughAssessor`` (always allow): the rules, features
and model arrive with the risk-engine issue behind the same interface.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Action = Literal["allow", "challenge", "review", "block"]


@dataclass(frozen=True)
class RiskContext:
    payment_id: str
    kind: str
    customer_id: str | None
    payer_account_id: str | None
    payee_account_id: str | None
    amount: int
    currency: str
    at: datetime
    channel: str = "api"
    ip: str | None = None
    device_id: str | None = None
    device_new: bool = False


@dataclass(frozen=True)
class Reason:
    code: str
    text_en: str
    text_zh: str


@dataclass(frozen=True)
class Decision:
    action: Action
    score: int
    reasons: tuple[Reason, ...] = ()
    customer_tip: str | None = None
    ruleset_version: str = "none"
    model_version: str = "none"
    features: dict[str, Any] = field(default_factory=dict)

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["reasons"] = [asdict(reason) for reason in self.reasons]
        return record


class Assessor(Protocol):
    def assess(self, context: RiskContext) -> Decision: ...


class PassThroughAssessor:
    """Allows everything; stands in until the risk engine replaces it."""

    def assess(self, context: RiskContext) -> Decision:
        return Decision(action="allow", score=0, ruleset_version="pass-through")
