"""The risk model: data mappings, the no-skew replay, a time-ordered split that beats the
base rate, the registry, four-eyes activation and rollback seen by another process's
cache, explanations and analysts' labels."""

from __future__ import annotations

import csv
import random
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from payguard import cli, clock
from payguard.app import create_app
from payguard.db.engine import Database
from payguard.errors import ValidationProblem
from payguard.events.models import OutboxEvent
from payguard.identity import service as identity
from payguard.identity import totp
from payguard.risk import learning
from payguard.risk.counters import EmbeddedCounterStore
from payguard.risk.engine import computer_for
from payguard.risk.features import MODEL_FEATURES, PaymentFacts, vector
from payguard.risk.learning import LabelledRow
from payguard.risk.models import RiskLabel, RiskModel, RiskReceipt
from payguard.settings import Settings, get_settings
from payguard.simulator import engine as simulator
from tests.factories import staff_auth

SHANGHAI = ZoneInfo("Asia/Shanghai")  # the default risk_timezone: "night" is local
START = datetime(2026, 3, 2, tzinfo=SHANGHAI)
PLAIN = Settings(env="test")


def _row(at: datetime, payer: str, payee: str, amount: int, fraud: bool, kind: str = "p2p") -> Any:
    facts = PaymentFacts(
        at=at.astimezone(UTC), kind=kind, amount=amount, currency="CNY", payer=payer, payee=payee
    )
    return LabelledRow(facts=facts, label=int(fraud))


def generate(seed: int = 11, customers: int = 30, days: int = 14) -> list[LabelledRow]:
    """Daytime habits with friends and shops, some large rent payments to new payees and a
    few small night purchases; fraud is a night-time burst of large payments to a new mule."""
    rng = random.Random(seed)
    people = [f"acc_{index:03d}" for index in range(customers)]
    friends = {p: rng.sample([q for q in people if q != p], 3) for p in people}
    rows = []
    for day in range(days):
        base = START + timedelta(days=day)
        for person in people:
            for _ in range(rng.randint(0, 3)):
                at = base + timedelta(hours=rng.uniform(8, 22))
                kind = rng.choice(("p2p", "p2p", "merchant"))
                payee = rng.choice(friends[person]) if kind == "p2p" else f"mer_{rng.randrange(5)}"
                rows.append(_row(at, person, payee, int(rng.lognormvariate(9.0, 0.7)), False, kind))
        rent = rng.choice(people)
        at = base + timedelta(hours=rng.uniform(9, 18))
        rows.append(_row(at, rent, f"landlord_{day}", rng.randint(150_000, 500_000), False))
        night = rng.choice(people)
        at = base + timedelta(hours=rng.uniform(0.5, 5))
        rows.append(_row(at, night, "mer_0", int(rng.lognormvariate(8.5, 0.5)), False, "merchant"))
        for _ in range(2):
            victim, mule = rng.choice(people), f"mule_{day}_{rng.randrange(1000)}"
            at = base + timedelta(hours=rng.uniform(1, 4))
            for burst in range(rng.randint(3, 4)):
                amount = rng.randint(150_000, 500_000)
                rows.append(_row(at + timedelta(minutes=2 * burst), victim, mule, amount, True))
    return rows


