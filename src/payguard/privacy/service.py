"""The data subject's rights: access (export everything we hold) and erasure by
crypto-shredding (destroy the customer's key; keep what the law says to keep).

Erasure destroys the customer's data-encryption key: name, phone, e-mail and TOTP secret
become unreadable at once, everywhere, including in backups. Ledger entries, payments
and the audit log stay for the legal retention period; they hold ids and amounts, not
personal data.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from payguard import clock
from payguard.crypto.envelope import envelope_for
from payguard.errors import Conflict
from payguard.events import service as events
from payguard.identity import devices, sessions
from payguard.identity import service as identity
from payguard.ledger import service as ledger
from payguard.payments.service import payments_of_customer
from payguard.settings import Settings

ERASED_STATUS = "erased"


def export(session: Session, settings: Settings, customer_id: str) -> dict[str, Any]:
    """All personal data of one customer, readable (the right of access)."""
    customer = identity.get_customer(session, customer_id)
    contact = identity.personal_data(session, settings, customer)
    events.emit(session, "identity.personal_data_exported", {"customer_id": customer_id})
    return {
        "exported_at": clock.now().isoformat(),
        "customer": {
            "id": customer.id,
            "username": customer.username,
            "display_name": contact.display_name,
            "status": customer.status,
            "kyc_tier": customer.kyc_tier,
            "created_at": customer.created_at.isoformat(),
            "legal_name": contact.legal_name,
            "phone": contact.phone,
            "email": contact.email,
            "id_document_type": customer.id_document_type,
            "id_number_masked": customer.id_number_masked,
        },
        "devices": [
            {
                "id": device.id,
                "name": devices.name_of(session, settings, device),
                "algorithm": device.algorithm,
                "status": device.status,
                "created_at": device.created_at.isoformat(),
            }
            for device in devices.list_devices(session, customer_id)
        ],
        "accounts": [
            {
                "id": account.id,
                "currency": account.currency,
                "status": account.status,
                "balance": account.balance,
            }
            for account in ledger.list_accounts(session, owner_id=customer_id)
        ],
        "payments": payments_of_customer(session, settings, customer_id),
    }


def erase(session: Session, settings: Settings, customer_id: str) -> dict[str, int]:
    """Crypto-shred one customer; their sessions end and they can no longer sign in."""
    customer = identity.get_customer(session, customer_id)
    if customer.status == ERASED_STATUS:
        raise Conflict("this customer's data was already erased")
    destroyed = envelope_for(settings).erase(session, customer_id)
    customer.status = ERASED_STATUS
    ended = sessions.revoke_all(session, "customer", customer_id, reason="erased")
    events.emit(
        session,
        "identity.customer_erased",
        {"customer_id": customer_id, "keys_destroyed": destroyed, "sessions_ended": ended},
    )
    return {"keys_destroyed": destroyed, "sessions_ended": ended}
