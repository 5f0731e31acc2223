"""The risk engine's trained model: data, training, the registry, activation and scoring.

- **Data.** :func:`load_dataset` reads a labelled CSV through a column mapping: the
  presets ``payguard-sim`` (the simulator's CSV) and ``paysim`` (the PaySim layout), or a
  YAML/JSON mapping file for a bank's own history. :func:`training_rows_from_receipts`
  turns stored decisions labelled by analysts into rows that keep their features.
- **Features.** :func:`featurize` replays the rows in time order through a fresh
  :class:`~payguard.risk.features.FeatureComputer` on an embedded counter store,
  ``compute`` then ``observe`` for each row, as the engine does online: the model learns
  from exactly what it will be served.
- **Training.** :func:`train` fits a LightGBM binary GBDT (deterministic, one thread,
  positives weighted by negatives/positives) on the earliest rows and measures it on the
  latest ones (a time-ordered split, never shuffled); the weighting is undone in the
  served probability (a log-odds offset), so that probability stays comparable to the
  base rate.
- **Registry.** :func:`save_model` stores the booster as LightGBM's own model text
  (never a pickle) as version ``m<N>``. Activation, rollback (activating an older version)
  and deactivation (target ``none``: rules alone) are four-eyes operations
  (:func:`activate_action`).
- **Serving.** :class:`ModelCache` gives each process the active :class:`ScoringModel`,
  looking for a change at most every ``risk_reload_seconds``;
  :meth:`ScoringModel.explain` names the features that pushed one decision, from the
  trees' own contributions.
"""

from __future__ import annotations

import csv
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from payguard import clock
from payguard.db.engine import Database
from payguard.errors import NotFound, ValidationProblem
from payguard.events import service as events
from payguard.identity.approvals import Action
from payguard.identity.models import ApprovalRequest
from payguard.identity.permissions import Permission
from payguard.observability import get_logger
from payguard.risk.counters import EmbeddedCounterStore
from payguard.risk.features import FEATURE_TYPES, MODEL_FEATURES, PaymentFacts, vector
from payguard.risk.models import RiskLabel, RiskModel, RiskReceipt
from payguard.risk.reloading import ReloadingCache
from payguard.settings import Settings

log = get_logger(__name__)

ALGORITHM = "lightgbm-gbdt"
KINDS = ("p2p", "merchant", "top_up", "withdrawal")
LABELS = ("fraud", "legitimate")
MODEL_ACTIVATE = "risk.model_activate"
NO_MODEL = "none"
Progress = Callable[[str, int, int], None]  # (stage, done, total)


def _lightgbm() -> Any:
    """LightGBM, imported on first use: it pulls in scikit-learn (over a second)."""
    import lightgbm

    return lightgbm


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class LabelledRow:
    """One payment of a labelled history: its facts, and whether it was fraud."""

    facts: PaymentFacts
    label: int  # 1 fraud, 0 legitimate
    payment_id: str | None = None
    # The features stored with a past decision (receipts): used as they are.
    features: dict[str, Any] | None = None

    @property
    def at(self) -> datetime:
        return self.facts.at


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MappedColumns(_Strict):
    """Which column of the file holds each fact (None: the file has no such column)."""

    time: str
    kind: str
    amount: str
    label: str
    payer: str | None = None
    payee: str | None = None
    currency: str | None = None
    payment_id: str | None = None
    device_id: str | None = None
    ip: str | None = None
    channel: str | None = None
    kyc_tier: str | None = None
    bank_token: str | None = None


