"""``payguard risk train``, ``payguard risk models`` and ``payguard risk label``.

Training stores a model with status *trained*: it serves nothing until a second person
approves its activation (``--activate`` files that request, proven with ``--as`` and a
TOTP code). Labelling a payment proves who labels the same way."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session

from payguard import clock
from payguard.db.engine import Database
from payguard.errors import ValidationProblem
from payguard.identity import permissions
from payguard.identity import service as identity
from payguard.identity.permissions import Permission
from payguard.risk import learning
from payguard.risk.models import RiskModel
from payguard.settings import Settings, get_settings

models_app = typer.Typer(help="Trained risk models: the registry", no_args_is_help=True)
console = Console()

METRIC_ROWS = (
    ("positives", "fraud rows"),
    ("negatives", "legitimate rows"),
    ("base_rate", "base rate"),
    ("auprc", "AUPRC"),
    ("roc_auc", "ROC-AUC"),
    ("recall_at_1pct_fpr", "recall at 1 % FPR"),
    ("precision_at_threshold", "precision there"),
)


def _database() -> tuple[Settings, Database]:
    settings = get_settings()
    return settings, Database(settings.database_url)


def _rules_scorer(settings: Settings, database: Any) -> Callable[[dict[str, Any]], float]:
    """The rule set in force as a ranking score, to compare rules, model and both."""
    from payguard.risk import rules

    with database.read() as session:
        ruleset, _record = rules.active_ruleset(session)
    return rules.ranking_scorer(ruleset, settings)


def metrics_table(metrics: dict[str, Any], title: str = "test part (latest rows)") -> Table:
    columns = [("model", metrics.get("test", {}))]
    if "rules" in metrics:
        columns.append(("rules alone", metrics["rules"]))
    if "model_and_rules" in metrics:
        columns.append(("model + rules", metrics["model_and_rules"]))
    table = Table("metric", *(name for name, _ in columns), title=title)
    for key, label in METRIC_ROWS:
        cells = []
        for _, values in columns:
            value = values.get(key)
            cells.append(
                "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
            )
        table.add_row(label, *cells)
    return table


def _aware(moment: datetime | None) -> datetime | None:
    """A time typed without a zone is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _train_rows(
    settings: Settings,
    database: Database,
    data: Path | None,
    mapping: str,
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[learning.LabelledRow], str]:
    if data is not None:
        rows = learning.load_dataset(data, mapping)
        return rows, f"{data.name} (mapping {mapping}, {len(rows)} rows)"
    end = _aware(until) or clock.now()
    start = _aware(since) or end - timedelta(days=90)
    with database.read() as session:
        rows = learning.training_rows_from_receipts(session, start, end)
    if not rows:
        raise ValidationProblem(
            f"no labelled decisions between {start:%Y-%m-%d} and {end:%Y-%m-%d}; "
            "give --data FILE.csv, or label payments first"
        )
    return rows, f"receipts {start.isoformat()} .. {end.isoformat()} ({len(rows)} labelled)"


