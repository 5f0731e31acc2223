"""Which columns hold sealed values: registered next to the models that own them, so the
re-encryption job can find them without knowing their domains."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SealedColumn:
    table: str
    column: str
    key_column: str  # the row id that is part of the associated data
    binary: bool = False  # stored as bytes (LargeBinary)
    aad_prefix: str = ""  # default "<table>.<column>"
    immutable: bool = False  # rows that must never change (ledger): never re-encrypted

    def aad(self, row_id: object) -> str:
        return f"{self.aad_prefix or f'{self.table}.{self.column}'}.{row_id}"


SEALED: list[SealedColumn] = []


def register_sealed(
    table: str,
    column: str,
    key_column: str,
    *,
    binary: bool = False,
    aad_prefix: str = "",
    immutable: bool = False,
) -> None:
    entry = SealedColumn(table, column, key_column, binary, aad_prefix, immutable)
    if entry not in SEALED:
        SEALED.append(entry)
