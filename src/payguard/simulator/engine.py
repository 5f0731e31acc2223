"""Drive the platform through the client SDK like a population of wallet users would.

Everything the simulator decides comes from one ``random.Random(seed)``, and time is
simulated (a fixed start, days of hours with a daily rhythm), so the same seed
produces the same CSV apart from the server-generated payment ids. The platform's
own clock is real time; ``sim_time`` is the behavioural time the risk issue trains on.

Fraud patterns, each labelled on every row it produces:

- ``account_takeover``: a victim's wallet is drained in a burst of p2p payments to a
  mule the victim never paid before, late at night; the mule then withdraws.
- ``mule_fan_in``: several victims pay the same mule within an hour; the mule cashes out.
- ``structuring``: one customer splits a large sum into withdrawals just below the
  50,000.00 CNY line, over consecutive days.
"""

from __future__ import annotations

import csv
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from payguard.client.sdk import PayguardClient, PayguardError, Payment

COLUMNS = (
    "sim_time",
    "step",
    "actor",
    "kind",
    "amount",
    "currency",
    "payer",
    "payee",
    "payment_id",
    "status",
    "http_status",
    "problem_code",
    "is_fraud",
    "fraud_pattern",
)
START = datetime(2026, 1, 1, tzinfo=UTC)
CURRENCY = "CNY"
PASSWORD = "simulated-customer-pw"  # noqa: S105 - simulated users only
# Share of a day's activity per hour (0-23): quiet nights, lunch and evening peaks.
HOUR_WEIGHTS = (
    0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.4, 0.9, 1.3, 1.2, 1.1, 1.4,
    1.8, 1.5, 1.1, 1.0, 1.1, 1.3, 1.7, 1.9, 1.8, 1.4, 0.9, 0.5,
)  # fmt: skip
EVENTS_PER_CUSTOMER_DAY = 3.0
STRUCTURING_LINE = 5_000_000  # 50,000.00 CNY in fen
KINDS = ("p2p", "merchant", "top_up", "withdrawal")
KIND_WEIGHTS = (0.45, 0.35, 0.1, 0.1)
# Median amounts in fen, for the lognormal draw of each kind.
MEDIANS = {"p2p": 8_000, "merchant": 3_500, "top_up": 50_000, "withdrawal": 30_000}


@dataclass
class Person:
    username: str
    client: PayguardClient
    customer_id: str
    wallet_id: str
    favourites: list[str] = field(default_factory=list)


@dataclass(order=True)
class Event:
    at: datetime
    order: int
    actor: str = field(compare=False)
    kind: str = field(compare=False)
    amount: int = field(compare=False)
    payee: str | None = field(compare=False, default=None)
    fraud_pattern: str = field(compare=False, default="")


@dataclass
class SimulationSummary:
    rows: int = 0
    fraud_rows: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    patterns: Counter[str] = field(default_factory=Counter)


def _amount(rng: random.Random, kind: str) -> int:
    value = rng.lognormvariate(math.log(MEDIANS[kind]), 1.0)
    return max(100, min(int(value), 2_000_000))


def _moment(rng: random.Random, day: int, hour: int) -> datetime:
    return START + timedelta(days=day, hours=hour, seconds=rng.randrange(3600))


