"""Bank cards and accounts as tokens: the number is kept sealed under the customer's key,
found by its blind index, and shown masked (first 6, last 4) everywhere else.

The same number used by several customers meets under one blind index, which is how the
risk engine sees one card behind many accounts without anyone decrypting it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.crypto.envelope import envelope_for
from payguard.errors import ValidationProblem
from payguard.payments.models import BankInstrument
from payguard.settings import Settings


def normalise(number: str) -> str:
    digits = "".join(character for character in number if character.isdigit())
    if not 8 <= len(digits) <= 30:
        raise ValidationProblem("bank_account: 8 to 30 digits")
    return digits


def mask(digits: str) -> str:
    """First 6 and last 4, as card schemes allow to be shown."""
    return digits[:6] + "*" * max(0, len(digits) - 10) + digits[-4:]


def tokenize(session: Session, settings: Settings, customer_id: str, number: str) -> BankInstrument:
    """The customer's token for this number, made on first use."""
    digits = normalise(number)
    envelope = envelope_for(settings)
    index = envelope.blind_index("bank_number", digits)
    found = session.scalar(
        select(BankInstrument).where(
            BankInstrument.customer_id == customer_id, BankInstrument.number_index == index
        )
    )
    if found is not None:
        return found
    token = ids.new_id("bank_instrument")
    instrument = BankInstrument(
        token=token,
        customer_id=customer_id,
        number_index=index,
        number=envelope.seal(session, customer_id, f"bank_instruments.number.{token}", digits),
        masked=mask(digits),
        created_at=clock.now(),
    )
    session.add(instrument)
    session.flush()
    return instrument


def customers_sharing(session: Session, settings: Settings, number: str) -> list[str]:
    """Every customer who has used this number (by its blind index, nothing decrypted)."""
    index = envelope_for(settings).blind_index("bank_number", normalise(number))
    return sorted(
        set(
            session.scalars(
                select(BankInstrument.customer_id).where(BankInstrument.number_index == index)
            )
        )
    )


def reveal(session: Session, settings: Settings, token: str) -> str:
    """The full number, for the rail call only."""
    instrument = session.get(BankInstrument, token)
    if instrument is None:
        raise ValidationProblem(f"no bank instrument {token}")
    return envelope_for(settings).open(
        session, f"bank_instruments.number.{token}", instrument.number
    )
