"""The console's Incidents pages: the list with its filters, one incident with its record,
timeline (table and SVG by lane) and playbook runs, the note and status forms (CSRF,
permission), the report download, empty states and who may see what."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from payguard.app import create_app
from payguard.incidents import playbooks
from payguard.incidents import service as incidents
from payguard.settings import Settings
from tests.conftest import make_settings
from tests.console.test_console import login, make_staff

PLAYBOOK = """
name: console-check
version: 1
title: Suspend withdrawals
description: Suspends withdrawals platform-wide while the incident is handled.
steps:
  - id: suspend
    action: suspend_channel
    params: {scope: withdrawals, reason: "console check on {{ incident.id }}"}
    recovery: {action: resume_channel}
"""


@pytest.fixture
def page_settings(database_url: str, tmp_path: Path) -> Settings:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "console-check.yaml").write_text(PLAYBOOK)
    return make_settings(database_url, tmp_path, playbooks_dir=folder)


@pytest.fixture
def client(page_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(page_settings), raise_server_exceptions=False) as test_client:
        make_staff(page_settings, "commander", "incident_commander")
        make_staff(page_settings, "auditor", "auditor")
        make_staff(page_settings, "watcher", "viewer")
        yield test_client


def services(client: TestClient) -> Any:
    return client.app.state.services  # type: ignore[attr-defined]


def assert_no_inline_script(reply: httpx.Response) -> None:
    """The CSP holds: one script, carrying the header's nonce; no handlers, no styles."""
    csp = reply.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "default-src 'self'" in csp
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce is not None
    assert re.findall(r"<script\b[^>]*>", reply.text) == [f'<script nonce="{nonce.group(1)}">']
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", reply.text)
    assert not re.search(r"<[^>]*\sstyle\s*=", reply.text)
    assert "javascript:" not in reply.text


def open_incident(client: TestClient, settings: Settings) -> str:
    """An incident made through the incidents service, with a timeline in every lane."""

    def work(session: Any) -> str:
        incident = incidents.open_incident(
            session,
            settings,
            title="Abnormal merchant-platform payouts",
            category="02",
            impact={"people_affected": 3, "money_at_risk": 250_000, "currency": "CNY"},
            created_by="intake",
            links=[("alert", "alr_console0001"), ("payment", "pay_console0001")],
        )
        incidents.add_timeline_entry(
            session, incident.id, kind="action", text="merchant payouts suspended"
        )
        incidents.add_timeline_entry(
            session, incident.id, kind="notification", text="commander notified (outbox)"
        )
        incidents.assign_role(session, incident.id, "commander", "commander", actor="intake")
        incidents.add_task(
            session, incident.id, title="Rotate the merchant's passwords", actor="intake"
        )
        return incident.id

    result: str = services(client).db.transact(work)
    return result