class ColumnMapping(_Strict):
    """How a labelled CSV maps onto payment facts. See docs/risk-model.md."""

    name: str = "custom"
    columns: MappedColumns
    # iso (ISO 8601), hours / seconds (a count from time_start), epoch (Unix seconds),
    # or a strptime pattern such as "%Y-%m-%d %H:%M:%S".
    time_format: str = "iso"
    time_start: datetime | None = None
    timezone: str = "UTC"  # of times written without an offset
    # The file's kind values → p2p | merchant | top_up | withdrawal, or "skip" to drop rows.
    kinds: dict[str, str] = Field(default_factory=dict)
    amount_scale: int = Field(default=1, ge=1, le=10_000)  # x100: currency units → fen
    currency: str = Field(default="CNY", min_length=3, max_length=3)  # without a column
    fraud_values: list[str] = Field(default_factory=lambda: ["1", "true", "yes", "fraud"])
    legitimate_values: list[str] = Field(default_factory=lambda: ["0", "false", "no", "legitimate"])
    # The column naming the wallet a top-up credits (PaySim: nameOrig); default the payee.
    top_up_wallet: str | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, value: dict[str, str]) -> dict[str, str]:
        for raw, kind in value.items():
            if kind not in (*KINDS, "skip"):
                raise ValueError(f"{raw!r} → {kind!r}: map to one of {', '.join(KINDS)} or skip")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("time_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in ("iso", "hours", "seconds", "epoch") and "%" not in value:
            raise ValueError("iso, hours, seconds, epoch or a strptime pattern")
        return value

    def required_columns(self) -> list[str]:
        named = [value for value in self.columns.model_dump().values() if value]
        if self.top_up_wallet:
            named.append(self.top_up_wallet)
        return list(dict.fromkeys(named))


PRESETS: dict[str, dict[str, Any]] = {
    # The simulator's CSV (payguard simulate): ISO times, kinds and fen as the platform's.
    "payguard-sim": {
        "name": "payguard-sim",
        "columns": {
            "time": "sim_time",
            "kind": "kind",
            "amount": "amount",
            "label": "is_fraud",
            "payer": "payer",
            "payee": "payee",
            "currency": "currency",
            "payment_id": "payment_id",
        },
    },
    # PaySim (Lopez-Rojas et al.): step = hours from the start, amounts in currency units.
    # The balance columns are not used: the engine does not see balances online.
    "paysim": {
        "name": "paysim",
        "columns": {
            "time": "step",
            "kind": "type",
            "amount": "amount",
            "label": "isFraud",
            "payer": "nameOrig",
            "payee": "nameDest",
        },
        "time_format": "hours",
        "time_start": "2026-01-01T00:00:00+00:00",
        "kinds": {
            "CASH_IN": "top_up",
            "CASH_OUT": "withdrawal",
            "TRANSFER": "p2p",
            "PAYMENT": "merchant",
            "DEBIT": "withdrawal",
        },
        "amount_scale": 100,
        "top_up_wallet": "nameOrig",
    },
}


def _mapping_problem(where: str, error: ValidationError) -> ValidationProblem:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "mapping"
    return ValidationProblem(f"{where}: {field}: {first['msg']}")


def load_mapping(spec: str | Path | ColumnMapping) -> ColumnMapping:
    """A preset name (payguard-sim, paysim) or the path of a YAML/JSON mapping file."""
    if isinstance(spec, ColumnMapping):
        return spec
    if str(spec) in PRESETS:
        return ColumnMapping.model_validate(PRESETS[str(spec)])
    path = Path(spec)
    if not path.is_file():
        raise ValidationProblem(
            f"mapping: {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a mapping file"
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValidationProblem(f"{path}: not valid YAML or JSON ({error})") from None
    if not isinstance(document, dict):
        raise ValidationProblem(f"{path}: a mapping file is a YAML/JSON object")
    try:
        return ColumnMapping.model_validate(document)
    except ValidationError as error:
        raise _mapping_problem(str(path), error) from None


class _RowReader:
    """Turns one CSV record into a LabelledRow, or says which column of which line is bad."""

    def __init__(self, mapping: ColumnMapping, source: str) -> None:
        self.mapping = mapping
        self.source = source
        self.zone = ZoneInfo(mapping.timezone)
        self.fraud = {value.strip().lower() for value in mapping.fraud_values}
        self.legitimate = {value.strip().lower() for value in mapping.legitimate_values}
        if mapping.time_format in ("hours", "seconds") and mapping.time_start is None:
            raise ValidationProblem(
                f"mapping {mapping.name}: time_format {mapping.time_format} needs time_start"
            )
        start = mapping.time_start
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=self.zone)
        self.start = start

    def problem(self, line: int, column: str, message: str) -> ValidationProblem:
        return ValidationProblem(
            f"{self.source} line {line}, column {column!r}: {message}", line=line, column=column
        )

    def _time(self, line: int, raw: str) -> datetime:
        column, form = self.mapping.columns.time, self.mapping.time_format
        text = raw.strip()
        try:
            if form == "iso":
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            elif form in ("hours", "seconds"):
                assert self.start is not None
                count = float(text)
                moment = self.start + timedelta(**{form: count})
            elif form == "epoch":
                moment = datetime.fromtimestamp(float(text), UTC)
            else:
                moment = datetime.strptime(text, form)  # the zone is applied below
        except (ValueError, OverflowError):
            raise self.problem(line, column, f"{text!r} is not a time ({form})") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.astimezone(UTC)

    def _amount(self, line: int, raw: str) -> int:
        column = self.mapping.columns.amount
        try:
            value = Decimal(raw.strip()) * self.mapping.amount_scale
        except InvalidOperation:
            raise self.problem(line, column, f"{raw.strip()!r} is not a number") from None
        if not value.is_finite() or value < 0:
            raise self.problem(line, column, f"{raw.strip()!r} is not an amount (≥ 0)")
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))

    def _label(self, line: int, raw: str) -> int:
        value = raw.strip().lower()
        if value in self.fraud:
            return 1
        if value in self.legitimate:
            return 0
        expected = sorted(self.fraud | self.legitimate)
        raise self.problem(
            line, self.mapping.columns.label, f"{raw!r} is not a label ({', '.join(expected)})"
        )

    def row(self, line: int, record: dict[str, str]) -> LabelledRow | None:
        columns = self.mapping.columns

        def text(column: str | None) -> str | None:
            if column is None:
                return None
            value = record[column].strip()
            return value or None

        raw_kind = record[columns.kind].strip()
        kind = self.mapping.kinds.get(raw_kind, raw_kind)
        if kind == "skip":
            return None
        if kind not in KINDS:
            raise self.problem(
                line,
                columns.kind,
                f"{raw_kind!r} is not a payment kind ({', '.join(KINDS)}); map it under 'kinds'",
            )
        at = self._time(line, record[columns.time])
        amount = self._amount(line, record[columns.amount])
        label = self._label(line, record[columns.label])
        payer, payee = text(columns.payer), text(columns.payee)
        if kind == "top_up":
            # As online: a top-up has no payer account; its payee is the wallet credited.
            payer, payee = None, text(self.mapping.top_up_wallet) or payee
        elif kind == "withdrawal":
            # As online (RiskContext.facts): the payee of a withdrawal is the bank instrument.
            payee = f"bank:{payee}" if payee and not payee.startswith("bank:") else payee
        tier_text = text(columns.kyc_tier)
        try:
            tier = int(tier_text) if tier_text is not None else None
        except ValueError:
            raise self.problem(
                line, columns.kyc_tier or "", f"{tier_text!r} is not a tier"
            ) from None
        currency = (text(columns.currency) or self.mapping.currency).upper()
        if not re.fullmatch(r"[A-Z]{3}", currency):
            raise self.problem(line, columns.currency or "", f"{currency!r} is not ISO 4217")
        facts = PaymentFacts(
            at=at,
            kind=kind,
            amount=amount,
            currency=currency,
            payer=payer,
            payee=payee,
            channel=text(columns.channel) or "api",
            device_id=text(columns.device_id),
            ip=text(columns.ip),
            bank_token=text(columns.bank_token),
            kyc_tier=tier,
        )
        return LabelledRow(facts=facts, label=label, payment_id=text(columns.payment_id))


