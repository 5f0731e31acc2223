"""The Python SDK that plays the mobile app: ``from payguard.client import PayguardClient``."""

from payguard.client.sdk import Account, PayguardClient, PayguardError, Payment, Statement

__all__ = ["Account", "PayguardClient", "PayguardError", "Payment", "Statement"]
