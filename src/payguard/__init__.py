"""payguard: a secure e-wallet and mobile-payment platform with its defences built in."""

__version__ = "0.1.0"
