"""The thin edges: GET /v1/notifications and ``payguard notify``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from payguard.cli import app
from payguard.db.engine import Database
from payguard.notify import service as notify
from payguard.settings import Settings, get_settings
from tests.factories import staff_auth

from .receivers import webhook_receiver

runner = CliRunner()


def _send(db: Database, settings: Settings, **extra: object) -> str:
    out = db.transact(
        lambda s: notify.send(
            s,
            settings,
            audience="internal",
            template="notify_test",
            language="en",
            context={"note": "api"},
            **extra,
        )
    )
    return out.id


def test_staff_with_incident_access_list_and_read_notifications(
    client: TestClient, settings: Settings, db: Database
) -> None:
    first = _send(db, settings, incident_id="inc_a")
    _send(db, settings, incident_id="inc_b")
    auth = staff_auth(settings, "incident_commander")
    listed = client.get("/v1/notifications", params={"incident_id": "inc_a"}, headers=auth)
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [first]
    one = client.get(f"/v1/notifications/{first}", headers=auth)
    assert one.status_code == 200
    assert "api" in one.json()["body"]
    assert one.json()["attempt_log"][0]["outcome"] == "ok"
    assert client.get("/v1/notifications/ntf_nope", headers=auth).status_code == 404
    # A viewer has no business with incident notifications; no session at all, even less.
    assert (
        client.get("/v1/notifications", headers=staff_auth(settings, "viewer")).status_code == 403
    )
    assert client.get("/v1/notifications").status_code == 401


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("PAYGUARD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("PAYGUARD_NOTIFY_WEBHOOK_SECRET", "cli-secret")
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def test_cli_lists_dispatches_and_tests_the_webhook(
    cli_env: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with webhook_receiver() as receiver:
        monkeypatch.setenv("PAYGUARD_NOTIFY_WEBHOOK_URL", receiver.url)
        get_settings.cache_clear()
        settings = get_settings()
        queued = _send(db, settings, channel="webhook")
        listed = runner.invoke(
            app, ["notify", "list", "--status", "queued"], env={"COLUMNS": "250"}
        )
        assert listed.exit_code == 0, listed.output
        assert queued[:12] in listed.output
        dispatched = runner.invoke(app, ["notify", "dispatch"])
        assert dispatched.exit_code == 0, dispatched.output
        assert "sent 1; 0 still queued" in dispatched.output
        tested = runner.invoke(app, ["notify", "test-webhook"])
        assert tested.exit_code == 0, tested.output
        assert "ok: HTTP 200" in tested.output
    assert len(receiver.requests) == 2
    dead = runner.invoke(app, ["notify", "test-webhook", "--url", receiver.url])
    assert dead.exit_code == 1 and "failed" in dead.output


def test_cli_drafts_the_regulator_report(cli_env: Settings, db: Database, tmp_path: Path) -> None:
    incidents = pytest.importorskip("payguard.incidents.service")
    incident = db.transact(
        lambda s: incidents.open_incident(
            s,
            cli_env,
            title="Payout burst",
            category="02",
            impact={"people_affected": 1},
            created_by="test",
        )
    )
    result = runner.invoke(
        app, ["notify", "draft", incident.id, "--lang", "en", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert "[DRAFT]" in result.output and "initial report due" in result.output
    assert list((tmp_path / "out").glob("*.pdf"))


def test_the_app_sweeper_delivers_queued_notifications(database_url: str, tmp_path: Path) -> None:
    import threading
    import time

    from payguard.app import _sweeper, build_services
    from tests.conftest import make_settings

    with webhook_receiver() as receiver:
        settings = make_settings(
            database_url,
            tmp_path,
            notify_webhook_url=receiver.url,
            notify_webhook_secret="sweeper-secret",
        )
        services = build_services(settings)
        stop = threading.Event()
        sweeper = threading.Thread(target=_sweeper, args=(services, stop, 0.05), daemon=True)
        try:
            queued = _send(services.db, settings, channel="webhook")
            sweeper.start()
            deadline = time.monotonic() + 10
            while not receiver.requests and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            sweeper.join(timeout=5)
            services.db.dispose()
    assert [r.headers["x-payguard-notification"] for r in receiver.requests] == [queued]
