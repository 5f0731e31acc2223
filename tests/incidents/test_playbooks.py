"""Playbooks: the shipped ones validate, bad files get clear errors, runs follow the steps
(templating, for_each, failures, four-eyes), and the CLI lists, validates and runs."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from payguard import cli, clock
from payguard.app import create_app
from payguard.events.models import OutboxEvent
from payguard.identity import approvals, totp
from payguard.incidents import playbooks
from payguard.incidents import service as incidents
from payguard.ledger import service as ledger
from payguard.settings import Settings, get_settings
from tests.conftest import make_settings
from tests.factories import invariants, pay, register, staff_auth, top_up
from tests.incidents.helpers import open_one

SHIPPED = {
    "leaked-merchant-credentials",
    "account-takeover",
    "data-leak",
    "malware-auto-debit",
    "mule-accounts",
    "credential-stuffing",
    "key-compromise",
    "insider-abuse",
}

GOOD = """
name: stop-withdrawals
version: 2
title: Stop withdrawals
description: Suspends withdrawals platform-wide and freezes the linked accounts.
params:
  why: {description: the reason, default: drill}
steps:
  - id: suspend
    action: suspend_channel
    params: {scope: withdrawals, reason: "{{ params.why }} on {{ incident.id }}"}
    recovery: {action: resume_channel}
  - id: freeze
    action: freeze_account
    for_each: incident.links.account
    params: {account_id: "{{ item }}"}
    recovery: {action: unfreeze_account, requires_approval: true}