def night_only(seed: int = 5) -> list[LabelledRow]:
    """Fraud differs from the rest only by the hour: explanations must say so."""
    rng = random.Random(seed)
    rows = []
    for index in range(700):
        fraud = rng.random() < 0.15
        hours = rng.uniform(1, 4) if fraud else rng.uniform(8, 22)
        at = START + timedelta(days=index // 50, hours=hours)
        payer, payee = f"acc_{rng.randrange(40)}", f"acc_{rng.randrange(40, 60)}"
        rows.append(_row(at, payer, payee, int(rng.lognormvariate(9.0, 0.7)), fraud))
    return rows


def rules_points(features: dict[str, Any]) -> float:
    """A stand-in rule pack: new payee and a large amount."""
    return 50.0 if features["payee_new"] and features["amount"] >= 100_000 else 0.0


@pytest.fixture(scope="module")
def dataset() -> list[LabelledRow]:
    return generate()


@pytest.fixture(scope="module")
def trained(dataset: list[LabelledRow]) -> learning.TrainedModel:
    return learning.train(dataset, PLAIN, test_share=0.2, seed=3, rules_score=rules_points)


def online_features(rows: list[LabelledRow]) -> list[dict[str, Any]]:
    """What the engine computes, payment after payment (compute, then observe)."""
    computer = computer_for(PLAIN, EmbeddedCounterStore())
    out = []
    for row in sorted(rows, key=lambda row: row.at):
        out.append(computer.compute(row.facts))
        computer.observe(row.facts)
    return out


def test_training_beats_the_base_rate_on_a_time_ordered_split(
    dataset: list[LabelledRow], trained: learning.TrainedModel
) -> None:
    metrics = trained.metrics
    test = metrics["test"]
    assert test["positives"] > 5 and test["negatives"] > 50
    assert test["auprc"] > 0.8 > 3 * test["base_rate"]
    assert test["roc_auc"] > 0.9 and test["recall_at_1pct_fpr"] > 0.5
    # Rules alone, and rules with the model, measured on the same test rows.
    assert metrics["rules"]["positives"] == test["positives"]
    assert metrics["model_and_rules"]["auprc"] > metrics["rules"]["auprc"]
    # The split is by time: the first 80 % train, the last 20 % test, nothing shuffled.
    split = metrics["split"]
    assert split["train_rows"] + split["test_rows"] == len(dataset)
    assert split["test_rows"] == round(len(dataset) * 0.2)
    assert trained.train_end <= trained.test_start
    times = sorted(row.at for row in dataset)
    assert trained.train_end == times[split["train_rows"] - 1]
    assert max(times[: split["train_rows"]]) <= min(times[split["train_rows"] :])
    # Weighting positives is undone in the served probability: it stays near the base rate.
    assert abs(test["mean_probability"] - test["base_rate"]) < 0.1
    assert metrics["importance"][0]["feature"] in MODEL_FEATURES


def test_training_is_deterministic(
    dataset: list[LabelledRow], trained: learning.TrainedModel
) -> None:
    again = learning.train(
        list(reversed(dataset)), PLAIN, test_share=0.2, seed=3, rules_score=rules_points
    )
    assert again.booster == trained.booster and again.metrics == trained.metrics


def test_featurize_replays_in_time_order_exactly_as_online(dataset: list[LabelledRow]) -> None:
    shuffled = dataset[:]
    random.Random(1).shuffle(shuffled)
    X, y, times = learning.featurize(shuffled, PLAIN)
    assert times == sorted(times) and X.shape == (len(dataset), len(MODEL_FEATURES))
    expected = np.array([vector(f, MODEL_FEATURES) for f in online_features(dataset)])
    assert np.array_equal(X, expected)
    assert int(y.sum()) == sum(row.label for row in dataset)


def test_both_labels_are_needed_in_each_part() -> None:
    rows = generate(days=3)
    legitimate_only = [row for row in rows if not row.label]
    with pytest.raises(ValidationProblem, match=r"training part .* only legitimate"):
        learning.train(legitimate_only, PLAIN)
    with pytest.raises(ValidationProblem, match="test_share"):
        learning.train(rows, PLAIN, test_share=1.0)


def test_explanations_name_the_feature_that_drives_the_signal() -> None:
    rows = night_only()
    model = learning.train(rows, PLAIN, seed=1).scoring_model()
    features = online_features(rows)
    ordered = sorted(rows, key=lambda row: row.at)
    fraud = [f for f, row in zip(features, ordered, strict=True) if row.label]
    legitimate = [f for f, row in zip(features, ordered, strict=True) if not row.label]
    for item in fraud[-5:]:
        top = model.explain(item)
        assert top[0]["feature"] in {"is_night", "hour", "hour_share"}, top
        assert (
            top[0]["contribution"] > 0 and top[0]["value"] == vector(item, [top[0]["feature"]])[0]
        )
        assert len(top) <= 5
        sizes = [abs(entry["contribution"]) for entry in top]
        assert sizes == sorted(sizes, reverse=True)
        assert model.score(item) > 0.5
    assert np.mean([model.score(item) for item in legitimate[-50:]]) < 0.2
    # The contributions (and the bias) add up to the raw score, as tree SHAP promises.
    row = np.array([vector(fraud[-1], model.feature_names)])
    contributions = model.booster.predict(row, pred_contrib=True)[0]
    raw = model.booster.predict(row, raw_score=True)[0]
    assert contributions.sum() == pytest.approx(raw, abs=1e-6)


def test_paysim_layout_imports_with_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "paysim.csv"
    path.write_text(
        textwrap.dedent(
            """\
            step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud,isFlaggedFraud
            1,PAYMENT,9839.64,C1231006815,170136.0,160296.36,M1979787155,0.0,0.0,0,0
            1,TRANSFER,181.00,C1305486145,181.0,0.0,C553264065,0.0,0.0,1,0
            1,CASH_OUT,181.00,C840083671,181.0,0.0,C38997010,21182.0,0.0,1,0
            2,CASH_IN,5000.5,C1912850431,100.0,5100.5,C1900366749,0.0,0.0,0,0
            3,DEBIT,5337.77,C712410124,41720.0,36382.23,C195600860,41898.0,40348.79,0,0
            """
        )
    )
    rows = learning.load_dataset(path, "paysim")
    assert [row.facts.kind for row in rows] == [
        "merchant", "p2p", "withdrawal", "top_up", "withdrawal",
    ]  # fmt: skip
    assert [row.facts.amount for row in rows] == [983964, 18100, 18100, 500050, 533777]
    assert [row.label for row in rows] == [0, 1, 1, 0, 0]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert [row.at for row in rows] == [start + timedelta(hours=h) for h in (1, 1, 1, 2, 3)]
    transfer, cash_out, cash_in = rows[1].facts, rows[2].facts, rows[3].facts
    assert (transfer.payer, transfer.payee) == ("C1305486145", "C553264065")
    # As online: a withdrawal pays a bank instrument; a top-up credits the wallet, no payer.
    assert (cash_out.payer, cash_out.payee) == ("C840083671", "bank:C38997010")
    assert (cash_in.payer, cash_in.payee) == (None, "C1912850431")
    X, y, _ = learning.featurize(rows, PLAIN)
    assert X.shape == (5, len(MODEL_FEATURES)) and list(y) == [0, 1, 1, 0, 0]


def test_a_custom_mapping_file_reads_a_banks_history(tmp_path: Path) -> None:
    mapping = tmp_path / "bank.yaml"
    mapping.write_text(
        textwrap.dedent(
            """\
            name: acme-bank
            columns: {time: booked, kind: code, amount: yuan, label: verdict,
                      payer: src, payee: dst, payment_id: ref, device_id: device}
            time_format: "%d/%m/%Y %H:%M"
            timezone: Asia/Shanghai
            kinds: {TRF: p2p, POS: merchant, FEE: skip}
            amount_scale: 100
            fraud_values: [confirmed]
            legitimate_values: [cleared]
            """
        )
    )
    data = tmp_path / "history.csv"
    data.write_text(
        "booked,code,yuan,verdict,src,dst,ref,device\n"
        "02/03/2026 09:30,TRF,12.5,cleared,A1,A2,r1,d1\n"
        "02/03/2026 09:31,FEE,1,cleared,A1,bank,r2,\n"
        "02/03/2026 02:00,POS,99.99,confirmed,A1,M9,r3,d2\n"
    )
    rows = learning.load_dataset(data, str(mapping))
    assert [row.payment_id for row in rows] == ["r3", "r1"]  # time order; the fee skipped
    assert rows[0].at == datetime(2026, 3, 1, 18, 0, tzinfo=UTC)
    assert rows[0].facts.amount == 9999 and rows[0].label == 1
    assert rows[0].facts.device_id == "d2" and rows[1].facts.kind == "p2p"


GOOD = "2026-01-01T10:00:00+00:00,1,sim_1,p2p,5000,CNY,sim_1,sim_2,pay_1,posted,201,,0,"


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (GOOD.replace(",5000,", ",twelve,"), "line 4, column 'amount': 'twelve' is not a number"),
        (GOOD.replace(",0,", ",maybe,"), "line 4, column 'is_fraud': 'maybe' is not a label"),
        (GOOD.replace(",p2p,", ",refund,"), "line 4, column 'kind': 'refund' is not a payment"),
        (GOOD.replace("2026-01-01T10:00:00+00:00", "soon"), "line 4, column 'sim_time': 'soon'"),
        (GOOD.replace(",5000,", ",-5,"), "'-5' is not an amount"),
        (GOOD + ",extra", "line 4: the row has a different number of fields"),
        (GOOD.replace(",CNY,", ",yuan,"), "line 4, column 'currency': 'YUAN' is not ISO 4217"),
    ],
)
def test_a_malformed_row_is_named_by_line_and_column(
    tmp_path: Path, broken: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([",".join(simulator.COLUMNS), GOOD, GOOD, broken, GOOD]) + "\n")
    with pytest.raises(ValidationProblem, match=message):
        learning.load_dataset(path, "payguard-sim")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ("sim_time,kind,amount\n", "missing column.*label|missing column.*is_fraud"),
        (",".join(simulator.COLUMNS) + "\n", "no data rows"),
        ('sim_time,kind\n"2026,p2p\n', "malformed CSV|missing column"),
    ],
)
def test_a_malformed_file_is_refused_clearly(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValidationProblem, match=message):
        learning.load_dataset(path, "payguard-sim")


