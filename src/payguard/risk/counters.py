"""Counter stores behind the velocity features: embedded (default) and Redis.

Four kinds of state, all keyed by strings the features module builds:

- *series*: timestamped amounts (payments out of a payer, into a payee, through a device
  or an IP); read as (count, sum) over each sliding window;
- *sets*: members with the last time each was seen (payees of a payer, accounts on a
  device); read as distinct members per window, or the last time one member was seen;
- *samples*: the last :data:`SAMPLE_SIZE` amounts of a payer, and a 24-hour histogram;
- *lasts*: one small value per key (the payer's last IP and position).

Windows are exact for every key holding at most :data:`SERIES_CAP` events in the longest
window (7 days) and :data:`SET_CAP` members; past that the oldest are dropped, so a
window can only under-count, by at most the dropped events. Memory per key is bounded
by those caps. Reads and writes are batched: the Redis store answers a whole assessment
in one round trip.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

WINDOWS: dict[str, int] = {"1m": 60, "10m": 600, "1h": 3600, "24h": 86_400, "7d": 604_800}
SPANS: tuple[int, ...] = tuple(WINDOWS.values())
LONGEST = max(SPANS)
SERIES_CAP = 10_000
SET_CAP = 5_000
SET_RETENTION = 180 * 86_400  # "never paid this payee before" looks back 180 days
SAMPLE_SIZE = 200


@dataclass
class ReadPlan:
    series: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    members: list[tuple[str, str]] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    hours: list[str] = field(default_factory=list)
    lasts: list[str] = field(default_factory=list)


@dataclass
class ReadResult:
    # Per key, one (count, sum) or distinct count per window of WINDOWS, in order.
    series: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    sets: dict[str, list[int]] = field(default_factory=dict)
    members: dict[tuple[str, str], float | None] = field(default_factory=dict)
    samples: dict[str, list[int]] = field(default_factory=dict)
    hours: dict[str, list[int]] = field(default_factory=dict)
    lasts: dict[str, str | None] = field(default_factory=dict)


@dataclass
class WritePlan:
    series: list[tuple[str, float, int]] = field(default_factory=list)
    set_members: list[tuple[str, str, float]] = field(default_factory=list)
    samples: list[tuple[str, int]] = field(default_factory=list)
    hours: list[tuple[str, int]] = field(default_factory=list)
    lasts: list[tuple[str, str]] = field(default_factory=list)


class CounterStore(Protocol):
    name: str

    def read(self, plan: ReadPlan, now: float) -> ReadResult: ...

    def write(self, plan: WritePlan) -> None: ...


class _Series:
    """Timestamps in order with running sums: a window is two bisections."""

    __slots__ = ("base", "sums", "times")

    def __init__(self) -> None:
        self.times: list[float] = []
        self.sums: list[int] = []  # sums[i] = total of amounts 0..i, minus base
        self.base = 0

    def add(self, at: float, amount: int) -> None:
        if self.times and at < self.times[-1]:
            # Out of order (replays, clock skew): keep the invariant by rebuilding.
            pairs = [*self._pairs(), (at, amount)]
            pairs.sort(key=lambda pair: pair[0])
            self.times, self.sums, self.base = [], [], 0
            for when, value in pairs:
                self._append(when, value)
        else:
            self._append(at, amount)
        if len(self.times) > SERIES_CAP * 2:
            self._trim(len(self.times) - SERIES_CAP)

    def _append(self, at: float, amount: int) -> None:
        self.times.append(at)
        self.sums.append((self.sums[-1] if self.sums else 0) + amount)

    def _pairs(self) -> list[tuple[float, int]]:
        previous = self.base
        pairs = []
        for when, running in zip(self.times, self.sums, strict=True):
            pairs.append((when, running - previous))
            previous = running
        return pairs

    def _trim(self, drop: int) -> None:
        self.base = self.sums[drop - 1]
        self.times = self.times[drop:]
        self.sums = self.sums[drop:]

    def prune(self, before: float) -> None:
        drop = bisect.bisect_left(self.times, before)
        if drop > len(self.times) // 2 and drop > 0:
            self._trim(drop)

    def windows(self, now: float) -> list[tuple[int, int]]:
        total = self.sums[-1] if self.sums else 0
        out = []
        for span in SPANS:
            start = bisect.bisect_left(self.times, now - span)
            # The slot before a cut keeps the running sum of everything dropped earlier.
            before = self.sums[start - 1] if start > 0 else self.base
            out.append((len(self.times) - start, total - before))
        return out


class _Set:
    """Members with their last sighting, and those sightings sorted: a distinct count over
    a window is one bisection."""

    __slots__ = ("seen", "times")

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.times: list[float] = []

    def touch(self, member: str, at: float) -> None:
        previous = self.seen.get(member)
        if previous is not None:
            if at <= previous:
                return
            del self.times[bisect.bisect_left(self.times, previous)]
        self.seen[member] = at
        bisect.insort(self.times, at)
        if len(self.seen) > SET_CAP:
            cutoff = self.times[len(self.seen) - SET_CAP - 1]
            for gone in [name for name, when in self.seen.items() if when <= cutoff]:
                del self.seen[gone]
            self.times = sorted(self.seen.values())

    def distinct(self, now: float) -> list[int]:
        total = len(self.times)
        return [total - bisect.bisect_left(self.times, now - span) for span in SPANS]


class EmbeddedCounterStore:
    """In-process counters: the default, for one server process (``make run``)."""

    name = "embedded"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}
        self._sets: dict[str, _Set] = {}
        self._samples: dict[str, deque[int]] = {}
        self._hours: dict[str, list[int]] = {}
        self._lasts: dict[str, str] = {}

    def read(self, plan: ReadPlan, now: float) -> ReadResult:
        result = ReadResult()
        with self._lock:
            for key in plan.series:
                series = self._series.get(key)
                result.series[key] = (
                    series.windows(now) if series is not None else [(0, 0)] * len(SPANS)
                )
            for key in plan.sets:
                found = self._sets.get(key)
                result.sets[key] = found.distinct(now) if found else [0] * len(SPANS)
            for key, member in plan.members:
                found = self._sets.get(key)
                result.members[(key, member)] = found.seen.get(member) if found else None
            for key in plan.samples:
                result.samples[key] = list(self._samples.get(key, ()))
            for key in plan.hours:
                result.hours[key] = list(self._hours.get(key, [0] * 24))
            for key in plan.lasts:
                result.lasts[key] = self._lasts.get(key)
        return result

    def write(self, plan: WritePlan) -> None:
        with self._lock:
            for key, at, amount in plan.series:
                series = self._series.setdefault(key, _Series())
                series.add(at, amount)
                series.prune(at - LONGEST)
            for key, member, at in plan.set_members:
                found = self._sets.get(key)
                if found is None:
                    found = self._sets[key] = _Set()
                found.touch(member, at)
            for key, amount in plan.samples:
                self._samples.setdefault(key, deque(maxlen=SAMPLE_SIZE)).append(amount)
            for key, hour in plan.hours:
                self._hours.setdefault(key, [0] * 24)[hour % 24] += 1
            for key, value in plan.lasts:
                self._lasts[key] = value


# One script per read: (count, sum) of every window of every series key, server-side,
# so a whole assessment is one round trip. Members are "<time>:<amount>:<unique>".
_SERIES_LUA = """
local out = {}
local now = tonumber(ARGV[1])
local nspans = tonumber(ARGV[2])
for k = 1, #KEYS do
  local longest = tonumber(ARGV[2 + nspans])
  local items = redis.call('ZRANGEBYSCORE', KEYS[k], now - longest, '+inf', 'WITHSCORES')
  local counts, sums = {}, {}
  for s = 1, nspans do counts[s] = 0; sums[s] = 0 end
  for i = 1, #items, 2 do
    local at = tonumber(items[i + 1])
    local amount = tonumber(string.match(items[i], '^[^:]*:([^:]*)'))
    for s = 1, nspans do
      if at >= now - tonumber(ARGV[2 + s]) then
        counts[s] = counts[s] + 1
        sums[s] = sums[s] + amount
      end
    end
  end
  for s = 1, nspans do
    table.insert(out, counts[s])
    table.insert(out, tostring(sums[s]))
  end