def plan(rng: random.Random, usernames: list[str], merchants: list[str], days: int) -> list[Event]:
    """The whole simulated timeline, decided before any request is sent."""
    events: list[Event] = []
    order = 0

    def add(
        at: datetime,
        actor: str,
        kind: str,
        amount: int,
        payee: str | None = None,
        pattern: str = "",
    ) -> None:
        nonlocal order
        order += 1
        events.append(Event(at, order, actor, kind, amount, payee, pattern))

    count = len(usernames)
    shuffled = usernames[:]
    rng.shuffle(shuffled)
    fraud_size = max(1, count // 25)
    mules = shuffled[:fraud_size]
    victims = shuffled[fraud_size : 3 * fraud_size]
    structurers = shuffled[3 * fraud_size : 4 * fraud_size]
    ordinary = [name for name in usernames if name not in mules]
    favourites = {name: rng.sample(ordinary, k=min(3, len(ordinary))) for name in usernames}

    for name in usernames:  # everyone starts with money from the bank, before the first day
        onboarding = START - timedelta(seconds=rng.randrange(1, 3600))
        add(onboarding, name, "top_up", _amount(rng, "top_up") * 4)
    total_weight = sum(HOUR_WEIGHTS)
    for day in range(days):
        for hour, weight in enumerate(HOUR_WEIGHTS):
            expected = count * EVENTS_PER_CUSTOMER_DAY * weight / total_weight
            for _ in range(int(expected) + (1 if rng.random() < expected % 1 else 0)):
                actor = rng.choice(ordinary)
                kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
                payee: str | None = None
                if kind == "p2p":
                    options = [f for f in favourites[actor] if f != actor] or ordinary
                    payee = rng.choice(options)
                    if payee == actor:
                        continue
                elif kind == "merchant":
                    if not merchants:
                        continue
                    payee = rng.choice(merchants)
                add(_moment(rng, day, hour), actor, kind, _amount(rng, kind), payee)

    half = max(1, len(victims) // 2)
    for victim in victims[:half]:  # account takeover: a night-time drain to a new payee
        mule = rng.choice(mules)
        at = _moment(rng, rng.randrange(days), rng.choice((1, 2, 3)))
        for burst in range(rng.randint(3, 5)):
            add(
                at + timedelta(minutes=2 * burst),
                victim,
                "p2p",
                rng.randint(50_000, 200_000),
                mule,
                "account_takeover",
            )
        add(
            at + timedelta(minutes=15),
            mule,
            "withdrawal",
            rng.randint(100_000, 400_000),
            None,
            "account_takeover",
        )
    for mule in mules:  # fan-in then cash-out
        at = _moment(rng, rng.randrange(days), rng.randrange(10, 22))
        for index, sender in enumerate(victims[half:] or victims):
            add(
                at + timedelta(minutes=5 * index),
                sender,
                "p2p",
                rng.randint(20_000, 90_000),
                mule,
                "mule_fan_in",
            )
        add(
            at + timedelta(minutes=50),
            mule,
            "withdrawal",
            rng.randint(100_000, 300_000),
            None,
            "mule_fan_in",
        )
    for structurer in structurers:  # a large sum, then withdrawals just below the line
        add(
            START - timedelta(minutes=1),
            structurer,
            "top_up",
            4 * STRUCTURING_LINE,
            None,
            "structuring",
        )
        for day in range(min(days, 4)):
            add(
                _moment(rng, day, rng.randrange(10, 17)),
                structurer,
                "withdrawal",
                STRUCTURING_LINE - rng.randint(100, 90_000),
                None,
                "structuring",
            )
    events.sort()
    return events


def run_simulation(
    make_client: Callable[[], PayguardClient],
    staff: PayguardClient | None,
    *,
    checker: PayguardClient | None = None,
    customers: int,
    days: int,
    seed: int,
    out_path: Path,
    on_progress: Callable[[int, int], None] | None = None,
    read_code: Callable[[str], str] | None = None,
) -> SimulationSummary:
    """Register the population, play the planned timeline, write the labelled CSV.

    Every simulated customer binds a device and signs its payments. ``read_code`` reads
    the SMS code the platform sent to a phone (in-process runs read the message outbox);
    without it the simulated app enrols TOTP and answers step-up from its authenticator,
    which allows about two codes per customer per 30 seconds."""
    if customers < 4 or days < 1:
        raise ValueError("the simulation needs at least 4 customers and 1 day")
    rng = random.Random(seed)
    people: dict[str, Person] = {}
    for index in range(customers):
        username = f"sim{seed}_{index:04d}"
        client = make_client()
        phone = f"+8617{seed % 100:02d}{index:07d}"
        # Real-name data puts everyone at KYC tier 1; staff (maker and checker) raise it to 2.
        created = client.register(
            username,
            PASSWORD,
            f"Simulated {index}",
            phone=phone,
            legal_name=f"Simulated Person {index}",
            id_document_type="passport",
            id_number=f"SIM{seed % 10_000:04d}{index:06d}",
        )
        client.login(username, PASSWORD)
        _bind_device(client, phone, read_code)
        if staff is not None and checker is not None:
            # Four-eyes: one staff member asks, a second approves.
            asked = staff.request_kyc_tier(created["id"], 2, "simulated verification")
            checker.approve(asked["id"], "simulated check")
        people[username] = Person(username, client, created["id"], created["wallet_account_ids"][0])
    listed = (staff or next(iter(people.values())).client).merchants()
    names = {merchant["id"]: merchant["name"] for merchant in listed}
    if staff is not None and len(names) < 3:
        for name in ("Simulated Grocer", "Simulated Noodles", "Simulated Transit"):
            names[staff.create_merchant(name)["id"]] = name
    # Ordered by name, and written by name: server ids differ from run to run.
    merchants = sorted(names, key=lambda merchant_id: (names[merchant_id], merchant_id))
    events = plan(rng, sorted(people), merchants, days)

    summary = SimulationSummary()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for step, event in enumerate(events, start=1):
            row = _play(people, event)
            if event.kind == "merchant":
                row[4] = names.get(str(row[4]), row[4])
            writer.writerow(
                [
                    event.at.isoformat(),
                    step,
                    event.actor,
                    *row,
                    int(bool(event.fraud_pattern)),
                    event.fraud_pattern,
                ]
            )
            summary.rows += 1
            summary.statuses[str(row[6])] += 1
            if event.fraud_pattern:
                summary.fraud_rows += 1
                summary.patterns[event.fraud_pattern] += 1
            if on_progress:
                on_progress(step, len(events))
    return summary


def _bind_device(
    client: PayguardClient, phone: str, read_code: Callable[[str], str] | None
) -> None:
    """Register the simulated phone's key, and set how it answers step-up challenges."""
    if read_code is None:
        client.enrol_totp()
        client.register_device("simulated phone")
        return
    client.request_code("sms", "device")
    client.register_device("simulated phone", factor="otp", code=read_code(phone))

    def answer(problem: dict[str, Any]) -> tuple[str, str]:
        client.send_challenge_code(str(problem["challenge_id"]), "sms")
        return "sms", read_code(phone)

    client.step_up_handler = answer


def _play(people: dict[str, Person], event: Event) -> list[Any]:
    """Send one event; returns kind, amount, currency, payer, payee, id, status, http, code."""
    person = people[event.actor]
    client = person.client
    payer = "" if event.kind == "top_up" else event.actor
    payee = event.payee or ("bank" if event.kind == "withdrawal" else event.actor)
    try:
        if event.kind == "p2p":
            payment: Payment = client.pay_p2p(
                event.amount, payee_account_id=people[event.payee or ""].wallet_id
            )
        elif event.kind == "merchant":
            payment = client.pay_merchant(event.amount, event.payee or "")
        elif event.kind == "top_up":
            payer = "bank"
            payment = client.top_up(event.amount, "6222020200000000")
        else:
            payment = client.withdraw(event.amount, "6222020200000000")
    except PayguardError as error:
        return [
            event.kind,
            event.amount,
            CURRENCY,
            payer,
            payee,
            "",
            "refused",
            error.status,
            error.code,
        ]
    return [
        event.kind,
        event.amount,
        CURRENCY,
        payer,
        payee,
        payment.id,
        payment.status,
        client.last_status,
        payment.failure_code or "",
    ]
