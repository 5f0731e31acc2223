"""External bank rails. A simulated rail is the default so two-phase flows run anywhere."""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RailResult:
    succeeded: bool
    rail_reference: str | None
    failure_reason: str | None = None


class Rail(Protocol):
    name: str

    def collect(self, *, amount: int, currency: str, payment_id: str) -> RailResult:
        """Pull money in from the customer's bank (top-up)."""
        ...

    def pay_out(self, *, amount: int, currency: str, payment_id: str) -> RailResult:
        """Send money out to the customer's bank (withdrawal)."""
        ...


class SimulatedRail:
    """A bank rail with configurable latency and failure rate, deterministic with a seed."""

    name = "simulated"

    def __init__(self, *, latency_ms: int = 0, failure_rate: float = 0.0, seed: int | None = None):
        self.latency_ms = latency_ms
        self.failure_rate = failure_rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def _respond(self, payment_id: str) -> RailResult:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        with self._lock:
            failed = self._random.random() < self.failure_rate
        if failed:
            return RailResult(False, None, "the bank declined the transfer (simulated)")
        return RailResult(True, f"sim-{uuid.uuid4().hex[:16]}")

    def collect(self, *, amount: int, currency: str, payment_id: str) -> RailResult:
        return self._respond(payment_id)

    def pay_out(self, *, amount: int, currency: str, payment_id: str) -> RailResult:
        return self._respond(payment_id)
