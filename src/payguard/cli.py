"""The ``payguard`` command. Sub-commands are thin: they call domain services."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import OperationalError

from payguard import clock
from payguard.audit.cli import audit_app
from payguard.crypto.cli import keys_app
from payguard.db.engine import Database
from payguard.drills.cli import drill_app
from payguard.errors import ProblemError
from payguard.evaluation.cli import evaluate, evaluation_app
from payguard.identity.cli import approvals_app
from payguard.incidents.cli import incidents_app
from payguard.incidents.playbooks_cli import playbooks_app
from payguard.notify.cli import notify_app
from payguard.privacy.cli import privacy_app
from payguard.risk.aml_cli import aml_app
from payguard.risk.cli import risk_app
from payguard.settings import Settings, get_settings

app = typer.Typer(
    help="payguard: secure e-wallet and mobile-payment platform",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database migrations", no_args_is_help=True)
config_app = typer.Typer(help="Settings", no_args_is_help=True)
demo_app = typer.Typer(help="Demo data", no_args_is_help=True)
accounts_app = typer.Typer(help="Ledger accounts", no_args_is_help=True)
staff_app = typer.Typer(help="Staff users", no_args_is_help=True)
merchants_app = typer.Typer(help="Merchants", no_args_is_help=True)
ledger_app = typer.Typer(help="Ledger maintenance", no_args_is_help=True)
payments_app = typer.Typer(help="Payments", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(demo_app, name="demo")
app.add_typer(accounts_app, name="accounts")
app.add_typer(staff_app, name="staff")
app.add_typer(merchants_app, name="merchants")
app.add_typer(ledger_app, name="ledger")
app.add_typer(payments_app, name="payments")
app.add_typer(approvals_app, name="approvals")
app.add_typer(audit_app, name="audit")
app.add_typer(privacy_app, name="privacy")
app.add_typer(keys_app, name="keys")
app.add_typer(risk_app, name="risk")
app.add_typer(aml_app, name="aml")
app.add_typer(incidents_app, name="incidents")
app.add_typer(notify_app, name="notify")
app.add_typer(playbooks_app, name="playbooks")
app.add_typer(drill_app, name="drill")
app.command("evaluate")(evaluate)
app.add_typer(evaluation_app, name="evaluation")

console = Console()
err_console = Console(stderr=True)


def _settings() -> Settings:
    return get_settings()


def _database(settings: Settings) -> Database:
    return Database(settings.database_url)


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def main() -> None:
    """Entry point: domain problems become one clear line, never a traceback."""
    try:
        app()
    except ProblemError as error:
        err_console.print(f"[red]error:[/red] {error.detail} [dim]({error.code})[/dim]")
        sys.exit(2)
    except ValidationError as error:
        # Settings from the environment: name the variable and what is wrong, no traceback.
        for problem in error.errors():
            where = "_".join(str(part) for part in problem["loc"]).upper()
            what = problem["msg"].removeprefix("Value error, ")
            prefix = f"PAYGUARD_{where}: " if where else ""
            err_console.print(f"[red]error:[/red] settings: {prefix}{what}")
        sys.exit(2)
    except OperationalError as error:
        # Connection details may hold credentials: say what failed, not the URL.
        reason = str(error.orig).splitlines()[0] if error.orig else "unknown"
        err_console.print(
            f"[red]error:[/red] database error: {reason} "
            "(is PAYGUARD_DATABASE_URL right, and has `payguard db upgrade` run?)"
        )
        sys.exit(3)


# ---------------------------------------------------------------- serve / db / config


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address")] = None,
    port: Annotated[int | None, typer.Option(help="Port")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes")] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate chain: serve HTTPS (TLS 1.2+)")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert")] = None,
) -> None:
    """Serve the API and console (uvicorn, uvloop + httptools)."""
    import ssl

    import uvicorn

    settings = _settings()
    bind_host = host or settings.host
    bind_port = port or settings.port
    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together")
    for given in (tls_cert, tls_key):
        if given is not None and not given.is_file():
            fail(f"{given}: no such file (payguard dev-cert makes a development pair)")
    scheme = "https" if tls_cert else "http"
    console.print(f"payguard API     {scheme}://{bind_host}:{bind_port}/docs")
    console.print(f"payguard console {scheme}://{bind_host}:{bind_port}/console")
    uvicorn.run(
        "payguard.app:create_app",
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=workers or settings.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        # PROTOCOL_TLS_SERVER: TLS 1.2 and 1.3 only (Python 3.10+ refuses older ones).
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
    )


@app.command("dev-cert")
def dev_cert(
    out: Annotated[Path, typer.Option(help="Folder for ca.pem, server.pem, server-key.pem")] = Path(
        "var/tls"
    ),
    host: Annotated[
        list[str] | None, typer.Option("--host", help="Name or IP (repeatable)")
    ] = None,
) -> None:
    """A local CA and a server certificate for development HTTPS."""
    from payguard.crypto.tls import make_dev_certificate

    made = make_dev_certificate(out, host or ["localhost", "127.0.0.1"])
    console.print(f"CA certificate:     {made.ca}  (trust it in your client: curl --cacert)")
    console.print(f"server certificate: {made.certificate}")
    console.print(f"server key:         {made.key}  (mode 0600)")
    console.print(f"serve with: payguard serve --tls-cert {made.certificate} --tls-key {made.key}")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from payguard.db.migrate import current, upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    console.print(f"database at revision {current(settings.database_url)}")


@config_app.command("show")
def config_show(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print the effective settings, secrets redacted."""
    shown = _settings().redacted()
    if as_json:
        console.print_json(json.dumps(shown, default=str))
        return
    table = Table("setting", "value", title="payguard settings (PAYGUARD_*)")
    for name, value in sorted(shown.items()):
        table.add_row(
            name, json.dumps(value, default=str) if isinstance(value, dict) else str(value)
        )
    console.print(table)


