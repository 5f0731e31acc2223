"""Risk rules: checking CEL rules, the default pack against its scenarios, combining
hits, hot reload across processes, four-eyes publishing, backtests and the CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from payguard import ids
from payguard.app import create_app
from payguard.audit.models import AuditRecord
from payguard.cli import app as cli_app
from payguard.db.engine import Database
from payguard.errors import NotFound, ValidationProblem
from payguard.events.models import OutboxEvent
from payguard.risk import rules
from payguard.risk.counters import EmbeddedCounterStore
from payguard.risk.engine import SEVERITY, computer_for
from payguard.risk.features import FEATURE_TYPES, PaymentFacts
from payguard.risk.models import RiskLabel, RiskReceipt, RuleSet
from payguard.risk.rules import RuleHit, RulesCache, builtin_ruleset, combine
from payguard.settings import Settings, get_settings
from tests.conftest import make_settings
from tests.factories import staff_auth, staff_token

PLAIN = Settings(
    _env_file=None,  # type: ignore[call-arg]
    risk_challenge_score=40,
    risk_review_score=70,
    risk_block_score=90,
    risk_model_weight=1.0,
    risk_timezone="Asia/Shanghai",
)
LOCAL = ZoneInfo("Asia/Shanghai")
AFTERNOON = datetime(2026, 3, 10, 14, 0, tzinfo=LOCAL)  # a Tuesday, local time


def rule(rule_id: str, expression: str, action: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": rule_id,
        "description": f"test rule {rule_id}",
        "expression": expression,
        "action": action,
        "score": extra.pop("score", 0),
        "reason_code": rule_id.upper().replace("-", "_"),
        "reason_en": f"{rule_id} matched",
        "reason_zh": f"{rule_id} 命中",
        **extra,
    }


# ---------------------------------------------------------------------- checking


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("amount >", ["syntax error", "line 1, column 9", "    amount >\n            ^"]),
        ("amount > 1 &&\n  kind == ", ["syntax error", "line 2, column 11", "      kind == \n"]),
        ("amout > 100", ["unknown feature 'amout'", "did you mean 'amount'?", "column 1"]),
        ("amount > 1 && device_age_hour < 24.0", ["did you mean 'device_age_hours'?", "column 15"]),
        ("amount * 1.5 > 100", ["type error", "amount is int", "double(x)"]),
        ("kind > 1", ["type error", "kind is string"]),
        # Behind a condition the zero values do not pass: found by the literal search.
        ("kind == 'p2p' && amount_to_p95 * 2 > 3", ["type error", "kind='p2p'"]),
        ("amount > 10 && kind + 1 == 2", ["type error", "string + int"]),
        ("amount + payer_count_1m", ["must yield a bool", "yields int"]),
        ("is_night ? 1 : 0", ["must yield a bool"]),
        ("kind == 1", ["kind is a string; comparing it with 1 is always false", "column 9"]),
        ("is_night != 'yes'", ["is_night is a bool", "always true"]),
        ("sha256(kind) == 'x'", ["Undefined variable or function: 'sha256'"]),
        ("amount / payer_count_1m > 3", ["ordinary values", "division by zero", "guard"]),
    ],
)
def test_invalid_rules_are_refused_with_a_pointer_to_the_problem(
    expression: str, expected: list[str]
) -> None:
    with pytest.raises(ValidationProblem) as refused:
        rules.check_rules([rule("r-ok", "amount > 0"), rule("bad-one", expression, "review")])
    detail = refused.value.detail
    assert detail.startswith("rule 'bad-one': "), detail
    for fragment in expected:
        assert fragment in detail, detail
    assert refused.value.extra["rule_id"] == "bad-one"
    assert refused.value.status == 422


def test_sound_expressions_pass_the_checks() -> None:
    for expression in [
        "[1, 2].exists(x, x > amount)",  # a macro's own variable is not a feature
        "size(kind) > 3 && kind.startsWith('p')",
        "kind == 'withdrawal' && double(amount) * 1.5 > 2.0",
        "amount_to_p95 >= 5 && amount >= 100000",  # int and double compare fine
        "device_age_hours >= 0 && device_age_hours < 24",
        "amount / (payer_count_1m + 1) > 3",  # -1 is not a count: not an ordinary value
        "kind in ['p2p', 'withdrawal'] && !is_top_up",
        "true",
    ]:
        compiled = rules.compile_rule(rule("fine", expression))
        assert compiled.definition.expression == expression


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"id": "Not A Slug"}, "id: String should match pattern"),
        ({"reason_code": "lower_case"}, "reason_code: String should match pattern"),
        ({"score": 101}, "score: Input should be less than or equal to 100"),
        ({"action": "freeze"}, "action: Input should be 'challenge', 'review' or 'block'"),
        ({"severe": True, "action": "review"}, "only a rule whose action is block can be severe"),
        ({"mode": "dry-run"}, "mode: Input should be 'active' or 'shadow'"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_rule_fields_are_checked(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationProblem) as refused:
        rules.check_rules([{**rule("some-rule", "amount > 0"), **change}])
    assert expected in refused.value.detail


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValidationProblem, match=r"rule 'twice': duplicate id \(rules 1 and 3\)"):
        rules.check_rules([rule("twice", "true"), rule("other", "true"), rule("twice", "false")])


# ---------------------------------------------------------------------- the default pack


def test_every_default_rule_compiles_and_is_documented() -> None:
    pack = builtin_ruleset()
    digest = hashlib.sha256(rules.default_rules_text()).hexdigest()[:8]
    assert pack.version == f"builtin-{digest}"
    assert builtin_ruleset() is pack  # compiled once per process
    raw = yaml.safe_load(rules.default_rules_text())["rules"]
    assert [item["id"] for item in raw] == [rule.definition.id for rule in pack.rules]
    for definition in pack.definitions:
        assert len(definition.description) > 60, definition.id
        assert definition.reason_en and definition.reason_zh
        if definition.action in ("challenge", "block") or definition.severe:
            assert definition.tip_en and definition.tip_zh, definition.id
    assert {d.id for d in pack.definitions if d.severe} == {"blocked-payer"}
    assert {d.id for d in pack.definitions if d.mode == "shadow"} == {"payee-fan-in"}


def test_the_docs_show_every_feature_and_every_default_rule() -> None:
    """docs/risk-rules.md: the feature table is generated from FEATURES, the pack's
    sections from the YAML; regenerate them when either changes."""
    from payguard.risk.features import FEATURES

    doc = (Path(__file__).parents[2] / "docs" / "risk-rules.md").read_text()
    for spec in FEATURES:
        description = spec.description.replace("|", "\\|")
        assert f"| `{spec.name}` | {spec.type} | {description} |" in doc, spec.name
    for definition in builtin_ruleset().definitions:
        assert f"### `{definition.id}` ({definition.reason_code})" in doc, definition.id
        assert " ".join(definition.expression.split()) in doc, definition.id


class Listed:
    """A list snapshot with fixed verdicts: {(subject, value): verdict}."""

    def __init__(self, entries: dict[tuple[str, str], str]) -> None:
        self.entries = entries

    def match(self, subject: str, value: str | None) -> str:
        return self.entries.get((subject, value or ""), "")


def payment(
    at: datetime = AFTERNOON,
    *,
    kind: str = "p2p",
    amount: int = 3_500,
    payer: str | None = "acc_alice",
    payee: str | None = "acc_bob",
    device: str | None = "dev_alice",
    device_age: timedelta = timedelta(days=90),
    kyc_tier: int = 2,
    **extra: Any,
) -> PaymentFacts:
    if kind == "withdrawal" and payee == "acc_bob":
        payee = "bank:tok_alice"  # as RiskContext.facts() names a withdrawal's payee
    return PaymentFacts(
        at=at.astimezone(UTC),
        kind=kind,
        amount=amount,
        currency="CNY",
        payer=payer,
        payee=payee,
        customer_id="cus_alice",
        channel="app",
        device_id=device,
        device_registered_at=at.astimezone(UTC) - device_age if device else None,
        ip="198.51.100.7",
        bank_token="tok_alice" if kind in ("withdrawal", "top_up") else None,
        kyc_tier=kyc_tier,
        **extra,
    )


class World:
    """A counter store with Alice's ordinary habits: a top-up and a dozen small payments
    to Bob and a shop, in the afternoon, on a device she has had for months."""

    def __init__(self) -> None:
        self.computer = computer_for(PLAIN, EmbeddedCounterStore())
        self.past(
            payment(
                AFTERNOON - timedelta(days=25),
                kind="top_up",
                payer=None,
                payee="acc_alice",
                amount=1_000_000,
            )
        )
        for day in range(12):
            at = AFTERNOON - timedelta(days=20 - day, minutes=3 * day)
            self.past(payment(at, amount=2_000 + 350 * day, payee=("acc_bob", "acc_shop")[day % 2]))

    def past(self, *payments: PaymentFacts) -> World:
        for facts in payments:
            self.computer.observe(facts)
        return self

    def features(self, facts: PaymentFacts, lists: Listed | None = None) -> dict[str, Any]:
        return self.computer.compute(facts, lists)


def _burst(count: int, within: timedelta) -> dict[str, Any]:
    step = within / (count + 1)
    world = World().past(*(payment(AFTERNOON - step * (n + 1), amount=800) for n in range(count)))
    return world.features(payment(amount=60_000))


def _shared_device() -> dict[str, Any]:
    others = [
        payment(AFTERNOON - timedelta(hours=hours), payer=account, amount=1_000)
        for hours, account in ((5, "acc_x"), (3, "acc_y"))
    ]
    return World().past(*others).features(payment())


def _pass_through() -> dict[str, Any]:
    inflow = payment(
        AFTERNOON - timedelta(minutes=20), kind="top_up", payer=None, payee="acc_alice",
        amount=600_000,
    )  # fmt: skip
    return World().past(inflow).features(payment(kind="withdrawal", amount=580_000))


def _structuring() -> dict[str, Any]:
    yesterday = payment(
        AFTERNOON - timedelta(days=1), kind="withdrawal", amount=4_900_000, kyc_tier=3
    )
    return (
        World().past(yesterday).features(payment(kind="withdrawal", amount=4_850_000, kyc_tier=3))
    )


def _fan_in() -> dict[str, Any]:
    senders = [
        payment(AFTERNOON - timedelta(minutes=5 * n), payer=f"acc_v{n}", payee="acc_collector",
                device=f"dev_v{n}", amount=20_000)
        for n in range(1, 9)
    ]  # fmt: skip
    return World().past(*senders).features(payment(payee="acc_collector", amount=5_000))


def _with_model(probability: float) -> dict[str, Any]:
    features = World().features(payment())
    features["model_score"] = probability
    return features


SCENARIOS: dict[str, Callable[[], dict[str, Any]]] = {
    "large-amount-for-tier": lambda: World().features(payment(amount=450_000, kyc_tier=1)),
    "payment-burst": lambda: _burst(3, timedelta(seconds=50)),
    "payment-burst-sustained": lambda: _burst(15, timedelta(minutes=9)),
    "new-device-large-amount": lambda: World().features(
        payment(amount=300_000, device="dev_new", device_age=timedelta(hours=2), device_new=True)
    ),
    "new-device-new-payee-large": lambda: World().features(
        payment(
            amount=2_500_000,
            payee="acc_mule",
            device="dev_thief",
            device_age=timedelta(minutes=3),
            device_new=True,
        )
    ),
    "new-payee-night-large": lambda: World().features(
        payment(AFTERNOON.replace(hour=2), payee="acc_mule", amount=150_000)
    ),
    "new-network-new-payee": lambda: World().features(
        dataclasses.replace(payment(payee="acc_mule", amount=50_000), ip="203.0.113.50")
    ),
    "failed-logins-then-pay": lambda: World().features(payment(failed_logins_1h=5)),
    "shared-device": _shared_device,
    "pass-through": _pass_through,
    "near-threshold": lambda: World().features(payment(amount=4_800_000, kyc_tier=3)),
    "structuring": _structuring,
    "blocked-payer": lambda: World().features(
        payment(), Listed({("device", "dev_alice"): "block"})
    ),
    "blocked-payee": lambda: World().features(
        payment(payee="acc_mule"), Listed({("account", "acc_mule"): "block"})
    ),
    "watch-listed": lambda: World().features(payment(), Listed({("ip", "198.51.100.7"): "watch"})),
    "password-change-payout": lambda: World().features(
        payment(
            kind="withdrawal",
            amount=50_000,
            password_changed_at=AFTERNOON.astimezone(UTC) - timedelta(minutes=30),
        )
    ),
    "amount-far-above-habit": lambda: World().features(payment(amount=200_000)),
    "unusual-hour": lambda: World().features(payment(AFTERNOON.replace(hour=22), amount=30_000)),
    "model-high-risk": lambda: _with_model(0.95),
    "payee-fan-in": _fan_in,
}

ORDINARY: dict[str, Callable[[], dict[str, Any]]] = {
    "small p2p to a friend": lambda: World().features(payment()),
    "a shop in the afternoon": lambda: World().features(
        payment(kind="merchant", payee="acc_shop", amount=4_200)
    ),
    "a small night payment to a friend": lambda: World().features(
        payment(AFTERNOON.replace(hour=1), amount=2_500)
    ),
    "a top-up": lambda: World().features(
        payment(kind="top_up", payer=None, payee="acc_alice", amount=200_000)
    ),
    "a small withdrawal": lambda: World().features(payment(kind="withdrawal", amount=20_000)),
    "a run of small payments": lambda: (
        World()
        .past(*(payment(AFTERNOON - timedelta(seconds=15 * n), amount=100) for n in range(1, 21)))
        .features(payment(amount=100))
    ),
    "a new customer's first payment": lambda: computer_for(PLAIN, EmbeddedCounterStore()).compute(
        payment(payee="acc_carol", device_age=timedelta(hours=1), device_new=True)
    ),
    "a first payment from a new phone to a known payee": lambda: World().features(
        payment(device="dev_new", device_age=timedelta(hours=2), device_new=True)
    ),
    "a low model score": lambda: _with_model(0.05),
}


def test_the_scenarios_cover_every_default_rule() -> None:
    assert set(SCENARIOS) == {definition.id for definition in builtin_ruleset().definitions}


@pytest.mark.parametrize("rule_id", list(SCENARIOS))
def test_each_default_rule_fires_on_its_scenario(rule_id: str) -> None:
    features = SCENARIOS[rule_id]()
    assert set(FEATURE_TYPES) <= set(features)
    definition = next(d for d in builtin_ruleset().definitions if d.id == rule_id)
    hits = builtin_ruleset().evaluate(features)
    assert [hit for hit in hits if hit.mode == "error"] == []
    [hit] = [hit for hit in hits if hit.rule_id == rule_id]
    assert hit.mode == definition.mode and hit.reason_code == definition.reason_code
    model_points = round(max(0.0, features["model_score"]) * 100)
    action, score = combine(hits, model_points, PLAIN)
    if definition.mode == "active":
        assert score >= min(100, definition.score)
        if definition.action is not None:
            assert SEVERITY[action] >= SEVERITY[definition.action], (action, hits)
    else:  # shadow: recorded, deciding nothing
        others = [other for other in hits if other.rule_id != rule_id]
        assert (action, score) == combine(others, model_points, PLAIN)


def test_the_severity_of_blocks() -> None:
    for rule_id, severe in (("blocked-payer", True), ("blocked-payee", False)):
        hits = builtin_ruleset().evaluate(SCENARIOS[rule_id]())
        assert combine(hits, 0, PLAIN)[0] == "block"
        assert any(hit.severe for hit in hits if hit.action == "block") is severe


@pytest.mark.parametrize("name", list(ORDINARY))
def test_ordinary_payments_trigger_nothing(name: str) -> None:
    features = ORDINARY[name]()
    assert builtin_ruleset().evaluate(features) == []
    model_points = round(max(0.0, features["model_score"]) * 100)
    assert combine([], model_points, PLAIN) == ("allow", model_points)


def test_evaluate_reuses_one_hit_object_and_is_fast_enough() -> None:
    import time

    pack = builtin_ruleset()
    features = SCENARIOS["blocked-payer"]()
    first, second = pack.evaluate(features), pack.evaluate(features)
    assert first == second and all(a is b for a, b in zip(first, second, strict=True))
    ordinary = ORDINARY["small p2p to a friend"]()
    started = time.perf_counter()
    for _ in range(2_000):
        pack.evaluate(ordinary)
    per_call = (time.perf_counter() - started) / 2_000
    assert per_call < 500e-6  # ~20 µs on a laptop; generous for loaded CI machines


def test_one_rule_set_evaluates_the_same_from_many_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    pack = builtin_ruleset()
    samples = [SCENARIOS[name]() for name in SCENARIOS] + [ORDINARY[name]() for name in ORDINARY]
    expected = [pack.evaluate(features) for features in samples]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(pack.evaluate, samples * 20))
    assert results == expected * 20


# ---------------------------------------------------------------------- combining


def hit(action: str | None, score: int, mode: str = "active", severe: bool = False) -> RuleHit:
    return RuleHit("r", "R", action, score, mode, severe, "r", "r", None, None)


def test_combine_takes_the_most_severe_of_band_and_actions() -> None:
    assert combine([], 0, PLAIN) == ("allow", 0)
    assert combine([hit(None, 39)], 0, PLAIN) == ("allow", 39)
    assert combine([hit(None, 20), hit(None, 20)], 0, PLAIN) == ("challenge", 40)
    assert combine([hit(None, 30)], 40, PLAIN) == ("review", 70)
    assert combine([hit("review", 0)], 0, PLAIN) == ("review", 0)
    assert combine([hit("challenge", 10)], 85, PLAIN) == ("block", 95)
    assert combine([hit("block", 100), hit(None, 100)], 50, PLAIN) == ("block", 100)
    strict = PLAIN.model_copy(update={"risk_block_score": 101})  # no block by points alone
    assert combine([hit(None, 100)], 0, strict) == ("review", 100)


def test_shadow_and_failed_rules_do_not_change_the_decision() -> None:
    active = [hit("challenge", 30)]
    for extra in ([hit("block", 100, mode="shadow")], [hit(None, 0, mode="error")]):
        assert combine(active + extra, 20, PLAIN) == combine(active, 20, PLAIN)
    ruleset = rules.compile_ruleset(
        "t",
        [
            rule("points", "amount > 100", score=30),
            rule("would-block", "amount > 100", "block", mode="shadow", score=100),
            rule("off", "amount > 100", "block", enabled=False),
        ],
    )
    hits = ruleset.evaluate({"amount": 500})
    assert [(h.rule_id, h.mode) for h in hits] == [("points", "active"), ("would-block", "shadow")]
    assert combine(hits, 0, PLAIN) == ("allow", 30)


def test_a_rule_failing_at_run_time_is_reported_and_counts_for_nothing() -> None:
    ruleset = rules.compile_ruleset(
        "t",
        [
            rule("reads-kind", "kind.startsWith('p2')", "block", score=100),
            rule("small", "amount < 100", score=10),
        ],
    )
    # A feature missing, or of the wrong type: the rule errs, the others go on.
    for features in ({"amount": 5}, {"amount": 5, "kind": 7}):
        hits = ruleset.evaluate(features)
        assert [(h.rule_id, h.mode, h.action, h.score) for h in hits] == [
            ("reads-kind", "error", None, 0),
            ("small", "active", None, 10),
        ]
        assert combine(hits, 0, PLAIN) == ("allow", 10)


# ---------------------------------------------------------------------- storage and reload


def publish_now(db: Database, version: int, approval_id: str = "apr_test") -> dict[str, Any]:
    """Run the publish action's check and executor, as an approved request does."""
    action = rules.publish_action()

    def work(session: Any) -> dict[str, Any]:
        assert action.check(session, str(version), {}) == {}
        approval = SimpleNamespace(
            id=approval_id, target=str(version), requested_by="staff_a", decided_by="staff_b"
        )
        result: dict[str, Any] = action.execute(session, approval)  # type: ignore[arg-type]
        return result

    return db.transact(work)


