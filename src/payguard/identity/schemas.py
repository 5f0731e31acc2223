from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class CustomerRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: StrictStr = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    password: StrictStr = Field(min_length=10, max_length=256)
    display_name: StrictStr = Field(min_length=1, max_length=120)
    currency: StrictStr | None = Field(default=None, min_length=3, max_length=3)
    phone: StrictStr | None = Field(
        default=None, pattern=r"^\+[1-9]\d{6,14}$", description="E.164, e.g. +8613800138000"
    )
    email: StrictStr | None = Field(
        default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    )
    legal_name: StrictStr | None = Field(
        default=None, min_length=1, max_length=120, description="the name on the document"
    )
    id_document_type: (
        Literal[
            "cn_resident_id",
            "passport",
            "hk_macau_permit",
            "taiwan_permit",
            "foreign_permanent_residence",
        ]
        | None
    ) = Field(default=None, description="default cn_resident_id when id_number is given")
    id_number: StrictStr | None = Field(
        default=None,
        min_length=5,
        max_length=40,
        description="mainland IDs are checked (GB 11643 check digit, birth date); "
        "stored only masked and as a keyed digest",
    )


class CustomerOut(BaseModel):
    id: str
    username: str
    display_name: str
    kyc_tier: int
    status: str
    created_at: datetime
    wallet_account_ids: list[str]
    legal_name: str | None = None
    id_document_type: str | None = None
    id_number_masked: str | None = None
    phone_masked: str | None = None
    email_masked: str | None = None


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: StrictStr = Field(min_length=1, max_length=64)
    password: StrictStr = Field(min_length=1, max_length=256)
    device_id: StrictStr | None = Field(
        default=None, max_length=40, description="bind the session to this registered device"
    )
    otp: StrictStr | None = Field(
        default=None, max_length=16, description="staff: the TOTP code (mandatory)"
    )


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: StrictStr = Field(min_length=1, max_length=128)


class SessionOut(BaseModel):
    token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    session_id: str
    expires_in: int
    refresh_token: str | None = None
    refresh_expires_in: int | None = None


class ActiveSessionOut(BaseModel):
    id: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    device_id: str | None
    auth_level: str
    source_ip: str | None
    user_agent: str | None
    current: bool


class UnlockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject_kind: Literal["customer", "staff"] = "customer"
    username: StrictStr = Field(min_length=1, max_length=64)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class KycTierChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: int = Field(ge=0, le=3)
    reason: str = Field(min_length=3, max_length=500)


class ApprovalCreate(BaseModel):
    """Ask for a four-eyes operation; another staff member must approve it."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(
        max_length=48,
        description="kyc.tier_change | account.unfreeze | limits.override | "
        "ledger.adjustment | payout.release",
    )
    target: str = Field(
        min_length=1,
        max_length=80,
        description="customer id, account id (debited account for an adjustment) or payment id",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = Field(min_length=3, max_length=500)


class ApprovalDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=500)


class ApprovalOut(BaseModel):
    id: str
    action: str
    target: str | None
    params: dict[str, Any]
    reason: str
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    status: str
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    executed_at: datetime | None
    result: dict[str, Any] | None


class MeOut(BaseModel):
    kind: str
    id: str
    role: str | None
    session_id: str


# ------------------------------------------------------------ devices, step-up, evidence


class DeviceRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=80)
    algorithm: Literal["ed25519", "p256"] = "ed25519"
    public_key: StrictStr = Field(
        min_length=40, max_length=1000, description="SubjectPublicKeyInfo PEM"
    )
    platform: dict[str, StrictStr] | None = Field(
        default=None, description="os, model, app_version: facts the risk engine may use"
    )
    factor: Literal["totp", "otp", "recovery_code"] = Field(
        description="the second factor proving this is the customer"
    )
    code: StrictStr = Field(min_length=4, max_length=64)


class DeviceRename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr = Field(min_length=1, max_length=80)


class DeviceOut(BaseModel):
    id: str
    name: str
    algorithm: str
    key_fingerprint: str
    platform: dict[str, str] | None
    status: str
    is_new: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ChallengeOut(BaseModel):
    id: str
    status: str
    reasons: list[str]
    allowed_factors: list[str]
    instruction_hash: str | None
    expires_at: datetime
    factor_used: str | None


class ChallengeCodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Literal["sms", "email"]


class ChallengeCodeSent(BaseModel):
    sent_to: str


class ChallengeProof(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factor: Literal["totp", "sms", "email", "passkey"]
    code: StrictStr | None = Field(default=None, max_length=16)
    credential: dict[str, Any] | None = Field(
        default=None, description="passkey: the WebAuthn assertion (PublicKeyCredential JSON)"
    )


class EvidenceOut(BaseModel):
    payment_id: str
    device_id: str
    algorithm: str
    signature_valid: bool
    hash_matches: bool
    instruction: dict[str, Any]
    instruction_hash: str
    step_up_challenge_id: str | None
    verified_at: datetime


# ------------------------------------------------------------ factors


class TotpStarted(BaseModel):
    secret: str
    otpauth_uri: str
    qr_png_url: str


class CodeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: StrictStr = Field(min_length=4, max_length=16)


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class OtpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Literal["sms", "email"]
    purpose: Literal["device", "login", "step_up", "enrol"] = "device"


class OtpSent(BaseModel):
    sent_to: str
    expires_in: int


class FactorsOut(BaseModel):
    totp: bool
    recovery_codes_left: int
    passkeys: int
    phone: str | None
    email: str | None


class PasskeyOptionsOut(BaseModel):
    challenge_id: str
    options: dict[str, Any] = Field(
        description="PublicKeyCredentialCreationOptions for navigator.credentials.create"
    )


class PasskeyRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    challenge_id: StrictStr = Field(min_length=1, max_length=40)
    name: StrictStr = Field(min_length=1, max_length=80)
    credential: dict[str, Any] = Field(description="the attestation (PublicKeyCredential JSON)")
    factor: Literal["totp", "otp", "recovery_code"] | None = Field(
        default=None,
        description="an existing second factor proves the enrolment (needed once you have one)",
    )
    code: StrictStr | None = Field(default=None, min_length=4, max_length=64)


class PasskeyOut(BaseModel):
    id: str
    name: str
    aaguid: str | None
    sign_count: int
    created_at: datetime
    last_used_at: datetime | None
