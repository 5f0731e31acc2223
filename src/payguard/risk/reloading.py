"""What the rule set, model and list caches share: a value reloaded from the database at
most every ``risk_reload_seconds``, thread-safe.

A caller never waits for a periodic reload while a value exists. It does wait when there
is no value yet, when the interval is zero (always current: tests, drills), and after
:meth:`ReloadingCache.invalidate` — and then for a reload that *began after* the
invalidation, so a change this process just made is never answered with the value read
a moment before it.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class ReloadingCache(Generic[T]):
    def __init__(self, interval: float) -> None:
        self._interval = float(interval)
        self._lock = threading.Lock()
        self._ready = False
        self._checked = float("-inf")
        self._wanted = 0  # bumped by invalidate()
        self._loaded = 0  # the invalidation count the last reload began at

    def _value(self) -> T:
        raise NotImplementedError

    def _reload(self) -> None:
        """Read the database and set the value; raise only if there is no value yet."""
        raise NotImplementedError

    def _due(self) -> bool:
        return (
            not self._ready
            or self._loaded < self._wanted
            or time.monotonic() - self._checked >= self._interval
        )

    def current(self) -> T:
        if not self._due():
            return self._value()
        wait = not self._ready or self._interval <= 0 or self._loaded < self._wanted
        if not self._lock.acquire(blocking=wait):
            return self._value()  # another thread is reloading; use what we have
        try:
            if self._due():
                generation = self._wanted
                self._reload()
                self._ready = True
                self._loaded = generation
                self._checked = time.monotonic()
            return self._value()
        finally:
            self._lock.release()

    def invalidate(self) -> None:
        """Look again at the next call (this process just changed what is cached)."""
        self._wanted += 1