def test_drafts_are_numbered_and_checked_before_they_are_stored(db: Database) -> None:
    first = db.transact(lambda s: rules.save_draft(s, [rule("a", "amount > 1")], " one ", "ann"))
    second = db.transact(lambda s: rules.save_draft(s, [rule("b", "amount > 2")], "two", "bob"))
    assert (first.version, first.status, first.note, first.created_by) == (1, "draft", "one", "ann")
    assert second.version == 2
    with pytest.raises(ValidationProblem, match="rule 'c'"):
        db.transact(lambda s: rules.save_draft(s, [rule("c", "amount >")], "bad", "ann"))
    with db.read() as session:
        assert [r.version for r in rules.list_rulesets(session)] == [2, 1]
        assert rules.published(session) is None
        assert rules.active_ruleset(session)[0] is builtin_ruleset()
        assert rules.get_ruleset(session, 1).rules[0]["expression"] == "amount > 1"
        with pytest.raises(NotFound):
            rules.get_ruleset(session, 9)


def test_publishing_supersedes_the_previous_version_and_is_audited(db: Database) -> None:
    for n in (1, 2):
        db.transact(lambda s, n=n: rules.save_draft(s, [rule("a", f"amount > {n}")], "", "ann"))
    assert publish_now(db, 1, "apr_1") == {"published": 1, "previous": None}
    assert publish_now(db, 2, "apr_2") == {"published": 2, "previous": 1}
    with db.read() as session:
        statuses = {r.version: r.status for r in session.scalars(select(RuleSet))}
        assert statuses == {1: "superseded", 2: "published"}
        current = rules.published(session)
        assert current is not None and current.approval_id == "apr_2" and current.published_at
        with pytest.raises(ValidationProblem, match="already in force"):
            rules.publish_action().check(session, "2", {})
        with pytest.raises(ValidationProblem, match="a rule set version number"):
            rules.publish_action().check(session, "latest", {})
        with pytest.raises(ValidationProblem, match="takes none"):
            rules.publish_action().check(session, "1", {"force": True})
        records = session.scalars(
            select(AuditRecord).where(AuditRecord.action == "security.risk_ruleset_published")
        ).all()
    assert [(r.details["version"], r.details["previous"]) for r in records] == [(1, None), (2, 1)]
    assert records[-1].actor == "staff:staff_b" and records[-1].object == "apr_2"
    # Rolling back is publishing an older version again.
    assert publish_now(db, 1, "apr_3") == {"published": 1, "previous": 2}