def train(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="labelled CSV; without it: analysts' labelled decisions"),
    ] = None,
    mapping: Annotated[
        str, typer.Option(help="payguard-sim, paysim, or a YAML/JSON mapping file")
    ] = "payguard-sim",
    test_share: Annotated[
        float, typer.Option(min=0.05, max=0.5, help="the latest rows kept for testing")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="LightGBM's seed (training is deterministic)")] = 7,
    rounds: Annotated[int, typer.Option(min=1, max=5000, help="boosting rounds")] = 200,
    since: Annotated[
        datetime | None, typer.Option(help="without --data: decisions from (default 90 days ago)")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="without --data: until (now)")] = None,
    activate: Annotated[
        bool,
        typer.Option(
            "--activate/--no-activate", help="also ask for activation (four-eyes; --as, --otp)"
        ),
    ] = False,
    by: Annotated[str, typer.Option(help="who trained it (recorded with the model)")] = "cli",
    acting: Annotated[
        str | None, typer.Option("--as", help="with --activate: your staff username")
    ] = None,
    otp: Annotated[
        str | None, typer.Option("--otp", help="with --activate: your TOTP code")
    ] = None,
) -> None:
    """Train a model on a labelled history, show its test metrics and store it (not active)."""
    if activate and not (acting and otp):
        raise typer.BadParameter("--activate files a four-eyes request: give --as and --otp")
    settings, database = _database()
    try:
        rows, source = _train_rows(settings, database, data, mapping, since, until)
        with Progress(
            "{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        ) as progress:  # fmt: skip
            tasks = {
                "features": progress.add_task("features (replay)", total=len(rows)),
                "training": progress.add_task("training", total=rounds),
            }

            def report(stage: str, done: int, total: int) -> None:
                progress.update(tasks[stage], completed=done, total=total)

            trained = learning.train(
                rows,
                settings,
                test_share=test_share,
                seed=seed,
                rounds=rounds,
                rules_score=_rules_scorer(settings, database),
                on_progress=report,
            )
        version: str = database.transact(
            lambda session: learning.save_model(session, trained, source, by).version
        )
    finally:
        database.dispose()
    split = trained.metrics["split"]
    console.print(
        f"trained on {split['train_rows']} rows ({split['train_from'][:10]} .. "
        f"{split['train_to'][:10]}), tested on the next {split['test_rows']} "
        f"({split['test_from'][:10]} .. {split['test_to'][:10]})"
    )
    console.print(metrics_table(trained.metrics))
    console.print(f"saved as [bold]{version}[/bold] (status trained, not serving)")
    if activate:
        assert acting is not None and otp is not None
        _request_activation(version, acting, otp, trained.metrics)
    else:
        console.print(
            f"to serve it: payguard approvals request {learning.MODEL_ACTIVATE} {version} "
            "--reason ... (a second person approves)"
        )


def _request_activation(version: str, acting: str, otp: str, metrics: dict[str, Any]) -> None:
    from payguard.identity import approvals
    from payguard.identity.cli import _with_services

    auprc = metrics.get("test", {}).get("auprc")

    def work(services: Any) -> str:
        def inside(session: Session) -> str:
            principal = identity.staff_by_totp(session, services.settings, acting, otp)
            record = approvals.request(
                session,
                services.settings,
                services.approvals,
                principal,
                action=learning.MODEL_ACTIVATE,
                target=version,
                params={},
                reason=f"activate newly trained {version} (test AUPRC {auprc})",
            )
            return record.id

        result: str = services.db.transact(inside)
        return result

    approval_id: str = _with_services(work)
    console.print(
        f"activation requested: a second person runs payguard approvals approve {approval_id}"
    )


def _model_row(model: RiskModel) -> list[str]:
    test = (model.metrics or {}).get("test", {})
    return [
        model.version,
        model.status,
        model.trained_at.strftime("%Y-%m-%d %H:%M"),
        model.trained_by,
        str(test.get("auprc", "")),
        str(test.get("recall_at_1pct_fpr", "")),
        model.activated_at.strftime("%Y-%m-%d %H:%M") if model.activated_at else "",
        model.data_source,
    ]


@models_app.command("list")
def list_models() -> None:
    """Every stored model, newest first; one of them at most is active."""
    _settings, database = _database()
    try:
        with database.read() as session:
            rows = [_model_row(model) for model in learning.list_models(session)]
    finally:
        database.dispose()
    table = Table(
        "version", "status", "trained", "by", "AUPRC", "recall@1%FPR", "activated", "data"
    )
    for row in rows:
        table.add_row(*row)
    console.print(table)


@models_app.command("show")
def show(
    version: str,
    as_json: Annotated[bool, typer.Option("--json", help="metrics as JSON")] = False,
) -> None:
    """One model: status, data, split, test metrics and the most useful features."""
    _settings, database = _database()
    try:
        with database.read() as session:
            model = learning.get_model(session, version)
            row, metrics = _model_row(model), dict(model.metrics or {})
            features = len(model.feature_names)
    finally:
        database.dispose()
    if as_json:
        print(json.dumps({"version": version, "status": row[1], "metrics": metrics}, indent=2))
        return
    console.print(
        f"[bold]{row[0]}[/bold] {row[1]} · trained {row[2]} by {row[3]} · {features} features"
    )
    console.print(f"data: {row[7]}")
    split = metrics.get("split", {})
    if split:
        console.print(
            f"split (by time): train {split['train_rows']} rows to {split['train_to']}, "
            f"test {split['test_rows']} rows from {split['test_from']}"
        )
    console.print(metrics_table(metrics))
    importance = Table("feature", "gain", title="most useful features")
    for item in metrics.get("importance", []):
        importance.add_row(item["feature"], f"{item['gain']:.1f}")
    console.print(importance)


def label(
    payment_id: Annotated[str, typer.Argument(help="a payment id (or a decision id)")],
    verdict: Annotated[str, typer.Argument(metavar="fraud|legitimate", help="the outcome")],
    reason: Annotated[str, typer.Option(help="what you found (kept with the event)")],
    acting: Annotated[str, typer.Option("--as", help="Your staff username")],
    otp: Annotated[str, typer.Option("--otp", help="Your current TOTP code")],
) -> None:
    """Label an assessed payment fraud or legitimate: training data for the next model."""
    settings, database = _database()

    def inside(session: Session) -> str:
        principal = identity.staff_by_totp(session, settings, acting, otp)
        permissions.demand(principal, Permission.RISK_REVIEW)
        stored = learning.label_payment(
            session, payment_id, verdict, by_staff_id=principal.subject_id, reason=reason
        )
        return f"{stored.payment_id}: labelled {stored.label}"

    try:
        console.print(database.transact(inside))
    finally:
        database.dispose()