end
return out
"""


class RedisCounterStore:
    """Counters in Redis, shared by every server process (``PAYGUARD_REDIS_URL``)."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "payguard:risk:", timeout: float = 0.05):
        import redis

        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._prefix = prefix
        self._series_script = self._client.register_script(_SERIES_LUA)
        self._unique = 0
        self._lock = threading.Lock()

    def _key(self, kind: str, key: str) -> str:
        return f"{self._prefix}{kind}:{key}"

    def read(self, plan: ReadPlan, now: float) -> ReadResult:
        result = ReadResult()
        pipe = self._client.pipeline(transaction=False)
        if plan.series:
            self._series_script(
                keys=[self._key("s", key) for key in plan.series],
                args=[now, len(SPANS), *SPANS],
                client=pipe,
            )
        for key in plan.sets:
            for span in SPANS:
                pipe.zcount(self._key("m", key), now - span, "+inf")
        for key, member in plan.members:
            pipe.zscore(self._key("m", key), member)
        for key in plan.samples:
            pipe.lrange(self._key("a", key), 0, -1)
        for key in plan.hours:
            pipe.hgetall(self._key("h", key))
        for key in plan.lasts:
            pipe.get(self._key("l", key))
        replies = iter(pipe.execute())
        if plan.series:
            flat = next(replies)
            width = 2 * len(SPANS)
            for index, key in enumerate(plan.series):
                chunk = flat[index * width : (index + 1) * width]
                result.series[key] = [
                    (int(chunk[i]), int(chunk[i + 1])) for i in range(0, width, 2)
                ]
        for key in plan.sets:
            result.sets[key] = [int(next(replies)) for _ in SPANS]
        for key, member in plan.members:
            score = next(replies)
            result.members[(key, member)] = float(score) if score is not None else None
        for key in plan.samples:
            result.samples[key] = [int(value) for value in next(replies)]
        for key in plan.hours:
            raw = next(replies)
            counts = [0] * 24
            for hour, count in raw.items():
                counts[int(hour)] = int(count)
            result.hours[key] = counts
        for key in plan.lasts:
            value = next(replies)
            result.lasts[key] = value.decode() if value is not None else None
        return result

    def write(self, plan: WritePlan) -> None:
        pipe = self._client.pipeline(transaction=False)
        for key, at, amount in plan.series:
            with self._lock:
                self._unique += 1
                unique = self._unique
            name = self._key("s", key)
            pipe.zadd(name, {f"{at}:{amount}:{id(self)}-{unique}": at})
            pipe.zremrangebyscore(name, "-inf", at - LONGEST)
            pipe.zremrangebyrank(name, 0, -(SERIES_CAP + 1))
            pipe.expire(name, LONGEST + 3600)
        for key, member, at in plan.set_members:
            name = self._key("m", key)
            # GT updates a member only forwards in time, and still adds new members.
            pipe.zadd(name, {member: at}, gt=True)
            pipe.zremrangebyrank(name, 0, -(SET_CAP + 1))
            pipe.expire(name, SET_RETENTION)
        for key, amount in plan.samples:
            name = self._key("a", key)
            pipe.rpush(name, amount)
            pipe.ltrim(name, -SAMPLE_SIZE, -1)
            pipe.expire(name, SET_RETENTION)
        for key, hour in plan.hours:
            name = self._key("h", key)
            pipe.hincrby(name, str(hour % 24), 1)
            pipe.expire(name, SET_RETENTION)
        for key, value in plan.lasts:
            pipe.set(self._key("l", key), value, ex=SET_RETENTION)
        pipe.execute()

    def clear(self) -> None:
        """Forget every counter under this store's prefix (tests, drills' sandboxes)."""
        for name in self._client.scan_iter(match=f"{self._prefix}*", count=500):
            self._client.delete(name)


def percentile(values: Sequence[int], share: float) -> float:
    """The nearest-rank percentile (0 < share <= 1) of a small sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return float(ordered[rank - 1])
