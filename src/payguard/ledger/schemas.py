from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class AccountOut(BaseModel):
    id: str
    kind: str
    name: str
    currency: str
    status: str
    ledger_balance: int
    held: int
    available_balance: int
    overdraft_limit: int | None
    owner_id: str | None
    created_at: datetime


class AccountPage(BaseModel):
    items: list[AccountOut]
    next_cursor: str | None


class StatementLineOut(BaseModel):
    entry_id: int
    transfer_id: str
    kind: str
    amount: int
    balance_after: int
    counterparty_account_id: str
    reference: str | None
    memo: str | None
    created_at: datetime


class StatementOut(BaseModel):
    account_id: str
    currency: str
    period_from: datetime
    period_to: datetime
    opening_balance: int
    closing_balance: int
    lines: list[StatementLineOut]


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: StrictStr = Field(min_length=3, max_length=200)


class InvariantsOut(BaseModel):
    ok: bool
    currency_sums: dict[str, int]
    unbalanced_currencies: list[str]
    unbalanced_transfers: list[str]
    drifted_accounts: list[str]
    held_mismatches: list[str]
    below_floor: list[str]
