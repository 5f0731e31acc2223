"""What crosses the API boundary for payments.

Types are checked here (an amount must be a JSON integer); values (positive,
within 64 bits, a known currency) are checked by the service so that each gets
its own problem type.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

RequestKind = Literal["p2p", "merchant", "top_up", "withdrawal"]


class PaymentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: RequestKind
    amount: StrictInt = Field(description="Integer count of minor units (fen for CNY)")
    currency: StrictStr = Field(min_length=1, max_length=8)
    payer_account_id: StrictStr | None = Field(
        default=None, description="Defaults to the caller's wallet in this currency"
    )
    payee_account_id: StrictStr | None = Field(default=None, description="p2p: payee wallet")
    payee_username: StrictStr | None = Field(default=None, description="p2p: payee username")
    merchant_id: StrictStr | None = Field(default=None, description="merchant payments")
    bank_account: StrictStr | None = Field(
        default=None, max_length=34, description="top-up / withdrawal: the bank account"
    )
    memo: StrictStr | None = Field(default=None, max_length=140)
    # The signed-instruction envelope (see docs/authentication.md): every field above and
    # these are signed by the device key, except signature and challenge_id.
    device_id: StrictStr | None = Field(default=None, max_length=40)
    nonce: StrictStr | None = Field(default=None, min_length=16, max_length=64)
    client_timestamp: StrictStr | None = Field(
        default=None, max_length=40, description="RFC 3339 time of signing on the device"
    )
    signature: StrictStr | None = Field(
        default=None,
        max_length=200,
        description="base64url Ed25519, or DER ECDSA P-256/SHA-256, over the RFC 8785 bytes",
    )
    challenge_id: StrictStr | None = Field(
        default=None, max_length=40, description="a passed step-up challenge for this instruction"
    )


class DeclineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: StrictStr = Field(min_length=3, max_length=200)


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt | None = Field(default=None, description="Defaults to what remains")
    memo: StrictStr | None = Field(default=None, max_length=140)


class PaymentHistoryItem(BaseModel):
    status: str
    at: datetime
    detail: str | None = None


class DecisionOut(BaseModel):
    """The risk engine's decision: ``payguard risk explain`` shows the whole receipt."""

    action: str
    score: int
    reasons: list[dict[str, Any]] = []
    customer_tip: str | None = Field(default=None, description="a warning for the payer")
    customer_tip_zh: str | None = None
    ruleset_version: str
    model_version: str


class PaymentOut(BaseModel):
    id: str
    kind: str
    status: str
    amount: int
    fee: int
    currency: str
    payer_account_id: str | None
    payee_account_id: str | None
    memo: str | None
    decision: DecisionOut | None
    transfer_id: str | None
    hold_id: str | None
    original_payment_id: str | None
    refunded_amount: int
    failure_code: str | None
    created_at: datetime
    updated_at: datetime
    history: list[PaymentHistoryItem] = []


class PaymentPage(BaseModel):
    items: list[PaymentOut]
    next_cursor: str | None


class MerchantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=120)
    owner_customer_id: StrictStr | None = None
    currency: StrictStr | None = None


class MerchantOut(BaseModel):
    id: str
    name: str
    account_id: str
    status: str
    owner_customer_id: str | None


class SettlementLine(BaseModel):
    rail: str
    direction: str
    currency: str
    succeeded_count: int
    succeeded_amount: int
    failed_count: int


class SettlementReport(BaseModel):
    day: date
    lines: list[SettlementLine]
