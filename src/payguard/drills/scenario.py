"""The scenario API: what a drill scenario module declares.

A scenario module in ``payguard/drills/scenarios/`` defines one module-level
``SCENARIO = Scenario(...)``. Its ``setup`` creates drill actors, its ``attack`` plays the
attacker through the client SDK and plain HTTP inside ``ctx.step(...)`` blocks, and each
step says which signals of the platform count as detecting it and as containing it.
See ``scenarios/README.md`` for a walk-through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from payguard.drills.context import DrillContext

# ------------------------------------------------------------------ signals


@dataclass(frozen=True)
class Signal:
    """Something the platform does that a drill can observe in its own records.

    Built with the functions below, never directly. ``kind`` is one of: refused (the
    attacker's request got one of ``codes`` as a problem, any code when empty),
    rejected (a payment of the step was rejected by risk), held (a payment of the step
    is held for review or approval), alert (a risk alert on one of the step's actors,
    optionally with one of ``codes`` as reason), event (an outbox event whose topic
    starts with ``topic`` and whose payload contains ``match``), incident (an incident
    tagged with this drill run), playbook (a playbook step of such an incident is done,
    optionally of action ``topic``), frozen (a wallet of the step's actors frozen).
    """

    kind: str
    codes: tuple[str, ...] = ()
    topic: str = ""
    match: tuple[tuple[str, Any], ...] = ()
    label: str = ""

    def describe(self) -> str:
        if self.label:
            return self.label
        parts = [self.kind]
        if self.codes:
            parts.append("/".join(self.codes))
        if self.topic:
            parts.append(self.topic)
        return " ".join(parts)


def refused(*codes: str, label: str = "") -> Signal:
    return Signal("refused", codes=codes, label=label)


def rejected(label: str = "") -> Signal:
    return Signal("rejected", label=label)


def held(label: str = "") -> Signal:
    return Signal("held", label=label)


def alert(*reason_codes: str, label: str = "") -> Signal:
    return Signal("alert", codes=reason_codes, label=label)


def event(topic: str, label: str = "", **match: Any) -> Signal:
    return Signal("event", topic=topic, match=tuple(sorted(match.items())), label=label)


def incident(label: str = "") -> Signal:
    return Signal("incident", label=label)


def playbook(action: str = "", label: str = "") -> Signal:
    return Signal("playbook", topic=action, label=label)


def frozen(label: str = "") -> Signal:
    return Signal("frozen", label=label)


# What stops money by default: a refusal, a risk rejection, a hold, a freeze, a playbook
# action of the drill's incident, a platform control switched on (channel suspended...).
DEFAULT_CONTAIN: tuple[Signal, ...] = (
    refused(),
    rejected(),
    held(),
    frozen(),
    playbook(),
    event("controls."),
)


# ------------------------------------------------------------------ scenario


@dataclass(frozen=True)
class Scenario:
    """One drill scenario. ``setup`` and ``attack`` take the :class:`DrillContext`.

    ``background`` (default: the context's ``normal_traffic``) runs in a thread while
    the attack runs: legitimate customers paying, whose acknowledged payments must all
    survive. ``controls`` names the controls (``drills.controls.CONTROLS``) the scenario
    exercises: switched off, the drill must fail. ``settle_seconds`` bounds how long the
    runner waits after the attack for asynchronous detections (alerts turning into
    incidents, playbooks). ``root_cause_*``, ``fixes_*`` and ``playbook`` feed the drill
    record (seed 002: root cause, fixes, the plan followed).
    """

    name: str
    title_en: str
    title_zh: str
    threat_en: str
    threat_zh: str
    seed: str
    controls: tuple[str, ...]
    setup: Callable[[DrillContext], None]
    attack: Callable[[DrillContext], None]
    background: Callable[[DrillContext], None] | None = None
    root_cause_en: str = ""
    root_cause_zh: str = ""
    fixes_en: tuple[str, ...] = ()
    fixes_zh: tuple[str, ...] = ()
    playbook: str | None = None
    settle_seconds: float = 8.0
    tags: tuple[str, ...] = field(default_factory=tuple)
