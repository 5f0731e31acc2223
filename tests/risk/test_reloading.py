"""The caches' shared reload rule: a change this process just made is never answered
with a value read before it, even while another thread is reloading."""

from __future__ import annotations

import threading

from payguard.risk.reloading import ReloadingCache


class Counting(ReloadingCache[int]):
    def __init__(self, interval: float) -> None:
        super().__init__(interval)
        self.source = 0
        self.value = -1
        self.reloads = 0
        self.inside = threading.Event()
        self.release = threading.Event()
        self.block = False

    def _value(self) -> int:
        return self.value

    def _reload(self) -> None:
        seen = self.source  # read "the database" first, as a real reload does
        if self.block:
            self.inside.set()
            self.release.wait(5)
        self.value = seen
        self.reloads += 1


def test_a_value_is_kept_for_the_interval() -> None:
    cache = Counting(interval=3600)
    assert cache.current() == 0
    cache.source = 1
    assert cache.current() == 0 and cache.reloads == 1


def test_an_invalidation_during_a_reload_waits_for_a_later_reload() -> None:
    cache = Counting(interval=3600)
    cache.current()
    cache.block = True
    cache.invalidate()
    background = threading.Thread(target=cache.current)
    background.start()
    assert cache.inside.wait(5)  # the background reload has read the old source
    cache.source = 2  # this process changes the database...
    cache.invalidate()  # ...and says so
    cache.block = False
    threading.Timer(0.05, cache.release.set).start()
    assert cache.current() == 2  # not the value the in-flight reload read
    background.join(5)


def test_a_zero_interval_always_reads() -> None:
    cache = Counting(interval=0)
    for expected in range(3):
        cache.source = expected
        assert cache.current() == expected
