"""``payguard drill``: a drill failing with a control off, then passing after the "fix",
shows the difference in the history; plans, schedules, show and record."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from payguard import cli
from payguard.settings import get_settings

runner = CliRunner()


@pytest.fixture
def drill_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("PAYGUARD_DATABASE_URL", f"sqlite:///{tmp_path / 'var' / 'payguard.db'}")
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("COLUMNS", "220")
    get_settings.cache_clear()
    upgraded = runner.invoke(cli.app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    yield tmp_path
    get_settings.cache_clear()


def test_a_fix_shows_in_the_history(drill_home: Path) -> None:
    listed = runner.invoke(cli.app, ["drill", "list"])
    assert listed.exit_code == 0, listed.output
    for name in ("phishing_takeover", "merchant_payout_leak", "credential_stuffing"):
        assert name in listed.output

    weak = runner.invoke(
        cli.app,
        [
            "drill",
            "run",
            "phishing_takeover",
            "--disable-control",
            "signed_instructions",
            "--no-record",
        ],
    )
    assert weak.exit_code == 1, weak.output
    assert "FAILED" in weak.output and "split-drain: not contained" in weak.output

    # The record is written from the stored run below (the scenario tests write it too).
    fixed = runner.invoke(cli.app, ["drill", "run", "phishing_takeover", "--no-record"])
    assert fixed.exit_code == 0, fixed.output
    assert "PASSED" in fixed.output and "score 100/100" in fixed.output
    run_id = re.search(r"(drl_[0-9a-f]+)", fixed.output)
    assert run_id is not None

    history = runner.invoke(cli.app, ["drill", "history", "--scenario", "phishing_takeover"])
    assert history.exit_code == 0, history.output
    assert "fail" in history.output and "pass" in history.output
    assert "+" in history.output and "improving" in history.output

    shown = runner.invoke(cli.app, ["drill", "show", run_id.group(1)])
    assert shown.exit_code == 0 and "PASSED" in shown.output
    again = drill_home / "again"
    written = runner.invoke(cli.app, ["drill", "record", run_id.group(1), "--out", str(again)])
    assert written.exit_code == 0, written.output
    assert sorted(path.name for path in (again / run_id.group(1)).iterdir()) == [
        "drill-record-en.md",
        "drill-record-en.pdf",
        "drill-record-zh.md",
        "drill-record-zh.pdf",
        "timeline-en.png",
        "timeline-zh.png",
    ]


def test_plans_and_schedules(drill_home: Path) -> None:
    made = runner.invoke(
        cli.app,
        [
            "drill",
            "plan",
            "create",
            "merchant_payout_leak",
            "--purpose",
            "Seed 002 drill: leaked merchant password",
            "--participant",
            "commander:duty manager:decides",
            "--participant",
            "technical_support:on-call engineer",
            "--schedule",
            "0 3 * * 1",
        ],
    )
    assert made.exit_code == 0, made.output
    plans = runner.invoke(cli.app, ["drill", "plan", "list"])
    assert "merchant_payout_leak" in plans.output and "0 3 * * 1" in plans.output

    added = runner.invoke(cli.app, ["drill", "schedule", "add", "credential_stuffing", "0 3 * * 1"])
    assert added.exit_code == 0, added.output
    assert "next" in added.output
    listed = runner.invoke(cli.app, ["drill", "schedule", "list"])
    assert "credential_stuffing" in listed.output and "0 3 * * 1" in listed.output
    nothing_due = runner.invoke(cli.app, ["drill", "schedule", "run-due"])
    assert nothing_due.exit_code == 0 and "no drill is due" in nothing_due.output

    bad = runner.invoke(cli.app, ["drill", "schedule", "add", "credential_stuffing", "soon"])
    assert bad.exit_code != 0
    unknown = runner.invoke(cli.app, ["drill", "run", "no_such_drill"])
    assert unknown.exit_code != 0
