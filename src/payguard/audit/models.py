from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from payguard.db.base import Base, BigIntPK, UTCDateTime


class AuditRecord(Base):
    """One security-relevant event. Append-only: the database refuses DELETE, and UPDATE
    of a record once sealed into the Merkle tree (``leaf_index`` set)."""

    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_leaf_index", "leaf_index", unique=True),
        Index("ix_audit_records_unsealed", "leaf_index", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))  # staff:…, customer:…, system
    action: Mapped[str] = mapped_column(String(64))
    object: Mapped[str | None] = mapped_column(String(96))
    outcome: Mapped[str] = mapped_column(String(16))  # ok | refused | failed
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Set when sealed: the position in the tree, and H(0x00 ‖ canonical record).
    leaf_index: Mapped[int | None] = mapped_column(BigInteger)
    leaf_hash: Mapped[str | None] = mapped_column(String(64))


class AuditTreeHead(Base):
    """A signed statement: the tree of the first ``size`` records has this root."""

    __tablename__ = "audit_tree_heads"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[str] = mapped_column(String(64))
    made_at: Mapped[datetime] = mapped_column(UTCDateTime)
    suite: Mapped[str] = mapped_column(String(16))
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)
    # The perfect-subtree roots at this size ([height, hex], largest first): the next head
    # continues from here instead of re-reading every leaf.
    frontier: Mapped[list[Any]] = mapped_column(JSON)