def load_dataset(path: str | Path, mapping: str | Path | ColumnMapping) -> list[LabelledRow]:
    """The labelled rows of a CSV file, in time order (ties keep the file's order)."""
    spec = load_mapping(mapping)
    source = Path(path)
    if not source.is_file():
        raise ValidationProblem(f"{source}: no such file")
    reader = _RowReader(spec, source.name)
    rows: list[LabelledRow] = []
    try:
        with source.open(newline="", encoding="utf-8-sig") as handle:
            records = csv.DictReader(handle, delimiter=spec.delimiter, strict=True)
            header = records.fieldnames
            if not header:
                raise ValidationProblem(f"{source.name}: the file is empty (no header row)")
            missing = [column for column in spec.required_columns() if column not in header]
            if missing:
                raise ValidationProblem(
                    f"{source.name}: missing column(s) {', '.join(missing)} that the mapping "
                    f"{spec.name!r} reads; the header has {', '.join(header)}",
                    missing=missing,
                )
            for record in records:
                line = records.line_num
                if None in record or any(value is None for value in record.values()):
                    raise ValidationProblem(
                        f"{source.name} line {line}: the row has a different number of fields "
                        f"than the header ({len(header)})",
                        line=line,
                    )
                row = reader.row(line, record)
                if row is not None:
                    rows.append(row)
    except csv.Error as error:
        raise ValidationProblem(f"{source.name}: malformed CSV ({error})") from None
    except UnicodeDecodeError:
        raise ValidationProblem(f"{source.name}: not UTF-8 text") from None
    if not rows:
        raise ValidationProblem(f"{source.name}: no data rows")
    rows.sort(key=lambda row: row.at)
    return rows


