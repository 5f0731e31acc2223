"""Routes of the signed-out password reset (identity/password_reset.py)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from payguard.identity import password_reset
from payguard.web import PUBLIC, ServicesDep, access

router = APIRouter(prefix="/v1", tags=["identity"])


class ResetCodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    channel: Literal["sms", "email"] = "sms"


class ResetConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["customer", "staff"] = "customer"
    username: str = Field(min_length=1, max_length=64)
    factor: Literal["otp", "totp", "recovery_code"] = "otp"
    code: str = Field(min_length=1, max_length=32)
    new_password: str = Field(min_length=1, max_length=256)


class ResetCodeOut(BaseModel):
    detail: str


@router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a password-reset code to the registered phone or e-mail",
    **access(audience=PUBLIC),
)
def request_reset_code(body: ResetCodeRequest, svc: ServicesDep) -> ResetCodeOut:
    svc.db.transact(
        lambda session: password_reset.request_code(
            session, svc.settings, username=body.username, channel=body.channel
        )
    )
    return ResetCodeOut(
        detail="if the account exists and has that contact on file, a code is on its way"
    )


@router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Set a new password with a reset code, TOTP or recovery code (signed out)",
    **access(audience=PUBLIC),
)
def confirm_reset(body: ResetConfirm, svc: ServicesDep) -> None:
    result = svc.db.transact(
        lambda session: password_reset.confirm(
            session,
            svc.settings,
            subject_kind=body.kind,
            username=body.username,
            factor=body.factor,
            code=body.code,
            new_password=body.new_password,
        )
    )
    if result.refusal is not None:
        raise result.refusal  # after the commit: the failure is counted
