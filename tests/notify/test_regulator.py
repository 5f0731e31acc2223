"""The regulator report draft: seed 002's fields and the deadline clock of the grade."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from payguard.db.engine import Database
from payguard.notify import service as notify
from payguard.notify.regulator import IncidentFacts
from payguard.settings import Settings
from tests.conftest import make_settings

DETECTED = datetime(2026, 12, 1, 1, 15, tzinfo=UTC)  # 09:15 in Shanghai, as in seed 002


def _facts(grade: str, **extra: object) -> IncidentFacts:
    return IncidentFacts.from_dict(
        {
            "incident_id": "inc_0193",
            "title": "Abnormal merchant-platform payouts",
            "grade": grade,
            "category": "06",
            "status": "contained",
            "detected_at": DETECTED.isoformat(),
            "contained_at": DETECTED + timedelta(minutes=5),
            "impact": {"people_affected": 120, "money_at_risk": 1_234_500, "regions_affected": 1},
            "measures": ["09:17 funds secured to the suspense account", "09:20 payouts suspended"],
            "links": {"merchant": 1, "payment": 14},
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("grade", "minutes", "full"),
    [("I", 30, 120), ("II", 30, 120), ("III", 30, 120), ("IV", 1440, 2880)],
)
def test_the_clock_follows_the_grade(
    settings: Settings, db: Database, grade: str, minutes: int, full: int
) -> None:
    now = DETECTED + timedelta(minutes=45)
    with db.read() as session:
        draft = notify.regulator_report_draft(session, settings, _facts(grade), now=now)
    assert draft.deadline.minutes == minutes
    assert draft.deadline.report_due_at == DETECTED + timedelta(minutes=minutes)
    assert draft.deadline.seconds_left == (minutes - 45) * 60
    assert draft.deadline.overdue is (minutes < 45)
    assert draft.deadline.full_report_due_at == DETECTED + timedelta(minutes=full)
    assert draft.deadline.final_report_days == 5
    assert "PBoC Order 2025 No. 4" in draft.deadline.basis


def test_a_filed_report_stops_the_clock(settings: Settings, db: Database) -> None:
    late = DETECTED + timedelta(hours=5)
    with db.read() as session:
        in_time = notify.regulator_report_draft(
            session, settings, _facts("I", filed_at=DETECTED + timedelta(minutes=20)), now=late
        )
    assert in_time.deadline.overdue is False


def test_the_deadlines_are_settings(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(
        database_url,
        tmp_path,
        notify_regulator_deadline_minutes={"I": 10, "II": 20},
        notify_regulator_full_report_minutes={"II": 5},
    )
    db = Database(settings.database_url)
    try:
        with db.read() as session:
            two = notify.regulator_report_draft(session, settings, _facts("II"))
            four = notify.regulator_report_draft(session, settings, _facts("IV"))
    finally:
        db.dispose()
    assert two.deadline.minutes == 20
    assert two.deadline.full_report_minutes == 20  # never before the brief report
    assert four.deadline.minutes == 1440  # a grade not configured: IV's value, else a day


def test_the_draft_carries_time_scope_trend_and_measures_in_both_languages(
    settings: Settings, db: Database
) -> None:
    with db.read() as session:
        zh = notify.regulator_report_draft(session, settings, _facts("II"), language="zh-CN")
        en = notify.regulator_report_draft(session, settings, _facts("II"), language="en")
    for heading in ("二、发生时间", "三、影响范围", "四、发展趋势", "五、已采取的措施"):
        assert heading in zh.text
    assert "发现时间：2026-12-01 09:15:00 +0800" in zh.text
    assert "简要报告时限：2026-12-01 09:45:00 +0800（发现后 30 分钟" in zh.text
    assert "事发报告时限：2026-12-01 11:15:00 +0800" in zh.text
    assert "受影响人数：120" in zh.text and "12,345.00 CNY" in zh.text
    assert "事件已得到控制" in zh.text and "09:20 payouts suspended" in zh.text
    assert "中国人民银行令〔2025〕第4号" in zh.text
    assert zh.subject.startswith("【草稿】")
    for heading in ("2. Time", "3. Scope", "4. Trend", "5. Measures taken"):
        assert heading in en.text
    assert "Contained; the impact is no longer growing." in en.text
    assert "Linked: merchant × 1, payment × 14" in en.text


def test_the_draft_is_written_as_markdown_and_pdf(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    with db.read() as session:
        draft = notify.regulator_report_draft(session, settings, _facts("I"), language="zh-CN")
    files = draft.write(tmp_path / "reports")
    assert "## 三、影响范围" in files.markdown.read_text(encoding="utf-8")
    assert b"STSong-Light" in files.pdf.read_bytes()


def test_sending_the_draft_records_an_external_notification(
    settings: Settings, db: Database
) -> None:
    out = db.transact(
        lambda s: notify.send_regulator_report(s, settings, _facts("III"), language="en")
    )
    assert (out.audience, out.template, out.status, out.incident_id) == (
        "external",
        "regulator_report",
        "sent",
        "inc_0193",
    )
    with db.read() as session:
        assert "3. Scope" in notify.detail(session, settings, out.id).body


def test_unknown_facts_are_refused() -> None:
    from payguard.errors import ValidationProblem

    with pytest.raises(ValidationProblem, match="unknown incident facts: colour"):
        IncidentFacts.from_dict(
            {
                "incident_id": "x",
                "title": "t",
                "grade": "I",
                "detected_at": DETECTED,
                "colour": "red",
            }
        )


def test_a_recorded_incident_is_read_through_the_incidents_service(
    settings: Settings, db: Database
) -> None:
    incidents = pytest.importorskip("payguard.incidents.service")
    incident = db.transact(
        lambda s: incidents.open_incident(
            s,
            settings,
            title="Leaked merchant password",
            category="06",
            impact={"people_affected": 3, "money_at_risk": 500_000},
            created_by="test",
            links=[("merchant", "mer_1")],
        )
    )
    incident_id = incident.id
    with db.read() as session:
        draft = notify.regulator_report_draft(session, settings, incident_id, language="en")
    assert draft.incident_id == incident_id and draft.title == "Leaked merchant password"
    assert "Linked: merchant × 1" in draft.text
    assert "Still being handled" in draft.trend
    # Sent once, the draft's clock stops at the filing time.
    db.transact(lambda s: notify.send_regulator_report(s, settings, incident_id))
    with db.read() as session:
        again = notify.regulator_report_draft(session, settings, incident_id)
    assert again.deadline.overdue is False