def test_unknown_mapping_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValidationProblem, match="neither a preset"):
        learning.load_mapping("paysimm")
    with pytest.raises(ValidationProblem, match="no such file"):
        learning.load_dataset(tmp_path / "absent.csv", "paysim")
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns: {time: t, kind: k, amount: a, label: l}\nkinds: {X: refund}\n")
    with pytest.raises(ValidationProblem, match="kinds"):
        learning.load_mapping(str(bad))


def write_sim_csv(rows: list[LabelledRow], path: Path) -> None:
    """The simulator's CSV layout (payguard simulate), for the payguard-sim preset."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(simulator.COLUMNS)
        for step, row in enumerate(rows, start=1):
            facts = row.facts
            writer.writerow(
                [facts.at.isoformat(), step, facts.payer, facts.kind, facts.amount, "CNY",
                 facts.payer, facts.payee, f"pay_{step}", "posted", 201, "", row.label,
                 "takeover" if row.label else ""]
            )  # fmt: skip


def test_the_simulators_own_plan_reads_through_the_preset(tmp_path: Path) -> None:
    names = [f"sim_{index:03d}" for index in range(30)]
    events = simulator.plan(random.Random(4), names, ["Simulated Grocer"], days=3)
    path = tmp_path / "planned.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(simulator.COLUMNS)
        for step, event in enumerate(events, start=1):
            payer = "bank" if event.kind == "top_up" else event.actor
            payee = event.payee or ("bank" if event.kind == "withdrawal" else event.actor)
            writer.writerow(
                [event.at.isoformat(), step, event.actor, event.kind, event.amount, "CNY",
                 payer, payee, "", "refused", 422, "risk_blocked",
                 int(bool(event.fraud_pattern)), event.fraud_pattern]
            )  # fmt: skip
    rows = learning.load_dataset(path, "payguard-sim")
    assert len(rows) == len(events)  # refused rows keep their labels
    assert sum(row.label for row in rows) == sum(1 for e in events if e.fraud_pattern)
    top_up = next(row.facts for row in rows if row.facts.kind == "top_up")
    assert top_up.payer is None and top_up.payee and top_up.payee.startswith("sim_")
    withdrawal = next(row.facts for row in rows if row.facts.kind == "withdrawal")
    assert withdrawal.payee == "bank:bank"


def test_the_model_text_round_trips_through_the_database(
    db: Database, trained: learning.TrainedModel, dataset: list[LabelledRow]
) -> None:
    first = db.transact(lambda s: learning.save_model(s, trained, "generated", "tester").version)
    second = db.transact(lambda s: learning.save_model(s, trained, "generated", "tester").version)
    assert (first, second) == ("m1", "m2")
    with db.read() as session:
        record = learning.get_model(session, "m1")
        assert record.status == "trained" and record.booster == trained.booster
        assert record.booster.startswith("tree")  # LightGBM's own text, not a pickle
        assert learning.active_model(session) is None
        stored = learning.ScoringModel.from_record(record)
    fresh = trained.scoring_model("m1")
    sample = online_features(dataset)[-40:]
    assert [stored.score(f) for f in sample] == [fresh.score(f) for f in sample]
    assert stored.explain(sample[-1]) == fresh.explain(sample[-1])


def test_one_model_scores_the_same_from_many_threads(
    trained: learning.TrainedModel, dataset: list[LabelledRow]
) -> None:
    model = trained.scoring_model()
    sample = online_features(dataset)[-200:]
    expected = [(model.score(f), model.explain(f)) for f in sample]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda f: (model.score(f), model.explain(f)), sample * 4))
    assert results == expected * 4


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def ask(client: TestClient, auth: dict[str, str], target: str) -> Any:
    return client.post(
        "/v1/approvals",
        headers=auth,
        json={
            "action": "risk.model_activate",
            "target": target,
            "params": {},
            "reason": "better AUPRC on last month",
        },
    )


def approve(client: TestClient, settings: Settings, approval_id: str) -> dict[str, Any]:
    checker = staff_auth(settings, "risk_analyst")
    reply = client.post(f"/v1/approvals/{approval_id}/approve", headers=checker, json={})
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    assert result["status"] == "executed"
    return result


def statuses(client: TestClient, auth: dict[str, str]) -> dict[str, str]:
    reply = client.get("/v1/risk/models", headers=auth)
    assert reply.status_code == 200, reply.text
    return {item["version"]: item["status"] for item in reply.json()}


def test_activation_is_four_eyes_and_every_process_picks_it_up(
    api: TestClient,
    settings: Settings,
    db: Database,
    trained: learning.TrainedModel,
    tmp_path: Path,
) -> None:
    for _ in range(2):
        db.transact(lambda s: learning.save_model(s, trained, "generated", "tester"))
    # Another server process: its own database handle and cache, looking every call.
    other_db = Database(settings.database_url)
    other = learning.ModelCache(other_db, settings.model_copy(update={"risk_reload_seconds": 0}))
    slow = learning.ModelCache(other_db, settings.model_copy(update={"risk_reload_seconds": 3600}))
    try:
        assert other.current() is None and slow.current() is None
        maker = staff_auth(settings, "risk_analyst")
        asked = ask(api, maker, "m1")
        assert asked.status_code == 202, asked.text
        own = api.post(f"/v1/approvals/{asked.json()['id']}/approve", headers=maker, json={})
        assert own.status_code == 403  # the maker cannot approve
        assert statuses(api, maker) == {"m1": "trained", "m2": "trained"}
        assert other.current() is None

        result = approve(api, settings, asked.json()["id"])
        assert result["result"] == {"active": "m1", "previous": "none"}
        assert statuses(api, maker) == {"m1": "active", "m2": "trained"}
        model = other.current()
        assert model is not None and model.version == "m1"
        assert slow.current() is None  # until its interval passes (or it is told)
        slow.invalidate()
        assert (slow.current() or model).version == "m1"

        approve(api, settings, ask(api, maker, "m2").json()["id"])
        assert statuses(api, maker) == {"m1": "retired", "m2": "active"}
        assert (other.current() or model).version == "m2"
        already = ask(api, maker, "m2")
        assert already.status_code == 422 and "already the active model" in already.text

        # Rollback: activating the older version again.
        rolled = approve(api, settings, ask(api, maker, "m1").json()["id"])
        assert rolled["result"] == {"active": "m1", "previous": "m2"}
        assert statuses(api, maker) == {"m1": "active", "m2": "retired"}
        assert (other.current() or model).version == "m1"

        # Deactivation: the engine runs on rules alone.
        approve(api, settings, ask(api, maker, "none").json()["id"])
        assert statuses(api, maker) == {"m1": "retired", "m2": "retired"}
        assert other.current() is None
        assert ask(api, maker, "none").status_code == 422
        assert ask(api, maker, "m9").status_code == 404
    finally:
        other_db.dispose()
    with db.read() as session:
        topics = session.scalars(
            select(OutboxEvent.payload).where(OutboxEvent.topic == "security.risk_model_activated")
        ).all()
    assert [payload["version"] for payload in topics] == ["m1", "m2", "m1", "none"]

    detail = api.get("/v1/risk/models/m1", headers=maker)
    assert detail.status_code == 200
    body = detail.json()
    assert body["metrics"]["test"]["auprc"] == trained.metrics["test"]["auprc"]
    assert body["feature_names"] == list(MODEL_FEATURES) and "booster" not in body
    assert api.get("/v1/risk/models/m7", headers=maker).status_code == 404
    assert api.get("/v1/risk/models", headers=staff_auth(settings, "viewer")).status_code == 403


def receipt(payment_id: str | None, at: datetime, features: dict[str, Any]) -> RiskReceipt:
    return RiskReceipt(
        id=f"decision_{payment_id or 'external'}",
        payment_id=payment_id,
        source="pipeline" if payment_id else "api",
        customer_id=None,
        kind="p2p",
        payer="acc_1",
        payee="acc_2",
        amount=int(features["amount"]),
        currency="CNY",
        at=at,
        context={"kind": "p2p", "at": at.isoformat(), "amount": int(features["amount"])},
        features=features,
        action="allow",
        score=0,
        reasons=[],
        rule_hits=[],
        ruleset_version="r1",
        model_version="none",
        model_score=None,
        contributions=None,
        elapsed_ms=0.5,
        fallback=False,
    )


def test_labels_by_analysts_become_training_rows_with_their_stored_features(
    api: TestClient, settings: Settings, db: Database, dataset: list[LabelledRow]
) -> None:
    features = online_features(dataset)[-3:]
    at = datetime(2026, 3, 10, 12, tzinfo=UTC)
    db.transact(
        lambda session: session.add_all(
            [
                receipt("pay_a", at, features[0]),
                receipt("pay_b", at + timedelta(minutes=1), features[1]),
                receipt(None, at + timedelta(minutes=2), features[2]),
            ]
        )
    )
    analyst = staff_auth(settings, "risk_analyst")
    for target, verdict in (("pay_a", "fraud"), ("decision_external", "legitimate")):
        reply = api.post(
            "/v1/risk/labels", headers=analyst, json={"payment_id": target, "label": verdict}
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["source"] == "review" and reply.json()["by"].startswith("staff:")
    missing = api.post(
        "/v1/risk/labels", headers=analyst, json={"payment_id": "pay_zz", "label": "fraud"}
    )
    assert missing.status_code == 404
    wrong = api.post(
        "/v1/risk/labels", headers=analyst, json={"payment_id": "pay_a", "label": "bad"}
    )
    assert wrong.status_code == 422
    viewer = staff_auth(settings, "viewer")
    denied = api.post(
        "/v1/risk/labels", headers=viewer, json={"payment_id": "pay_a", "label": "fraud"}
    )
    assert denied.status_code == 403

    with db.read() as session:
        assert session.get(RiskLabel, "pay_a") is not None
        rows = learning.training_rows_from_receipts(session, at, at + timedelta(hours=1))
        everything = learning.training_rows_from_receipts(
            session, at, at + timedelta(hours=1), unlabelled_as_legitimate=True
        )
    assert [(row.payment_id, row.label) for row in rows] == [
        ("pay_a", 1), ("decision_external", 0),
    ]  # fmt: skip
    assert rows[0].features == features[0]  # as they were at the decision
    assert len(everything) == 3 and everything[1].label == 0
    X, _, _ = learning.featurize(rows, PLAIN)
    assert list(X[0]) == vector(features[0], MODEL_FEATURES)


def test_train_label_list_and_show_from_the_command_line(
    sqlite_template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    dataset: list[LabelledRow],
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    (tmp_path / "cli.db").write_bytes(sqlite_template.read_bytes())
    monkeypatch.setenv("PAYGUARD_DATABASE_URL", url)
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PAYGUARD_ARGON2_MEMORY_KIB", "64")
    get_settings.cache_clear()
    settings = get_settings()
    secrets = {"ana": "JBSWY3DPEHPK3PXPJBSWY3DP", "bo": "KRSXG5CTMVRXEZLUKRSXG5CT"}
    database = Database(url)
    for name, secret in secrets.items():
        database.transact(
            lambda session, name=name, secret=secret: identity.create_staff(
                session, settings, username=name, role="risk_analyst", password=None,
                totp_secret=secret,
            )
        )  # fmt: skip
    at = datetime(2026, 3, 10, 12, tzinfo=UTC)
    database.transact(lambda session: session.add(receipt("pay_cli", at, {"amount": 900})))
    data = tmp_path / "history.csv"
    write_sim_csv(sorted(dataset, key=lambda row: row.at), data)
    runner = CliRunner()

    def code(name: str) -> str:
        return totp.code_at(secrets[name], clock.now())

    try:
        trained = runner.invoke(
            cli.app,
            ["risk", "train", "--data", str(data), "--seed", "3", "--by", "ana",
             "--activate", "--as", "ana", "--otp", code("ana")],
        )  # fmt: skip
        assert trained.exit_code == 0, trained.output
        assert "AUPRC" in trained.output and "saved as m1" in trained.output
        assert "activation requested" in trained.output and "apr_" in trained.output
        listed = runner.invoke(cli.app, ["risk", "models", "list"])
        assert listed.exit_code == 0 and "m1" in listed.output and "trained" in listed.output
        shown = runner.invoke(cli.app, ["risk", "models", "show", "m1"])
        assert shown.exit_code == 0 and "recall at 1 % FPR" in shown.output
        labelled = runner.invoke(
            cli.app,
            ["risk", "label", "pay_cli", "fraud", "--reason", "confirmed by the customer",
             "--as", "bo", "--otp", code("bo")],
        )  # fmt: skip
        assert labelled.exit_code == 0, labelled.output
        assert "pay_cli: labelled fraud" in labelled.output
        bad = runner.invoke(cli.app, ["risk", "train", "--data", str(data), "--mapping", "x"])
        assert isinstance(bad.exception, ValidationProblem)
    finally:
        get_settings.cache_clear()
    try:
        with database.read() as session:
            model = session.get(RiskModel, "m1")
            assert model is not None and model.data_source.startswith("history.csv")
            assert model.trained_by == "ana"
            stored = session.get(RiskLabel, "pay_cli")
            assert stored is not None and stored.source == "review"
    finally:
        database.dispose()