_CONTEXT_TIMES = (
    "at",
    "device_registered_at",
    "session_started_at",
    "second_factor_at",
    "password_changed_at",
)


def _facts_of_receipt(receipt: RiskReceipt) -> PaymentFacts:
    from payguard.risk.engine import RiskContext

    try:
        values = dict(receipt.context or {})
        for name in _CONTEXT_TIMES:
            if isinstance(values.get(name), str):
                values[name] = datetime.fromisoformat(values[name])
        known = RiskContext.__dataclass_fields__
        return RiskContext(**{k: v for k, v in values.items() if k in known}).facts()
    except (TypeError, ValueError):
        return PaymentFacts(
            at=receipt.at,
            kind=receipt.kind,
            amount=receipt.amount,
            currency=receipt.currency,
            payer=receipt.payer,
            payee=receipt.payee,
        )


def _label_key(receipt: RiskReceipt) -> str:
    """Labels name the payment; a decision for an outside system is named by its own id."""
    return receipt.payment_id or receipt.id


def training_rows_from_receipts(
    session: Session, start: datetime, end: datetime, *, unlabelled_as_legitimate: bool = False
) -> list[LabelledRow]:
    """Stored decisions in [start, end) with an analyst's label, in time order.

    Each row keeps the features its decision was made with. Unlabelled decisions are left
    out unless ``unlabelled_as_legitimate``."""
    receipts = list(
        session.scalars(
            select(RiskReceipt)
            .where(RiskReceipt.at >= start, RiskReceipt.at < end)
            .order_by(RiskReceipt.at, RiskReceipt.id)
        )
    )
    keys = list(dict.fromkeys(_label_key(receipt) for receipt in receipts))
    labels: dict[str, str] = {}
    for first in range(0, len(keys), 500):
        found = session.execute(
            select(RiskLabel.payment_id, RiskLabel.label).where(
                RiskLabel.payment_id.in_(keys[first : first + 500])
            )
        )
        labels.update({payment_id: label for payment_id, label in found})
    rows = []
    for receipt in receipts:
        label = labels.get(_label_key(receipt))
        if label is None and not unlabelled_as_legitimate:
            continue
        rows.append(
            LabelledRow(
                facts=_facts_of_receipt(receipt),
                label=int(label == "fraud"),
                payment_id=_label_key(receipt),
                features=dict(receipt.features or {}),
            )
        )
    return rows


# ---------------------------------------------------------------------- features


@dataclass
class _Replay:
    X: np.ndarray[Any, Any]
    y: np.ndarray[Any, Any]
    times: list[datetime]
    kept: list[dict[str, Any]]  # the whole feature dictionaries from keep_from on


