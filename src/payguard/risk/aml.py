"""Anti-money-laundering reports: large-value transactions and suspicious typologies.

Large-value reports (大额交易报告) follow PBoC Order 2016 No. 3 (《金融机构大额交易和可疑
交易报告管理办法》, as amended by PBoC Order 2018 No. 2), article 5: per client, per
Beijing-time calendar day, single or cumulative, counted one direction at a time (money in
apart from money out):

- cash at or above ``aml_large_cash`` (CNY 50,000). payguard has no cash desk: a wallet
  top-up from a bank card and a withdrawal to one are its cash-in / cash-out channel, so
  they are measured against the cash line;
- a natural person's transfers at or above ``aml_large_transfer_person`` (CNY 500,000);
- an entity's (a merchant account's) transfers at or above ``aml_large_transfer_entity``
  (CNY 2,000,000).

Suspicious typologies (可疑交易) are patterns for an analyst to look at, not verdicts:
structuring just under a line, fan-in, fan-out, rapid pass-through and cycles. Their
thresholds are :class:`AmlThresholds`.

The input is the risk engine's decision receipts: the payments of this platform that
completed (confirmed or posted) and the decisions asked by outside systems that were not
blocked. The analysis functions are pure: a list of :class:`Transaction` in, cases out.
docs/aml.md describes the whole report.
"""

from __future__ import annotations

import csv
import hashlib
import io
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from payguard import clock
from payguard.errors import ValidationProblem
from payguard.money import format_amount
from payguard.payments import service as payments
from payguard.risk.aml_schemas import (
    AmlCase,
    AmlEvidence,
    AmlLine,
    AmlReport,
    Direction,
    LineName,
    ReportKind,
    ThresholdValue,
    Typology,
)
from payguard.risk.models import RiskReceipt
from payguard.settings import Settings

# The Measures count calendar days in Beijing time, whatever the server's time zone.
REPORTING_TIMEZONE = ZoneInfo("Asia/Shanghai")
# The lines of article 5 are in renminbi; other currencies are not measured against them.
LINE_CURRENCY = "CNY"
# A longer period is several reports: it keeps one request's work bounded.
MAX_PERIOD_DAYS = 366
COMPLETED_STATUSES = frozenset({"confirmed", "posted"})

_WHEN_EN = "%Y-%m-%d %H:%M UTC"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Transaction:
    """One completed payment, as the AML analysis sees it."""

    id: str  # the risk receipt it was read from
    payment_id: str  # payguard's payment id, or the outside system's reference
    kind: str  # p2p | merchant | top_up | withdrawal | refund
    payer: str | None  # None for a top-up (the money comes from a bank card)
    payee: str | None  # None for a withdrawal (the money goes to a bank card)
    amount: int  # minor units
    currency: str
    at: datetime  # UTC
    payee_is_entity: bool = False  # the payee is a merchant (a non-natural-person client)
    payer_is_entity: bool = False  # the payer is a merchant (refunds)
    bank_token: str | None = None  # the bank card of a top-up or withdrawal, tokenised


