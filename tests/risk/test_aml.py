"""AML reports: large-value lines by Beijing day, each suspicious typology found when
present and not when absent, the receipts they read, the files, the command and the API."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from payguard import cli
from payguard.db.engine import Database
from payguard.errors import ValidationProblem
from payguard.risk.aml import (
    AmlThresholds,
    Lines,
    Transaction,
    analyse,
    build_report,
    completed_transactions,
    find_cycles,
    find_fan_in,
    find_fan_out,
    find_pass_through,
    find_structuring,
    large_value_reports,
    period_bounds,
    report_csv,
    write_csv,
    write_json,
)
from payguard.risk.aml_schemas import AmlReport
from payguard.risk.models import RiskReceipt
from payguard.settings import Settings, get_settings
from tests.factories import create_merchant, pay, register, staff_auth, top_up

LINES = Lines(cash=5_000_000, transfer_person=50_000_000, transfer_entity=200_000_000)
DEFAULTS = AmlThresholds()
# 09:00 in Beijing on Monday 2 March 2026.
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
_ids = itertools.count(1)


def tx(
    payer: str | None,
    payee: str | None,
    amount: int,
    at: datetime,
    kind: str = "p2p",
    *,
    currency: str = "CNY",
) -> Transaction:
    number = next(_ids)
    return Transaction(
        id=f"dec_{number}",
        payment_id=f"pay_{number}",
        kind=kind,
        payer=payer,
        payee=payee,
        amount=amount,
        currency=currency,
        at=at,
        payee_is_entity=kind == "merchant",
        payer_is_entity=kind == "refund",
    )


def hours(count: float) -> timedelta:
    return timedelta(hours=count)


# ---------------------------------------------------------------- large-value reports


def test_a_single_top_up_at_the_cash_line_is_reported_and_one_fen_less_is_not() -> None:
    at_line = tx(None, "acc_a", 5_000_000, T0, "top_up")
    below = tx(None, "acc_b", 4_999_999, T0, "top_up")
    cases = large_value_reports([at_line, below], LINES)
    assert [(c.typology, c.subject_account, c.direction) for c in cases] == [
        ("large_cash", "acc_a", "in")
    ]
    case = cases[0]
    assert case.report == "large_value" and case.local_day == date(2026, 3, 2)
    assert case.payment_ids == [at_line.payment_id] and case.total_amount == 5_000_000
    assert case.metrics == {"line": 5_000_000, "payments": 1}
    assert "50,000.00 CNY" in case.explanation_en and "art. 5(1)" in case.explanation_en
    assert "第五条第（一）项" in case.explanation_zh


def test_cash_is_summed_over_the_beijing_calendar_day_not_the_utc_day() -> None:
    # 2026-03-01 17:00 UTC and 2026-03-02 10:00 UTC are both 2 March in Beijing.
    same_local_day = [
        tx("acc_a", None, 3_000_000, datetime(2026, 3, 1, 17, tzinfo=UTC), "withdrawal"),
        tx("acc_a", None, 2_000_000, datetime(2026, 3, 2, 10, tzinfo=UTC), "withdrawal"),
    ]
    cases = large_value_reports(same_local_day, LINES)
    assert len(cases) == 1 and cases[0].local_day == date(2026, 3, 2)
    assert cases[0].direction == "out" and cases[0].total_amount == 5_000_000
    assert cases[0].payment_ids == [t.payment_id for t in same_local_day]
    # 15:00 and 17:00 UTC on 1 March: one UTC day, two Beijing days (23:00 and 01:00).
    split_by_midnight = [
        tx("acc_b", None, 3_000_000, datetime(2026, 3, 1, 15, tzinfo=UTC), "withdrawal"),
        tx("acc_b", None, 3_000_000, datetime(2026, 3, 1, 17, tzinfo=UTC), "withdrawal"),
    ]
    assert large_value_reports(split_by_midnight, LINES) == []


def test_money_in_and_money_out_are_summed_apart() -> None:
    both_ways = [
        tx(None, "acc_a", 3_000_000, T0, "top_up"),
        tx("acc_a", None, 3_000_000, T0 + hours(1), "withdrawal"),
    ]
    assert large_value_reports(both_ways, LINES) == []


def test_transfers_use_the_natural_person_or_the_entity_line_of_each_party() -> None:
    big_p2p = tx("acc_alice", "acc_bob", 50_000_000, T0)
    small_p2p = tx("acc_carol", "acc_dan", 49_999_999, T0)
    cases = large_value_reports([big_p2p, small_p2p], LINES)
    assert {(c.subject_account, c.direction, c.typology) for c in cases} == {
        ("acc_alice", "out", "large_transfer_person"),
        ("acc_bob", "in", "large_transfer_person"),
    }
    # A merchant receives 1.2 + 0.9 million in a day: the entity line (2 million) is met on
    # the merchant's side; each payer's own 500,000 line is met by the first payer only.
    purchases = [
        tx("acc_erin", "acc_shop", 120_000_000, T0, "merchant"),
        tx("acc_fay", "acc_shop", 40_000_000, T0 + hours(2), "merchant"),
        tx("acc_gus", "acc_shop", 40_000_000, T0 + hours(3), "merchant"),
    ]
    cases = large_value_reports(purchases, LINES)
    assert {(c.subject_account, c.direction, c.typology) for c in cases} == {
        ("acc_shop", "in", "large_transfer_entity"),
        ("acc_erin", "out", "large_transfer_person"),
    }
    shop = next(c for c in cases if c.subject_account == "acc_shop")
    assert shop.total_amount == 200_000_000 and len(shop.payment_ids) == 3
    assert shop.metrics["line"] == 200_000_000 and "art. 5(2)" in shop.explanation_en
    # Below the entity line, the merchant has nothing to report.
    assert not any(
        c.subject_account == "acc_shop" for c in large_value_reports(purchases[:2], LINES)
    )


def test_other_currencies_are_not_measured_against_the_cny_lines() -> None:
    dollars = tx(None, "acc_a", 9_000_000, T0, "top_up", currency="USD")
    assert large_value_reports([dollars], LINES) == []


# ---------------------------------------------------------------- structuring


def test_structuring_just_under_the_cash_line_across_midnight_is_found() -> None:
    # 23:00 and 01:00 Beijing: no single day reaches CNY 50,000, together they do.
    night = [
        tx(None, "acc_a", 4_800_000, datetime(2026, 3, 1, 15, tzinfo=UTC), "top_up"),
        tx(None, "acc_a", 4_900_000, datetime(2026, 3, 1, 17, tzinfo=UTC), "top_up"),
    ]
    assert large_value_reports(night, LINES) == []
    cases = find_structuring(night, LINES, DEFAULTS)
    assert len(cases) == 1
    case = cases[0]
    assert (case.typology, case.subject_account, case.direction) == ("structuring", "acc_a", "in")
    assert case.total_amount == 9_700_000 and case.payment_ids == [t.payment_id for t in night]
    assert case.metrics["window_seconds"] == 86_400 and case.metrics["line"] == 5_000_000
    assert "structuring" in case.explanation_en and "拆分" in case.explanation_zh


def test_structuring_over_seven_days_and_its_thresholds() -> None:
    spread = [
        tx("acc_a", "acc_b", 46_000_000, T0),
        tx("acc_a", "acc_c", 47_000_000, T0 + timedelta(days=3)),
    ]
    cases = find_structuring(spread, LINES, DEFAULTS)
    assert len(cases) == 1 and cases[0].metrics["window_seconds"] == 7 * 86_400
    only_a_day = AmlThresholds(structuring_windows=(hours(24),))
    assert find_structuring(spread, LINES, only_a_day) == []
    # Under 90 % of the line, or at the line itself, is not "just under" it.
    far_below = [tx("acc_a", "acc_b", 40_000_000, T0 + hours(i)) for i in range(3)]
    at_line = [tx("acc_a", "acc_b", 50_000_000, T0 + hours(i)) for i in range(2)]
    assert find_structuring(far_below + at_line, LINES, DEFAULTS) == []
    # One near-line payment alone is no pattern; three are needed when asked for.
    assert find_structuring(spread[:1], LINES, DEFAULTS) == []
    assert find_structuring(spread, LINES, AmlThresholds(structuring_min_count=3)) == []


# ---------------------------------------------------------------- fan-in, fan-out


def test_fan_in_from_ten_distinct_payers_within_a_day() -> None:
    payments = [tx(f"acc_p{i}", "acc_mule", 150_000, T0 + hours(i)) for i in range(10)]
    cases = find_fan_in(payments, DEFAULTS)
    assert len(cases) == 1
    case = cases[0]
    assert (case.typology, case.subject_account, case.direction) == ("fan_in", "acc_mule", "in")
    assert case.metrics["distinct_payers"] == 10 and case.total_amount == 1_500_000
    assert len(case.payment_ids) == 10
    assert "10 distinct payers" in case.explanation_en
    # Nine payers, ten spread over three days, or ten small ones: nothing.
    assert find_fan_in(payments[:9], DEFAULTS) == []
    spread = [tx(f"acc_p{i}", "acc_mule", 150_000, T0 + hours(8 * i)) for i in range(10)]
    assert find_fan_in(spread, DEFAULTS) == []
    small = [tx(f"acc_p{i}", "acc_mule", 1_000, T0 + hours(i)) for i in range(10)]
    assert find_fan_in(small, DEFAULTS) == []
    # One payer ten times is not ten payers.
    repeated = [tx("acc_p0", "acc_mule", 150_000, T0 + hours(i)) for i in range(10)]
    assert find_fan_in(repeated, DEFAULTS) == []


def test_fan_in_to_a_merchant_is_its_business_unless_entities_are_included() -> None:
    sales = [tx(f"acc_p{i}", "acc_shop", 150_000, T0 + hours(i), "merchant") for i in range(12)]
    assert find_fan_in(sales, DEFAULTS) == []
    assert len(find_fan_in(sales, AmlThresholds(include_entities=True))) == 1


def test_fan_out_to_ten_distinct_payees_within_a_day() -> None:
    payments = [tx("acc_boss", f"acc_q{i}", 120_000, T0 + hours(i)) for i in range(11)]
    cases = find_fan_out(payments, DEFAULTS)
    assert len(cases) == 1
    case = cases[0]
    assert (case.typology, case.subject_account, case.direction) == ("fan_out", "acc_boss", "out")
    assert case.metrics["distinct_payees"] == 11 and case.total_amount == 1_320_000
    assert find_fan_out(payments[:9], DEFAULTS) == []
    assert find_fan_out(payments, AmlThresholds(fan_out_min_payees=12)) == []
    assert find_fan_out(payments, AmlThresholds(fan_out_window=hours(5))) == []
    shopping = [tx("acc_boss", f"acc_s{i}", 120_000, T0 + hours(i), "merchant") for i in range(11)]
    assert find_fan_out(shopping, DEFAULTS) == []


def test_top_ups_from_many_cards_and_withdrawals_to_many_cards_fan_in_and_out() -> None:
    def card(transaction: Transaction, token: str) -> Transaction:
        return replace(transaction, bank_token=token)

    cards_in = [
        card(tx(None, "acc_w", 200_000, T0 + hours(i), "top_up"), f"tok{i}") for i in range(10)
    ]
    fan_in = find_fan_in(cards_in, DEFAULTS)
    assert len(fan_in) == 1 and fan_in[0].metrics["distinct_payers"] == 10
    assert "bank cards" in fan_in[0].explanation_en
    one_card = [card(t, "tok0") for t in cards_in]
    assert find_fan_in(one_card, DEFAULTS) == []

    cards_out = [
        card(tx("acc_w", None, 200_000, T0 + hours(i), "withdrawal"), f"tok{i}") for i in range(10)
    ]
    fan_out = find_fan_out(cards_out, DEFAULTS)
    assert len(fan_out) == 1 and fan_out[0].metrics["distinct_payees"] == 10
    assert find_fan_in(cards_out, DEFAULTS) == [] and find_fan_out(cards_in, DEFAULTS) == []


# ---------------------------------------------------------------- rapid pass-through


def test_rapid_pass_through_in_then_most_of_it_out_within_a_day() -> None:
    inflow = tx(None, "acc_mid", 2_000_000, T0, "top_up")
    outs = [
        tx("acc_mid", "acc_x", 1_000_000, T0 + hours(2)),
        tx("acc_mid", None, 700_000, T0 + hours(5), "withdrawal"),
    ]
    cases = find_pass_through([inflow, *outs], DEFAULTS)
    assert len(cases) == 1
    case = cases[0]
    assert (case.typology, case.subject_account, case.direction) == (
        "rapid_pass_through",
        "acc_mid",
        "through",
    )
    assert case.metrics["amount_in"] == 2_000_000 and case.metrics["amount_out"] == 1_700_000
    assert case.metrics["percent_out"] == 85 and case.total_amount == 2_000_000
    assert case.payment_ids == [inflow.payment_id, *(t.payment_id for t in outs)]
    assert "85%" in case.explanation_en and "快进快出" in case.explanation_zh


def test_no_pass_through_when_little_leaves_or_it_leaves_late_or_is_small() -> None:
    inflow = tx("acc_src", "acc_mid", 2_000_000, T0)
    too_little = [inflow, tx("acc_mid", "acc_x", 1_500_000, T0 + hours(1))]
    assert find_pass_through(too_little, DEFAULTS) == []
    too_late = [inflow, tx("acc_mid", "acc_x", 2_000_000, T0 + hours(30))]
    assert find_pass_through(too_late, DEFAULTS) == []
    before = [tx("acc_mid", "acc_x", 2_000_000, T0 - hours(1)), inflow]
    assert find_pass_through(before, DEFAULTS) == []
    small_in = tx("acc_src", "acc_mid", 500_000, T0)
    small = [small_in, tx("acc_mid", "acc_x", 500_000, T0 + hours(1))]
    assert find_pass_through(small, DEFAULTS) == []
    assert len(find_pass_through(small, AmlThresholds(pass_through_min_amount=100_000))) == 1


# ---------------------------------------------------------------- cycles


def test_a_three_account_cycle_within_the_window_is_one_case() -> None:
    ring = [
        tx("acc_a", "acc_b", 1_000_000, T0),
        tx("acc_b", "acc_c", 950_000, T0 + hours(5)),
        tx("acc_c", "acc_a", 900_000, T0 + hours(30)),
    ]
    noise = [tx("acc_c", "acc_d", 1_000_000, T0 + hours(6))]
    cases = find_cycles([*ring, *noise], DEFAULTS)
    assert len(cases) == 1
    case = cases[0]
    assert (case.typology, case.subject_account, case.direction) == ("cycle", "acc_a", "around")
    assert case.payment_ids == [t.payment_id for t in ring]
    assert case.metrics["length"] == 3 and case.metrics["rounds"] == 1
    assert case.total_amount == 1_000_000 and case.metrics["hops_total"] == 2_850_000
    assert "acc_a → acc_b → acc_c → acc_a" in case.explanation_en


def test_a_cycle_is_found_from_whichever_account_sent_first() -> None:
    ring = [
        tx("acc_c", "acc_a", 1_000_000, T0),
        tx("acc_a", "acc_b", 1_000_000, T0 + hours(1)),
        tx("acc_b", "acc_c", 1_000_000, T0 + hours(2)),
    ]
    cases = find_cycles(ring, DEFAULTS)
    assert len(cases) == 1 and cases[0].subject_account == "acc_c"


def test_two_account_round_trips_are_one_case_with_their_rounds() -> None:
    trips = [
        tx("acc_a", "acc_b", 1_000_000, T0),
        tx("acc_b", "acc_a", 1_000_000, T0 + hours(1)),
        tx("acc_a", "acc_b", 1_000_000, T0 + hours(2)),
        tx("acc_b", "acc_a", 1_000_000, T0 + hours(3)),
    ]
    cases = find_cycles(trips, DEFAULTS)
    assert len(cases) == 1
    assert cases[0].metrics["length"] == 2 and cases[0].metrics["rounds"] == 2
    assert cases[0].metrics["cycles"] == 4 and cases[0].total_amount == 2_000_000
    assert len(cases[0].payment_ids) == 4


def test_no_cycle_when_open_late_small_too_long_or_not_coming_back() -> None:
    chain = [
        tx("acc_a", "acc_b", 1_000_000, T0),
        tx("acc_b", "acc_c", 1_000_000, T0 + hours(1)),
        tx("acc_c", "acc_d", 1_000_000, T0 + hours(2)),
    ]
    assert find_cycles(chain, DEFAULTS) == []
    late = [
        tx("acc_a", "acc_b", 1_000_000, T0),
        tx("acc_b", "acc_a", 1_000_000, T0 + hours(73)),
    ]
    assert find_cycles(late, DEFAULTS) == []
    small = [tx("acc_a", "acc_b", 10_000, T0), tx("acc_b", "acc_a", 10_000, T0 + hours(1))]
    assert find_cycles(small, DEFAULTS) == []
    little_back = [
        tx("acc_a", "acc_b", 1_000_000, T0),
        tx("acc_b", "acc_a", 600_000, T0 + hours(1)),
    ]
    assert find_cycles(little_back, DEFAULTS) == []
    names = [f"acc_{letter}" for letter in "abcdef"]
    six = [
        tx(names[i], names[(i + 1) % 6], 1_000_000, T0 + hours(i)) for i in range(6)
    ]  # a ring of six: longer than the search goes
    assert find_cycles(six, DEFAULTS) == []
    assert len(find_cycles(six, AmlThresholds(cycle_max_length=6))) == 1


def test_the_cycle_search_is_bounded_and_says_so() -> None:
    ring = [
        tx("acc_a", "acc_b", 1_000_000, T0),
        tx("acc_b", "acc_c", 1_000_000, T0 + hours(1)),
        tx("acc_c", "acc_a", 1_000_000, T0 + hours(2)),
    ]
    notes: list[str] = []
    assert find_cycles(ring, AmlThresholds(cycle_search_budget=1), notes) == []
    assert len(notes) == 1 and "cycle_search_budget" in notes[0]
    enough: list[str] = []
    assert len(find_cycles(ring, AmlThresholds(cycle_search_budget=3), enough)) == 1
    assert enough == []


# ---------------------------------------------------------------- the report


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="percentage"):
        AmlThresholds(near_line_percent=0)
    with pytest.raises(ValueError, match="cycle lengths"):
        AmlThresholds(cycle_min_length=1)
    with pytest.raises(ValueError, match="window"):
        AmlThresholds(fan_in_window=timedelta(0))
    assert DEFAULTS.as_record()["structuring_windows"] == [86_400, 604_800]


def test_period_bounds_are_beijing_days_inclusive() -> None:
    start, end = period_bounds(date(2026, 3, 1), date(2026, 3, 31))
    assert start == datetime(2026, 2, 28, 16, tzinfo=UTC)
    assert end == datetime(2026, 3, 31, 16, tzinfo=UTC)
    with pytest.raises(ValidationProblem, match="after it ends"):
        period_bounds(date(2026, 3, 2), date(2026, 3, 1))
    with pytest.raises(ValidationProblem, match="at most"):
        period_bounds(date(2025, 1, 1), date(2026, 3, 1))


def mixed_transactions() -> list[Transaction]:
    return [
        tx(None, "acc_a", 6_000_000, T0, "top_up"),
        tx("acc_a", "acc_b", 1_000_000, T0 + hours(1)),
        tx("acc_b", "acc_a", 900_000, T0 + hours(2)),
        tx("acc_x", "acc_y", 100, T0, currency="USD"),
    ]


def test_the_report_and_its_files(tmp_path: Path) -> None:
    settings = Settings(env="test", var_dir=tmp_path)
    start, end = period_bounds(date(2026, 3, 2), date(2026, 3, 2))
    transactions = mixed_transactions()
    report = analyse(transactions, settings, start, end)
    assert report.transactions == 4 and report.unassessed_currencies == {"USD": 1}
    assert [line.name for line in report.lines] == ["cash", "transfer_person", "transfer_entity"]
    cash = report.lines[0]
    assert cash.amount == 5_000_000 and cash.default == 5_000_000
    assert cash.setting == "PAYGUARD_AML_LARGE_CASH" and "art. 5(1)" in cash.basis_en
    assert [case.typology for case in report.large_value] == ["large_cash"]
    typologies = {case.typology for case in report.suspicious}
    assert typologies == {"cycle", "rapid_pass_through"}
    # The same evidence gives the same case ids in every run; other evidence, other ids.
    ids = [case.id for case in [*report.large_value, *report.suspicious]]
    again = analyse(transactions, settings, start, end)
    assert [case.id for case in [*again.large_value, *again.suspicious]] == ids
    assert len(set(ids)) == 3
    other = analyse(mixed_transactions(), settings, start, end)
    assert not {case.id for case in [*other.large_value, *other.suspicious]} & set(ids)

    write_csv(report, tmp_path / "report.csv")
    with (tmp_path / "report.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and rows[0]["typology"] == "large_cash"
    cycle = next(row for row in rows if row["typology"] == "cycle")
    case = next(c for c in report.suspicious if c.typology == "cycle")
    assert cycle["payment_ids"] == ";".join(case.payment_ids) and ";" in cycle["payment_ids"]
    assert cycle["amounts"] == "1000000;900000" and cycle["case_id"] == case.id
    assert "循环" in cycle["explanation_zh"]

    write_json(report, tmp_path / "report.json")
    loaded = AmlReport.model_validate_json((tmp_path / "report.json").read_text("utf-8"))
    assert loaded == report


def test_csv_cells_never_start_a_formula() -> None:
    settings = Settings(env="test")
    hostile = [tx(None, "=HYPERLINK(1)", 6_000_000, T0, "top_up")]
    start, end = period_bounds(date(2026, 3, 2), date(2026, 3, 2))
    text = report_csv(analyse(hostile, settings, start, end))
    rows = list(csv.DictReader(text.splitlines()))
    assert rows[0]["subject_account"] == "'=HYPERLINK(1)"


# ---------------------------------------------------------------- from the database


def receipt(
    *,
    source: str = "api",
    kind: str = "p2p",
    payer: str | None,
    payee: str | None,
    amount: int,
    at: datetime,
    action: str = "allow",
    payment_id: str | None = None,
    context: dict[str, Any] | None = None,
) -> RiskReceipt:
    return RiskReceipt(
        id=f"dec_t{next(_ids)}",
        payment_id=payment_id,
        source=source,
        customer_id=None,
        kind=kind,
        payer=payer,
        payee=payee,
        amount=amount,
        currency="CNY",
        at=at,
        context=context or {},
        features={},
        action=action,
        score=0,
        reasons=[],
        rule_hits=[],
        ruleset_version="test",
        model_version="none",
        model_score=None,
        contributions=None,
        elapsed_ms=0.0,
        fallback=False,
    )


def outside_receipts() -> list[RiskReceipt]:
    """An outside system's decisions on 2 March 2026 (Beijing), and some that do not count."""
    return [
        receipt(payer="bx:1", payee="bx:2", amount=60_000_000, at=T0, context={"payment_id": "r1"}),
        receipt(payer="bx:3", payee="bx:4", amount=70_000_000, at=T0, action="block"),
        # Challenged first, allowed on the retry: one payment.
        receipt(
            payer="bx:5",
            payee="bx:6",
            amount=1_000,
            at=T0,
            action="challenge",
            context={"payment_id": "r3"},
        ),
        receipt(
            payer="bx:5",
            payee="bx:6",
            amount=1_000,
            at=T0 + hours(1),
            context={"payment_id": "r3"},
        ),
        receipt(
            kind="merchant",
            payer="bx:7",
            payee="bx:shop",
            amount=5_000,
            at=T0,
            context={"payment_id": "r4", "payee_kind": "merchant"},
        ),
        # Blocked on the retry: the newest decision stands.
        receipt(payer="bx:8", payee="bx:9", amount=2_000, at=T0, context={"payment_id": "r5"}),
        receipt(
            payer="bx:8",
            payee="bx:9",
            amount=2_000,
            at=T0 + hours(1),
            action="block",
            context={"payment_id": "r5"},
        ),
        # This platform's payment that the payments domain does not know: not completed.
        receipt(
            source="pipeline",
            payer="acc_1",
            payee="acc_2",
            amount=9,
            at=T0,
            payment_id="pay_unknown",
        ),
        # Outside the period.
        receipt(payer="bx:1", payee="bx:2", amount=60_000_000, at=T0 + timedelta(days=2)),
    ]


