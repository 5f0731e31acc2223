"""The `payguard` command: set-up, demo data, accounts, statements, settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from payguard import cli, clock
from payguard.db.migrate import head
from payguard.demo.seed import DEMO_STAFF
from payguard.identity import totp
from payguard.settings import get_settings

runner = CliRunner()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    database = tmp_path / "var" / "payguard.db"
    monkeypatch.setenv("PAYGUARD_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(tmp_path / "var"))  # the keyring lives here
    monkeypatch.setenv("PAYGUARD_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("PAYGUARD_ARGON2_MEMORY_KIB", "64")
    monkeypatch.setenv("PAYGUARD_ARGON2_PARALLELISM", "1")
    get_settings.cache_clear()
    yield database
    get_settings.cache_clear()


def invoke(*args: str) -> str:
    result = runner.invoke(cli.app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_upgrade_creates_the_database_folder_and_seed_is_idempotent(cli_env: Path) -> None:
    assert not cli_env.parent.exists()
    assert f"revision {head()}" in invoke("db", "upgrade")
    assert "demo data seeded" in invoke("demo", "seed")
    assert "already present" in invoke("demo", "seed")
    listing = invoke("accounts", "list", "--kind", "customer_wallet")
    assert listing.count("customer_w") == 4
    assert "ledger invariants hold" in invoke("ledger", "check")
    settlement = invoke("settlement")
    assert "simulated" in settlement and "7,200.00 CNY" in settlement


def test_freeze_statement_and_errors(cli_env: Path) -> None:
    invoke("db", "upgrade")
    invoke("demo", "seed")
    from payguard.db.engine import Database
    from payguard.ledger import service as ledger

    database = Database(f"sqlite:///{cli_env}")
    with database.read() as session:
        wallet = ledger.list_accounts(session, kind="customer_wallet")[0].id
    database.dispose()
    assert "frozen" in invoke("accounts", "freeze", wallet, "--reason", "suspected takeover")
    assert "frozen" in invoke("accounts", "show", wallet)
    # Unfreezing is four-eyes: the demo admin asks, a second staff member approves, each
    # proving who they are with their own TOTP code.
    admin_code = invoke("demo", "code").strip()
    asked = invoke(
        "accounts", "unfreeze", wallet, "--reason", "customer verified",
        "--as", DEMO_STAFF, "--otp", admin_code,
    )  # fmt: skip
    approval_id = re.search(r"(apr_\w+)", asked).group(1)  # type: ignore[union-attr]
    assert "frozen" in invoke("accounts", "show", wallet)
    own = runner.invoke(
        cli.app, ["approvals", "approve", approval_id, "--as", DEMO_STAFF, "--otp", admin_code]
    )
    assert own.exit_code != 0  # the code is spent, and the maker may not approve anyway
    created = invoke("staff", "create", "checker", "--role", "operations")
    secret = re.search(r"secret=([A-Z2-7]+)", created).group(1)  # type: ignore[union-attr]
    wrong = runner.invoke(
        cli.app, ["approvals", "approve", approval_id, "--as", "checker", "--otp", "000000"]
    )
    assert wrong.exit_code != 0
    assert approval_id in invoke("approvals", "list")
    done = invoke(
        "approvals", "approve", approval_id, "--as", "checker",
        "--otp", totp.code_at(secret, clock.now()),
    )  # fmt: skip
    assert "executed" in done
    assert "active" in invoke("accounts", "show", wallet)
    out = invoke("statement", wallet, "--csv")
    assert out.splitlines()[0].startswith("# account")
    assert "opening balance" in invoke("statement", wallet)
    bad_date = runner.invoke(cli.app, ["statement", wallet, "--from", "yesterday"])
    assert bad_date.exit_code == 1
    assert "not an ISO date" in bad_date.output


def test_domain_errors_are_one_line_not_a_traceback(cli_env: Path) -> None:
    invoke("db", "upgrade")
    result = subprocess.run(
        [sys.executable, "-m", "payguard", "accounts", "show", "acc_missing"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "account-not-found" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_config_show_redacts_secrets(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYGUARD_REDIS_URL", "redis://user:s3cret-pass@127.0.0.1:6379/0")
    monkeypatch.setenv("PAYGUARD_DEMO_PASSWORD", "another-s3cret")
    get_settings.cache_clear()
    out = invoke("config", "show", "--json")
    assert "s3cret-pass" not in out
    assert "another-s3cret" not in out
    assert "user:***@127.0.0.1" in out


def test_staff_create_prints_a_working_token(cli_env: Path) -> None:
    invoke("db", "upgrade")
    out = invoke("staff", "create", "ops1", "--role", "operations")
    token = out.strip().splitlines()[-1]
    from payguard.db.engine import Database
    from payguard.identity import service as identity

    database = Database(f"sqlite:///{cli_env}")
    with database.read() as session:
        principal = identity.resolve_token(session, token)
    database.dispose()
    assert principal.is_staff and principal.role == "operations"
    bad = runner.invoke(cli.app, ["staff", "create", "ops2", "--role", "emperor"])
    assert bad.exit_code != 0


def test_simulate_in_process_writes_the_labelled_csv(cli_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim.csv"
    output = invoke("simulate", "--customers", "8", "--days", "1", "--seed", "5", "--out", str(out))
    assert "ledger invariants hold" in output and "labelled fraud" in output
    header = out.read_text().splitlines()[0]
    assert header.startswith("sim_time,step,actor,kind,amount")
    bad = runner.invoke(cli.app, ["simulate", "--customers", "2"])
    assert bad.exit_code != 0


def test_bad_settings_are_one_line_naming_the_variable(cli_env: Path) -> None:
    for env, expected in [
        ({"PAYGUARD_SESSION_TTL_SECONDS": "5"}, "PAYGUARD_SESSION_TTL_SECONDS"),
        ({"PAYGUARD_ENV": "production"}, "PAYGUARD_ID_DIGEST_KEY"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "payguard", "config", "show"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **env},
        )
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr
        assert "Traceback" not in result.stderr + result.stdout


def test_key_rotation_from_the_command_line_takes_two_people(cli_env: Path) -> None:
    invoke("db", "upgrade")
    invoke("demo", "seed")
    before = json.loads(invoke("keys", "status"))
    asked = invoke(
        "keys", "rotate", "--purpose", "kek", "--reason", "custodian change",
        "--as", DEMO_STAFF, "--otp", invoke("demo", "code").strip(),
    )  # fmt: skip
    approval_id = re.search(r"(apr_\w+)", asked).group(1)  # type: ignore[union-attr]
    created = invoke("staff", "create", "keykeeper", "--role", "compliance")
    secret = re.search(r"secret=([A-Z2-7]+)", created).group(1)  # type: ignore[union-attr]
    done = invoke(
        "approvals", "approve", approval_id, "--as", "keykeeper",
        "--otp", totp.code_at(secret, clock.now()),
    )  # fmt: skip
    assert "executed" in done
    after = json.loads(invoke("keys", "status"))
    assert before["active_kek"] == "kek-1" and after["active_kek"] == "kek-2"
    assert after["keks"]["kek-1"] == 0
    assert "dropped KEK(s): kek-1" in invoke("keys", "retire")
    assert "ledger invariants hold" in invoke("ledger", "check")
    # Every step is on the tamper-evident record.
    invoke("audit", "head")
    assert "the audit log is intact" in invoke("audit", "verify")
    from payguard.db.engine import Database

    database = Database(f"sqlite:///{cli_env}")
    with database.engine.connect() as connection:
        actions = set(connection.execute(text("SELECT action FROM audit_records")).scalars())
    database.dispose()
    assert {"approval.requested", "approval.executed", "keys.retired"} <= actions
