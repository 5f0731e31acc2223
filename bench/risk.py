"""What the risk engine costs, and how well it catches the simulator's fraud.

Run: ``.venv/bin python -m bench.risk [--assessments 20000] [--no-write]``.

1. **In-process assessments**: ``RiskEngine.assess`` with the default rule pack, the
   embedded counters and the lists cache, one thread, on a synthetic population of
   5,000 payers (velocity keys fill up as it runs). Throughput and p50/p99 per
   assessment; then the same with a trained model active. Targets: ≥ 20,000/s on one
   core and p99 ≤ 1 ms; with the model p99 ≤ 2 ms.
2. **Inside the payment path**: signed payments through the API in process (SQLite); the
   engine's own time is each receipt's ``elapsed_ms`` (features, model, rules), and the
   identity facts it needs are timed around it. Target: the engine adds ≤ 2 ms at p99.
3. **Quality**: the simulator's planned timeline (its fraud patterns labelled), features
   replayed in time order, the last 20 % by time held out: AUPRC and recall at 1 % FPR
   for the rules alone, the model alone and both together.

Figures go into the "Risk engine" section of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import common
from payguard.db.engine import Database
from payguard.db.migrate import upgrade
from payguard.risk import learning, rules
from payguard.risk.counters import EmbeddedCounterStore
from payguard.risk.engine import RiskContext, RiskEngine, computer_for
from payguard.risk.lists import ListCache
from payguard.settings import Settings
from payguard.simulator import engine as simulator

SECTION = "## Risk engine (`bench/risk.py`)"
NOTES_MARK = "<!-- risk-notes -->"
console = Console()


class _Fixed:
    def __init__(self, value: Any) -> None:
        self.value = value

    def current(self) -> Any:
        return self.value


def traffic(count: int, seed: int = 11) -> list[RiskContext]:
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    payers = [f"acc_payer{index:05d}" for index in range(5000)]
    payees = [f"acc_payee{index:05d}" for index in range(1000)]
    contexts = []
    for index in range(count):
        kind = rng.choices(("p2p", "merchant", "withdrawal"), (0.5, 0.4, 0.1))[0]
        payer = rng.choice(payers)
        contexts.append(
            RiskContext(
                payment_id=f"pay_{index}",
                kind=kind,
                customer_id=f"cus_{payer}",
                payer_account_id=payer,
                payee_account_id=None if kind == "withdrawal" else rng.choice(payees),
                amount=int(rng.lognormvariate(9, 1.2)),
                currency="CNY",
                at=start + timedelta(seconds=index * 0.5),
                channel="app",
                ip=f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(256)}",
                device_id=f"dev_{payer}",
                device_registered_at=start - timedelta(days=30),
                bank_token="bnk_x" if kind == "withdrawal" else None,
                kyc_tier=rng.choice((1, 2)),
                session_started_at=start + timedelta(seconds=index * 0.5 - 120),
                failed_logins_1h=0,
            )
        )
    return contexts


def measure_engine(
    settings: Settings, database: Database, contexts: list[RiskContext], model: Any
) -> dict[str, Any]:
    engine = RiskEngine(
        settings,
        computer_for(settings, EmbeddedCounterStore()),
        _Fixed(rules.builtin_ruleset()),
        _Fixed(model),
        ListCache(database, settings),
    )
    for context in contexts[:500]:  # warm the caches and the code paths
        engine.assess(context)
    samples: list[float] = []
    actions: dict[str, int] = {}
    began = time.perf_counter()
    for context in contexts:
        started = time.perf_counter()
        decision = engine.assess(context)
        samples.append((time.perf_counter() - started) * 1e6)
        actions[decision.action] = actions.get(decision.action, 0) + 1
    elapsed = time.perf_counter() - began
    return {
        "per_second": len(contexts) / elapsed,
        "p50_us": common.percentile(samples, 0.50),
        "p99_us": common.percentile(samples, 0.99),
        "actions": actions,
    }


def planned_rows(customers: int, days: int, folder: Path) -> list[learning.LabelledRow]:
    names = [f"sim_{index:04d}" for index in range(customers)]
    merchants = ["Simulated Grocer", "Simulated Cafe", "Simulated Telecom"]
    events = simulator.plan(random.Random(2026), names, merchants, days=days)
    path = folder / "planned.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(simulator.COLUMNS)
        for step, event in enumerate(events, start=1):
            payer = "bank" if event.kind == "top_up" else event.actor
            payee = event.payee or ("bank" if event.kind == "withdrawal" else event.actor)
            writer.writerow(
                [event.at.isoformat(), step, event.actor, event.kind, event.amount, "CNY",
                 payer, payee, "", "", "", "", int(bool(event.fraud_pattern)),
                 event.fraud_pattern]
            )  # fmt: skip
    return learning.load_dataset(path, "payguard-sim")


def measure_payment_path(settings: Settings, payments: int) -> dict[str, float]:
    """Signed p2p payments in process; the engine's share from the receipts."""
    from fastapi.testclient import TestClient
    from tests.factories import pay, register, set_tier, top_up

    from payguard.app import create_app
    from payguard.risk.models import RiskReceipt

    with TestClient(create_app(settings)) as client:
        payer, payee = register(client, "bench-payer"), register(client, "bench-payee")
        set_tier(client, settings, payer, 3)
        top_up(client, payer, 10_000_000)
        for index in range(payments):
            reply = pay(
                client, payer, amount=100 + index, kind="p2p", payee_username=payee.username
            )
            assert reply.status_code in (201, 202), reply.text
        services = client.app.state.services  # type: ignore[attr-defined]
        with services.db.read() as session:
            elapsed = [row.elapsed_ms * 1000 for row in session.query(RiskReceipt).all()]
    return {
        "count": len(elapsed),
        "p50_us": common.percentile(elapsed, 0.50),
        "p99_us": common.percentile(elapsed, 0.99),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assessments", type=int, default=20_000)
    parser.add_argument("--payments", type=int, default=300)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        upgrade(url)
        settings = Settings(
            database_url=url,
            var_dir=Path(folder) / "var",
            argon2_time_cost=1,
            argon2_memory_kib=64,
            argon2_parallelism=1,
            access_log=False,
            log_level="WARNING",
            otp_sends_per_hour=100_000,
            risk_time_budget_ms=1000.0,
            # The simulator's daily rhythm is in UTC hours: its night is the engine's night.
            risk_timezone="UTC",
        )
        database = Database(url)
        contexts = traffic(args.assessments)
        console.print("quality: replaying the simulator's planned timeline…")
        rows = planned_rows(args.customers, args.days, Path(folder))
        trained = learning.train(
            rows, settings, rules_score=rules.ranking_scorer(rules.builtin_ruleset(), settings)
        )
        console.print("in-process assessments…")
        rules_only = measure_engine(settings, database, contexts, None)
        with_model = measure_engine(settings, database, contexts, trained.scoring_model("bench"))
        console.print("payment path…")
        path = measure_payment_path(settings, args.payments)
        database.dispose()

    metrics = trained.metrics
    table = Table("measure", "per second", "p50 µs", "p99 µs", title="risk engine")
    for name, figures in (("rules only", rules_only), ("rules + model", with_model)):
        table.add_row(
            name,
            f"{figures['per_second']:,.0f}",
            f"{figures['p50_us']:.0f}",
            f"{figures['p99_us']:.0f}",
        )
    table.add_row("in the payment path", "", f"{path['p50_us']:.0f}", f"{path['p99_us']:.0f}")
    console.print(table)
    quality = Table("scorer", "AUPRC", "ROC-AUC", "recall @1% FPR", title="quality (held out)")
    for name, key in (
        ("rules alone", "rules"),
        ("model alone", "test"),
        ("both", "model_and_rules"),
    ):
        part = metrics.get(key, {})
        quality.add_row(
            name,
            str(part.get("auprc", "–")),
            str(part.get("roc_auc", "–")),
            str(part.get("recall_at_1pct_fpr", "–")),
        )
    console.print(quality)
    if args.no_write:
        return 0
    model_part, rules_part, both = (
        metrics.get(key, {}) for key in ("test", "rules", "model_and_rules")
    )
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} with `python -m bench.risk` "
        f"(--assessments {args.assessments}, --payments {args.payments}, "
        f"--customers {args.customers}, --days {args.days}).",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in common.machine().items()) + ".",
        "",
        "| measure | per second | p50 µs | p99 µs | target |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| in process, default rules, embedded counters | {rules_only['per_second']:,.0f} | "
        f"{rules_only['p50_us']:.0f} | {rules_only['p99_us']:.0f} | ≥ 20,000/s, p99 ≤ 1 ms |",
        f"| in process, rules + model | {with_model['per_second']:,.0f} | "
        f"{with_model['p50_us']:.0f} | {with_model['p99_us']:.0f} | p99 ≤ 2 ms |",
        f"| engine time inside the payment path ({path['count']:.0f} receipts) | | "
        f"{path['p50_us']:.0f} | {path['p99_us']:.0f} | ≤ 2 ms p99 |",
        "",
        f"Quality on the simulator's planned timeline ({args.customers} customers, {args.days} "
        f"days, {len(rows):,} payments, last 20 % by time held out, "
        f"{model_part.get('positives', 0)} fraud among "
        f"{model_part.get('positives', 0) + model_part.get('negatives', 0)} test rows):",
        "",
        "| scorer | AUPRC | ROC-AUC | recall at 1 % FPR |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, part in (("rules alone", rules_part), ("model alone", model_part), ("both", both)):
        lines.append(
            f"| {name} | {part.get('auprc', '–')} | {part.get('roc_auc', '–')} | "
            f"{part.get('recall_at_1pct_fpr', '–')} |"
        )
    common.write_section(SECTION, "\n".join(lines) + "\n", NOTES_MARK)
    console.print(f"written to {common.DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
