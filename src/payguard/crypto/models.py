from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from payguard.db.base import Base, UTCDateTime


class DataKey(Base):
    """A data-encryption key of one owner, stored only wrapped by the provider's KEK.

    Destroying it (``wrapped`` set to NULL) is crypto-shredding: every value sealed under
    it is unreadable from then on."""

    __tablename__ = "data_keys"
    __table_args__ = (Index("ix_data_keys_owner", "owner", "version"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))  # customer id, or staff:<id>
    version: Mapped[int] = mapped_column(Integer)
    wrapped: Mapped[str | None] = mapped_column(Text)
    kek_id: Mapped[str] = mapped_column(String(32), server_default="kek-1")  # which KEK wraps it
    suite: Mapped[str] = mapped_column(String(16), server_default="standard")
    provider: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
