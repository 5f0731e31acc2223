"""One Settings object for the whole platform; no other module reads the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TierLimits(BaseModel):
    """Outgoing-payment limits of one KYC tier, in minor units of the wallet currency."""

    per_payment_max: int = Field(gt=0)
    daily_amount_max: int = Field(gt=0)
    daily_count_max: int = Field(gt=0)


class FeeRule(BaseModel):
    """Fee of one payment kind: fixed + basis points of the amount, clamped to [min, max]."""

    fixed: int = Field(default=0, ge=0)
    basis_points: int = Field(default=0, ge=0, le=10_000)
    minimum: int = Field(default=0, ge=0)
    maximum: int | None = Field(default=None, ge=0)


_DEV_ID_KEY = "payguard-development-id-digest-key"


def _default_tier_limits() -> dict[int, TierLimits]:
    # Defaults follow the PBoC 2015 No. 43 Class I/II/III payment-account idea: the less
    # identity is verified, the less money may move. Amounts in fen (CNY minor units).
    return {
        0: TierLimits(per_payment_max=50_000, daily_amount_max=100_000, daily_count_max=10),
        1: TierLimits(per_payment_max=500_000, daily_amount_max=1_000_000, daily_count_max=50),
        2: TierLimits(per_payment_max=5_000_000, daily_amount_max=10_000_000, daily_count_max=200),
        3: TierLimits(
            per_payment_max=50_000_000, daily_amount_max=100_000_000, daily_count_max=1000
        ),
    }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PAYGUARD_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    env: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite:///var/payguard.db"
    database_pool_size: int = Field(default=10, ge=1)
    redis_url: str | None = None
    nats_url: str | None = None
    require_services: bool = False

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    log_level: str = "INFO"
    log_json: bool | None = None  # None: JSON in production, console otherwise
    access_log: bool = True

    default_currency: str = "CNY"
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    session_ttl_seconds: int = Field(default=900, ge=60)
    idempotency_ttl_hours: int = Field(default=24, ge=24)
    idempotency_wait_seconds: float = Field(default=5.0, ge=0)
    hold_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    # Sessions: a short-lived access token plus a refresh token, both opaque.
    refresh_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=300)

    # Login throttling, per account and per source IP.
    login_max_failures: int = Field(default=5, ge=1)
    login_lock_seconds: int = Field(default=15 * 60, ge=1)
    login_ip_max_failures: int = Field(default=50, ge=1)
    login_delay_base_ms: int = Field(default=200, ge=0)
    login_delay_max_ms: int = Field(default=3000, ge=0)

    # Keyed digest of national ID numbers (uniqueness without storing the number).
    id_digest_key: SecretStr = SecretStr(_DEV_ID_KEY)

    # Second factors.
    totp_issuer: str = "payguard"
    recovery_code_count: int = Field(default=10, ge=1, le=20)
    otp_sender: Literal["outbox", "smtp"] = "outbox"
    otp_ttl_seconds: int = Field(default=300, ge=30)
    otp_max_attempts: int = Field(default=5, ge=1)
    otp_sends_per_hour: int = Field(default=5, ge=1)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "payguard <no-reply@payguard.local>"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    webauthn_rp_id: str = "localhost"
    webauthn_rp_name: str = "payguard"
    webauthn_origin: str = "http://localhost:8000"

    # Signed payment instructions and step-up.
    require_signed_instructions: bool = True
    instruction_max_skew_seconds: int = Field(default=300, ge=1)
    nonce_ttl_seconds: int = Field(default=900, ge=1)
    step_up_ttl_seconds: int = Field(default=300, ge=30)
    step_up_new_payee_amount: int = Field(default=100_000, ge=0)

    # Cipher suite of keys made from now on: standard (AES-256-GCM, SHA-256, Ed25519) or
    # gm (SM4-GCM, SM3, SM2). Existing keys keep their suite until rotated.
    crypto_suite: Literal["standard", "gm"] = "standard"
    # Who holds the KEK: the local keyring file, or an HSM through PKCS#11.
    key_provider: Literal["local", "pkcs11"] = "local"
    # Seals the local keyring file (scrypt, AES-256-GCM); without it the file is clear, 0600.
    keyring_passphrase: SecretStr | None = None
    pkcs11_library: str = "/usr/lib/softhsm/libsofthsm2.so"
    pkcs11_token_label: str = "payguard"  # noqa: S105 - a token name, not a secret
    pkcs11_pin: SecretStr | None = None

    # Audit log: how often a signed tree head is made (when there is something new).
    audit_head_interval_seconds: int = Field(default=300, ge=1)
    # Where each new signed tree head is POSTed (JSON) for a third party to witness.
    audit_head_webhook: str | None = None

    # Four-eyes approval.
    approval_ttl_hours: int = Field(default=24, ge=1)
    payout_approval_threshold: int = Field(default=5_000_000, ge=1)

    # Risk engine (risk/). Scores 0-100; the most severe of the rules' actions and the
    # score band decides. Past the time budget the fallback action applies.
    risk_time_budget_ms: float = Field(default=50.0, ge=0)
    risk_fallback_action: Literal["allow", "challenge", "review", "block"] = "challenge"
    risk_challenge_score: int = Field(default=40, ge=0, le=101)
    risk_review_score: int = Field(default=70, ge=0, le=101)
    risk_block_score: int = Field(default=90, ge=0, le=101)
    # Points the model adds: round(probability x 100 x weight).
    risk_model_weight: float = Field(default=1.0, ge=0)
    # How often each process looks for a newly published rule set, model or list change.
    risk_reload_seconds: float = Field(default=1.0, ge=0)
    # Local wall-clock hours for "night" and habit features.
    risk_timezone: str = "Asia/Shanghai"
    # Key prefix of the Redis counters (PAYGUARD_REDIS_URL): one per platform sharing Redis.
    risk_redis_prefix: str = "payguard:risk:"
    # An analyst's approval of a reviewed payment at or above this needs a second analyst.
    risk_review_four_eyes_amount: int = Field(default=1_000_000, ge=0)
    # Block reasons this severe also freeze the payer's wallet and tell the customer.
    risk_freeze_on_block: bool = True
    # AML large-value lines, fen (see docs/aml.md for their source).
    aml_large_cash: int = Field(default=5_000_000, ge=1)
    aml_large_transfer_person: int = Field(default=50_000_000, ge=1)
    aml_large_transfer_entity: int = Field(default=200_000_000, ge=1)

    # Notifications (notify/). Channels: outbox (the stored row is the delivery), webhook
    # (JSON POST signed with HMAC-SHA256, retried with exponential back-off), smtp.
    notify_default_language: Literal["zh-CN", "en"] = "zh-CN"
    # Where internal (staff have no contact on file) and external messages go by default.
    notify_internal_channel: Literal["outbox", "webhook", "smtp"] = "outbox"
    notify_customer_channel: Literal["outbox", "smtp"] = "outbox"
    notify_external_channel: Literal["outbox", "webhook", "smtp"] = "outbox"
    notify_webhook_url: str | None = None
    notify_webhook_secret: SecretStr | None = None
    notify_webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    notify_internal_emails: list[str] = Field(default_factory=list)
    notify_external_emails: list[str] = Field(default_factory=list)
    # Attempt n waits base x 2^(n-1) seconds (capped) before attempt n+1.
    notify_max_attempts: int = Field(default=5, ge=1, le=50)
    notify_backoff_base_seconds: float = Field(default=30.0, ge=0)
    notify_backoff_max_seconds: float = Field(default=3600.0, ge=0)
    # Regulator reporting clocks by grade, minutes from detection: the brief first report
    # and the full incident report (PBoC 2025 No. 4 as far as confirmed; IV is a house
    # rule; see docs/notify.md), and the summary report after closing, in working days.
    notify_regulator_deadline_minutes: dict[str, int] = Field(
        default_factory=lambda: {"I": 30, "II": 30, "III": 30, "IV": 1440}
    )
    notify_regulator_full_report_minutes: dict[str, int] = Field(
        default_factory=lambda: {"I": 120, "II": 120, "III": 120, "IV": 2880}
    )
    notify_regulator_final_report_days: int = Field(default=5, ge=1)

    # Incidents and containment playbooks (incidents/).
    # Platform control: a tampered payment instruction (a registered device's signature that
    # does not cover what was sent: malware or a proxy altered it) makes that customer step
    # up on every payment for this many hours (a step-up segment); 0 = off.
    step_up_after_tamper_hours: int = Field(default=24, ge=0, le=720)
    # Grade thresholds YAML (None: the shipped incidents/data/grading.yaml, see
    # docs/incidents.md for the sources of its numbers).
    incident_grading_path: Path | None = None
    # Intake mapping YAML: which events open incidents (None: incidents/data/intake.yaml).
    incident_intake_path: Path | None = None
    # How often the app's background thread turns outbox events into incidents; 0 = never.
    incident_intake_seconds: float = Field(default=2.0, ge=0)
    # Set by a drill sandbox: intake stamps this drill run id on the incidents it opens.
    incident_drill_run_id: str | None = None
    # Where `payguard incidents report` writes post-incident reports (under var_dir if None).
    incident_reports_dir: Path | None = None
    # Custom containment playbooks (*.yaml) besides the shipped incidents/playbooks/; a
    # custom playbook with a shipped one's name replaces it (docs/playbooks.md).
    playbooks_dir: Path | None = None

    # Rate limits and staff read-volume detection.
    # Token buckets on the API's write requests (POST/PUT/PATCH/DELETE under /v1/), per
    # source IP and per session (docs/rate-limits.md); in-process, or in Redis when
    # PAYGUARD_REDIS_URL is set so that every server process shares them.
    rate_limit_enabled: bool = True
    rate_limit_ip_per_second: float = Field(default=20.0, gt=0)
    rate_limit_ip_burst: int = Field(default=100, ge=1)
    rate_limit_session_per_second: float = Field(default=10.0, gt=0)
    rate_limit_session_burst: int = Field(default=30, ge=1)
    rate_limit_redis_prefix: str = "payguard:rate:"
    # One security.rate_limited event per limited key within this many seconds.
    rate_limit_event_seconds: float = Field(default=60.0, gt=0)
    # Staff reads of customer, account and payment data (GET /v1/customers, /v1/accounts,
    # /v1/payments, /v1/devices): records read per staff member within the window; at the
    # alert line a risk alert (kind staff_read_volume) and security.staff_read_volume, at
    # the block line further reads of that session are refused (429 read-volume-exceeded).
    staff_read_window_seconds: float = Field(default=600.0, gt=0)
    staff_read_alert_records: int = Field(default=1000, ge=1)
    staff_read_block_records: int = Field(default=3000, ge=1)
    # Refused staff operations (403: a permission the role lacks, a self-approval): each
    # one is audited; this many by one staff member within the window raise an alert.
    staff_refusal_window_seconds: float = Field(default=600.0, gt=0)
    staff_refusal_alert_count: int = Field(default=3, ge=1)

    # Drills (drills/).

    # Evaluation indicator system (evaluation/).
    # A custom indicators YAML (groups, weights, thresholds, targets); None: the shipped
    # evaluation/data/indicators.yaml, whose defaults docs/evaluation.md explains.
    evaluation_indicators_path: Path | None = None
    # Where evaluation reports go without --out; None: <var_dir>/reports/evaluation.
    evaluation_reports_dir: Path | None = None

    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)

    rail_latency_ms: int = Field(default=0, ge=0)
    rail_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    rail_seed: int | None = None

    tier_limits: dict[int, TierLimits] = Field(default_factory=_default_tier_limits)
    fees: dict[str, FeeRule] = Field(
        default_factory=lambda: {"withdrawal": FeeRule(fixed=100, basis_points=10, maximum=2500)}
    )

    demo_password: SecretStr = SecretStr("demo-Passw0rd!")
    # The demo admin's TOTP secret (base32), so `payguard demo code` can show its codes.
    demo_staff_totp_secret: SecretStr = SecretStr("PAYGUARDDEMOSTAFFTOTPKEY")
    var_dir: Path = Path("var")

    @field_validator("default_currency")
    @classmethod
    def _upper_currency(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _no_development_secrets_in_production(self) -> Settings:
        # A published default key would let anyone recompute ID digests.
        if self.env == "production" and self.id_digest_key.get_secret_value() == _DEV_ID_KEY:
            raise ValueError("set PAYGUARD_ID_DIGEST_KEY: the development key is public")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def json_logs(self) -> bool:
        return self.env == "production" if self.log_json is None else self.log_json

    def redacted(self) -> dict[str, Any]:
        """The effective settings with secrets and credentials hidden, for display."""
        shown: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(getattr(self, name), SecretStr):
                shown[name] = "**********"
            elif name.endswith("_url") and isinstance(value, str):
                shown[name] = _redact_url(value)
            else:
                shown[name] = value
        return shown


def _redact_url(url: str) -> str:
    """Hide the password part of a connection URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