# ---------------------------------------------------------------- demo


@demo_app.command("seed")
def demo_seed() -> None:
    """Create demo staff, customers, merchants and history (idempotent)."""
    from payguard.demo.seed import seed_demo

    settings = _settings()
    database = _database(settings)
    try:
        summary = seed_demo(database, settings)
    finally:
        database.dispose()
    if summary.created:
        console.print("[green]demo data seeded[/green]")
    else:
        console.print("demo data already present")
    console.print(f"  customers: {', '.join(summary.customer_usernames)}")
    console.print(f"  customer password: {settings.demo_password.get_secret_value()}")
    console.print(
        f"  staff admin: {summary.staff_username} (password as above; "
        "TOTP code: `payguard demo code`)"
    )


@demo_app.command("code")
def demo_code() -> None:
    """The demo admin's current TOTP code (stand-in for an authenticator app)."""
    from payguard import clock
    from payguard.identity import totp

    settings = _settings()
    print(totp.code_at(settings.demo_staff_totp_secret.get_secret_value(), clock.now()))


# ---------------------------------------------------------------- accounts


def _account_row(table: Table, account: object) -> None:
    from payguard.money import format_amount

    a = account
    table.add_row(
        a.id,  # type: ignore[attr-defined]
        a.kind,  # type: ignore[attr-defined]
        a.name,  # type: ignore[attr-defined]
        a.status,  # type: ignore[attr-defined]
        format_amount(a.balance, a.currency),  # type: ignore[attr-defined]
        format_amount(a.balance - a.held, a.currency),  # type: ignore[attr-defined]
    )


@accounts_app.command("list")
def accounts_list(
    kind: Annotated[str | None, typer.Option(help="customer_wallet, merchant or system")] = None,
    owner: Annotated[str | None, typer.Option(help="Owner id (customer or merchant)")] = None,
    limit: int = 50,
) -> None:
    """List accounts with balances."""
    from payguard.ledger import service as ledger

    settings = _settings()
    database = _database(settings)
    with database.read() as session:
        accounts = ledger.list_accounts(session, owner_id=owner, kind=kind, limit=limit)
        table = Table("id", "kind", "name", "status", "ledger", "available")
        for account in accounts:
            _account_row(table, account)
    database.dispose()
    console.print(table)


@accounts_app.command("show")
def accounts_show(account_id: str) -> None:
    """One account and its balances."""
    from payguard.ledger import service as ledger

    settings = _settings()
    database = _database(settings)
    with database.read() as session:
        account = ledger.get_account(session, account_id)
        table = Table("id", "kind", "name", "status", "ledger", "available")
        _account_row(table, account)
    database.dispose()
    console.print(table)


def _set_status(account_id: str, status: str, reason: str) -> None:
    from payguard.ledger import service as ledger
    from payguard.ledger.models import AccountStatus

    settings = _settings()
    database = _database(settings)
    try:
        database.transact(
            lambda session: ledger.set_status(
                session, account_id, AccountStatus(status), reason=reason
            )
        )
    finally:
        database.dispose()
    console.print(f"{account_id}: {status}")


@accounts_app.command("freeze")
def accounts_freeze(
    account_id: str, reason: Annotated[str, typer.Option(help="Why (recorded)")]
) -> None:
    """Freeze an account (no debits; credits still allowed)."""
    _set_status(account_id, "frozen", reason)


@accounts_app.command("unfreeze")
def accounts_unfreeze(
    account_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded)")],
    acting: Annotated[str, typer.Option("--as", help="Your staff username")],
    otp: Annotated[str, typer.Option("--otp", help="Your current TOTP code")],
) -> None:
    """Ask to unfreeze an account; a second staff member approves (four-eyes)."""
    from payguard.identity.cli import request

    request("account.unfreeze", account_id, reason=reason, acting=acting, otp=otp, param=None)


