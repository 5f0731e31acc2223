"""The console's Drills and Evaluation pages: runs with scores, pass/fail and the score
trend; one run with its scored steps, its timeline drawn and its record files; the latest
evaluation with indicators against thresholds; empty states and permissions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from payguard import clock, ids
from payguard.app import create_app
from payguard.drills import scoring
from payguard.drills import service as drills
from payguard.evaluation import service as evaluation
from payguard.incidents import service as incidents
from payguard.settings import Settings
from tests.console.test_console import login, make_staff
from tests.console.test_incident_pages import assert_no_inline_script

SCENARIO = "phishing_takeover"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        make_staff(settings, "commander", "incident_commander")
        make_staff(settings, "watcher", "viewer")
        yield test_client


def services(client: TestClient) -> Any:
    return client.app.state.services  # type: ignore[attr-defined]


def store_run(
    client: TestClient, settings: Settings, *, contained: bool, record_dir: Path | None = None
) -> str:
    """A drill run stored through the drills service, scored by its scoring module."""
    run_id = ids.new_id("drill_run")
    start = clock.now()
    attack = scoring.StepScore(
        key="takeover",
        title_en="Log in from a new device and drain to a new payee",
        title_zh="新设备登录并转账至新收款人",
        attack=True,
        required=True,
        started_at=start,
        money_at_risk=500_000,
        money_lost=0 if contained else 120_000,
        detected=True,
        detected_by="risk.alert_opened",
        time_to_detect_s=1.5,
        detect_within_s=30,
        contained=contained,
        contained_by="controls.account_frozen" if contained else "",
        time_to_contain_s=4.25 if contained else None,
        contain_within_s=60,
    )
    background = scoring.StepScore(
        key="background",
        title_en="Legitimate payments",
        title_zh="正常支付",
        attack=False,
        required=False,
        started_at=start,
        money_at_risk=0,
        money_lost=0,
    )
    integrity = scoring.Integrity(True, [], 3, [], [])
    graded = scoring.score([attack, background], integrity)
    at = start.isoformat()
    later = (start + timedelta(seconds=4)).isoformat()
    files = [str(path) for path in sorted(record_dir.iterdir())] if record_dir else []
    result = {
        "run_id": run_id,
        "scenario": SCENARIO,
        "title_en": "Phishing account takeover",
        "title_zh": "钓鱼盗号",
        "target": "sandbox",
        "disabled_controls": [],
        "controls": ["new_device_step_up"],
        "passed": graded.passed,
        "score": graded.score,
        "score_parts": {key: round(value, 2) for key, value in graded.parts.items()},
        "failures": graded.failures,
        "attacks": 1,
        "attacks_defended": int(attack.defended),
        "time_to_detect_s": attack.time_to_detect_s,
        "time_to_contain_s": attack.time_to_contain_s,
        "money_at_risk": attack.money_at_risk,
        "money_lost": attack.money_lost,
        "integrity": {
            "ok": True,
            "invariants_ok": True,
            "invariant_problems": [],
            "acknowledged_payments": 3,
            "acknowledged_lost": [],
            "duplicate_debits": [],
        },
        "steps": [scoring.step_dict(attack), scoring.step_dict(background)],
        "incidents": [],
        "timeline": [
            {"at": at, "lane": "attack", "en": "attack step: log in", "zh": "攻击步骤：登录"},
            {"at": at, "lane": "detect", "en": "risk alert opened", "zh": "风险告警"},
            {"at": later, "lane": "contain", "en": "account frozen", "zh": "账户已冻结"},
        ],
        "improvements": [{"en": "Keep step-up on new devices.", "zh": "保持新设备二次验证。"}],
        "record_files": files,
    }

    def work(session: Any) -> None:
        drills.start_run(session, run_id=run_id, scenario=SCENARIO, target="sandbox")
        drills.finish_run(session, run_id, result, str(record_dir) if record_dir else None)

    services(client).db.transact(work)
    return run_id


def test_drill_pages_show_scores_trend_steps_timeline_and_record(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    login(client, "commander")
    empty = client.get("/console/drills")
    assert empty.status_code == 200
    assert 'href="/console/drills" class="active"' in empty.text
    assert "No finished drill yet" in empty.text and "No drill runs yet." in empty.text
    assert_no_inline_script(empty)

    failed_id = store_run(client, settings, contained=False)
    records = tmp_path / "records" / "run"
    records.mkdir(parents=True)
    (records / "drill-record-en.md").write_text("# Drill record\n\nphishing takeover\n")
    (records / "notes.txt").write_text("not a record file")
    passed_id = store_run(client, settings, contained=True, record_dir=records)
    with services(client).db.read() as session:
        first, second = drills.list_runs(session, scenario=SCENARIO)
    assert (first.passed, second.passed) == (False, True) and second.score > first.score

    listing = client.get("/console/drills")
    assert listing.status_code == 200
    html = listing.text
    assert f'href="/console/drills/{failed_id}"' in html and f'href="/console/drills/{passed_id}"'
    assert f'<td class="num strong">{second.score}</td>' in html
    assert f"+{second.score - first.score}</span>" in html  # the change to the previous run
    assert ">pass</span>" in html and ">fail</span>" in html
    assert "1/2" in html  # passed runs of the scenario
    # The trend: one line through both runs, a filled and a hollow point.
    assert '<svg class="chart trend"' in html and '<polyline class="line s0"' in html
    assert html.count('<circle class="point s0 failed"') == 1
    assert html.count('<circle class="point s0"') == 1
    assert_no_inline_script(listing)

    # An incident opened in this database during the run is linked from the run page.
    def tagged(session: Any) -> str:
        incident = incidents.open_incident(
            session,
            settings,
            title="Drill: account takeover",
            category="08",
            impact={},
            source="drill",
            created_by="drill",
            drill_run_id=passed_id,
        )
        return incident.id

    incident_id = services(client).db.transact(tagged)
    page = client.get(f"/console/drills/{passed_id}")
    assert page.status_code == 200, page.text
    html = page.text
    assert "Phishing account takeover" in html and "钓鱼盗号" in html
    assert "Log in from a new device and drain to a new payee" in html
    assert "1.5 s" in html and "4.2 s" in html  # time to detect and to contain
    assert "5,000.00 CNY" in html  # money at risk
    assert "legitimate traffic" in html  # the background step
    assert '<svg class="chart timeline"' in html
    drawn = html.split('<svg class="chart timeline"', 1)[1].split("</svg>", 1)[0]
    assert drawn.count('<circle class="dot ') == 3
    assert '<circle class="dot attack"' in drawn and '<circle class="dot contain"' in drawn
    assert "账户已冻结" in html and "Keep step-up on new devices." in html
    assert f'href="/console/incidents/{incident_id}"' in html
    assert f'href="/console/drills/{passed_id}/files/drill-record-en.md"' in html
    assert "notes.txt" not in html
    assert_no_inline_script(page)

    record = client.get(f"/console/drills/{passed_id}/files/drill-record-en.md")
    assert record.status_code == 200 and record.text.startswith("# Drill record")
    assert record.headers["content-type"].startswith("text/markdown")
    for name in ("notes.txt", "..%2F..%2Fpayguard.db", "missing.pdf"):
        assert client.get(f"/console/drills/{passed_id}/files/{name}").status_code == 404, name
    failed_page = client.get(f"/console/drills/{failed_id}").text
    assert "Why it failed" in failed_page and "takeover: not contained" in failed_page
    assert "No record files are on this server" in failed_page
    assert client.get(f"/console/drills/{ids.new_id('drill_run')}").status_code == 404

    # A run that could not be played has no score, steps or timeline: the page says so.
    broken_id = ids.new_id("drill_run")

    def broken(session: Any) -> None:
        drills.start_run(session, run_id=broken_id, scenario=SCENARIO, target="sandbox")
        drills.fail_run(session, broken_id, "RuntimeError: the sandbox did not start")

    services(client).db.transact(broken)
    broken_page = client.get(f"/console/drills/{broken_id}")
    assert broken_page.status_code == 200, broken_page.text
    assert "could not be played: RuntimeError: the sandbox did not start" in broken_page.text
    assert "No steps were recorded." in broken_page.text
    assert "No timeline was recorded for this run." in broken_page.text
    assert f'href="/console/drills/{broken_id}"' in client.get("/console/drills").text


def test_evaluation_page_shows_indicators_against_thresholds(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    csrf = login(client, "commander")
    empty = client.get("/console/evaluation")
    assert empty.status_code == 200
    assert "No evaluation yet" in empty.text and '<svg class="chart' not in empty.text
    assert_no_inline_script(empty)

    run_id = store_run(client, settings, contained=True)  # the drill indicator has data
    db = services(client).db
    evaluation.evaluate(db, settings, period="30d", created_by="test")
    latest = evaluation.evaluate(db, settings, period="30d", created_by="test")
    assert latest.id is not None
    folder = tmp_path / "evaluation-report"
    folder.mkdir()
    (folder / "evaluation-en.md").write_text("# Evaluation\n")
    db.transact(lambda session: evaluation.set_report_dir(session, str(latest.id), str(folder)))

    page = client.get("/console/evaluation")
    assert page.status_code == 200, page.text
    html = page.text
    assert 'href="/console/evaluation" class="active"' in html
    for item in latest.indicators:
        assert item.name_en in html and item.id in html
    for group in latest.groups:
        assert group.name_en in html
    defence = next(item for item in latest.indicators if item.id == "drill_defence_rate")
    assert defence.state == "pass" and "100.00%" in html
    assert '<svg class="chart thresholds"' in html
    drawn = html.split('<svg class="chart thresholds"', 1)[1].split("</svg>", 1)[0]
    assert drawn.count('<line class="threshold"') == len(latest.indicators)
    assert drawn.count('class="ind pass"') == latest.passed
    assert '<svg class="chart trend"' in html  # two evaluations: the trend shows
    assert f'href="/console/evaluation/{latest.id}/files/evaluation-en.md"' in html
    assert_no_inline_script(page)
    download = client.get(f"/console/evaluation/{latest.id}/files/evaluation-en.md")
    assert download.status_code == 200 and download.text == "# Evaluation\n"

    # A viewer sees neither drills nor the evaluation, nor their links in the nav.
    client.post("/console/logout", data={"csrf_token": csrf})
    login(client, "watcher")
    home = client.get("/console").text
    assert 'href="/console/drills"' not in home and 'href="/console/evaluation"' not in home
    for path, needed in (
        ("/console/drills", "drills:read"),
        (f"/console/drills/{run_id}", "drills:read"),
        (f"/console/drills/{run_id}/files/drill-record-en.md", "drills:read"),
        ("/console/evaluation", "evaluation:read"),
        (f"/console/evaluation/{latest.id}/files/evaluation-en.md", "evaluation:read"),
    ):
        reply = client.get(path)
        assert reply.status_code == 403, path
        assert needed in reply.text and SCENARIO not in reply.text and "Security" not in reply.text
