"""Scoring a drill: per attack step, and overall pass/fail with a 0-100 score.

An *attack step* is a step with detection signals. For each one:

- detected: one of its detection signals was observed; time to detect = first such
  observation minus the step's start;
- contained: one of its containment signals was observed (refusal, rejection, hold,
  freeze, playbook step, control switched on) and the step lost no money and gained the
  attacker nothing (no breach); time to contain likewise;
- in time: detected within ``detect_within_s`` and contained within ``contain_within_s``;
- defended: detected, contained and no money lost.

The score (``docs/drills.md``)::

    score = 40 x detected / attacks
          + 15 x (detected and contained in time) / attacks
          + 20 x contained / attacks
          + 15 x (1 - money_lost / money_at_risk)     (15 when nothing was at risk and lost)
          + 10 if the money checks hold (ledger invariants, no acknowledged payment lost,
               no duplicate debit), else 0

The drill **passes** only if every required attack step is detected and contained in
time, no money is lost and the money checks hold (DESIGN §6); the score grades how well.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

WEIGHTS = {"detection": 40, "timeliness": 15, "containment": 20, "money": 15, "integrity": 10}


@dataclass
class StepScore:
    key: str
    title_en: str
    title_zh: str
    attack: bool
    required: bool
    started_at: datetime
    money_at_risk: int
    money_lost: int
    detected: bool = False
    detected_by: str = ""
    time_to_detect_s: float | None = None
    detect_within_s: float = 0.0
    contained: bool = False
    contained_by: str = ""
    time_to_contain_s: float | None = None
    contain_within_s: float = 0.0
    refusals: list[str] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)
    expected_detection: list[str] = field(default_factory=list)

    @property
    def in_time(self) -> bool:
        return (
            self.detected
            and self.contained
            and self.time_to_detect_s is not None
            and self.time_to_detect_s <= self.detect_within_s
            and self.time_to_contain_s is not None
            and self.time_to_contain_s <= self.contain_within_s
        )

    @property
    def defended(self) -> bool:
        return self.detected and self.contained and self.money_lost == 0


@dataclass
class Integrity:
    invariants_ok: bool
    invariant_problems: list[str]
    acknowledged: int
    acknowledged_lost: list[str]
    duplicate_debits: list[str]

    @property
    def ok(self) -> bool:
        return self.invariants_ok and not self.acknowledged_lost and not self.duplicate_debits


@dataclass
class Score:
    score: int
    passed: bool
    parts: dict[str, float]
    failures: list[str]


def score(steps: list[StepScore], integrity: Integrity) -> Score:
    attacks = [step for step in steps if step.attack]
    count = len(attacks) or 1
    at_risk = sum(step.money_at_risk for step in attacks)
    lost = sum(step.money_lost for step in steps)
    # Nothing at risk: full marks unless something was lost all the same (a breach).
    money_share = max(0.0, 1.0 - lost / at_risk) if at_risk > 0 else float(lost == 0)
    parts = {
        "detection": WEIGHTS["detection"] * sum(step.detected for step in attacks) / count,
        "timeliness": WEIGHTS["timeliness"] * sum(step.in_time for step in attacks) / count,
        "containment": WEIGHTS["containment"] * sum(step.contained for step in attacks) / count,
        "money": WEIGHTS["money"] * money_share,
        "integrity": float(WEIGHTS["integrity"]) if integrity.ok else 0.0,
    }
    if not attacks:
        parts["detection"] = parts["timeliness"] = parts["containment"] = 0.0
    failures: list[str] = []
    if not attacks:
        failures.append("the scenario has no attack step to score")
    for step in attacks:
        if not step.required:
            continue
        if not step.detected:
            failures.append(f"{step.key}: not detected")
        elif step.time_to_detect_s is not None and step.time_to_detect_s > step.detect_within_s:
            failures.append(
                f"{step.key}: detected after {step.time_to_detect_s:.1f} s "
                f"(limit {step.detect_within_s:g} s)"
            )
        if not step.contained:
            failures.append(f"{step.key}: not contained")
        elif step.time_to_contain_s is not None and step.time_to_contain_s > step.contain_within_s:
            failures.append(
                f"{step.key}: contained after {step.time_to_contain_s:.1f} s "
                f"(limit {step.contain_within_s:g} s)"
            )
    if lost:
        failures.append(f"money lost: {lost}")
    if not integrity.invariants_ok:
        failures.append("ledger invariants broken: " + "; ".join(integrity.invariant_problems))
    if integrity.acknowledged_lost:
        failures.append(f"acknowledged payments lost: {', '.join(integrity.acknowledged_lost)}")
    if integrity.duplicate_debits:
        failures.append(f"payments debited twice: {', '.join(integrity.duplicate_debits)}")
    total = round(sum(parts.values()))
    return Score(score=total, passed=not failures, parts=parts, failures=failures)


def step_dict(step: StepScore) -> dict[str, Any]:
    data = asdict(step)
    data["started_at"] = step.started_at.isoformat()
    data["in_time"] = step.in_time
    data["defended"] = step.defended
    return data


def worst_time(values: list[float | None]) -> float | None:
    """The longest of the times (a drill is as fast as its slowest detection)."""
    known = [value for value in values if value is not None]
    return max(known) if known else None