def test_a_published_version_reaches_every_process(db: Database, settings: Settings) -> None:
    eager = settings.model_copy(update={"risk_reload_seconds": 0})
    other_process = Database(settings.database_url)
    try:
        first, second = RulesCache(db, eager), RulesCache(other_process, eager)
        patient = RulesCache(db, settings.model_copy(update={"risk_reload_seconds": 3600}))
        for cache in (first, second, patient):
            assert cache.current() is builtin_ruleset()
        db.transact(lambda s: rules.save_draft(s, [rule("big", "amount > 9", "review")], "", "a"))
        assert first.current() is builtin_ruleset()  # a draft is not in force
        publish_now(db, 1)
        for cache in (first, second):
            current = cache.current()
            assert current.version == "1"
            assert [h.rule_id for h in current.evaluate({"amount": 10})] == ["big"]
            assert cache.current() is current  # compiled once per version
        assert patient.current() is builtin_ruleset()  # until its interval has passed
        patient.invalidate()
        assert patient.current().version == "1"

        seen: list[str] = []
        db.transact(lambda s: rules.save_draft(s, [rule("big", "amount > 99", "block")], "", "a"))

        def read() -> None:
            for _ in range(200):
                seen.append(first.current().version)

        threads = [threading.Thread(target=read) for _ in range(6)]
        for thread in threads:
            thread.start()
        publish_now(db, 2, "apr_2")
        for thread in threads:
            thread.join()
        assert set(seen) <= {"1", "2"} and len(seen) == 1200
        assert first.current().version == second.current().version == "2"
    finally:
        other_process.dispose()


