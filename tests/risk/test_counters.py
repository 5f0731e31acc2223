"""Counter stores: sliding windows exact against brute force, the same on Redis."""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payguard.risk.counters import (
    SERIES_CAP,
    SPANS,
    EmbeddedCounterStore,
    ReadPlan,
    RedisCounterStore,
    WritePlan,
    percentile,
)

NOW = 1_800_000_000.0


def brute_windows(events: list[tuple[float, int]], now: float) -> list[tuple[int, int]]:
    return [
        (
            sum(1 for at, _ in events if now - span <= at <= now),
            sum(amount for at, amount in events if now - span <= at <= now),
        )
        for span in SPANS
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(min_value=0, max_value=700_000), st.integers(1, 10**9)),
        max_size=60,
    )
)
def test_embedded_windows_match_brute_force(offsets: list[tuple[float, int]]) -> None:
    store = EmbeddedCounterStore()
    events = [(NOW - 700_000 + offset, amount) for offset, amount in offsets]
    for at, amount in events:  # out of order on purpose: replays and skewed clocks
        store.write(WritePlan(series=[("k", at, amount)]))
    kept = [(at, amount) for at, amount in events if at >= max(a for a, _ in events) - SPANS[-1]]
    got = store.read(ReadPlan(series=["k"]), NOW).series["k"]
    # Events older than the longest window before the newest may be pruned: compare on
    # what any window can see.
    assert got == brute_windows(kept, NOW) == brute_windows(events, NOW)


def test_series_memory_is_bounded_and_only_undercounts() -> None:
    store = EmbeddedCounterStore()
    for index in range(SERIES_CAP * 3):
        store.write(WritePlan(series=[("busy", NOW - 3600 + index * 0.01, 1)]))
    series = store._series["busy"]
    assert len(series.times) <= SERIES_CAP * 2
    count, total = store.read(ReadPlan(series=["busy"]), NOW).series["busy"][-1]
    assert SERIES_CAP <= count <= SERIES_CAP * 3 and total == count


def test_distinct_members_and_last_seen() -> None:
    store = EmbeddedCounterStore()
    store.write(
        WritePlan(
            set_members=[("payees", "a", NOW - 30), ("payees", "b", NOW - 7200), ("payees", "a", 5)]
        )
    )
    read = store.read(ReadPlan(sets=["payees"], members=[("payees", "a"), ("payees", "z")]), NOW)
    # 1m, 10m, 1h, 24h, 7d
    assert read.sets["payees"] == [1, 1, 1, 2, 2]
    assert read.members[("payees", "a")] == NOW - 30  # the later sighting wins
    assert read.members[("payees", "z")] is None


def test_percentile_nearest_rank() -> None:
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.95) == 10
    assert percentile([5], 0.95) == 5


@pytest.mark.redis
def test_redis_store_answers_as_the_embedded_one(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    remote = RedisCounterStore(redis_url, prefix=prefix, timeout=2.0)
    local = EmbeddedCounterStore()
    rng = random.Random(7)
    try:
        plan = WritePlan()
        for _ in range(300):
            at = NOW - rng.uniform(0, 8 * 86_400)
            key = rng.choice(["p1", "p2"])
            plan.series.append((key, at, rng.randint(1, 100_000)))
            plan.set_members.append((f"s:{key}", rng.choice("abcdefgh"), at))
            plan.samples.append((f"a:{key}", rng.randint(1, 500)))
            plan.hours.append((f"h:{key}", rng.randint(0, 23)))
        plan.lasts.append(("ip:p1", "10.0.0.1"))
        for store in (remote, local):
            store.write(plan)
        ask = ReadPlan(
            series=["p1", "p2", "never"],
            sets=["s:p1", "s:p2"],
            members=[("s:p1", "a"), ("s:p1", "nobody")],
            samples=["a:p1"],
            hours=["h:p2"],
            lasts=["ip:p1", "ip:p2"],
        )
        assert remote.read(ask, NOW) == local.read(ask, NOW)
    finally:
        remote.clear()