def _replay(
    ordered: Sequence[LabelledRow],
    settings: Settings,
    names: Sequence[str],
    *,
    keep_from: int | None = None,
    on_progress: Progress | None = None,
) -> _Replay:
    from payguard.risk.engine import computer_for

    computer = computer_for(settings, EmbeddedCounterStore())
    X = np.empty((len(ordered), len(names)), dtype=np.float64)
    y = np.empty(len(ordered), dtype=np.int32)
    kept: list[dict[str, Any]] = []
    step = max(1, len(ordered) // 200)
    for index, row in enumerate(ordered):
        computed = computer.compute(row.facts)
        computer.observe(row.facts)
        features = row.features if row.features is not None else computed
        X[index] = vector(features, list(names))
        y[index] = row.label
        if keep_from is not None and index >= keep_from:
            kept.append(features)
        if on_progress is not None and (index % step == 0 or index == len(ordered) - 1):
            on_progress("features", index + 1, len(ordered))
    return _Replay(X, y, [row.at for row in ordered], kept)


def featurize(
    rows: Iterable[LabelledRow], settings: Settings, *, on_progress: Progress | None = None
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[datetime]]:
    """(X, y, times) in time order: MODEL_FEATURES of every row, by replay (see module)."""
    ordered = sorted(rows, key=lambda row: row.at)
    replay = _replay(ordered, settings, MODEL_FEATURES, on_progress=on_progress)
    return replay.X, replay.y, replay.times


# ---------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainedModel:
    booster: str  # LightGBM's model text
    feature_names: tuple[str, ...]
    metrics: dict[str, Any]
    log_odds_offset: float  # undoes the positives' weight in the served probability
    train_end: datetime  # the latest training row
    test_start: datetime  # the earliest test row (never earlier than train_end)
    algorithm: str = ALGORITHM

    def scoring_model(self, version: str = "candidate") -> ScoringModel:
        return ScoringModel(
            version, self.booster, self.feature_names, log_odds_offset=self.log_odds_offset
        )


def _sigmoid(raw: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    result: np.ndarray[Any, Any] = 1.0 / (1.0 + np.exp(-raw))
    return result


def ranking_metrics(y: np.ndarray[Any, Any], scores: np.ndarray[Any, Any]) -> dict[str, Any]:
    """AUPRC, ROC-AUC, and recall where 1 % of legitimate payments would be flagged."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    out: dict[str, Any] = {"positives": positives, "negatives": negatives}
    if positives == 0 or negatives == 0:
        return out
    legitimate, fraud = scores[y == 0], scores[y == 1]
    threshold = float(np.percentile(legitimate, 99))
    caught = int((fraud > threshold).sum())
    false_alarms = int((legitimate > threshold).sum())
    out.update(
        {
            "base_rate": round(positives / len(y), 6),
            "auprc": round(float(average_precision_score(y, scores)), 4),
            "roc_auc": round(float(roc_auc_score(y, scores)), 4),
            "recall_at_1pct_fpr": round(caught / positives, 4),
            "threshold_at_1pct_fpr": round(threshold, 6),
            "fpr_at_threshold": round(false_alarms / negatives, 4),
            "precision_at_threshold": round(caught / max(1, caught + false_alarms), 4),
        }
    )
    return out


def train(
    rows: Sequence[LabelledRow],
    settings: Settings,
    *,
    test_share: float = 0.2,
    seed: int = 7,
    rounds: int = 200,
    rules_score: Callable[[dict[str, Any]], float] | None = None,
    on_progress: Progress | None = None,
) -> TrainedModel:
    """Fit on the earliest (1 - test_share) of the rows by time, measure on the rest.

    ``rules_score(features) -> points`` (the rule pack's score), when given, is measured on
    the same test rows alone and added to the model's points (probability x 100 x
    ``risk_model_weight``), as the engine combines them."""
    if not 0.0 < test_share < 1.0:
        raise ValidationProblem("test_share: between 0 and 1 (0.2 keeps the last 20 % for test)")
    if not 1 <= rounds <= 5000:
        raise ValidationProblem("rounds: between 1 and 5000")
    ordered = sorted(rows, key=lambda row: row.at)
    count = len(ordered)
    split = count - max(1, round(count * test_share))
    if split < 2:
        raise ValidationProblem(f"only {count} rows: too few to train and test")
    names = MODEL_FEATURES
    replay = _replay(
        ordered,
        settings,
        names,
        keep_from=split if rules_score is not None else None,
        on_progress=on_progress,
    )
    X_train, y_train = replay.X[:split], replay.y[:split]
    X_test, y_test = replay.X[split:], replay.y[split:]
    train_positives = int(y_train.sum())
    train_negatives = split - train_positives
    test_positives = int(y_test.sum())
    for part, positives, total in (
        ("training", train_positives, split),
        ("test", test_positives, count - split),
    ):
        if positives == 0 or positives == total:
            only = "legitimate" if positives == 0 else "fraud"
            raise ValidationProblem(
                f"the {part} part (by time: the {'first' if part == 'training' else 'last'} "
                f"{total} rows) has only {only} rows; both labels are needed in each part "
                "(more data, or another test_share)"
            )

    lgb = _lightgbm()
    weight = train_negatives / train_positives
    params: dict[str, Any] = {
        "objective": "binary",
        "boosting": "gbdt",
        "learning_rate": 0.05,
        "num_leaves": 15,
        "max_depth": 6,
        "min_data_in_leaf": max(5, min(50, split // 100)),
        "feature_fraction": 0.9,
        "lambda_l2": 1.0,
        "scale_pos_weight": round(weight, 6),
        "num_threads": 1,
        "deterministic": True,
        "force_row_wise": True,
        "seed": seed,
        "verbose": -1,
    }

    def report(env: Any) -> None:
        if on_progress is not None:
            on_progress("training", env.iteration + 1, rounds)

    dataset = lgb.Dataset(X_train, label=y_train, feature_name=list(names), free_raw_data=True)
    booster = lgb.train(params, dataset, num_boost_round=rounds, callbacks=[report])
    offset = -math.log(weight) if weight > 0 else 0.0
    probability = _sigmoid(booster.predict(X_test, raw_score=True, num_threads=2) + offset)

    test = ranking_metrics(y_test, probability)
    test["mean_probability"] = round(float(probability.mean()), 6)
    metrics: dict[str, Any] = {
        "split": {
            "method": "time-ordered",
            "test_share": test_share,
            "train_rows": split,
            "test_rows": count - split,
            "train_from": replay.times[0].isoformat(),
            "train_to": replay.times[split - 1].isoformat(),
            "test_from": replay.times[split].isoformat(),
            "test_to": replay.times[-1].isoformat(),
        },
        "train": {"positives": train_positives, "negatives": train_negatives},
        "test": test,
    }
    if rules_score is not None:
        rules_points = np.empty(count - split, dtype=np.float64)
        together = np.empty(count - split, dtype=np.float64)
        for index, features in enumerate(replay.kept):
            alone = dict(features, model_score=-1.0)
            rules_points[index] = float(rules_score(alone))
            p = float(probability[index])
            with_model = dict(features, model_score=round(p, 4))
            together[index] = float(rules_score(with_model)) + round(
                p * 100 * settings.risk_model_weight
            )
        metrics["rules"] = ranking_metrics(y_test, rules_points)
        metrics["model_and_rules"] = ranking_metrics(y_test, together)
    gains = booster.feature_importance(importance_type="gain")
    ranked = sorted(zip(names, gains, strict=True), key=lambda item: -float(item[1]))
    metrics["importance"] = [
        {"feature": name, "gain": round(float(gain), 3)} for name, gain in ranked[:10] if gain > 0
    ]
    metrics["training"] = {
        "params": params,
        "rounds": rounds,
        "log_odds_offset": round(offset, 9),
        "rows": count,
    }
    return TrainedModel(
        booster=booster.model_to_string(),
        feature_names=tuple(names),
        metrics=metrics,
        log_odds_offset=round(offset, 9),
        train_end=replay.times[split - 1],
        test_start=replay.times[split],
    )


# ---------------------------------------------------------------------- scoring


class ScoringModel:
    """One loaded model: a probability of fraud, and what pushed it, for one payment."""

    def __init__(
        self,
        version: str,
        booster_text: str,
        feature_names: Sequence[str],
        *,
        log_odds_offset: float = 0.0,
    ) -> None:
        self.version = version
        self.feature_names = list(feature_names)
        self.log_odds_offset = float(log_odds_offset)
        self.booster = _lightgbm().Booster(model_str=booster_text)
        # LightGBM sets up per-call prediction state on the shared booster; one call at a
        # time (a call takes tens of microseconds) rules out any race between threads.
        self._predicting = threading.Lock()
        if self.booster.num_feature() != len(self.feature_names):
            raise ValueError(
                f"model {version}: the booster has {self.booster.num_feature()} features, "
                f"the record names {len(self.feature_names)}"
            )

    @classmethod
    def from_record(cls, record: RiskModel) -> ScoringModel:
        training = (record.metrics or {}).get("training") or {}
        return cls(
            record.version,
            record.booster,
            record.feature_names,
            log_odds_offset=float(training.get("log_odds_offset", 0.0)),
        )

    def _row(self, features: dict[str, Any]) -> np.ndarray[Any, Any]:
        return np.array([vector(features, self.feature_names)], dtype=np.float64)

    def score(self, features: dict[str, Any]) -> float:
        """The probability that this payment is fraud (0-1)."""
        row = self._row(features)
        with self._predicting:
            raw = float(self.booster.predict(row, raw_score=True, num_threads=1)[0])
        return 1.0 / (1.0 + math.exp(-(raw + self.log_odds_offset)))

    def explain(self, features: dict[str, Any], top: int = 5) -> list[dict[str, Any]]:
        """The features that moved this score most, by their trees' contributions (log-odds;
        positive pushes towards fraud), largest first."""
        row = self._row(features)
        with self._predicting:
            contributions = self.booster.predict(row, pred_contrib=True, num_threads=1)[0]
        ranked = sorted(
            zip(self.feature_names, row[0], contributions[:-1], strict=True),
            key=lambda item: -abs(float(item[2])),
        )
        out = []
        for name, value, contribution in ranked[: max(0, top)]:
            if contribution == 0:
                break
            number = float(value)
            out.append(
                {
                    "feature": name,
                    "value": int(number) if number.is_integer() else round(number, 4),
                    "contribution": round(float(contribution), 4),
                }
            )
        return out


class ModelCache(ReloadingCache["ScoringModel | None"]):
    """The active model of this process, re-read from the database when it changes.

    At most once every ``risk_reload_seconds`` one caller looks up the active version
    (one small query); only a new version loads a booster. Other threads meanwhile go on
    with the model they have. A lookup that fails keeps the model already loaded."""

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(settings.risk_reload_seconds)
        self.db = db
        self.settings = settings
        self._model: ScoringModel | None = None
        self._version = NO_MODEL

    def _value(self) -> ScoringModel | None:
        return self._model

    def _reload(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        try:
            with self.db.read() as session:
                version = _active_version(session)
                if version == self._version:
                    return
                record = session.get(RiskModel, version) if version != NO_MODEL else None
                model = ScoringModel.from_record(record) if record is not None else None
            self._model, self._version = model, version
            log.info("risk_model_loaded", version=version)
        except Exception as error:  # keep serving what we have; try again next interval
            log.warning("risk_model_reload_failed", error_type=type(error).__name__)
        finally:
            self._checked = time.monotonic()


# ---------------------------------------------------------------------- registry


def _active_version(session: Session) -> str:
    version = session.scalar(
        select(RiskModel.version)
        .where(RiskModel.status == "active")
        .order_by(RiskModel.activated_at.desc())
        .limit(1)
    )
    return version or NO_MODEL


def save_model(session: Session, trained: TrainedModel, data_source: str, by: str) -> RiskModel:
    """Store a trained model as the next version m<N>, status trained (not serving)."""
    numbers = [
        int(version[1:])
        for version in session.scalars(select(RiskModel.version))
        if re.fullmatch(r"m\d+", version)
    ]
    record = RiskModel(
        version=f"m{max(numbers, default=0) + 1}",
        status="trained",
        algorithm=trained.algorithm,
        feature_names=list(trained.feature_names),
        metrics=trained.metrics,
        booster=trained.booster,
        data_source=data_source[:2000],
        trained_by=by[:64],
        trained_at=clock.now(),
        activated_at=None,
    )
    session.add(record)
    session.flush()
    events.emit(
        session,
        "risk.model_trained",
        {
            "version": record.version,
            "trained_by": record.trained_by,
            "auprc": trained.metrics.get("test", {}).get("auprc"),
        },
    )
    return record


def list_models(session: Session) -> list[RiskModel]:
    return list(
        session.scalars(select(RiskModel).order_by(RiskModel.trained_at.desc(), RiskModel.version))
    )


def get_model(session: Session, version: str) -> RiskModel:
    record = session.get(RiskModel, version)
    if record is None:
        raise NotFound(f"no risk model '{version}'")
    return record


def active_model(session: Session) -> RiskModel | None:
    version = _active_version(session)
    return session.get(RiskModel, version) if version != NO_MODEL else None


def _check_activation(session: Session, target: str, params: dict[str, Any]) -> dict[str, Any]:
    if params:
        raise ValidationProblem("params: model activation takes none")
    if target == NO_MODEL:
        if active_model(session) is None:
            raise ValidationProblem("no model is active: the engine already runs on rules alone")
        return {}
    record = get_model(session, target)
    if record.status == "active":
        raise ValidationProblem(f"{target} is already the active model")
    unknown = [name for name in record.feature_names if name not in FEATURE_TYPES]
    if unknown:
        raise ValidationProblem(
            f"{target} reads features the engine no longer computes: {', '.join(unknown)}"
        )
    try:
        ScoringModel.from_record(record)
    except Exception as error:
        raise ValidationProblem(f"{target} cannot be loaded ({type(error).__name__})") from None
    return {}


def _activate(session: Session, record: ApprovalRequest) -> dict[str, Any]:
    target = record.target or NO_MODEL
    previous = _active_version(session)
    now = clock.now()
    session.execute(
        update(RiskModel)
        .where(RiskModel.status == "active", RiskModel.version != target)
        .values(status="retired")
        .execution_options(synchronize_session="fetch")
    )
    if target != NO_MODEL:
        chosen = get_model(session, target)
        chosen.status, chosen.activated_at = "active", now
    session.flush()
    events.emit(
        session,
        "security.risk_model_activated",
        {
            "version": target,
            "previous": previous,
            "approval_id": record.id,
            "requested_by": record.requested_by,
            "by_staff_id": record.decided_by,
        },
    )
    return {"active": target, "previous": previous}


def activate_action() -> Action:
    """Four-eyes: activate a model (an older version rolls back; "none": rules alone)."""
    return Action(
        MODEL_ACTIVATE,
        Permission.RISK_MODELS_ACTIVATE,
        "make a trained risk model the active one (an older one rolls back; none: rules alone)",
        _check_activation,
        _activate,
    )


# ---------------------------------------------------------------------- labels


def label_payment(
    session: Session,
    reference: str,
    label: Literal["fraud", "legitimate"] | str,
    *,
    by_staff_id: str,
    reason: str,
    source: str = "review",
) -> RiskLabel:
    """An analyst's verdict on an assessed payment (or an outside system's decision id)."""
    from payguard.risk import service

    if label not in LABELS:
        raise ValidationProblem("label: fraud or legitimate")
    if not reason.strip():
        raise ValidationProblem("reason: say why; the label trains the next model")
    receipt = session.get(RiskReceipt, reference) or session.scalar(
        select(RiskReceipt).where(RiskReceipt.payment_id == reference).limit(1)
    )
    if receipt is None:
        raise NotFound(f"no risk decision for '{reference}': only assessed payments are labelled")
    key = _label_key(receipt)
    stored = service.set_label(session, key, label, source=source, by=f"staff:{by_staff_id}")
    session.flush()
    events.emit(
        session,
        "risk.label_set",
        {
            "payment_id": key,
            "label": label,
            "source": source,
            "by_staff_id": by_staff_id,
            "reason": reason.strip()[:500],
        },
    )
    return stored
