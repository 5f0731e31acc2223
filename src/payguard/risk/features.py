"""The one feature definition, used online (every assessment) and in training.

:class:`FeatureComputer` turns :class:`PaymentFacts` into the feature dictionary that rules
and the model read, using a counter store for velocity and the payer's habits, then
:meth:`FeatureComputer.observe` records the payment in that store. Training replays a
labelled history through a fresh computer in time order, calling ``compute`` then
``observe`` for each row exactly as the engine does, so what a model learned from is
what it is served (no training/serving skew).

Amounts are integer minor units. Durations that are unknown are ``-1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from payguard.risk.counters import (
    WINDOWS,
    CounterStore,
    ReadPlan,
    WritePlan,
    percentile,
)

FeatureType = Literal["int", "double", "bool", "string"]
OUTGOING = frozenset({"p2p", "merchant", "withdrawal"})
LIST_SUBJECTS = ("payer", "payee", "device", "ip", "phone")


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    type: FeatureType
    description: str

    @property
    def numeric(self) -> bool:
        return self.type != "string"


def _velocity_specs() -> list[FeatureSpec]:
    specs = []
    subjects = {
        "payer": "payments made by the payer",
        "payee": "payments received by the payee account",
        "device": "payments signed on the device",
        "ip": "payments from the IP address",
    }
    for subject, what in subjects.items():
        for window in WINDOWS:
            specs.append(FeatureSpec(f"{subject}_count_{window}", "int", f"{what}, last {window}"))
            specs.append(
                FeatureSpec(f"{subject}_sum_{window}", "int", f"amount of {what}, last {window}")
            )
    return specs


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("amount", "int", "amount of this payment, minor units"),
    FeatureSpec("kind", "string", "p2p | merchant | top_up | withdrawal"),
    FeatureSpec("channel", "string", "api | app | web | external system's channel"),
    FeatureSpec("currency", "string", "ISO 4217 code"),
    FeatureSpec("is_p2p", "bool", "a person-to-person transfer"),
    FeatureSpec("is_merchant", "bool", "a payment to a merchant"),
    FeatureSpec("is_withdrawal", "bool", "money out to a bank card or account"),
    FeatureSpec("is_top_up", "bool", "money in from a bank card or account"),
    FeatureSpec("hour", "int", "local hour of day (risk_timezone), 0-23"),
    FeatureSpec("is_night", "bool", "local time between 00:00 and 06:00"),
    FeatureSpec("kyc_tier", "int", "payer's KYC tier (0-3; -1 unknown)"),
    FeatureSpec("amount_to_tier_limit", "double", "amount / the tier's per-payment limit"),
    *_velocity_specs(),
    FeatureSpec("payer_distinct_payees_1h", "int", "distinct payees of the payer, last 1h"),
    FeatureSpec("payer_distinct_payees_24h", "int", "distinct payees of the payer, last 24h"),
    FeatureSpec("payer_distinct_payees_7d", "int", "distinct payees of the payer, last 7d"),
    FeatureSpec("payee_distinct_payers_1h", "int", "distinct payers into the payee, last 1h"),
    FeatureSpec("payee_distinct_payers_24h", "int", "distinct payers into the payee, last 24h"),
    FeatureSpec("device_distinct_accounts_24h", "int", "accounts paying from the device, 24h"),
    FeatureSpec("device_distinct_accounts_7d", "int", "accounts paying from the device, 7d"),
    FeatureSpec("card_distinct_accounts_7d", "int", "accounts using the same bank card, 7d"),
    FeatureSpec("payer_inflow_sum_1h", "int", "money into the payer's account, last 1h"),
    FeatureSpec("payer_inflow_sum_24h", "int", "money into the payer's account, last 24h"),
    FeatureSpec("minutes_since_inflow", "double", "minutes since money last came in (-1 never)"),
    FeatureSpec(
        "pass_through_ratio_24h",
        "double",
        "(money out in 24h incl. this) / money in over 24h; 0 without inflow",
    ),
    FeatureSpec("payee_new", "bool", "the payer has not paid this payee in 180 days"),
    FeatureSpec("device_known", "bool", "the payment came from a registered device"),
    FeatureSpec("device_new", "bool", "the device has not made a payment before"),
    FeatureSpec("device_age_hours", "double", "hours since the device was registered (-1)"),
    FeatureSpec("session_age_minutes", "double", "minutes since the session began (-1)"),
    FeatureSpec(
        "minutes_since_second_factor", "double", "minutes since a second factor passed (-1)"
    ),
    FeatureSpec("failed_logins_1h", "int", "failed logins to the payer's account, last hour"),
    FeatureSpec(
        "password_changed_minutes", "double", "minutes since the password changed (-1 never)"
    ),
    FeatureSpec("payer_history_count", "int", "past payments remembered for the payer (≤200)"),
    FeatureSpec("amount_to_p95", "double", "amount / the payer's 95th percentile (0: <5 past)"),
    FeatureSpec("hour_share", "double", "payer's past payments within ±1 h of now (-1: <10)"),
    FeatureSpec("ip_changed", "bool", "the IP differs from the payer's previous one"),
    FeatureSpec("geo_distance_km", "double", "distance from the previous position (-1)"),
    FeatureSpec("near_threshold", "bool", "amount within 90-100 % of the large-value line"),
    FeatureSpec("payer_near_threshold_24h", "int", "earlier near-line payments, last 24h"),
    FeatureSpec("payer_near_threshold_7d", "int", "earlier near-line payments, last 7d"),
    FeatureSpec("list_payer", "string", "list of the payer account: block|watch|allow|''"),
    FeatureSpec("list_payee", "string", "list of the payee account or card"),
    FeatureSpec("list_device", "string", "list of the device"),
    FeatureSpec("list_ip", "string", "list of the IP (exact or CIDR range)"),
    FeatureSpec("list_phone", "string", "list of the payer's phone"),
    FeatureSpec("listed_block", "bool", "any subject on the block list"),
    FeatureSpec("listed_watch", "bool", "any subject on the watch list"),
    FeatureSpec("listed_allow", "bool", "the payer or device on the allow list"),
    FeatureSpec("model_score", "double", "the active model's probability of fraud (-1: none)"),
)
_WINDOW_INDEX = {name: index for index, name in enumerate(WINDOWS)}
_W1H, _W24H, _W7D = _WINDOW_INDEX["1h"], _WINDOW_INDEX["24h"], _WINDOW_INDEX["7d"]
_VELOCITY_NAMES = {
    subject: [(f"{subject}_count_{window}", f"{subject}_sum_{window}") for window in WINDOWS]
    for subject in ("payer", "payee", "device", "ip")
}
FEATURE_TYPES: dict[str, FeatureType] = {spec.name: spec.type for spec in FEATURES}
# What the model may learn from: numbers and flags, not the list verdicts (lists act
# directly) nor the model's own score.
MODEL_FEATURES: tuple[str, ...] = tuple(
    spec.name
    for spec in FEATURES
    if spec.numeric and not spec.name.startswith("listed_") and spec.name != "model_score"
)


@dataclass(frozen=True)
class PaymentFacts:
    """What is known about one payment when it is assessed. No personal data."""

    at: datetime
    kind: str
    amount: int
    currency: str
    payer: str | None = None  # payer account (or an outside system's payer id)
    payee: str | None = None  # payee account (for a withdrawal: the bank token)
    customer_id: str | None = None
    channel: str = "api"
    device_id: str | None = None
    device_registered_at: datetime | None = None
    device_new: bool = False
    ip: str | None = None
    bank_token: str | None = None
    phone_index: str | None = None
    kyc_tier: int | None = None
    session_started_at: datetime | None = None
    second_factor_at: datetime | None = None
    failed_logins_1h: int = 0
    password_changed_at: datetime | None = None
    latitude: float | None = None
    longitude: float | None = None


class ListSnapshot(Protocol):
    def match(self, subject: str, value: str | None) -> str:
        """'block' | 'watch' | 'allow' | '' for one subject (ip matches CIDR ranges too)."""
        ...


class NoLists:
    def match(self, subject: str, value: str | None) -> str:
        return ""


def _minutes(later: datetime, earlier: datetime | None) -> float:
    if earlier is None:
        return -1.0
    return round(max(0.0, (later - earlier).total_seconds()) / 60.0, 3)


def _distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine), kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(6371.0 * 2 * math.asin(min(1.0, math.sqrt(a))), 1)


class FeatureComputer:
    def __init__(
        self,
        store: CounterStore,
        *,
        timezone: str = "Asia/Shanghai",
        large_value_line: int = 5_000_000,
        tier_limits: dict[int, int] | None = None,
    ) -> None:
        self.store = store
        self.zone = ZoneInfo(timezone)
        self.large_value_line = large_value_line
        self.tier_limits = tier_limits or {}

    def _plan(self, facts: PaymentFacts) -> ReadPlan:
        plan = ReadPlan()
        if facts.payer:
            plan.series += [f"out:{facts.payer}", f"in:{facts.payer}", f"near:{facts.payer}"]
            plan.sets.append(f"payees:{facts.payer}")
            plan.samples.append(f"amounts:{facts.payer}")
            plan.hours.append(f"hours:{facts.payer}")
            plan.lasts += [f"ip:{facts.payer}", f"pos:{facts.payer}", f"inflow:{facts.payer}"]
            if facts.payee:
                plan.members.append((f"payees:{facts.payer}", facts.payee))
        if facts.payee:
            plan.series.append(f"in:{facts.payee}")
            plan.sets.append(f"payers:{facts.payee}")
        if facts.device_id:
            plan.series.append(f"device:{facts.device_id}")
            plan.sets.append(f"device_accounts:{facts.device_id}")
            if facts.payer:
                plan.members.append((f"device_accounts:{facts.device_id}", facts.payer))
        if facts.ip:
            plan.series.append(f"ip:{facts.ip}")
        if facts.bank_token:
            plan.sets.append(f"card_accounts:{facts.bank_token}")
        return plan

    def compute(self, facts: PaymentFacts, lists: ListSnapshot | None = None) -> dict[str, Any]:
        now = facts.at.timestamp()
        read = self.store.read(self._plan(facts), now)
        zero = [(0, 0)] * len(WINDOWS)
        local = facts.at.astimezone(self.zone)
        features: dict[str, Any] = {
            "amount": facts.amount,
            "kind": facts.kind,
            "channel": facts.channel,
            "currency": facts.currency,
            "is_p2p": facts.kind == "p2p",
            "is_merchant": facts.kind == "merchant",
            "is_withdrawal": facts.kind == "withdrawal",
            "is_top_up": facts.kind == "top_up",
            "hour": local.hour,
            "is_night": local.hour < 6,
            "kyc_tier": facts.kyc_tier if facts.kyc_tier is not None else -1,
        }
        limit = self.tier_limits.get(facts.kyc_tier) if facts.kyc_tier is not None else None
        features["amount_to_tier_limit"] = round(facts.amount / limit, 4) if limit else 0.0

        velocity = {
            "payer": read.series.get(f"out:{facts.payer}", zero),
            "payee": read.series.get(f"in:{facts.payee}", zero),
            "device": read.series.get(f"device:{facts.device_id}", zero),
            "ip": read.series.get(f"ip:{facts.ip}", zero),
        }
        for subject, windows in velocity.items():
            for (count_name, sum_name), (count, total) in zip(
                _VELOCITY_NAMES[subject], windows, strict=True
            ):
                features[count_name] = count
                features[sum_name] = total
        nothing = [0] * len(WINDOWS)
        payees = read.sets.get(f"payees:{facts.payer}", nothing)
        payers = read.sets.get(f"payers:{facts.payee}", nothing)
        devices = read.sets.get(f"device_accounts:{facts.device_id}", nothing)
        cards = read.sets.get(f"card_accounts:{facts.bank_token}", nothing)
        features["payer_distinct_payees_1h"] = payees[_W1H]
        features["payer_distinct_payees_24h"] = payees[_W24H]
        features["payer_distinct_payees_7d"] = payees[_W7D]
        features["payee_distinct_payers_1h"] = payers[_W1H]
        features["payee_distinct_payers_24h"] = payers[_W24H]
        # This payment's account counts too: "n accounts on this device" includes it.
        on_device = (
            read.members.get((f"device_accounts:{facts.device_id}", facts.payer))
            if facts.device_id and facts.payer
            else None
        )
        for window in ("24h", "7d"):
            absent = on_device is None or on_device < now - WINDOWS[window]
            features[f"device_distinct_accounts_{window}"] = devices[_WINDOW_INDEX[window]] + int(
                bool(facts.device_id and facts.payer) and absent
            )
        features["card_distinct_accounts_7d"] = cards[_W7D]

        inflow = read.series.get(f"in:{facts.payer}", zero)
        features["payer_inflow_sum_1h"] = inflow[_W1H][1]
        features["payer_inflow_sum_24h"] = inflow[_W24H][1]
        inflow_at = read.lasts.get(f"inflow:{facts.payer}")
        features["minutes_since_inflow"] = (
            round(max(0.0, now - float(inflow_at)) / 60.0, 3) if inflow_at else -1.0
        )
        out_24h = features["payer_sum_24h"] + (facts.amount if facts.kind in OUTGOING else 0)
        inflow_24h = features["payer_inflow_sum_24h"]
        features["pass_through_ratio_24h"] = (
            round(out_24h / inflow_24h, 4) if inflow_24h > 0 and facts.kind in OUTGOING else 0.0
        )
        paid_before = (
            read.members.get((f"payees:{facts.payer}", facts.payee))
            if facts.payer and facts.payee
            else None
        )
        features["payee_new"] = bool(facts.payee) and facts.kind in OUTGOING and paid_before is None

        features["device_known"] = facts.device_id is not None
        features["device_new"] = facts.device_new
        features["device_age_hours"] = (
            round(_minutes(facts.at, facts.device_registered_at) / 60.0, 3)
            if facts.device_registered_at
            else -1.0
        )
        features["session_age_minutes"] = _minutes(facts.at, facts.session_started_at)
        features["minutes_since_second_factor"] = _minutes(facts.at, facts.second_factor_at)
        features["failed_logins_1h"] = facts.failed_logins_1h
        features["password_changed_minutes"] = _minutes(facts.at, facts.password_changed_at)

        amounts = read.samples.get(f"amounts:{facts.payer}", [])
        features["payer_history_count"] = len(amounts)
        features["amount_to_p95"] = (
            round(facts.amount / max(1.0, percentile(amounts, 0.95)), 4)
            if len(amounts) >= 5
            else 0.0
        )
        hours = read.hours.get(f"hours:{facts.payer}", [0] * 24)
        seen = sum(hours)
        near_hours = sum(hours[(local.hour + delta) % 24] for delta in (-1, 0, 1))
        features["hour_share"] = round(near_hours / seen, 4) if seen >= 10 else -1.0
        previous_ip = read.lasts.get(f"ip:{facts.payer}")
        features["ip_changed"] = bool(facts.ip and previous_ip and previous_ip != facts.ip)
        position = read.lasts.get(f"pos:{facts.payer}")
        features["geo_distance_km"] = -1.0
        if position and facts.latitude is not None and facts.longitude is not None:
            lat, lon = (float(part) for part in position.split(","))
            features["geo_distance_km"] = _distance_km(lat, lon, facts.latitude, facts.longitude)
        line = self.large_value_line
        features["near_threshold"] = 0.9 * line <= facts.amount < line
        near = read.series.get(f"near:{facts.payer}", zero)
        features["payer_near_threshold_24h"] = near[_W24H][0]
        features["payer_near_threshold_7d"] = near[_W7D][0]

        snapshot = lists or NoLists()
        verdicts = {
            "payer": snapshot.match("account", facts.payer),
            "payee": _strongest(
                snapshot.match("payee", facts.payee), snapshot.match("account", facts.payee)
            ),
            "device": snapshot.match("device", facts.device_id),
            "ip": snapshot.match("ip", facts.ip),
            "phone": snapshot.match("phone", facts.phone_index),
        }
        for subject, verdict in verdicts.items():
            features[f"list_{subject}"] = verdict
        features["listed_block"] = "block" in verdicts.values()
        features["listed_watch"] = "watch" in verdicts.values()
        features["listed_allow"] = "allow" in (verdicts["payer"], verdicts["device"])
        features["model_score"] = -1.0
        return features

    def observe(self, facts: PaymentFacts) -> None:
        """Record the payment, after its decision, for the next one's features."""
        at = facts.at.timestamp()
        plan = WritePlan()
        if facts.payer:
            if facts.kind in OUTGOING:
                plan.series.append((f"out:{facts.payer}", at, facts.amount))
                plan.samples.append((f"amounts:{facts.payer}", facts.amount))
                plan.hours.append((f"hours:{facts.payer}", facts.at.astimezone(self.zone).hour))
                if 0.9 * self.large_value_line <= facts.amount < self.large_value_line:
                    plan.series.append((f"near:{facts.payer}", at, facts.amount))
            if facts.ip:
                plan.lasts.append((f"ip:{facts.payer}", facts.ip))
            if facts.latitude is not None and facts.longitude is not None:
                plan.lasts.append((f"pos:{facts.payer}", f"{facts.latitude},{facts.longitude}"))
            if facts.payee:
                plan.set_members.append((f"payees:{facts.payer}", facts.payee, at))
        if facts.payee:
            plan.series.append((f"in:{facts.payee}", at, facts.amount))
            if facts.payer:
                plan.set_members.append((f"payers:{facts.payee}", facts.payer, at))
            plan.lasts.append((f"inflow:{facts.payee}", repr(at)))
        if facts.device_id:
            plan.series.append((f"device:{facts.device_id}", at, facts.amount))
            if facts.payer:
                plan.set_members.append((f"device_accounts:{facts.device_id}", facts.payer, at))
        if facts.ip:
            plan.series.append((f"ip:{facts.ip}", at, facts.amount))
        if facts.bank_token:
            account = facts.payer if facts.kind == "withdrawal" else facts.payee
            if account:
                plan.set_members.append((f"card_accounts:{facts.bank_token}", account, at))
        self.store.write(plan)


def _strongest(*verdicts: str) -> str:
    for verdict in ("block", "watch", "allow"):
        if verdict in verdicts:
            return verdict
    return ""


def vector(features: dict[str, Any], names: tuple[str, ...] | list[str]) -> list[float]:
    """The model's input row: the named features as floats (flags as 0/1)."""
    return [float(features.get(name, 0) or 0) for name in names]
