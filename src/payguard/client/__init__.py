"""The Python SDK that plays the mobile app: ``from payguard.client import PayguardClient``."""

from payguard.client.sdk import (
    Account,
    PayguardClient,
    PayguardError,
    Payment,
    Statement,
    TotpAuthenticator,
)
from payguard.client.signing import DeviceKey, sign_instruction

__all__ = [
    "Account",
    "DeviceKey",
    "PayguardClient",
    "PayguardError",
    "Payment",
    "Statement",
    "TotpAuthenticator",
    "sign_instruction",
]
