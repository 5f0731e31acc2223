"""The post-incident report is written from the record, in both languages, MD and PDF."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from payguard import clock
from payguard.db.engine import Database
from payguard.incidents import reports
from payguard.incidents import service as incidents
from payguard.settings import Settings
from tests.incidents.helpers import make_staff, open_one


def test_report_in_both_languages(db: Database, settings: Settings, tmp_path: Path) -> None:
    commander = db.transact(lambda s: make_staff(s, settings))
    incident = db.transact(
        lambda s: open_one(s, settings, links=[("merchant", "mer_1"), ("alert", "alr_1")])
    )

    def run(session):  # type: ignore[no-untyped-def]
        incidents.assign_role(session, incident.id, "commander", commander, actor="stf_x")
        incidents.add_note(session, incident.id, "9:25 reported to the general manager", actor="a")
        incidents.add_timeline_entry(
            session, incident.id, kind="action", text="suspend_channel withdrawals: done"
        )
        incidents.add_task(
            session,
            incident.id,
            title="second verification on the payment module",
            owner=commander,
            due_at=clock.now() + timedelta(days=7),
            kind="improvement",
            actor="a",
        )
        for status in ("confirmed", "contained", "recovered"):
            incidents.set_status(session, incident.id, status, actor="a")
        incidents.set_status(
            session,
            incident.id,
            "closed",
            actor="a",
            summary="Unknown operations on the merchant platform; funds secured.",
            root_cause="服务器口令泄露 (leaked server password)",
            measures="Payouts suspended, ports and passwords changed.",
            lessons="Keep passwords in custody.",
        )

    db.transact(run)
    out = tmp_path / "report"
    with db.read() as session:
        report = reports.write_incident_report(session, settings, incident.id, out_dir=out)
    assert set(report.files) == {"zh-CN", "en"}
    zh = report.files["zh-CN"].markdown.read_text(encoding="utf-8")
    en = report.files["en"].markdown.read_text(encoding="utf-8")
    assert "事件总结报告" in zh and "十、改进项" in zh and "服务器口令泄露" in zh
    assert "Post-incident report" in en and "10. Improvement items" in en
    for text in (zh, en):
        assert "second verification on the payment module" in text
        assert "9:25 reported to the general manager" in text
        assert "suspend_channel withdrawals: done" in text
        assert "timeline.png" in text
    for files in report.files.values():
        assert files.pdf.read_bytes().startswith(b"%PDF")
        assert files.pdf.stat().st_size > 2000
    assert (out / "timeline.png").is_file()