def test_completed_transactions_keep_what_went_through(db: Database) -> None:
    db.transact(lambda session: session.add_all(outside_receipts()))
    start, end = period_bounds(date(2026, 3, 2), date(2026, 3, 2))
    with db.read() as session:
        found = completed_transactions(session, start, end)
    assert [t.payment_id for t in found] == ["r1", "r4", "r3"]
    assert all(t.at.tzinfo is not None for t in found)
    shop = next(t for t in found if t.payment_id == "r4")
    assert shop.payee_is_entity and shop.kind == "merchant"
    assert next(t for t in found if t.payment_id == "r3").at == T0 + hours(1)


def test_payments_made_on_the_platform_count_once_confirmed(
    client: TestClient, settings: Settings, db: Database
) -> None:
    alice, _bob = register(client, "alice"), register(client, "bob")
    topped = top_up(client, alice, 100_000)
    p2p = pay(client, alice, kind="p2p", amount=12_345, payee_username="bob").json()
    shop = create_merchant(client, settings, "Tea House")
    bought = pay(client, alice, kind="merchant", amount=2_000, merchant_id=shop["id"]).json()
    made = {payment["id"]: payment for payment in (topped, p2p, bought)}
    assert {payment["status"] for payment in made.values()} == {"confirmed"}

    now = datetime.now(UTC)
    with db.read() as session:
        found = completed_transactions(session, now - hours(1), now + hours(1))
        report = build_report(session, settings, now - hours(1), now + hours(1))
    assert sorted(t.payment_id for t in found) == sorted(made)
    by_id = {t.payment_id: t for t in found}
    assert by_id[topped["id"]].kind == "top_up" and by_id[topped["id"]].payer is None
    assert by_id[p2p["id"]].payer == alice.wallet_id and not by_id[p2p["id"]].payee_is_entity
    assert by_id[bought["id"]].payee == shop["account_id"] and by_id[bought["id"]].payee_is_entity
    assert report.transactions == 3 and report.large_value == [] and report.suspicious == []


