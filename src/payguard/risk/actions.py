"""The risk domain's four-eyes operations, added to the approval catalogue.

Each module that owns such an operation contributes one ``Action`` here."""

from __future__ import annotations

from payguard.identity.approvals import Action
from payguard.risk import learning, rules


def approval_actions() -> list[Action]:
    actions: list[Action] = []
    actions.append(learning.activate_action())
    actions.append(rules.publish_action())
    return actions
