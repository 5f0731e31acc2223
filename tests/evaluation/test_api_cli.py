"""The evaluation over HTTP and on the command line; no data; a custom indicators file;
the latency measured from real payment lifecycles."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from payguard import cli
from payguard.db.engine import Database
from payguard.errors import ValidationProblem
from payguard.evaluation import cli as evaluation_cli
from payguard.evaluation import indicators, service
from payguard.payments.models import PaymentEvent
from payguard.settings import Settings, get_settings
from tests.conftest import make_settings
from tests.factories import allow_list, pay, register, staff_auth, top_up

runner = CliRunner()


def test_no_data_is_a_state_of_its_own(db: Database, settings: Settings) -> None:
    evaluation = service.evaluate(db, settings, period="7d", save=False)
    states = {item.id: item.state for item in evaluation.indicators}
    # Counts are facts even when zero; the ratios, the latency and the disposal time of an
    # empty platform have nothing to be computed from.
    assert states.pop("open_vulnerabilities") == "pass"
    assert states.pop("data_leak_events") == "pass"
    assert set(states.values()) == {"no_data"}
    for item in evaluation.indicators:
        if item.state == "no_data":
            assert item.value is None and item.score is None
    assert evaluation.no_data == 8 and evaluation.failed == 0
    # Two indicators carry 0.4 x 0.5 = 20% of the weight: too little to call it a pass.
    assert evaluation.coverage == pytest.approx(0.20)
    assert evaluation.verdict == "no_data"
    assert evaluation.id is None
    with db.read() as session:
        assert service.history(session) == []


def _custom_file(tmp_path: Path) -> Path:
    document = {
        "pass_score": 50,
        "min_coverage": 0,
        "groups": {
            "access": {
                "name_en": "Access",
                "name_zh": "访问",
                "weight": 1,
                "indicators": {
                    "login_success_rate": {
                        "name_en": "Logins that worked",
                        "name_zh": "登录成功",
                        "direction": "higher",
                        "unit": "ratio",
                        "weight": 1,
                        "threshold": 0.5,
                        "target": 0.9,
                    }
                },
            }
        },
    }
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def test_a_custom_indicators_file_from_the_settings(
    database_url: str, tmp_path: Path, client: TestClient
) -> None:
    register(client, "walter", device=False)  # one successful login
    custom = make_settings(
        database_url, tmp_path, evaluation_indicators_path=_custom_file(tmp_path)
    )
    database = Database(database_url)
    try:
        evaluation = service.evaluate(database, custom, period="1d", save=False)
    finally:
        database.dispose()
    assert [item.id for item in evaluation.indicators] == ["login_success_rate"]
    assert evaluation.indicators[0].value == 1.0 and evaluation.indicators[0].score == 100
    assert evaluation.overall_score == 100 and evaluation.verdict == "pass"
    assert evaluation.pass_score == 50
    assert evaluation.config_source == str(tmp_path / "custom.yaml")

    broken = make_settings(
        database_url, tmp_path, evaluation_indicators_path=tmp_path / "nowhere.yaml"
    )
    with pytest.raises(ValidationProblem, match=r"nowhere\.yaml: cannot read"):
        indicators.load(broken)


def test_the_api_computes_stores_and_serves_the_latest(
    client: TestClient, settings: Settings
) -> None:
    compliance = staff_auth(settings, "compliance")
    missing = client.get("/v1/evaluation", headers=compliance)
    assert missing.status_code == 404 and "payguard evaluate" in missing.json()["detail"]

    made = client.post("/v1/evaluation/runs", headers=compliance, json={"period": "7d"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["id"].startswith("evl_") and body["period"] == "7d"
    assert {item["state"] for item in body["indicators"]} == {"pass", "no_data"}
    assert body["created_by"].startswith("staff:")

    latest = client.get("/v1/evaluation", headers=staff_auth(settings, "auditor"))
    assert latest.status_code == 200 and latest.json()["id"] == body["id"]
    one = client.get(f"/v1/evaluation/runs/{body['id']}", headers=compliance)
    assert one.json()["indicators"] == body["indicators"]
    runs = client.get("/v1/evaluation/runs", headers=compliance).json()
    assert [run["id"] for run in runs] == [body["id"]]

    assert client.post(
        "/v1/evaluation/runs", headers=compliance, json={"period": "30y"}
    ).status_code in (
        400,
        422,
    )
    assert client.get("/v1/evaluation", headers=staff_auth(settings, "viewer")).status_code == 403
    customer = register(client, "nosy", device=False)
    assert client.get("/v1/evaluation", headers=customer.auth).status_code == 403
    assert client.get("/v1/evaluation").status_code == 401


def test_the_api_writes_the_reports_on_request(
    client: TestClient, settings: Settings, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("the report files do not depend on the database (both run in test_evaluation)")
    made = client.post(
        "/v1/evaluation/runs",
        headers=staff_auth(settings, "incident_commander"),
        json={"period": "1d", "report": True},
    )
    assert made.status_code == 201, made.text
    files = [Path(path) for path in made.json()["report_files"]]
    assert sorted(path.name for path in files) == [
        "evaluation-report-en.md",
        "evaluation-report-en.pdf",
        "evaluation-report-zh.md",
        "evaluation-report-zh.pdf",
    ]
    assert all(path.is_file() for path in files)
    assert files[0].parent.is_relative_to(settings.var_dir / "reports" / "evaluation")


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, tmp_path: Path
) -> Iterator[Settings]:
    monkeypatch.setenv("PAYGUARD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setattr(evaluation_cli.console, "width", 220)  # the whole table, unwrapped
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def test_the_command_line_prints_stores_and_reports(cli_env: Settings, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = runner.invoke(cli.app, ["evaluate", "--period", "30d", "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert "NO DATA" in first.output and "PASS" in first.output
    assert "stored as evl_" in first.output
    assert (out / "evaluation-report-zh.pdf").is_file()
    assert (out / "evaluation-report-en.md").is_file()

    second = runner.invoke(
        cli.app, ["evaluate", "--period", "30d", "--as-of", "2026-01-31", "--no-report"]
    )
    assert second.exit_code == 0, second.output
    assert "2026-01-02 00:00 – 2026-02-01 00:00 UTC" in second.output
    assert "→" in second.output  # the counts compare with the first evaluation: the same

    history = runner.invoke(cli.app, ["evaluation", "history"])
    assert history.exit_code == 0, history.output
    assert history.output.count("evl_") == 2

    shown = runner.invoke(cli.app, ["evaluation", "show"])
    assert shown.exit_code == 0 and "Drill attacks defended" in shown.output

    good = runner.invoke(cli.app, ["evaluation", "validate", str(indicators.shipped_path())])
    assert good.exit_code == 0 and "10 indicators in 3 groups" in good.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups: {}\n", encoding="utf-8")
    refused = runner.invoke(cli.app, ["evaluation", "validate", str(bad)])
    assert isinstance(refused.exception, ValidationProblem)
    assert "groups: Dictionary should have at least 1 item" in refused.exception.detail


def test_latency_is_the_p95_of_received_to_confirmed(
    client: TestClient, settings: Settings, db: Database
) -> None:
    payer = register(client, "lena")
    payee = register(client, "mark", device=False)
    allow_list(client, settings, payer)
    top_up(client, payer, 200_000)
    for amount in (1_000, 2_000, 3_000, 4_000):
        reply = pay(client, payer, kind="p2p", amount=amount, payee_account_id=payee.wallet_id)
        assert reply.status_code == 201, reply.text

    evaluation = service.evaluate(db, settings, period="1d", save=False)
    latency = next(item for item in evaluation.indicators if item.id == "payment_latency_p95")

    # By hand: each payment's received and confirmed times, as recorded.
    with db.read() as session:
        rows = session.execute(
            select(PaymentEvent.payment_id, PaymentEvent.status, PaymentEvent.at)
        ).all()
    received = {pid: at for pid, status, at in rows if status == "received"}
    confirmed = {pid: at for pid, status, at in rows if status == "confirmed"}
    spans = sorted((confirmed[pid] - received[pid]).total_seconds() * 1000 for pid in confirmed)
    assert len(spans) == 5
    nearest_rank = spans[math.ceil(0.95 * len(spans)) - 1]  # the largest of five
    assert latency.value == pytest.approx(nearest_rank, abs=0.001)
    assert latency.value > 0
    assert latency.detail["payments"] == 5
    assert latency.detail["risk_decisions"] >= 5