def test_the_cache_keeps_serving_when_the_database_fails(db: Database, settings: Settings) -> None:
    cache = RulesCache(db, settings.model_copy(update={"risk_reload_seconds": 0}))
    loaded = cache.current()

    class Broken:
        def read(self) -> Any:
            raise ConnectionError("database down")

    cache._db = Broken()
    assert cache.current() is loaded
    with pytest.raises(ConnectionError):
        RulesCache(Broken(), settings).current()  # nothing to fall back on yet


# ---------------------------------------------------------------------- four-eyes, API


def test_publishing_through_the_four_eyes_api(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, risk_reload_seconds=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        maker = {"Authorization": f"Bearer {staff_token(settings, 'risk_analyst')}"}
        checker = staff_auth(settings, "risk_analyst")

        active = client.get("/v1/risk/rulesets/active", headers=maker).json()
        assert active["source"] == "builtin" and active["version"] == builtin_ruleset().version
        assert len(active["rules"]) == len(builtin_ruleset().rules)
        viewer = client.get("/v1/risk/rulesets", headers=staff_auth(settings, "viewer"))
        assert viewer.status_code == 403

        bad = client.post(
            "/v1/risk/rulesets",
            headers=maker,
            json={"rules": [rule("ok", "amount > 0"), rule("broken", "amount >", "review")]},
        )
        assert bad.status_code == 422, bad.text
        problem = bad.json()
        assert problem["code"] == "validation-error" and problem["rule_id"] == "broken"
        assert (problem["line"], problem["column"]) == (1, 9)
        assert "syntax error" in problem["detail"] and "^" in problem["detail"]

        body = {
            "rules": [rule("exact", "amount == 77700", "review", tip_en="t", tip_zh="提示")],
            "note": "review one amount",
        }
        draft = client.post("/v1/risk/rulesets", headers=maker, json=body)
        assert draft.status_code == 201, draft.text
        assert draft.json()["version"] == 1 and draft.json()["status"] == "draft"
        listed = client.get("/v1/risk/rulesets", headers=maker).json()
        assert [(r["version"], r["status"], r["rule_count"]) for r in listed] == [(1, "draft", 1)]

        ask = {"action": "risk.ruleset_publish", "target": "1", "params": {}, "reason": "tested"}
        requested = client.post("/v1/approvals", headers=maker, json=ask)
        assert requested.status_code == 202, requested.text
        approval_id = requested.json()["id"]
        own = client.post(f"/v1/approvals/{approval_id}/approve", headers=maker, json={})
        assert own.status_code == 403
        assert client.get("/v1/risk/rulesets/active", headers=maker).json()["source"] == "builtin"
        approved = client.post(f"/v1/approvals/{approval_id}/approve", headers=checker, json={})
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "executed"
        assert approved.json()["result"] == {"published": 1, "previous": None}

        active = client.get("/v1/risk/rulesets/active", headers=maker).json()
        assert (active["version"], active["source"]) == ("1", "published")
        assert active["approval_id"] == approval_id
        stored = client.get("/v1/risk/rulesets/1", headers=maker).json()
        assert stored["status"] == "published" and stored["rules"][0]["id"] == "exact"
        assert client.get("/v1/risk/rulesets/7", headers=maker).status_code == 404
        again = client.post("/v1/approvals", headers=maker, json=ask)
        assert again.status_code == 422 and "already in force" in again.json()["detail"]

        # The engine of this server applies it at once (reload interval 0).
        machine = staff_auth(settings, "risk_client")
        assessed = client.post(
            "/v1/risk/assess",
            headers=machine,
            json={
                "kind": "p2p",
                "payer": "ext:p1",
                "payee": "ext:p2",
                "amount": 77_700,
                "currency": "CNY",
            },
        ).json()
        assert assessed["action"] == "review" and assessed["ruleset_version"] == "1"

        now = datetime.now(UTC)
        window = {
            "from": (now - timedelta(days=1)).isoformat(),
            "to": (now + timedelta(hours=1)).isoformat(),
        }
        replay = client.post("/v1/risk/rulesets/builtin/backtest", headers=maker, params=window)
        assert replay.status_code == 200, replay.text
        report = replay.json()
        assert report["receipts"] == 1 and report["ruleset_version"].startswith("builtin-")
        assert report["old_actions"] == {"review": 1} and report["changed_count"] == 1
        assert (
            client.post("/v1/risk/rulesets/1/backtest", headers=maker, params=window).json()[
                "changed_count"
            ]
            == 0
        )
        bad_window = client.post(
            "/v1/risk/rulesets/1/backtest", headers=maker, params={"from": "2020-01-01T00:00:00"}
        )
        assert bad_window.status_code == 422

    with Database(settings.database_url).read() as session:
        topics = session.scalars(
            select(OutboxEvent.topic)
            .where(OutboxEvent.topic.like("%ruleset%"))
            .order_by(OutboxEvent.id)
        ).all()
    assert topics == ["risk.ruleset_saved", "security.risk_ruleset_published"]


# ---------------------------------------------------------------------- backtest


def receipt(
    at: datetime, amount: int, action: str, *, payment_id: str | None = None, **extra: Any
) -> RiskReceipt:
    return RiskReceipt(
        id=ids.new_id("decision"),
        payment_id=payment_id,
        source="pipeline" if payment_id else "api",
        customer_id=None,
        kind="p2p",
        payer="acc_a",
        payee="acc_b",
        amount=amount,
        currency="CNY",
        at=at,
        context=extra.pop("context", {}),
        features=extra.pop("features", {"amount": amount, "model_score": -1.0}),
        action=action,
        score=0,
        reasons=[],
        rule_hits=[],
        ruleset_version="old",
        model_version="none",
        model_score=extra.pop("model_score", None),
        contributions=None,
        elapsed_ms=1.0,
        fallback=False,
    )


def test_backtest_reports_changes_precision_recall_and_alert_volume(
    db: Database, settings: Settings
) -> None:
    day1 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    day2 = day1 + timedelta(days=1)
    rows = [
        receipt(day1, 200_000, "allow", payment_id="pay_1"),  # fraud, now caught
        receipt(day1, 150_000, "allow", payment_id="pay_2"),  # legitimate, now flagged
        receipt(day1, 1_000, "review", payment_id="pay_3"),  # fraud, now missed
        receipt(day2, 500, "allow", payment_id="pay_4"),  # unlabelled, unchanged
        # An outside system's decision, labelled in its context; the model said 0.95
        # then: 95 points, a block by the score band.
        receipt(
            day2,
            700,
            "review",
            context={"label": "fraud"},
            model_score=0.95,
            features={"amount": 700, "model_score": 0.95},
        ),
        receipt(day2, 800, "allow", payment_id="pay_6", features={}),  # nothing to replay
        receipt(day2 + timedelta(days=5), 900_000, "allow", payment_id="pay_7"),  # outside
    ]
    labels = {"pay_1": "fraud", "pay_2": "legitimate", "pay_3": "fraud", "pay_7": "fraud"}

    def insert(session: Any) -> None:
        session.add_all(rows)
        for payment_id, label in labels.items():
            session.add(RiskLabel(payment_id=payment_id, label=label, source="review",
                                  by="staff:x", at=day1))  # fmt: skip

    db.transact(insert)
    ruleset = rules.compile_ruleset("candidate", [rule("large", "amount >= 100000", "review")])
    with db.read() as session:
        report = rules.backtest(session, ruleset, day1, day2 + timedelta(days=1), settings)
    assert (report.receipts, report.skipped, report.labelled) == (6, 1, 4)
    changes = {(c.payment_id, c.old_action, c.new_action) for c in report.changed}
    assert changes == {
        ("pay_1", "allow", "review"),
        ("pay_2", "allow", "review"),
        ("pay_3", "review", "allow"),
        (rows[4].id, "review", "block"),
    }
    assert report.changed_count == 4
    # Flagged now: pay_1 (fraud), pay_2 (legitimate), the outside one (fraud); missed: pay_3.
    assert (report.precision, report.recall) == (0.6667, 0.6667)
    # As decided: pay_3 and the outside one were flagged, both fraud; pay_1 was missed.
    assert (report.old_precision, report.old_recall) == (1.0, 0.6667)
    assert report.alerts_per_day == {"2026-05-01": 2, "2026-05-02": 1}
    assert report.old_alerts_per_day == {"2026-05-01": 1, "2026-05-02": 1}
    assert report.new_actions == {"review": 2, "allow": 2, "block": 1}
    with db.read() as session, pytest.raises(ValidationProblem, match="after"):
        rules.backtest(session, ruleset, day2, day1, settings)


# ---------------------------------------------------------------------- CLI

runner = CliRunner()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("PAYGUARD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def cli(*args: str, code: int = 0) -> str:
    result = runner.invoke(cli_app, ["risk", *args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def test_cli_save_refuses_a_bad_file_with_the_reason(cli_env: Settings, tmp_path: Path) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({"rules": [rule("night", "amout > 100 && is_night")]}))
    output = cli("rules", "save", str(typo), "--note", "x", code=1)
    assert "rule 'night': unknown feature 'amout'; did you mean 'amount'?" in output
    assert "line 1, column 1" in output
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - id: a\n    expression: [unclosed\n")
    assert "not valid YAML at line" in cli("rules", "save", str(broken), "--note", "x", code=1)
    missing = cli("rules", "save", str(tmp_path / "none.yaml"), "--note", "x", code=1)
    assert "cannot read it" in missing
    with Database(cli_env.database_url).read() as session:
        assert rules.list_rulesets(session) == []  # nothing half-saved


def test_cli_save_export_show_list_and_backtest(cli_env: Settings, tmp_path: Path) -> None:
    good = tmp_path / "rules.yaml"
    good.write_text(yaml.safe_dump([rule("large", "amount >= 100000", "review", score=10)]))
    output = cli("rules", "save", str(good), "--note", "first", "--by", "rita")
    assert "saved draft version 1 (1 rules)" in output
    assert "payguard approvals request risk.ruleset_publish 1" in output

    exported = tmp_path / "exported.yaml"
    exported.write_text(cli("rules", "export", "1"))
    document = yaml.safe_load(exported.read_text())
    assert document["version"] == "1" and document["status"] == "draft"
    assert document["rules"][0]["expression"] == "amount >= 100000"
    assert "saved draft version 2" in cli("rules", "save", str(exported), "--note", "again")
    assert yaml.safe_load(cli("rules", "export", "builtin")) == yaml.safe_load(
        rules.default_rules_text()
    )

    listing = cli("rules", "list")
    assert "draft" in listing and "rita" in listing and "in force: builtin-" in listing
    assert "blocked-payer" in cli("rules", "show", "builtin")
    assert "large" in cli("rules", "show", "2")
    assert "no rule set version 9" in cli("rules", "show", "9", code=1)

    database = Database(cli_env.database_url)
    try:
        now = datetime.now(UTC)
        database.transact(
            lambda s: s.add_all(
                [
                    receipt(now - timedelta(hours=2), 200_000, "allow", payment_id="pay_big"),
                    receipt(now - timedelta(hours=1), 100, "allow", payment_id="pay_small"),
                ]
            )
        )
    finally:
        database.dispose()
    report = cli("backtest", "1")
    assert "1 changed decisions" in report and "pay_big" in report and "alert volume" in report
    quiet = tmp_path / "quiet.yaml"
    quiet.write_text(yaml.safe_dump([rule("never", "amount < 0", "block")]))
    assert "0 changed decisions" in cli("backtest", str(quiet), "--from", "2000-01-01")
    assert "must be after from" in cli("backtest", "builtin", "--from", "2100-01-01", code=1)
