"""The AML report as it leaves payguard: JSON over the API and on disk, one CSV row a case.

Amounts are integer minor units (fen for CNY); times are UTC. See docs/aml.md."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ReportKind = Literal["large_value", "suspicious"]
Typology = Literal[
    "large_cash",
    "large_transfer_person",
    "large_transfer_entity",
    "structuring",
    "fan_in",
    "fan_out",
    "rapid_pass_through",
    "cycle",
]
# in / out: money received or paid by the subject; through: in then out again;
# around: a ring of accounts the money went round.
Direction = Literal["in", "out", "through", "around"]
LineName = Literal["cash", "transfer_person", "transfer_entity"]
ThresholdValue = bool | int | list[int] | list[str]


class AmlEvidence(BaseModel):
    """One payment a case rests on."""

    model_config = ConfigDict(frozen=True)

    payment_id: str = Field(description="payguard payment id, or the outside system's reference")
    receipt_id: str = Field(description="the risk decision receipt it was read from")
    kind: str
    payer: str | None
    payee: str | None
    amount: int = Field(description="minor units")
    currency: str
    at: datetime = Field(description="UTC")


class AmlCase(BaseModel):
    """A large-value report or a suspicious-transaction case, with its evidence."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="stable: the same evidence gives the same id in every run")
    report: ReportKind
    typology: Typology
    subject_account: str
    direction: Direction
    total_amount: int = Field(
        description="minor units: the sum of the evidence payments; for a pass-through the "
        "money that came in, for a cycle the money sent round"
    )
    currency: str
    first_at: datetime
    last_at: datetime
    local_day: date | None = Field(
        default=None, description="large-value reports: the Beijing-time calendar day"
    )
    payment_ids: list[str]
    transactions: list[AmlEvidence]
    metrics: dict[str, int] = Field(
        default_factory=dict,
        description="the numbers the typology checked (counts, lines, percentages, seconds)",
    )
    explanation_en: str
    explanation_zh: str


class AmlLine(BaseModel):
    """A large-value reporting line and where its value comes from."""

    name: LineName
    amount: int = Field(description="minor units of `currency`")
    currency: str
    setting: str = Field(description="the environment variable that sets it")
    default: int = Field(description="the value payguard ships with")
    basis_en: str
    basis_zh: str


class AmlReport(BaseModel):
    """Large-value reports and suspicious cases of one period."""

    generated_at: datetime
    period_start: datetime = Field(description="UTC, inclusive")
    period_end: datetime = Field(description="UTC, exclusive")
    timezone: str = Field(description="the calendar days of large-value aggregation")
    lines: list[AmlLine]
    thresholds: dict[str, ThresholdValue] = Field(
        description="suspicious-typology thresholds; durations in seconds"
    )
    transactions: int = Field(description="completed transactions examined")
    unassessed_currencies: dict[str, int] = Field(
        default_factory=dict,
        description="transactions per currency the CNY lines were not applied to",
    )
    notes: list[str] = Field(default_factory=list)
    large_value: list[AmlCase]
    suspicious: list[AmlCase]