@dataclass(frozen=True)
class AmlThresholds:
    """Thresholds of the suspicious typologies. Amounts are minor units of the payment's
    currency; percentages are whole numbers; windows are lengths of time within which the
    first and last payment of a pattern fall (inclusive)."""

    # Structuring: payments by one payer each in [near_line_percent %, 100 %) of the
    # large-value line that applies to them, at least structuring_min_count of them within
    # one of the windows, together at or above the line.
    near_line_percent: int = 90
    structuring_min_count: int = 2
    structuring_windows: tuple[timedelta, ...] = (timedelta(hours=24), timedelta(days=7))
    # Fan-in: at least fan_in_min_payers distinct payers (accounts, or bank cards topping up)
    # to one account within the window,
    # together at least fan_min_total.
    fan_in_min_payers: int = 10
    fan_in_window: timedelta = timedelta(hours=24)
    # Fan-out: one payer to at least fan_out_min_payees distinct payees (accounts, or bank
    # cards withdrawn to) within the window,
    # together at least fan_min_total.
    fan_out_min_payees: int = 10
    fan_out_window: timedelta = timedelta(hours=24)
    fan_min_total: int = 1_000_000  # CNY 10,000
    # Merchant accounts receive from many and refund many as their business; fan-in,
    # fan-out and pass-through leave them out unless this is set.
    include_entities: bool = False
    # Rapid pass-through: money into an account, then at least pass_through_percent of it
    # out again within the window; only inflows of at least pass_through_min_amount count.
    pass_through_percent: int = 80
    pass_through_window: timedelta = timedelta(hours=24)
    pass_through_min_amount: int = 1_000_000  # CNY 10,000
    # Cycles: A → B → … → A through cycle_min_length..cycle_max_length accounts, each hop
    # no earlier than the one before, the last within cycle_window of the first; every
    # hop at least cycle_min_amount and the hop home at least cycle_return_percent of the
    # first. The search explores at most cycle_search_budget payments (then says so).
    cycle_min_length: int = 2
    cycle_max_length: int = 5
    cycle_window: timedelta = timedelta(hours=72)
    cycle_min_amount: int = 500_000  # CNY 5,000
    cycle_return_percent: int = 80
    cycle_kinds: tuple[str, ...] = ("p2p", "merchant")
    cycle_search_budget: int = 200_000

    def __post_init__(self) -> None:
        for name in ("near_line_percent", "pass_through_percent", "cycle_return_percent"):
            if not 1 <= getattr(self, name) <= 100:
                raise ValueError(f"{name} is a percentage, 1 to 100")
        for name in (
            "structuring_min_count",
            "fan_in_min_payers",
            "fan_out_min_payees",
            "cycle_search_budget",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("fan_min_total", "pass_through_min_amount", "cycle_min_amount"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        windows = (
            *self.structuring_windows,
            self.fan_in_window,
            self.fan_out_window,
            self.pass_through_window,
            self.cycle_window,
        )
        if not self.structuring_windows or any(window <= timedelta(0) for window in windows):
            raise ValueError("every window must be a positive length of time")
        if not 2 <= self.cycle_min_length <= self.cycle_max_length <= 8:
            raise ValueError("cycle lengths: 2 <= cycle_min_length <= cycle_max_length <= 8")

    def as_record(self) -> dict[str, ThresholdValue]:
        """The thresholds as the report shows them (durations in seconds)."""
        record: dict[str, ThresholdValue] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, timedelta):
                record[item.name] = int(value.total_seconds())
            elif isinstance(value, tuple):
                record[item.name] = [
                    int(part.total_seconds()) if isinstance(part, timedelta) else part
                    for part in value
                ]
            else:
                record[item.name] = value
        return record


@dataclass(frozen=True)
class Lines:
    """The three large-value lines, in minor units of ``currency``."""

    cash: int
    transfer_person: int
    transfer_entity: int
    currency: str = LINE_CURRENCY

    @classmethod
    def of(cls, settings: Settings) -> Lines:
        return cls(
            cash=settings.aml_large_cash,
            transfer_person=settings.aml_large_transfer_person,
            transfer_entity=settings.aml_large_transfer_entity,
        )

    def amount(self, name: LineName) -> int:
        return {
            "cash": self.cash,
            "transfer_person": self.transfer_person,
            "transfer_entity": self.transfer_entity,
        }[name]


@dataclass(frozen=True)
class _LineText:
    typology: Typology
    setting: str
    item: str  # article 5 item
    item_zh: str
    what_en: str
    what_zh: str


_LINE_TEXT: dict[LineName, _LineText] = {
    "cash": _LineText(
        "large_cash",
        "aml_large_cash",
        "1",
        "一",
        "cash receipts and payments (wallet top-ups and withdrawals)",
        "现金收支（钱包充值与提现）",
    ),
    "transfer_entity": _LineText(
        "large_transfer_entity",
        "aml_large_transfer_entity",
        "2",
        "二",
        "transfers of a non-natural-person client (a merchant account)",
        "非自然人客户（商户账户）款项划转",
    ),
    "transfer_person": _LineText(
        "large_transfer_person",
        "aml_large_transfer_person",
        "3",
        "三",
        "domestic transfers of a natural-person client",
        "自然人客户境内款项划转",
    ),
}
_MEASURES_EN = "PBoC Order 2016 No. 3 as amended by Order 2018 No. 2"
_MEASURES_ZH = (
    "《金融机构大额交易和可疑交易报告管理办法》（中国人民银行令〔2016〕第3号，〔2018〕第2号令修改）"
)


def line_descriptions(settings: Settings) -> list[AmlLine]:
    """The lines in force, their settings and their legal basis."""
    lines = Lines.of(settings)
    described = []
    for name in ("cash", "transfer_person", "transfer_entity"):
        text = _LINE_TEXT[name]
        amount = lines.amount(name)
        default = Settings.model_fields[text.setting].default
        shown = format_amount(amount, lines.currency)
        described.append(
            AmlLine(
                name=name,
                amount=amount,
                currency=lines.currency,
                setting="PAYGUARD_" + text.setting.upper(),
                default=int(default),
                basis_en=f"{_MEASURES_EN}, art. 5({text.item}): {text.what_en}, single or "
                f"same-day cumulative, at or above {shown}",
                basis_zh=f"{_MEASURES_ZH}第五条第（{text.item_zh}）项：{text.what_zh}，"
                f"当日单笔或者累计 {shown} 以上（含）",
            )
        )
    return described


# ---------------------------------------------------------------- reading the receipts


def completed_transactions(session: Session, start: datetime, end: datetime) -> list[Transaction]:
    """The completed payments decided in [start, end), oldest first.

    This platform's payments ("pipeline" receipts) count when the payments domain says they
    are confirmed or posted; an outside system's ("api" receipts) when the decision was not
    block. A payment decided more than once (a challenge, then the retry) counts once, with
    its newest decision."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    query = (
        select(
            RiskReceipt.id,
            RiskReceipt.payment_id,
            RiskReceipt.source,
            RiskReceipt.kind,
            RiskReceipt.payer,
            RiskReceipt.payee,
            RiskReceipt.amount,
            RiskReceipt.currency,
            RiskReceipt.at,
            RiskReceipt.context,
            RiskReceipt.action,
        )
        .where(RiskReceipt.at >= start, RiskReceipt.at < end)
        .order_by(RiskReceipt.at, RiskReceipt.id)
    )
    newest: dict[tuple[str, str], Transaction] = {}
    actions: dict[str, str] = {}
    for row in session.execute(query):
        context = row.context if isinstance(row.context, dict) else {}
        reference = row.payment_id or str(context.get("payment_id") or "") or row.id
        bank_token = context.get("bank_token")
        transaction = Transaction(
            id=row.id,
            payment_id=reference,
            kind=row.kind,
            payer=row.payer,
            payee=row.payee,
            amount=row.amount,
            currency=row.currency,
            at=clock.as_utc(row.at),
            payee_is_entity=row.kind == "merchant" or context.get("payee_kind") == "merchant",
            payer_is_entity=row.kind == "refund" or context.get("payer_kind") == "merchant",
            bank_token=bank_token if isinstance(bank_token, str) else None,
        )
        newest[(row.source, reference)] = transaction  # rows come oldest first
        actions[row.id] = row.action
    statuses = payments.payment_statuses(
        session, [key[1] for key in newest if key[0] == "pipeline"]
    )
    kept = []
    for (source, reference), transaction in newest.items():
        if source == "pipeline":
            completed = statuses.get(reference) in COMPLETED_STATUSES
        else:
            completed = source == "api" and actions[transaction.id] != "block"
        if completed:
            kept.append(transaction)
    return sorted(kept, key=_when)


# ---------------------------------------------------------------- helpers


def _when(transaction: Transaction) -> tuple[datetime, str]:
    return transaction.at, transaction.id


def _money(amount: int, currency: str) -> str:
    return format_amount(amount, currency)


def _ts(moment: datetime) -> str:
    return moment.strftime(_WHEN_EN)


def _duration(length: timedelta) -> tuple[str, str]:
    """English and Chinese words for a window length."""
    seconds = int(length.total_seconds())
    for unit, unit_en, unit_zh in (
        (86_400, "day", "天"),
        (3_600, "hour", "小时"),
        (60, "minute", "分钟"),
    ):
        if seconds % unit == 0:
            count = seconds // unit
            return f"{count} {unit_en}{'' if count == 1 else 's'}", f"{count}{unit_zh}"
    return f"{seconds} seconds", f"{seconds}秒"


def _day_label(zone: ZoneInfo) -> tuple[str, str]:
    if zone.key == "Asia/Shanghai":
        return "Beijing time", "北京时间"
    return zone.key, zone.key


def entity_accounts(transactions: Iterable[Transaction]) -> frozenset[str]:
    """Accounts seen acting as a merchant (a non-natural-person client) anywhere in the data."""
    found: set[str] = set()
    for transaction in transactions:
        if transaction.payee_is_entity and transaction.payee:
            found.add(transaction.payee)
        if transaction.payer_is_entity and transaction.payer:
            found.add(transaction.payer)
    return frozenset(found)


def _transfer_line(account: str, entities: frozenset[str]) -> LineName:
    return "transfer_entity" if account in entities else "transfer_person"


def _case(
    *,
    report: ReportKind,
    typology: Typology,
    subject: str,
    direction: Direction,
    evidence: Sequence[Transaction],
    explanation_en: str,
    explanation_zh: str,
    metrics: dict[str, int],
    total: int | None = None,
    local_day: date | None = None,
) -> AmlCase:
    ordered = sorted(evidence, key=_when)
    payment_ids = [transaction.payment_id for transaction in ordered]
    key = "|".join(
        [
            typology,
            subject,
            direction,
            local_day.isoformat() if local_day else "",
            *sorted(payment_ids),
        ]
    )
    return AmlCase(
        id="aml_" + hashlib.sha256(key.encode()).hexdigest()[:24],
        report=report,
        typology=typology,
        subject_account=subject,
        direction=direction,
        total_amount=sum(t.amount for t in ordered) if total is None else total,
        currency=ordered[0].currency,
        first_at=ordered[0].at,
        last_at=ordered[-1].at,
        local_day=local_day,
        payment_ids=payment_ids,
        transactions=[
            AmlEvidence(
                payment_id=t.payment_id,
                receipt_id=t.id,
                kind=t.kind,
                payer=t.payer,
                payee=t.payee,
                amount=t.amount,
                currency=t.currency,
                at=t.at,
            )
            for t in ordered
        ],
        metrics=metrics,
        explanation_en=explanation_en,
        explanation_zh=explanation_zh,
    )


def _windows(
    items: Sequence[Transaction],
    window: timedelta,
    qualifies: Callable[[Sequence[Transaction]], bool],
) -> list[list[Transaction]]:
    """Runs of time-sorted ``items`` where the longest span ending at a payment (first to
    last at most ``window`` apart) qualifies; qualifying spans that overlap are merged.

    Every predicate used here only grows with the span (counts, distinct parties, sums),
    so the longest span ending at each payment is the only one that needs checking."""
    spans: list[tuple[int, int]] = []
    start = 0
    for end in range(len(items)):
        while items[end].at - items[start].at > window:
            start += 1
        if qualifies(items[start : end + 1]):
            if spans and spans[-1][1] >= start:
                spans[-1] = (spans[-1][0], end)
            else:
                spans.append((start, end))
    return [list(items[first : last + 1]) for first, last in spans]


def _merge(groups: Iterable[Sequence[Transaction]]) -> list[list[Transaction]]:
    """Groups that share a payment, joined."""
    merged: list[dict[str, Transaction]] = []
    for group in groups:
        combined = {transaction.id: transaction for transaction in group}
        keep = []
        for existing in merged:
            if existing.keys() & combined.keys():
                combined.update(existing)
            else:
                keep.append(existing)
        merged = [*keep, combined]
    return sorted(
        (sorted(group.values(), key=_when) for group in merged), key=lambda g: _when(g[0])
    )


# ---------------------------------------------------------------- large-value reports


def large_value_reports(
    transactions: Sequence[Transaction],
    lines: Lines,
    timezone: ZoneInfo = REPORTING_TIMEZONE,
) -> list[AmlCase]:
    """Article 5 reports: per account, per local calendar day, per direction (money in apart
    from money out), per line, the single or cumulative amount at or above the line.

    Top-ups (in) and withdrawals (out) are measured against the cash line. Any other payment
    counts for the payer (out) and the payee (in) against the entity line when that account
    is a merchant, else the natural-person line. Only ``lines.currency`` is measured."""
    entities = entity_accounts(transactions)
    buckets: dict[tuple[str, Direction, LineName, date], list[Transaction]] = defaultdict(list)
    for transaction in transactions:
        if transaction.currency != lines.currency:
            continue
        day = transaction.at.astimezone(timezone).date()
        if transaction.kind == "top_up":
            if transaction.payee:
                buckets[(transaction.payee, "in", "cash", day)].append(transaction)
            continue
        if transaction.kind == "withdrawal":
            if transaction.payer:
                buckets[(transaction.payer, "out", "cash", day)].append(transaction)
            continue
        if transaction.payer:
            paid = _transfer_line(transaction.payer, entities)
            buckets[(transaction.payer, "out", paid, day)].append(transaction)
        if transaction.payee:
            received = _transfer_line(transaction.payee, entities)
            buckets[(transaction.payee, "in", received, day)].append(transaction)

    day_en, day_zh = _day_label(timezone)
    cases = []
    for (account, direction, line_name, day), items in sorted(buckets.items()):
        line = lines.amount(line_name)
        total = sum(transaction.amount for transaction in items)
        if total < line:
            continue
        text = _LINE_TEXT[line_name]
        count = len(items)
        if line_name == "cash":
            noun_en = "top-up" if direction == "in" else "withdrawal"
            noun_zh = "充值（现金存入）" if direction == "in" else "提现（现金支取）"
        else:
            noun_en, noun_zh = "transfer", "转账"
        verb_en, verb_zh = ("received", "收入") if direction == "in" else ("paid out", "支出")
        plural = "" if count == 1 else "s"
        shown_total, shown_line = _money(total, lines.currency), _money(line, lines.currency)
        cases.append(
            _case(
                report="large_value",
                typology=text.typology,
                subject=account,
                direction=direction,
                evidence=items,
                local_day=day,
                metrics={"line": line, "payments": count},
                explanation_en=(
                    f"Account {account} {verb_en} {shown_total} on {day} ({day_en}) in "
                    f"{count} {noun_en}{plural}, at or above the {shown_line} line for "
                    f"{text.what_en} ({_MEASURES_EN}, art. 5({text.item}))."
                ),
                explanation_zh=(
                    f"账户 {account} 于 {day}（{day_zh}）通过 {count} 笔{noun_zh}{verb_zh} "
                    f"{shown_total}，达到{text.what_zh}的大额交易报告标准 {shown_line}"
                    f"（{_MEASURES_ZH}第五条第（{text.item_zh}）项）。"
                ),
            )
        )
    return cases


# ---------------------------------------------------------------- suspicious typologies


def _acting_party(
    transaction: Transaction, entities: frozenset[str]
) -> tuple[str, LineName, Direction] | None:
    """Who chose to make this payment, the line it is measured against, and which way."""
    if transaction.kind == "top_up":
        return (transaction.payee, "cash", "in") if transaction.payee else None
    if transaction.kind == "withdrawal":
        return (transaction.payer, "cash", "out") if transaction.payer else None
    if transaction.payer is None:
        return None
    return transaction.payer, _transfer_line(transaction.payer, entities), "out"


def _at_least(count: int, total: int) -> Callable[[Sequence[Transaction]], bool]:
    def check(span: Sequence[Transaction]) -> bool:
        return len(span) >= count and sum(t.amount for t in span) >= total

    return check


def find_structuring(
    transactions: Sequence[Transaction], lines: Lines, thresholds: AmlThresholds
) -> list[AmlCase]:
    """Several payments by one account, each just under its line, together over it."""
    entities = entity_accounts(transactions)
    groups: dict[tuple[str, LineName, Direction], list[Transaction]] = defaultdict(list)
    for transaction in transactions:
        if transaction.currency != lines.currency:
            continue
        acting = _acting_party(transaction, entities)
        if acting is None:
            continue
        line = lines.amount(acting[1])
        if line * thresholds.near_line_percent <= transaction.amount * 100 < line * 100:
            groups[acting].append(transaction)

    cases, seen = [], set()
    for (account, line_name, direction), items in sorted(groups.items()):
        items.sort(key=_when)
        line = lines.amount(line_name)
        text = _LINE_TEXT[line_name]
        shown_line = _money(line, lines.currency)
        for window in thresholds.structuring_windows:
            qualifies = _at_least(thresholds.structuring_min_count, line)
            for run in _windows(items, window, qualifies):
                key = frozenset(transaction.id for transaction in run)
                if key in seen:
                    continue
                seen.add(key)
                total = sum(transaction.amount for transaction in run)
                window_en, window_zh = _duration(window)
                low = thresholds.near_line_percent
                cases.append(
                    _case(
                        report="suspicious",
                        typology="structuring",
                        subject=account,
                        direction=direction,
                        evidence=run,
                        metrics={
                            "line": line,
                            "payments": len(run),
                            "near_line_percent": low,
                            "window_seconds": int(window.total_seconds()),
                        },
                        explanation_en=(
                            f"Account {account} made {len(run)} payments within {window_en} "
                            f"({_ts(run[0].at)} to {_ts(run[-1].at)}), each between {low}% and "
                            f"100% of the {shown_line} large-value line for {text.what_en}, "
                            f"together {_money(total, lines.currency)}: amounts kept just under "
                            "the reporting line (structuring)."
                        ),
                        explanation_zh=(
                            f"账户 {account} 在{window_zh}内（{_ts(run[0].at)} 至 "
                            f"{_ts(run[-1].at)}）发生 {len(run)} 笔交易，每笔金额均为"
                            f"{text.what_zh}大额报告标准 {shown_line} 的 {low}% 至 100%，"
                            f"合计 {_money(total, lines.currency)}，疑似拆分交易以规避大额报告。"
                        ),
                    )
                )
    return cases


def _source(transaction: Transaction) -> str | None:
    """Where the money came from: the payer, or for a top-up the bank card (tokenised)."""
    if transaction.payer:
        return transaction.payer
    if transaction.kind == "top_up" and transaction.bank_token:
        return f"bank:{transaction.bank_token}"
    return None


def _destination(transaction: Transaction) -> str | None:
    """Where the money went: the payee, or for a withdrawal the bank card (tokenised)."""
    if transaction.payee:
        return transaction.payee
    if transaction.kind == "withdrawal" and transaction.bank_token:
        return f"bank:{transaction.bank_token}"
    return None


def _flows(transactions: Sequence[Transaction], thresholds: AmlThresholds) -> list[Transaction]:
    """Payments from one party to another, merchants left out unless included."""
    entities = frozenset() if thresholds.include_entities else entity_accounts(transactions)
    kept = []
    for transaction in transactions:
        source, destination = _source(transaction), _destination(transaction)
        if (
            source
            and destination
            and source != destination
            and source not in entities
            and destination not in entities
        ):
            kept.append(transaction)
    return kept


def _distinct(
    party: Callable[[Transaction], str | None], count: int, total: int
) -> Callable[[Sequence[Transaction]], bool]:
    def check(span: Sequence[Transaction]) -> bool:
        return len({party(t) for t in span}) >= count and sum(t.amount for t in span) >= total

    return check


def _find_fan(
    transactions: Sequence[Transaction],
    thresholds: AmlThresholds,
    *,
    inbound: bool,
) -> list[AmlCase]:
    """Fan-in (many sources into one account) or fan-out (one account to many): the
    same windows over the other side of each payment, mirrored."""
    own: Callable[[Transaction], str | None] = (
        (lambda t: t.payee) if inbound else (lambda t: t.payer)
    )
    other = _source if inbound else _destination
    window = thresholds.fan_in_window if inbound else thresholds.fan_out_window
    minimum = thresholds.fan_in_min_payers if inbound else thresholds.fan_out_min_payees
    groups: dict[tuple[str, str], list[Transaction]] = defaultdict(list)
    for transaction in _flows(transactions, thresholds):
        account = own(transaction)  # None: a withdrawal (fan-in) or a top-up (fan-out)
        if account is not None:
            groups[(account, transaction.currency)].append(transaction)
    window_en, window_zh = _duration(window)
    qualifies = _distinct(other, minimum, thresholds.fan_min_total)
    cases = []
    for (account, currency), items in sorted(groups.items()):
        items.sort(key=_when)
        for run in _windows(items, window, qualifies):
            count = len({other(transaction) for transaction in run})
            total = _money(sum(transaction.amount for transaction in run), currency)
            first, last = _ts(run[0].at), _ts(run[-1].at)
            if inbound:
                english = (
                    f"{count} distinct payers (accounts or bank cards) sent {total} "
                    f"in {len(run)} payments to account {account} between {first} and "
                    f"{last} (at least {minimum} within {window_en}): many sources "
                    "converging on one account (fan-in)."
                )
                chinese = (
                    f"{first} 至 {last} 期间，{count} 个不同付款方"
                    f"（账户或银行卡）向账户 {account} 转入 {len(run)} 笔，合计 {total}"
                    f"（{window_zh}内不少于 {minimum} 个）：资金分散转入、集中收取。"
                )
            else:
                english = (
                    f"Account {account} paid {total} to {count} distinct accounts or "
                    f"bank cards in {len(run)} payments between {first} and {last} (at "
                    f"least {minimum} within {window_en}): money dispersed from one "
                    "account to many (fan-out)."
                )
                chinese = (
                    f"{first} 至 {last} 期间，账户 {account} 向 "
                    f"{count} 个不同账户或银行卡转出 {len(run)} 笔，合计 {total}"
                    f"（{window_zh}内不少于 {minimum} 个）：资金集中转入后分散转出。"
                )
            cases.append(
                _case(
                    report="suspicious",
                    typology="fan_in" if inbound else "fan_out",
                    subject=account,
                    direction="in" if inbound else "out",
                    evidence=run,
                    metrics={
                        "distinct_payers" if inbound else "distinct_payees": count,
                        "payments": len(run),
                        "min_distinct": minimum,
                        "window_seconds": int(window.total_seconds()),
                    },
                    explanation_en=english,
                    explanation_zh=chinese,
                )
            )
    return cases


def find_fan_in(transactions: Sequence[Transaction], thresholds: AmlThresholds) -> list[AmlCase]:
    """Many distinct payers to one account within a short window (collection accounts)."""
    return _find_fan(transactions, thresholds, inbound=True)


def find_fan_out(transactions: Sequence[Transaction], thresholds: AmlThresholds) -> list[AmlCase]:
    """One account paying many distinct accounts within a short window (dispersal)."""
    return _find_fan(transactions, thresholds, inbound=False)


def find_pass_through(
    transactions: Sequence[Transaction], thresholds: AmlThresholds
) -> list[AmlCase]:
    """Money into an account and most of it out again soon after (快进快出)."""
    entities = frozenset() if thresholds.include_entities else entity_accounts(transactions)
    inflows: dict[tuple[str, str], list[Transaction]] = defaultdict(list)
    outflows: dict[tuple[str, str], list[Transaction]] = defaultdict(list)
    for transaction in transactions:
        if transaction.payer == transaction.payee:
            continue
        if transaction.payee and transaction.payee not in entities:
            inflows[(transaction.payee, transaction.currency)].append(transaction)
        if transaction.payer and transaction.payer not in entities:
            outflows[(transaction.payer, transaction.currency)].append(transaction)
    window = thresholds.pass_through_window
    window_en, window_zh = _duration(window)
    percent = thresholds.pass_through_percent
    cases = []
    for key in sorted(inflows.keys() & outflows.keys()):
        account, currency = key
        ins = sorted(inflows[key], key=_when)
        outs = sorted(outflows[key], key=_when)
        out_times = [transaction.at for transaction in outs]
        groups = []
        for inflow in ins:
            if inflow.amount < thresholds.pass_through_min_amount:
                continue
            following = outs[
                bisect_left(out_times, inflow.at) : bisect_right(out_times, inflow.at + window)
            ]
            if sum(t.amount for t in following) * 100 >= inflow.amount * percent:
                groups.append([inflow, *following])
        for run in _merge(groups):
            amount_in = sum(t.amount for t in run if t.payee == account)
            amount_out = sum(t.amount for t in run if t.payer == account)
            share = amount_out * 100 // amount_in
            shown_in, shown_out = _money(amount_in, currency), _money(amount_out, currency)
            cases.append(
                _case(
                    report="suspicious",
                    typology="rapid_pass_through",
                    subject=account,
                    direction="through",
                    evidence=run,
                    total=amount_in,
                    metrics={
                        "amount_in": amount_in,
                        "amount_out": amount_out,
                        "percent_out": share,
                        "min_percent": percent,
                        "window_seconds": int(window.total_seconds()),
                    },
                    explanation_en=(
                        f"Account {account} received {shown_in} and paid out {shown_out} "
                        f"({share}%) between {_ts(run[0].at)} and {_ts(run[-1].at)}, at least "
                        f"{percent}% of each inflow leaving within {window_en}: money passing "
                        "straight through (rapid in, rapid out)."
                    ),
                    explanation_zh=(
                        f"账户 {account} 于 {_ts(run[0].at)} 至 {_ts(run[-1].at)} 期间转入 "
                        f"{shown_in}，转出 {shown_out}（{share}%），每笔转入在{window_zh}内"
                        f"转出不少于 {percent}%：资金快进快出、过渡性明显。"
                    ),
                )
            )
    return cases


class _CycleSearch:
    """Bounded depth-first search for time-ordered rings of payments of one currency."""

    def __init__(self, edges: Sequence[Transaction], thresholds: AmlThresholds, budget: int):
        self.thresholds = thresholds
        self.budget = budget
        self.steps = 0
        self.out: dict[str, list[Transaction]] = defaultdict(list)
        for edge in sorted(edges, key=_when):
            assert edge.payer is not None
            self.out[edge.payer].append(edge)
        self.times = {node: [edge.at for edge in edges] for node, edges in self.out.items()}
        # ring (accounts, smallest first) -> the rounds found, keyed by their payments
        self.rings: dict[tuple[str, ...], dict[frozenset[str], list[Transaction]]] = {}

        self.truncated = False  # a step was due when the budget ran out

    def _spend(self) -> bool:
        if self.steps >= self.budget:
            self.truncated = True
            return False
        self.steps += 1
        return True

    def run(self) -> None:
        for node in sorted(self.out):
            for first in self.out[node]:
                if self.truncated:
                    return
                assert first.payee is not None
                self._walk(first, [first], {node, first.payee})

    def _walk(self, first: Transaction, path: list[Transaction], visited: set[str]) -> None:
        thresholds = self.thresholds
        last = path[-1]
        assert last.payee is not None
        node, origin = last.payee, first.payer
        edges = self.out.get(node, [])
        deadline = first.at + thresholds.cycle_window
        for edge in edges[bisect_left(self.times.get(node, []), last.at) :]:
            if edge.at > deadline or not self._spend():
                return
            assert edge.payee is not None
            if edge.payee == origin:
                home = edge.amount * 100 >= first.amount * thresholds.cycle_return_percent
                if len(path) + 1 >= thresholds.cycle_min_length and home:
                    self._record([*path, edge])
            elif edge.payee not in visited and len(path) + 1 < thresholds.cycle_max_length:
                visited.add(edge.payee)
                self._walk(first, [*path, edge], visited)
                visited.discard(edge.payee)

    def _record(self, path: list[Transaction]) -> None:
        nodes = [edge.payer or "" for edge in path]
        turn = nodes.index(min(nodes))
        ring = tuple(nodes[turn:] + nodes[:turn])
        self.rings.setdefault(ring, {})[frozenset(edge.id for edge in path)] = path


def find_cycles(
    transactions: Sequence[Transaction],
    thresholds: AmlThresholds,
    notes: list[str] | None = None,
) -> list[AmlCase]:
    """Money that goes round a ring of accounts and comes back (循环转账), one case a ring.

    ``notes`` receives a line when the search budget ran out before the search finished."""
    by_currency: dict[str, list[Transaction]] = defaultdict(list)
    for transaction in transactions:
        if (
            transaction.payer
            and transaction.payee
            and transaction.payer != transaction.payee
            and transaction.kind in thresholds.cycle_kinds
            and transaction.amount >= thresholds.cycle_min_amount
        ):
            by_currency[transaction.currency].append(transaction)
    window_en, window_zh = _duration(thresholds.cycle_window)
    budget = thresholds.cycle_search_budget
    cases = []
    for currency, edges in sorted(by_currency.items()):
        search = _CycleSearch(edges, thresholds, budget)
        search.run()
        budget -= search.steps
        if search.truncated and notes is not None:
            notes.append(
                f"The cycle search stopped after {thresholds.cycle_search_budget} steps; "
                f"some {currency} cycles may be missing (raise cycle_search_budget)."
            )
        for ring, rounds in sorted(search.rings.items()):
            evidence = {edge.id: edge for path in rounds.values() for edge in path}
            ordered_rounds = sorted(rounds.values(), key=lambda path: _when(path[0]))
            subject = ordered_rounds[0][0].payer or ring[0]
            # A round: one payment out of the subject that came back. Other rotations and
            # pairings of the same payments are counted as cycles, not as more money.
            starts = {
                path[0].id: path[0].amount for path in ordered_rounds if path[0].payer == subject
            }
            sent = _money(sum(starts.values()), currency)
            turn = ring.index(subject)
            shown = " → ".join([*ring[turn:], *ring[:turn], subject])
            first_at = min(edge.at for edge in evidence.values())
            last_at = max(edge.at for edge in evidence.values())
            cases.append(
                _case(
                    report="suspicious",
                    typology="cycle",
                    subject=subject,
                    direction="around",
                    evidence=list(evidence.values()),
                    total=sum(starts.values()),
                    metrics={
                        "length": len(ring),
                        "rounds": len(starts),
                        "cycles": len(rounds),
                        "payments": len(evidence),
                        "hops_total": sum(edge.amount for edge in evidence.values()),
                        "window_seconds": int(thresholds.cycle_window.total_seconds()),
                    },
                    explanation_en=(
                        f"Money went round {shown} ({len(ring)} accounts) {len(starts)} "
                        f"time{'' if len(starts) == 1 else 's'} between {_ts(first_at)} and "
                        f"{_ts(last_at)}, each round within {window_en}: {sent} left {subject} "
                        "and came back (circular transfers)."
                    ),
                    explanation_zh=(
                        f"{_ts(first_at)} 至 {_ts(last_at)} 期间，资金沿 {shown}（{len(ring)} 个"
                        f"账户）循环 {len(starts)} 次，每次在{window_zh}内完成：{sent} 从账户 "
                        f"{subject} 转出后又回流（循环转账）。"
                    ),
                )
            )
    return cases


# ---------------------------------------------------------------- the report


def period_bounds(
    first_day: date, last_day: date, timezone: ZoneInfo = REPORTING_TIMEZONE
) -> tuple[datetime, datetime]:
    """[start, end) in UTC covering the local calendar days first_day..last_day inclusive."""
    if first_day > last_day:
        raise ValidationProblem(f"the period starts ({first_day}) after it ends ({last_day})")
    if (last_day - first_day).days + 1 > MAX_PERIOD_DAYS:
        raise ValidationProblem(
            f"a report covers at most {MAX_PERIOD_DAYS} days; ask for shorter periods"
        )
    start = datetime.combine(first_day, time(0), tzinfo=timezone)
    end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=timezone)
    return clock.as_utc(start), clock.as_utc(end)


def analyse(
    transactions: Sequence[Transaction],
    settings: Settings,
    start: datetime,
    end: datetime,
    thresholds: AmlThresholds | None = None,
) -> AmlReport:
    """The report over transactions already read (pure apart from the clock)."""
    thresholds = thresholds or AmlThresholds()
    lines = Lines.of(settings)
    notes = [
        "Suspicious-typology windows see only this period's transactions: a pattern that "
        "straddles its edges shows in part or not at all."
    ]
    other = Counter(t.currency for t in transactions if t.currency != lines.currency)
    if other:
        notes.append(
            f"The large-value and structuring lines are in {lines.currency}; "
            f"{sum(other.values())} transactions in other currencies were examined for the "
            "other typologies only."
        )
    suspicious = [
        *find_structuring(transactions, lines, thresholds),
        *find_fan_in(transactions, thresholds),
        *find_fan_out(transactions, thresholds),
        *find_pass_through(transactions, thresholds),
        *find_cycles(transactions, thresholds, notes),
    ]
    return AmlReport(
        generated_at=clock.now(),
        period_start=clock.as_utc(start),
        period_end=clock.as_utc(end),
        timezone=REPORTING_TIMEZONE.key,
        lines=line_descriptions(settings),
        thresholds=thresholds.as_record(),
        transactions=len(transactions),
        unassessed_currencies=dict(sorted(other.items())),
        notes=notes,
        large_value=large_value_reports(transactions, lines),
        suspicious=suspicious,
    )


def build_report(
    session: Session,
    settings: Settings,
    start: datetime,
    end: datetime,
    thresholds: AmlThresholds | None = None,
) -> AmlReport:
    """Large-value reports and suspicious cases of the payments completed in [start, end)."""
    return analyse(completed_transactions(session, start, end), settings, start, end, thresholds)


# ---------------------------------------------------------------- files

CSV_COLUMNS = (
    "case_id",
    "report",
    "typology",
    "subject_account",
    "direction",
    "local_day",
    "currency",
    "total_amount",
    "payments",
    "first_at",
    "last_at",
    "payment_ids",
    "amounts",
    "times",
    "metrics",
    "explanation_en",
    "explanation_zh",
)


def _cell(text: str) -> str:
    """Keep spreadsheets from running a cell as a formula (ids may come from outside)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def report_csv(report: AmlReport) -> str:
    """One row a case, large-value reports first; evidence lists are joined by ';'."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for case in [*report.large_value, *report.suspicious]:
        writer.writerow(
            [
                case.id,
                case.report,
                case.typology,
                _cell(case.subject_account),
                case.direction,
                case.local_day.isoformat() if case.local_day else "",
                case.currency,
                case.total_amount,
                len(case.transactions),
                case.first_at.isoformat(),
                case.last_at.isoformat(),
                _cell(";".join(case.payment_ids)),
                ";".join(str(t.amount) for t in case.transactions),
                ";".join(t.at.isoformat() for t in case.transactions),
                ";".join(f"{name}={value}" for name, value in sorted(case.metrics.items())),
                _cell(case.explanation_en),
                _cell(case.explanation_zh),
            ]
        )
    return buffer.getvalue()


def write_csv(report: AmlReport, path: Path) -> Path:
    """The CSV, UTF-8 with a byte-order mark so spreadsheet programs show the Chinese."""
    path.write_text(report_csv(report), encoding="utf-8-sig")
    return path


def write_json(report: AmlReport, path: Path) -> Path:
    """The whole report as JSON (UTF-8)."""
    path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return path


def file_stem(report: AmlReport) -> str:
    """``aml-report-FIRST-LAST``: the local calendar days the report covers."""
    first = report.period_start.astimezone(REPORTING_TIMEZONE).date()
    last = (report.period_end.astimezone(REPORTING_TIMEZONE) - timedelta(microseconds=1)).date()
    return f"aml-report-{first}-{last}"
