from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class TreeHeadOut(BaseModel):
    size: int
    root_hash: str
    made_at: datetime
    suite: str
    key_id: str
    signature: str


class PublicKeyOut(BaseModel):
    suite: str
    key_id: str
    public_key_pem: str


class AuditRecordOut(BaseModel):
    seq: int
    at: datetime
    actor: str
    action: str
    object: str | None
    outcome: str
    details: dict[str, Any]
    leaf_index: int | None


class ProofOut(BaseModel):
    """A proof document, exactly what ``payguard audit verify-proof`` checks offline."""

    model_config = {"extra": "allow"}

    kind: str
    proof: list[str]