def test_the_report_from_the_database(db: Database, settings: Settings) -> None:
    db.transact(lambda session: session.add_all(outside_receipts()))
    start, end = period_bounds(date(2026, 3, 2), date(2026, 3, 2))
    with db.read() as session:
        report = build_report(session, settings, start, end)
    assert report.transactions == 3
    assert {(c.subject_account, c.direction) for c in report.large_value} == {
        ("bx:1", "out"),
        ("bx:2", "in"),
    }
    assert all(c.payment_ids == ["r1"] for c in report.large_value)


# ---------------------------------------------------------------- the API


@pytest.fixture
def aml_client(client: TestClient) -> TestClient:
    return client


def test_the_report_over_http(aml_client: TestClient, settings: Settings, db: Database) -> None:
    db.transact(lambda session: session.add_all(outside_receipts()))
    auth = staff_auth(settings, "compliance")
    period = {"from": "2026-03-02", "to": "2026-03-02"}
    reply = aml_client.get("/v1/aml/report", params=period, headers=auth)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert body["transactions"] == 3 and len(body["large_value"]) == 2
    assert body["period_start"].startswith("2026-03-01T16:00")

    as_csv = aml_client.get("/v1/aml/report", params={**period, "format": "csv"}, headers=auth)
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.headers["content-disposition"] == (
        'attachment; filename="aml-report-2026-03-02-2026-03-02.csv"'
    )
    rows = list(csv.DictReader(as_csv.text.splitlines()))
    assert len(rows) == 2 and {row["payment_ids"] for row in rows} == {"r1"}


