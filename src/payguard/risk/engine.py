"""The risk engine: ``assess(context) -> Decision`` for every payment.

``payments`` calls :meth:`RiskEngine.assess` synchronously and follows the action;
``POST /v1/risk/assess`` offers the same to outside payment systems. One assessment:

1. the features of the payment (``features.py``: velocity from the counter store, the
   payer's habits, session and device facts, list verdicts);
2. the active model's probability of fraud (``learning.py``), if one is active;
3. the rule set in force (``rules.py``): active rules give actions and score points,
   shadow rules are only recorded;
4. the action: the most severe of the rules' actions and the score band;
5. the payment is recorded in the counters for the next one (not when blocked).

A hard time budget (``risk_time_budget_ms``) bounds it: past the budget, or when a
part fails (Redis unreachable, a broken model), the fallback action applies
(``risk_fallback_action``, default challenge), a metric counts it and the receipt is
marked so that an alert records it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from payguard.observability import RISK_DECISIONS, RISK_FALLBACKS, RISK_LATENCY, get_logger
from payguard.risk.features import FeatureComputer, ListSnapshot, NoLists, PaymentFacts
from payguard.settings import Settings

Action = Literal["allow", "challenge", "review", "block"]
SEVERITY: dict[str, int] = {"allow": 0, "challenge": 1, "review": 2, "block": 3}
log = get_logger(__name__)


@dataclass(frozen=True)
class RiskContext:
    """What the payment path (or an outside system) knows when it asks for a decision."""

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
    device_registered_at: datetime | None = None
    bank_token: str | None = None
    phone_index: str | None = None
    kyc_tier: int | None = None
    session_started_at: datetime | None = None
    second_factor_at: datetime | None = None
    failed_logins_1h: int = 0
    password_changed_at: datetime | None = None
    latitude: float | None = None
    longitude: float | None = None
    payee_kind: str | None = None  # customer | merchant | bank

    def facts(self) -> PaymentFacts:
        # A withdrawal's "payee" is the bank instrument it pays out to.
        payee = self.payee_account_id
        if self.kind == "withdrawal" and payee is None:
            payee = f"bank:{self.bank_token}" if self.bank_token else None
        return PaymentFacts(
            at=self.at,
            kind=self.kind,
            amount=self.amount,
            currency=self.currency,
            payer=self.payer_account_id,
            payee=payee,
            customer_id=self.customer_id,
            channel=self.channel,
            device_id=self.device_id,
            device_registered_at=self.device_registered_at,
            device_new=self.device_new,
            ip=self.ip,
            bank_token=self.bank_token,
            phone_index=self.phone_index,
            kyc_tier=self.kyc_tier,
            session_started_at=self.session_started_at,
            second_factor_at=self.second_factor_at,
            failed_logins_1h=self.failed_logins_1h,
            password_changed_at=self.password_changed_at,
            latitude=self.latitude,
            longitude=self.longitude,
        )

    def as_record(self) -> dict[str, Any]:
        """The inputs as stored in the receipt (identifiers and facts, no personal data)."""
        record = asdict(self)
        for key, value in record.items():
            if isinstance(value, datetime):
                record[key] = value.isoformat()
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RiskContext:
        """The context back from a receipt (to warm the counters of a new process)."""
        values = {key: record[key] for key in _CONTEXT_FIELDS if key in record}
        for key in _TIME_FIELDS:
            if isinstance(values.get(key), str):
                values[key] = datetime.fromisoformat(values[key])
        return cls(**values)


_CONTEXT_FIELDS = tuple(RiskContext.__dataclass_fields__)
_TIME_FIELDS = tuple(
    name for name, spec in RiskContext.__dataclass_fields__.items() if "datetime" in str(spec.type)
)


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
    customer_tip_zh: str | None = None
    ruleset_version: str = "none"
    model_version: str = "none"
    features: dict[str, Any] = field(default_factory=dict)
    rule_hits: tuple[dict[str, Any], ...] = ()
    model_score: float | None = None
    contributions: tuple[dict[str, Any], ...] = ()
    elapsed_ms: float = 0.0
    fallback: str | None = None  # why the fallback policy applied: timeout | error
    severe: bool = False  # a block for a reason that also freezes the payer's wallet

    def as_record(self) -> dict[str, Any]:
        """The summary kept on the payment; the receipt keeps the rest."""
        return {
            "action": self.action,
            "score": self.score,
            "reasons": [asdict(reason) for reason in self.reasons],
            "customer_tip": self.customer_tip,
            "customer_tip_zh": self.customer_tip_zh,
            "ruleset_version": self.ruleset_version,
            "model_version": self.model_version,
        }


class Assessor(Protocol):
    def assess(self, context: RiskContext, *, observe: bool = True) -> Decision: ...

    def observe(self, context: RiskContext) -> None: ...


class PassThroughAssessor:
    """Allows everything: for tools that never submit payments (reports, sweeps)."""

    def assess(self, context: RiskContext, *, observe: bool = True) -> Decision:
        return Decision(action="allow", score=0, ruleset_version="pass-through")

    def observe(self, context: RiskContext) -> None:
        return None


class RuleHitLike(Protocol):
    rule_id: str
    reason_code: str
    action: str | None
    score: int
    mode: str
    severe: bool
    reason_en: str
    reason_zh: str
    tip_en: str | None
    tip_zh: str | None


class RuleSetLike(Protocol):
    version: str

    def evaluate(self, features: dict[str, Any]) -> list[Any]: ...


class ScoringModelLike(Protocol):
    version: str

    def score(self, features: dict[str, Any]) -> float: ...

    def explain(self, features: dict[str, Any], top: int = 5) -> list[dict[str, Any]]: ...


class Source(Protocol):
    def current(self) -> Any: ...


class _Fixed:
    def __init__(self, value: Any) -> None:
        self.value = value

    def current(self) -> Any:
        return self.value


FALLBACK_REASONS = {
    "timeout": Reason(
        "RISK_TIME_BUDGET_EXCEEDED",
        "The risk check took longer than its time budget; the fallback policy applied.",
        "风险评估超出时间预算，已按降级策略处理。",
    ),
    "error": Reason(
        "RISK_ENGINE_UNAVAILABLE",
        "Part of the risk check was unavailable; the fallback policy applied.",
        "风险评估部分不可用，已按降级策略处理。",
    ),
}
MODEL_REASON = Reason(
    "MODEL_HIGH_RISK",
    "The fraud model scores this payment as risky.",
    "欺诈模型判定该笔支付风险较高。",
)


class RiskEngine:
    def __init__(
        self,
        settings: Settings,
        computer: FeatureComputer,
        rules: Source,
        models: Source | None = None,
        lists: Source | None = None,
    ) -> None:
        self.settings = settings
        self.computer = computer
        self.rules = rules
        self.models = models or _Fixed(None)
        self.lists = lists or _Fixed(NoLists())

    def assess(self, context: RiskContext, *, observe: bool = True) -> Decision:
        """Decide; unless told not to, record the payment (when not blocked) at once.

        The payment path records it itself (:meth:`observe`) once the payment goes ahead,
        so a challenged attempt and its step-up retry count once, not twice."""
        started = time.perf_counter()
        facts = context.facts()
        try:
            decision = self._decide(facts, started)
        except Exception as error:  # a broken part must not stop payments: fall back
            log.warning("risk_assessment_failed", error_type=type(error).__name__)
            decision = self._fallback("error", {}, "none", "none", started)
        if decision.fallback is None and decision.elapsed_ms > self.settings.risk_time_budget_ms:
            decision = self._fallback(
                "timeout",
                decision.features,
                decision.ruleset_version,
                decision.model_version,
                started,
            )
        if observe and decision.action != "block":
            self._observe(facts)
        RISK_LATENCY.observe(decision.elapsed_ms / 1000.0)
        RISK_DECISIONS.labels(decision.action).inc()
        if decision.fallback:
            RISK_FALLBACKS.labels(decision.fallback).inc()
        return decision

    def warm(self) -> None:
        """Load the rule set, model and lists now, not in the first payment's time budget."""
        self.rules.current()
        self.models.current()
        self.lists.current()

    def observe(self, context: RiskContext) -> None:
        """Count the payment in the velocity and habit counters."""
        self._observe(context.facts())

    def _observe(self, facts: PaymentFacts) -> None:
        try:
            self.computer.observe(facts)
        except Exception as error:  # a lost count must not fail the payment
            log.warning("risk_observe_failed", error_type=type(error).__name__)

    def features_of(self, context: RiskContext) -> dict[str, Any]:
        """The features this payment would have now (no recording); for explanations."""
        lists: ListSnapshot = self.lists.current()
        return self.computer.compute(context.facts(), lists)

    def _decide(self, facts: PaymentFacts, started: float) -> Decision:
        from payguard.risk.rules import combine

        lists: ListSnapshot = self.lists.current()
        features = self.computer.compute(facts, lists)
        model: ScoringModelLike | None = self.models.current()
        model_points = 0
        probability: float | None = None
        if model is not None:
            probability = float(model.score(features))
            features["model_score"] = round(probability, 4)
            model_points = round(probability * 100 * self.settings.risk_model_weight)
        ruleset: RuleSetLike = self.rules.current()
        hits: list[RuleHitLike] = ruleset.evaluate(features)
        action, score = combine(hits, model_points, self.settings)
        active = sorted(
            (hit for hit in hits if hit.mode == "active"),
            key=lambda hit: (SEVERITY.get(hit.action or "allow", 0), hit.score),
            reverse=True,
        )
        reasons = [Reason(hit.reason_code, hit.reason_en, hit.reason_zh) for hit in active]
        contributions: list[dict[str, Any]] = []
        if model is not None and model_points >= self.settings.risk_challenge_score:
            reasons.append(MODEL_REASON)
        if model is not None and action != "allow":
            contributions = model.explain(features)
        tipped = next((hit for hit in active if hit.tip_en or hit.tip_zh), None)
        severe = action == "block" and any(hit.severe and hit.action == "block" for hit in active)
        return Decision(
            action=action,
            score=score,
            reasons=tuple(reasons),
            customer_tip=tipped.tip_en if tipped else None,
            customer_tip_zh=tipped.tip_zh if tipped else None,
            ruleset_version=ruleset.version,
            model_version=model.version if model is not None else "none",
            features=features,
            rule_hits=tuple(
                {
                    "rule_id": hit.rule_id,
                    "reason_code": hit.reason_code,
                    "action": hit.action,
                    "score": hit.score,
                    "mode": hit.mode,
                }
                for hit in hits
            ),
            model_score=probability,
            contributions=tuple(contributions),
            severe=severe,
            elapsed_ms=_since(started),
        )

    def _fallback(
        self,
        cause: str,
        features: dict[str, Any],
        ruleset_version: str,
        model_version: str,
        started: float,
    ) -> Decision:
        action: Action = self.settings.risk_fallback_action
        return Decision(
            action=action,
            score=0,
            reasons=(FALLBACK_REASONS[cause],),
            ruleset_version=ruleset_version,
            model_version=model_version,
            features=features,
            fallback=cause,
            elapsed_ms=_since(started),
        )


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


