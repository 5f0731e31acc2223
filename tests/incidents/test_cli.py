"""`payguard incidents`: the happy path of an incident from the command line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from payguard import cli, clock
from payguard.db.engine import Database
from payguard.identity import service as identity
from payguard.identity import totp
from payguard.incidents import service as incidents
from payguard.risk import service as risk
from payguard.settings import Settings, get_settings

runner = CliRunner()
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, db: Database, tmp_path: Path, backend: str
) -> Iterator[clock.FrozenClock]:
    if backend != "sqlite":
        # Each command builds the app's services (~0.3 s); the services under the commands
        # run on both backends in the other incident tests.
        pytest.skip("the command line is exercised on SQLite")
    monkeypatch.setenv("PAYGUARD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PAYGUARD_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("PAYGUARD_ARGON2_MEMORY_KIB", "64")
    monkeypatch.setenv("PAYGUARD_ARGON2_PARALLELISM", "1")
    get_settings.cache_clear()
    db.transact(
        lambda s: identity.create_staff(
            s, settings, username="ic", role="incident_commander", password=None,
            totp_secret=SECRET,
        )
    )  # fmt: skip
    frozen = clock.FrozenClock(clock.now())
    previous = clock.set_clock(frozen)
    yield frozen
    clock.set_clock(previous)
    get_settings.cache_clear()


def invoke(*args: str) -> str:
    result = runner.invoke(cli.app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def acting(frozen: clock.FrozenClock) -> list[str]:
    frozen.advance(timedelta(seconds=31))  # a fresh TOTP step: each code works once
    return ["--as", "ic", "--otp", totp.code_at(SECRET, clock.now())]


def test_incident_from_the_command_line(
    cli_env: clock.FrozenClock, db: Database, tmp_path: Path
) -> None:
    frozen = cli_env
    opened = invoke(
        "incidents", "open", "Abnormal merchant payouts", "--category", "02",
        "--people", "3", "--money", "250000", "--link", "merchant:mer_1", *acting(frozen),
    )  # fmt: skip
    incident_id = re.search(r"(inc_\w+)", opened).group(1)  # type: ignore[union-attr]
    assert "grade IV" in opened and "reported" in opened
    invoke("incidents", "assign", incident_id, "commander", "ic", *acting(frozen))
    added = invoke(
        "incidents", "task", incident_id, "second verification on payouts", "--improvement",
        "--owner", "ic", "--due", "2030-01-01T09:00:00+08:00", *acting(frozen),
    )  # fmt: skip
    assert "improvement" in added
    invoke("incidents", "note", incident_id, "9:25 reported to the GM", *acting(frozen))
    invoke("incidents", "link", incident_id, "account", "acc_1", *acting(frozen))
    graded = invoke(
        "incidents", "grade", incident_id, "--grade", "III", "--reason", "regulated merchant",
        *acting(frozen),
    )  # fmt: skip
    assert "grade III" in graded
    refused = runner.invoke(
        cli.app, ["incidents", "status", incident_id, "recovered", *acting(frozen)]
    )
    assert refused.exit_code != 0
    for status in ("confirmed", "contained", "recovered"):
        assert status in invoke("incidents", "status", incident_id, status, *acting(frozen))
    closed = invoke(
        "incidents", "status", incident_id, "closed", "--summary", "funds secured",
        "--root-cause", "leaked server password", *acting(frozen),
    )  # fmt: skip
    assert "closed" in closed
    assert incident_id in invoke("incidents", "list")
    shown = invoke("incidents", "show", incident_id)
    assert "commander" in shown and "second verification on payouts" in shown
    timeline = invoke("incidents", "timeline", incident_id)
    assert "9:25 reported to the GM" in timeline and "status" in timeline
    assert "time to contain" in invoke("incidents", "metrics")
    written = invoke("incidents", "report", incident_id, "--out", str(tmp_path / "r"))
    assert "post-incident-zh-CN.pdf" in written and "post-incident-en.md" in written

    db.transact(
        lambda s: risk.open_alert(
            s, kind="review", severity="high", title="held",
            reason_codes=["NEW_DEVICE_LARGE_AMOUNT"], account_id="acc_c", customer_id="cus_c",
            amount=100,
        )
    )  # fmt: skip
    assert "processed" in invoke("incidents", "intake")
    with db.read() as session:
        [opened_by_intake] = incidents.list_incidents(session, open_only=True)
    assert opened_by_intake.dedup_key == "account-takeover:cus_c"
    assert opened_by_intake.id in invoke("incidents", "list", "--open")


def test_wrong_code_is_refused(cli_env: clock.FrozenClock) -> None:
    result = runner.invoke(
        cli.app,
        ["incidents", "open", "x", "--category", "02", "--as", "ic", "--otp", "000000"],
    )
    assert result.exit_code != 0