"""


def problems_of(text: str) -> str:
    with pytest.raises(playbooks.PlaybookError) as error:
        playbooks.parse(text, "custom/bad.yaml")
    assert error.value.status == 422 and error.value.code == "playbook-invalid"
    return error.value.detail


def test_the_eight_shipped_playbooks_validate() -> None:
    found, problems = playbooks.load_report(Settings(_env_file=None))
    assert problems == {}
    assert set(found) >= SHIPPED
    for name in SHIPPED:
        book = playbooks.validate_file(playbooks.SHIPPED_DIR / f"{name}.yaml")
        assert book.name == name and book.sha and book.title
    seed_002 = found["leaked-merchant-credentials"]
    actions_used = [step.action for step in seed_002.steps]
    for needed in ("secure_merchant_funds", "suspend_channel", "revoke_sessions",
                   "force_password_reset", "rotate_signing_keys", "notify"):  # fmt: skip
        assert needed in actions_used


def test_validation_errors_name_the_file_the_step_and_the_field() -> None:
    assert playbooks.parse(GOOD, "good.yaml").version_tag.startswith("v2@")
    unknown = problems_of(GOOD.replace("action: freeze_account", "action: freeze_everything"))
    assert "custom/bad.yaml: steps[2] 'freeze' (line 13)" in unknown
    assert "action: unknown action; one of" in unknown and "freeze_account" in unknown
    bad_param = problems_of(GOOD.replace("{account_id:", "{acount_id:"))
    assert "steps[2] 'freeze'" in bad_param and "params.acount_id: Extra inputs" in bad_param
    no_recovery = problems_of(GOOD.replace("    recovery: {action: resume_channel}\n", ""))
    assert "steps[1] 'suspend'" in no_recovery
    assert "recovery: suspend_channel changes the platform until undone" in no_recovery
    wrong_undo = problems_of(GOOD.replace("{action: resume_channel}", "{action: lift_step_up}"))
    assert "the recovery of suspend_channel is resume_channel, not lift_step_up" in wrong_undo
    unguarded = problems_of(GOOD.replace(", requires_approval: true}", "}"))
    assert "recovery.requires_approval: unfreeze_account is a four-eyes operation" in unguarded
    reference = problems_of(GOOD.replace("{{ params.why }}", "{{ params.whom }}"))
    assert "params.reason: {{ params.whom }}: params.<name> of a parameter declared" in reference
    link = problems_of(GOOD.replace("incident.links.account", "incident.links.wallet"))
    assert "for_each: incident.links.<alert|account|payment|customer|device|merchant>" in link
    typed = problems_of(GOOD.replace("version: 2", "version: two"))
    assert "custom/bad.yaml: version: Input should be a valid integer" in typed
    step_field = problems_of(GOOD.replace("    for_each:", "    for_eachh:"))
    assert "steps[2] (line 13): for_eachh: Extra inputs are not permitted" in step_field
    broken = problems_of("name: x\nsteps: [\n")
    assert broken.startswith("custom/bad.yaml: line") and "not valid YAML" in broken
    # Several problems at once are all reported.
    both = problems_of(GOOD.replace("action: freeze_account", "action: nope").replace(
        "    recovery: {action: resume_channel}\n", ""))  # fmt: skip
    assert "unknown action" in both and "changes the platform until undone" in both


def test_custom_folder_adds_playbooks_and_reports_broken_files(tmp_path: Path) -> None:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "stop-withdrawals.yaml").write_text(GOOD)
    (folder / "broken.yaml").write_text(GOOD.replace("name: stop-withdrawals", "name: broken")
                                        .replace("freeze_account", "nope"))  # fmt: skip
    settings = make_settings("sqlite:///unused.db", tmp_path, playbooks_dir=folder)
    found, problems = playbooks.load_report(settings)
    assert "stop-withdrawals" in found and set(found) >= SHIPPED
    assert list(problems) == [str(folder / "broken.yaml")]
    with pytest.raises(playbooks.PlaybookError) as error:
        playbooks.get_playbook(settings, "broken")
    assert "broken.yaml" in error.value.detail and "unknown action" in error.value.detail


def test_cli_lists_shows_and_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    try:
        listed = runner.invoke(cli.app, ["playbooks", "list"])
        assert listed.exit_code == 0 and "leaked-merchant-credentials" in listed.output
        shown = runner.invoke(cli.app, ["playbooks", "show", "mule-accounts"])
        assert shown.exit_code == 0 and "freeze_account" in shown.output
        good = tmp_path / "good.yaml"
        good.write_text(GOOD)
        valid = runner.invoke(cli.app, ["playbooks", "validate", str(good)])
        assert valid.exit_code == 0 and "valid: stop-withdrawals" in valid.output
        bad = tmp_path / "bad.yaml"
        bad.write_text(GOOD.replace("freeze_account", "nope"))
        refused = runner.invoke(cli.app, ["playbooks", "validate", str(bad)])
        assert isinstance(refused.exception, playbooks.PlaybookError)  # main() prints one line
        assert "bad.yaml: steps[2] 'freeze'" in refused.exception.detail
    finally:
        get_settings.cache_clear()


# ------------------------------------------------------------------ runs


@pytest.fixture
def custom_client(database_url: str, tmp_path: Path) -> Any:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "stop-withdrawals.yaml").write_text(GOOD)
    failing = GOOD.replace("name: stop-withdrawals", "name: fails-early").replace(
        "scope: withdrawals", 'scope: "merchant_payouts:mer_missing"'
    )
    (folder / "fails-early.yaml").write_text(failing)
    settings = make_settings(database_url, tmp_path, playbooks_dir=folder)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client, settings


def _incident(client: TestClient, settings: Settings, links: list[tuple[str, str]]) -> str:
    db = client.app.state.services.db  # type: ignore[attr-defined]
    result: str = db.transact(lambda session: open_one(session, settings, links=links).id)
    return result


def test_for_each_templating_four_eyes_and_recovery(custom_client: Any) -> None:
    client, settings = custom_client
    ann = register(client, f"ann{uuid.uuid4().hex[:6]}")
    bob = register(client, f"bob{uuid.uuid4().hex[:6]}")
    top_up(client, ann, 20_000)
    incident_id = _incident(
        client, settings, [("account", ann.wallet_id), ("account", bob.wallet_id)]
    )
    commander = staff_auth(settings, "incident_commander")
    started = client.post(
        f"/v1/incidents/{incident_id}/playbook-runs",
        headers=commander,
        json={"playbook": "stop-withdrawals", "params": {"why": "phishing wave"}},
    )
    assert started.status_code == 201, started.text
    run = started.json()
    assert [s["action"] for s in run["steps"]] == ["suspend_channel", *["freeze_account"] * 2]
    assert run["steps"][0]["params"]["reason"] == f"phishing wave on {incident_id}"
    assert {s["params"]["account_id"] for s in run["steps"][1:]} == {ann.wallet_id, bob.wallet_id}
    assert run["status"] == "completed" and run["playbook_version"].startswith("v2@")
    refused = pay(client, ann, kind="withdrawal", amount=1_000, bank_account="6222020200112233")
    assert refused.status_code == 409 and refused.json()["code"] == "channel-suspended"

    back = client.post(f"/v1/playbook-runs/{run['id']}/recover", headers=commander).json()
    assert [s["action"] for s in back["steps"]] == [
        "unfreeze_account", "unfreeze_account", "resume_channel"
    ]  # fmt: skip
    # Unfreezing waits for a second person: one at a time, in reverse order.
    assert [s["status"] for s in back["steps"]] == ["waiting_approval", "pending", "pending"]
    waiting = back["steps"][0]
    with client.app.state.services.db.read() as session:
        record = approvals.get(session, waiting["approval_id"])
        assert record.action == playbooks.PLAYBOOK_STEP and record.status == "pending"
    # The generic approvals queue is the same door: an analyst may not, an admin may.
    analyst = client.post(
        f"/v1/approvals/{waiting['approval_id']}/approve",
        headers=staff_auth(settings, "risk_analyst"),
        json={},
    )
    assert analyst.status_code == 403
    done = client.post(
        f"/v1/approvals/{waiting['approval_id']}/approve", headers=staff_auth(settings), json={}
    )
    assert done.status_code == 200 and done.json()["status"] == "executed", done.text
    back = client.get(f"/v1/playbook-runs/{back['id']}", headers=commander).json()
    assert [s["status"] for s in back["steps"]] == ["done", "waiting_approval", "pending"]
    second = back["steps"][1]["position"]
    final = client.post(
        f"/v1/playbook-runs/{back['id']}/steps/{second}/approve",
        headers=staff_auth(settings),
        json={"note": "customer verified by phone"},
    )
    assert final.status_code == 200, final.text
    assert final.json()["status"] == "completed"
    assert [s["status"] for s in final.json()["steps"]] == ["done", "done", "done"]
    with client.app.state.services.db.read() as session:
        assert ledger.get_balance(session, ann.wallet_id).status == "active"
        assert incidents.get_incident(session, incident_id).status == "recovered"
    out = pay(client, ann, kind="withdrawal", amount=1_000, bank_account="6222020200112233")
    assert out.status_code == 201, out.text
    assert invariants(client, settings)["ok"] is True


def test_a_failing_step_stops_the_run_and_is_recorded(custom_client: Any) -> None:
    client, settings = custom_client
    ann = register(client, f"ann{uuid.uuid4().hex[:6]}", device=False)
    incident_id = _incident(client, settings, [("account", ann.wallet_id)])
    commander = staff_auth(settings, "incident_commander")
    run = client.post(
        f"/v1/incidents/{incident_id}/playbook-runs",
        headers=commander,
        json={"playbook": "fails-early"},
    ).json()
    assert run["status"] == "failed"
    assert run["steps"][0]["status"] == "failed"
    assert "no merchant 'mer_missing'" in run["steps"][0]["error"]
    assert run["steps"][1]["status"] == "skipped"
    assert "earlier step failed" in run["steps"][1]["error"]
    with client.app.state.services.db.read() as session:
        assert ledger.get_balance(session, ann.wallet_id).status == "active"  # not frozen
        incident = incidents.get_incident(session, incident_id)
        assert incident.status == "reported"  # not contained
        topics = [
            event.topic
            for event in session.query(OutboxEvent).order_by(OutboxEvent.id)
            if event.topic.startswith("playbook.")
        ]
        lines = [line.text for line in incidents.timeline(session, incident_id)]
    assert "playbook.step_failed" in topics and topics[-1] == "playbook.run_finished"
    assert any("suspend_channel: failed" in line for line in lines)
    unknown = client.post(
        f"/v1/incidents/{incident_id}/playbook-runs", headers=commander, json={"playbook": "x"}
    )
    assert unknown.status_code == 404 and "known:" in unknown.json()["detail"]


def test_cli_runs_and_a_second_person_approves(
    cli_db: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _tmp = cli_db
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(cli.app, list(args))
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output

    settings = get_settings()
    from payguard.db.engine import Database
    from payguard.identity import service as identity

    db = Database(url)
    secrets: dict[str, str] = {}

    def make(session: Any) -> str:
        for role in ("incident_commander", "admin"):
            secret = pyotp.random_base32()
            identity.create_staff(
                session, settings, username=f"cli-{role}", role=role, password=None,
                totp_secret=secret,
            )  # fmt: skip
            secrets[role] = secret
        return open_one(session, settings, links=[]).id

    incident_id = db.transact(make)
    db.dispose()
    started = invoke(
        "playbooks", "run", incident_id, "key-compromise", "--as", "cli-incident_commander",
        "--otp", totp.code_at(secrets["incident_commander"], clock.now()),
    )  # fmt: skip
    assert "waiting_approval" in started
    run_id = re.search(r"run (pbr_\w+)", started).group(1)  # type: ignore[union-attr]
    approved = invoke(
        "playbooks", "approve-step", run_id, "1", "--as", "cli-admin",
        "--otp", totp.code_at(secrets["admin"], clock.now()),
    )  # fmt: skip
    assert "completed" in approved and "kek-2" in approved
    assert run_id in invoke("playbooks", "runs", incident_id)


@pytest.fixture
def cli_db(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    from payguard.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    monkeypatch.setenv("PAYGUARD_DATABASE_URL", url)
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PAYGUARD_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("PAYGUARD_ARGON2_MEMORY_KIB", "64")
    monkeypatch.setenv("PAYGUARD_ARGON2_PARALLELISM", "1")
    monkeypatch.setenv("PAYGUARD_INCIDENT_INTAKE_SECONDS", "0")
    get_settings.cache_clear()
    yield url, tmp_path
    get_settings.cache_clear()
