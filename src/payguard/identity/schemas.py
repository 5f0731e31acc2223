from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class CustomerRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: StrictStr = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    password: StrictStr = Field(min_length=10, max_length=256)
    display_name: StrictStr = Field(min_length=1, max_length=120)
    currency: StrictStr | None = Field(default=None, min_length=3, max_length=3)


class CustomerOut(BaseModel):
    id: str
    username: str
    display_name: str
    kyc_tier: int
    status: str
    created_at: datetime
    wallet_account_ids: list[str]


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: StrictStr = Field(min_length=1, max_length=64)
    password: StrictStr = Field(min_length=1, max_length=256)


class SessionOut(BaseModel):
    token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    session_id: str
    expires_in: int


class KycTierChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: int = Field(ge=0, le=3)


class MeOut(BaseModel):
    kind: str
    id: str
    role: str | None
    session_id: str
