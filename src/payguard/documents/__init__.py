"""Documents rendered as Markdown and PDF (zh-CN and en), with charts drawn as images.

``from payguard.documents import charts`` loads matplotlib only where charts are drawn.
"""

from __future__ import annotations

from .markdown import render_markdown
from .model import (
    Block,
    Bullets,
    Document,
    Heading,
    Image,
    KeyValues,
    Language,
    PageBreak,
    Paragraph,
    ReportFiles,
    Table,
)
from .pdf import render_pdf
from .report import write_report

__all__ = [
    "Block",
    "Bullets",
    "Document",
    "Heading",
    "Image",
    "KeyValues",
    "Language",
    "PageBreak",
    "Paragraph",
    "ReportFiles",
    "Table",
    "render_markdown",
    "render_pdf",
    "write_report",
]
