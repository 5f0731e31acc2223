"""Fee schedule: fixed + basis points, clamped to [minimum, maximum], per payment kind."""

from __future__ import annotations

from payguard.settings import Settings


def fee_for(settings: Settings, kind: str, amount: int) -> int:
    rule = settings.fees.get(kind)
    if rule is None:
        return 0
    # Integer arithmetic, rounding the percentage part half up; money never touches a float.
    fee = rule.fixed + (amount * rule.basis_points + 5_000) // 10_000
    fee = max(fee, rule.minimum)
    if rule.maximum is not None:
        fee = min(fee, rule.maximum)
    return fee