def test_the_report_api_refuses_bad_periods_and_the_wrong_people(
    aml_client: TestClient, settings: Settings
) -> None:
    auth = staff_auth(settings, "compliance")
    backwards = aml_client.get(
        "/v1/aml/report", params={"from": "2026-03-02", "to": "2026-03-01"}, headers=auth
    )
    assert backwards.status_code == 422 and "after it ends" in backwards.json()["detail"]
    not_a_date = aml_client.get(
        "/v1/aml/report", params={"from": "2026-13-40", "to": "2026-03-01"}, headers=auth
    )
    assert not_a_date.status_code == 422
    assert not_a_date.headers["content-type"].startswith("application/problem+json")
    period = {"from": "2026-03-01", "to": "2026-03-01"}
    assert aml_client.get("/v1/aml/report", params=period).status_code == 401
    analyst = staff_auth(settings, "risk_analyst")
    assert aml_client.get("/v1/aml/report", params=period, headers=analyst).status_code == 403
    customer = register(aml_client, "carol", device=False)
    assert aml_client.get("/v1/aml/report", params=period, headers=customer.auth).status_code == 403


# ---------------------------------------------------------------- the command

runner = CliRunner()


@pytest.fixture
def cli_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'var' / 'payguard.db'}"
    monkeypatch.setenv("PAYGUARD_DATABASE_URL", url)
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    upgraded = runner.invoke(cli.app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    database = Database(url)
    yield database
    database.dispose()
    get_settings.cache_clear()


def test_the_command_writes_csv_and_json(cli_database: Database, tmp_path: Path) -> None:
    cli_database.transact(lambda session: session.add_all(outside_receipts()))
    out = tmp_path / "reports"
    result = runner.invoke(
        cli.app, ["aml", "report", "--from", "2026-03-02", "--to", "2026-03-02", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "large_transfer_person" in result.output and "1,200,000.00 CNY" in result.output
    stem = out / "aml-report-2026-03-02-2026-03-02"
    rows = list(csv.DictReader(stem.with_suffix(".csv").read_text("utf-8-sig").splitlines()))
    assert len(rows) == 2 and rows[0]["payment_ids"] == "r1"
    document = json.loads(stem.with_suffix(".json").read_text("utf-8"))
    assert document["transactions"] == 3 and len(document["large_value"]) == 2

    only_json = tmp_path / "only-json"
    result = runner.invoke(
        cli.app,
        [
            "aml",
            "report",
            "--from",
            "2026-03-01",
            "--to",
            "2026-03-03",
            "--out",
            str(only_json),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert [path.name for path in only_json.iterdir()] == ["aml-report-2026-03-01-2026-03-03.json"]


@pytest.mark.parametrize(
    ("first", "last", "extra", "message"),
    [
        ("2026-02-30", "2026-03-01", [], "YYYY-MM-DD"),
        ("yesterday", "2026-03-01", [], "YYYY-MM-DD"),
        ("2026-03-02", "2026-03-01", [], "after it ends"),
        ("2026-03-01", "2026-03-01", ["--format", "pdf"], "pdf"),
    ],
)
def test_the_command_refuses_bad_input_without_a_traceback(
    cli_database: Database, tmp_path: Path, first: str, last: str, extra: list[str], message: str
) -> None:
    out = tmp_path / "reports"
    result = runner.invoke(
        cli.app,
        ["aml", "report", "--from", first, "--to", last, "--out", str(out), *extra],
    )
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()
