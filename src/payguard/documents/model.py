"""The blocks a document is made of: plain dataclasses, rendered to Markdown and to PDF."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

Language = Literal["zh-CN", "en"]


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2  # 1 is the document title's level; sections start at 2


@dataclass(frozen=True)
class Paragraph:
    text: str  # plain text; a newline starts a new line within the paragraph


@dataclass(frozen=True)
class Bullets:
    items: list[str]
    ordered: bool = False


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str | None = None
    # Relative column widths (any positive numbers); None: from the cells' text lengths.
    col_widths: list[float] | None = None


@dataclass(frozen=True)
class Image:
    path: Path
    caption: str | None = None
    width_fraction: float = 1.0  # of the text width in the PDF


@dataclass(frozen=True)
class KeyValues:
    items: list[tuple[str, str]]


@dataclass(frozen=True)
class PageBreak:
    """Starts a new page in the PDF; a horizontal rule in Markdown."""


Block = Heading | Paragraph | Bullets | Table | Image | KeyValues | PageBreak


@dataclass
class Document:
    title: str
    language: Language = "zh-CN"
    subtitle: str | None = None
    blocks: list[Block] = field(default_factory=list)
    author: str | None = None
    # Shown under the title and kept in the PDF's metadata; None leaves it out, so the
    # same document renders to the same bytes.
    generated_at: datetime | None = None


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    pdf: Path