@app.command()
def statement(
    account_id: str,
    period_from: Annotated[str | None, typer.Option("--from", help="ISO date or time, UTC")] = None,
    period_to: Annotated[str | None, typer.Option("--to", help="ISO date or time, UTC")] = None,
    csv_out: Annotated[bool, typer.Option("--csv", help="CSV instead of a table")] = False,
) -> None:
    """Print an account statement with opening and closing balance."""
    from payguard.ledger import service as ledger
    from payguard.ledger.api import statement_csv
    from payguard.ledger.schemas import StatementLineOut, StatementOut
    from payguard.money import format_amount

    end = _parse_moment(period_to) if period_to else clock.now()
    start = _parse_moment(period_from) if period_from else end - timedelta(days=30)
    settings = _settings()
    database = _database(settings)
    with database.read() as session:
        result = ledger.statement(session, account_id, start, end, settings)
    database.dispose()
    if csv_out:
        from dataclasses import asdict

        out = StatementOut(
            account_id=result.account_id,
            currency=result.currency,
            period_from=result.period_from,
            period_to=result.period_to,
            opening_balance=result.opening_balance,
            closing_balance=result.closing_balance,
            lines=[StatementLineOut(**asdict(line)) for line in result.lines],
        )
        sys.stdout.write(statement_csv(out))
        return
    table = Table(
        "time (UTC)",
        "kind",
        "amount",
        "balance",
        "counterparty",
        "reference",
        title=f"{account_id} {start:%Y-%m-%d} → {end:%Y-%m-%d}",
    )
    for line in result.lines:
        table.add_row(
            f"{line.created_at:%Y-%m-%d %H:%M:%S}",
            line.kind,
            format_amount(line.amount, result.currency),
            format_amount(line.balance_after, result.currency),
            line.counterparty_account_id,
            line.reference or "",
        )
    console.print(f"opening balance {format_amount(result.opening_balance, result.currency)}")
    console.print(table)
    console.print(f"closing balance {format_amount(result.closing_balance, result.currency)}")


def _parse_moment(value: str) -> datetime:
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"'{value}' is not an ISO date (2026-01-31) or time (2026-01-31T12:00:00Z)")
        raise
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------- staff / merchants / ledger


@staff_app.command("create")
def staff_create(
    username: str,
    role: Annotated[
        str,
        typer.Option(
            help="viewer, risk_analyst, incident_commander, operations, compliance, auditor, "
            "admin, risk_client"
        ),
    ] = "admin",
    password: Annotated[
        str | None,
        typer.Option(help="Password for console login; prompted when --prompt-password is given"),
    ] = None,
    prompt_password: bool = False,
) -> None:
    """Create a staff user and print their first session token (shown once)."""
    from payguard.identity import service as identity

    if prompt_password:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    import pyotp

    from payguard.identity import totp

    settings = _settings()
    database = _database(settings)
    # Staff MFA is mandatory: the TOTP secret is made here and shown once, as a URI
    # for the staff member's authenticator app.
    secret = pyotp.random_base32()
    try:
        staff, issued = database.transact(
            lambda session: identity.create_staff(
                session,
                settings,
                username=username,
                role=role,
                password=password,
                totp_secret=secret,
            )
        )
    finally:
        database.dispose()
    console.print(f"staff user {staff.username} ({staff.role}) created: {staff.id}")
    console.print("TOTP for the authenticator app (shown once; sign-in needs its codes):")
    print(totp.provisioning_uri(settings, secret, staff.username))
    console.print(f"session token (shown once, valid {issued.expires_in // 60} min):")
    print(issued.token)