def build_engine(db: Any, settings: Settings) -> RiskEngine:
    """The engine of one server process: counters per settings, caches reloading rules,
    models and lists from the database."""
    from payguard.risk.counters import CounterStore, EmbeddedCounterStore, RedisCounterStore
    from payguard.risk.learning import ModelCache
    from payguard.risk.lists import ListCache
    from payguard.risk.rules import RulesCache

    if settings.workers > 1 and not settings.redis_url:
        log.warning(
            "risk_counters_per_process",
            workers=settings.workers,
            advice="set PAYGUARD_REDIS_URL so velocity counts every worker's payments",
        )
    store: CounterStore = (
        RedisCounterStore(
            settings.redis_url,
            prefix=settings.risk_redis_prefix,
            timeout=max(0.01, settings.risk_time_budget_ms / 1e3),
        )
        if settings.redis_url
        else EmbeddedCounterStore()
    )
    return RiskEngine(
        settings,
        computer_for(settings, store),
        RulesCache(db, settings),
        ModelCache(db, settings),
        ListCache(db, settings),
    )


def warm_from_receipts(engine: RiskEngine, db: Any, *, days: int = 7, limit: int = 200_000) -> int:
    """Replay the recent payments that went ahead into the counters of a new process.

    The embedded store lives in one process: without this, a restart would forget every
    velocity window. (Redis keeps them; warming it again would count twice.)"""
    from payguard import clock
    from payguard.risk import service

    since = clock.now() - timedelta(days=days)
    with db.read() as session:
        contexts = service.went_ahead_since(session, since, limit=limit)
    for record in contexts:
        try:
            engine.observe(RiskContext.from_record(record))
        except (TypeError, ValueError):  # a receipt from an older layout: skip it
            continue
    return len(contexts)


def computer_for(settings: Settings, store: Any) -> FeatureComputer:
    return FeatureComputer(
        store,
        timezone=settings.risk_timezone,
        large_value_line=settings.aml_large_cash,
        tier_limits={tier: limit.per_payment_max for tier, limit in settings.tier_limits.items()},
    )
