"""Request and reply bodies of the block, watch and allow list routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from payguard.risk.lists import ImportResult, status_of
from payguard.risk.models import ListEntry

ListName = Literal["block", "watch", "allow"]
Subject = Literal["account", "payee", "device", "ip", "cidr", "phone"]


class ListEntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    list_name: ListName = Field(alias="list", description="block, watch or allow")
    subject: Subject
    value: str = Field(
        min_length=1,
        max_length=200,
        description="an account or device id, a payee account id or bank token, an IP "
        "address, a CIDR range, or a phone number in E.164 form (stored only as its blind "
        "index)",
    )
    reason: str = Field(min_length=1, max_length=500, description="why; analysts read it")
    expires_at: AwareDatetime | None = Field(
        default=None, description="when the entry stops applying; none: until removed"
    )


class ListEntryOut(BaseModel):
    id: str
    list_name: ListName = Field(serialization_alias="list")
    subject: Subject
    value: str = Field(description="for a phone, its blind index")
    reason: str
    expires_at: datetime | None
    created_by: str
    created_at: datetime
    removed_at: datetime | None
    removed_by: str | None
    status: Literal["active", "expired", "removed"]

    @classmethod
    def of(cls, entry: ListEntry) -> ListEntryOut:
        return cls(
            id=entry.id,
            list_name=entry.list_name,
            subject=entry.subject,
            value=entry.value,
            reason=entry.reason,
            expires_at=entry.expires_at,
            created_by=entry.created_by,
            created_at=entry.created_at,
            removed_at=entry.removed_at,
            removed_by=entry.removed_by,
            status=status_of(entry),
        )


class SkippedRow(BaseModel):
    row: int = Field(description="the file's row; the header is row 1")
    message: str


class ImportOut(BaseModel):
    added: int
    entry_ids: list[str]
    skipped: list[SkippedRow] = Field(description="rows already on their list, not added")

    @classmethod
    def of(cls, result: ImportResult) -> ImportOut:
        return cls(
            added=len(result.added),
            entry_ids=[entry.id for entry in result.added],
            skipped=[SkippedRow(row=note.row, message=note.message) for note in result.skipped],
        )