@merchants_app.command("create")
def merchants_create(
    name: str,
    owner: Annotated[str | None, typer.Option(help="Owning customer id")] = None,
    currency: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Onboard a merchant with its own ledger account."""
    from payguard.payments import service as payments

    settings = _settings()
    database = _database(settings)
    try:
        merchant = database.transact(
            lambda session: payments.create_merchant(
                session, settings, name=name, owner_customer_id=owner, currency=currency
            )
        )
    finally:
        database.dispose()
    console.print(f"merchant {merchant.id} ({merchant.name}) account {merchant.account_id}")


@payments_app.command("verify-evidence")
def payments_verify_evidence(payment_id: str) -> None:
    """Re-verify a payment's signed instruction with the device key of that time; exit 1
    if the signature or the instruction hash does not check out."""
    from payguard.identity import instructions

    settings = _settings()
    database = _database(settings)
    with database.read() as session:
        check = instructions.check_evidence(session, settings, payment_id)
    database.dispose()
    if check is None:
        fail(f"payment '{payment_id}' has no signed instruction on record")
        return
    console.print(f"payment {check.payment_id}, device {check.device_id} ({check.algorithm})")
    console.print(f"verified at {check.verified_at.isoformat()}")
    console.print(f"instruction hash {check.instruction_hash}")
    if check.step_up_challenge_id:
        console.print(f"step-up challenge {check.step_up_challenge_id}")
    for field, value in sorted(check.instruction.items()):
        console.print(f"  {field}: {value}")
    if check.signature_valid and check.hash_matches:
        console.print("[green]signature valid: the device key signed exactly these bytes[/green]")
        return
    console.print("[red]evidence does not verify[/red]")
    raise typer.Exit(1)


@ledger_app.command("check")
def ledger_check() -> None:
    """Recompute the ledger's invariants; exit 1 if any is broken."""
    from payguard.ledger import service as ledger

    settings = _settings()
    database = _database(settings)
    with database.read() as session:
        report = ledger.check_invariants(session)
    database.dispose()
    for currency, total in sorted(report.currency_sums.items()):
        console.print(f"sum of balances {currency}: {total}")
    if report.ok:
        console.print("[green]ledger invariants hold[/green]")
        return
    console.print(f"[red]ledger invariants broken[/red]: {report}")
    raise typer.Exit(1)


@app.command()
def simulate(
    customers: Annotated[int, typer.Option(min=4, help="Simulated customers")] = 50,
    days: Annotated[int, typer.Option(min=1, help="Simulated days")] = 3,
    seed: Annotated[int, typer.Option(help="Same seed, same behaviour")] = 7,
    out: Annotated[Path, typer.Option(help="Labelled CSV to write")] = Path("var/simulation.csv"),
    target: Annotated[
        str | None, typer.Option(help="A running server, e.g. http://127.0.0.1:8000")
    ] = None,
    staff_token: Annotated[
        str | None,
        typer.Option(help="With --target: a staff token to create merchants and ask for tiers"),
    ] = None,
    checker_token: Annotated[
        str | None,
        typer.Option(help="With --target: a second staff member's token to approve the tiers"),
    ] = None,
) -> None:
    """Simulated mobile-money traffic with labelled fraud, written as a CSV (docs/simulator.md)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from payguard.simulator.runner import simulate_against, simulate_in_process

    with Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("simulating", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        if target:
            summary, ok = simulate_against(
                target,
                staff_token,
                customers=customers,
                days=days,
                seed=seed,
                out_path=out,
                on_progress=tick,
                checker_token=checker_token,
            )
        else:
            summary, ok = simulate_in_process(
                customers=customers, days=days, seed=seed, out_path=out, on_progress=tick
            )
    console.print(f"wrote {summary.rows} rows to {out} ({summary.fraud_rows} labelled fraud)")
    console.print(f"statuses: {dict(summary.statuses)}")
    console.print(f"fraud patterns: {dict(summary.patterns)}")
    if ok is not None:
        console.print("ledger invariants hold" if ok else "[red]ledger invariants broken[/red]")
        if not ok:
            raise typer.Exit(1)


@app.command("settlement")
def settlement_report(
    day: Annotated[
        str | None, typer.Option(help="UTC day, e.g. 2026-01-31 (default today)")
    ] = None,
) -> None:
    """Bank-rail activity of one day, per rail, direction and currency."""
    from payguard.money import format_amount
    from payguard.payments import service as payments
    from payguard.payments.rails import SimulatedRail
    from payguard.risk.engine import PassThroughAssessor

    settings = _settings()
    database = _database(settings)
    service = payments.PaymentService(database, settings, PassThroughAssessor(), SimulatedRail())
    report_day = _parse_moment(day).date() if day else clock.now().date()
    try:
        report = service.settlement_report(report_day)
    finally:
        database.dispose()
    table = Table(
        "rail", "direction", "succeeded", "amount", "failed", title=f"settlement {report_day}"
    )
    for line in report.lines:
        table.add_row(
            line.rail,
            line.direction,
            str(line.succeeded_count),
            format_amount(line.succeeded_amount, line.currency),
            str(line.failed_count),
        )
    console.print(table)


@ledger_app.command("sweep-holds")
def ledger_sweep_holds() -> None:
    """Release holds past their expiry now (the server also does this every 30 s)."""
    from payguard.payments import service as payments
    from payguard.payments.rails import SimulatedRail
    from payguard.risk.engine import PassThroughAssessor

    settings = _settings()
    database = _database(settings)
    service = payments.PaymentService(database, settings, PassThroughAssessor(), SimulatedRail())
    try:
        released = payments.expire_holds(service)
    finally:
        database.dispose()
    console.print(f"released {released} expired holds")
