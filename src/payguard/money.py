"""Money is an integer count of minor units plus an ISO 4217 currency; never a float."""

from __future__ import annotations

from functools import lru_cache

import iso4217

# Amounts are stored in signed 64-bit columns; balances must stay representable too.
MAX_AMOUNT = 2**62


@lru_cache(maxsize=512)
def minor_unit_exponent(code: str) -> int | None:
    """Digits after the decimal point for an active ISO 4217 currency, None if unknown."""
    try:
        currency = iso4217.Currency(code.upper())
    except (ValueError, KeyError):
        return None
    exponent = currency.exponent
    return int(exponent) if exponent is not None else None


def is_known_currency(code: str) -> bool:
    return len(code) == 3 and code.isalpha() and minor_unit_exponent(code) is not None


def format_amount(amount: int, currency: str) -> str:
    """Human form for statements and the console, e.g. ``1,234.50 CNY``."""
    exponent = minor_unit_exponent(currency) or 0
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**exponent) if exponent else (abs(amount), 0)
    body = f"{whole:,}" + (f".{fraction:0{exponent}d}" if exponent else "")
    return f"{sign}{body} {currency}"