def test_incident_pages_show_the_record_timeline_and_forms(
    client: TestClient, page_settings: Settings
) -> None:
    csrf = login(client, "commander")
    empty = client.get("/console/incidents")
    assert empty.status_code == 200
    assert 'href="/console/incidents" class="active"' in empty.text  # in the nav
    assert 'href="/console/drills"' in empty.text and 'href="/console/evaluation"' in empty.text
    assert "No incidents yet" in empty.text

    incident_id = open_incident(client, page_settings)
    listing = client.get("/console/incidents")
    assert listing.status_code == 200
    assert f'href="/console/incidents/{incident_id}"' in listing.text
    assert "Abnormal merchant-platform payouts" in listing.text
    assert ">reported</span>" in listing.text and "network attack incident" in listing.text
    assert_no_inline_script(listing)
    filtered = client.get("/console/incidents", params={"status": "closed"})
    assert incident_id not in filtered.text and "No incident matches this filter" in filtered.text
    assert incident_id in client.get("/console/incidents", params={"status": "reported"}).text
    bad = client.get("/console/incidents", params={"status": "lost"})
    assert bad.status_code == 400 and "unknown status" in bad.text

    page = client.get(f"/console/incidents/{incident_id}")
    assert page.status_code == 200, page.text
    html = page.text
    assert "2,500.00 CNY" in html  # money at risk
    assert "grade IV" in html and "commander" in html  # the role, held by commander
    assert "Rotate the merchant&#39;s passwords" in html
    assert 'href="/console/payments/pay_console0001"' in html and "alr_console0001" in html
    assert "merchant payouts suspended" in html and "commander notified (outbox)" in html
    # The timeline drawn: one lane per kind group, a dot per entry, each with its tooltip.
    assert '<svg class="chart timeline"' in html
    for lane in ("alert", "action", "status", "notification", "note"):
        assert f'text-anchor="end">{lane}</text>' in html
    with services(client).db.read() as session:
        entries = incidents.timeline(session, incident_id)
    drawn = html.split('<svg class="chart timeline"', 1)[1].split("</svg>", 1)[0]
    assert drawn.count('<circle class="dot ') == len(entries)
    assert '<circle class="dot alert"' in drawn and '<circle class="dot notification"' in drawn
    assert "merchant payouts suspended</title>" in drawn  # the tooltip
    assert f"/console/incidents/{incident_id}/report?language=zh-CN&amp;format=pdf" in html
    assert "No playbook has run on this incident." in html
    assert_no_inline_script(page)

    # A note through the form: kept on the timeline, escaped when shown.
    noted = client.post(
        f"/console/incidents/{incident_id}/notes",
        data={"csrf_token": csrf, "text": "9:25 reported to the GM <script>alert(1)</script>"},
        follow_redirects=False,
    )
    assert noted.status_code == 303, noted.text
    after = client.get(noted.headers["location"])
    assert "Note added to the timeline." in after.text
    assert "9:25 reported to the GM &lt;script&gt;alert(1)&lt;/script&gt;" in after.text
    assert_no_inline_script(after)
    with services(client).db.read() as session:
        [note] = [e for e in incidents.timeline(session, incident_id) if e.kind == "note"]
        assert note.text.startswith("9:25 reported to the GM")

    # Moving the status: one step along the flow; a skip is refused with the allowed moves.
    moved = client.post(
        f"/console/incidents/{incident_id}/status",
        data={"csrf_token": csrf, "status": "confirmed", "note": "payouts look fraudulent"},
        follow_redirects=False,
    )
    assert moved.status_code == 303, moved.text
    assert (
        "status reported → confirmed: payouts look fraudulent"
        in client.get(moved.headers["location"]).text
    )
    skipped = client.post(
        f"/console/incidents/{incident_id}/status",
        data={"csrf_token": csrf, "status": "closed"},
        follow_redirects=False,
    )
    assert skipped.status_code == 409 and "it can move to contained" in skipped.text
    forged = client.post(
        f"/console/incidents/{incident_id}/status",
        data={"csrf_token": "0" * 64, "status": "contained"},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and "security token" in forged.text
    with services(client).db.read() as session:
        assert incidents.get_incident(session, incident_id).status == "confirmed"

    # A playbook run: its steps and their status show on the page.
    def contain(session: Any) -> str:
        run = playbooks.start_run(
            session,
            page_settings,
            services(client),
            incident_id=incident_id,
            playbook="console-check",
            started_by="commander",
        )
        return run.id

    run_id = services(client).db.transact(contain)
    html = client.get(f"/console/incidents/{incident_id}").text
    assert "console-check" in html and "suspend_channel" in html and ">completed</span>" in html
    assert ">done</span>" in html and f"playbook:{run_id}" in html  # the run's own entries
    assert ">contained</span>" in html  # the completed containment moved the incident

    report = client.get(
        f"/console/incidents/{incident_id}/report", params={"language": "en", "format": "md"}
    )
    assert report.status_code == 200, report.text
    assert report.headers["content-type"].startswith("text/markdown")
    assert "Abnormal merchant-platform payouts" in report.text
    assert "attachment" in report.headers["content-disposition"]

    missing = client.get("/console/incidents/inc_00000000000000000000000000000000")
    assert missing.status_code == 404 and "Back to the dashboard" in missing.text

    client.post("/console/logout", data={"csrf_token": csrf})
    check_who_may_see_and_change(client, incident_id)


def check_who_may_see_and_change(client: TestClient, incident_id: str) -> None:
    """A viewer sees no incident; an auditor reads and changes nothing; strangers log in."""
    with services(client).db.read() as session:
        status = incidents.get_incident(session, incident_id).status
        notes = len([e for e in incidents.timeline(session, incident_id) if e.kind == "note"])
    csrf = login(client, "watcher")
    home = client.get("/console")
    assert 'href="/console/incidents"' not in home.text  # not in a viewer's nav
    for path in ("/console/incidents", f"/console/incidents/{incident_id}"):
        reply = client.get(path)
        assert reply.status_code == 403, path
        assert "incidents:read" in reply.text and "Abnormal" not in reply.text
    report = client.get(f"/console/incidents/{incident_id}/report", params={"format": "md"})
    assert report.status_code == 403
    refused = client.post(
        f"/console/incidents/{incident_id}/notes",
        data={"csrf_token": csrf, "text": "a viewer writes"},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    client.post("/console/logout", data={"csrf_token": csrf})

    csrf = login(client, "auditor")
    page = client.get(f"/console/incidents/{incident_id}")
    assert page.status_code == 200
    assert "/notes" not in page.text and "/status" not in page.text  # no forms
    refused = client.post(
        f"/console/incidents/{incident_id}/status",
        data={"csrf_token": csrf, "status": "recovered"},
        follow_redirects=False,
    )
    assert refused.status_code == 403 and "incidents:manage" in refused.text
    refused = client.post(
        f"/console/incidents/{incident_id}/notes",
        data={"csrf_token": csrf, "text": "an auditor writes"},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    with services(client).db.read() as session:
        assert incidents.get_incident(session, incident_id).status == status
        assert (
            len([e for e in incidents.timeline(session, incident_id) if e.kind == "note"]) == notes
        )

    client.post("/console/logout", data={"csrf_token": csrf})
    anonymous = client.get(f"/console/incidents/{incident_id}", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/console/login")
