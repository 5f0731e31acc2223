"""PDF rendering with reportlab: A4, wrapped table cells, Chinese through STSong-Light.

STSong-Light is one of the CID fonts every PDF reader carries (Adobe-GB1), so Chinese needs
no font file in the package. Latin text is set in Helvetica; each run of characters that
Helvetica's encoding lacks switches to STSong-Light, so mixed text reads well in either
language.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    Flowable,
    KeepTogether,
    ListFlowable,
    ListItem,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from reportlab.platypus import Image as PdfImage
from reportlab.platypus import PageBreak as PdfPageBreak
from reportlab.platypus import Paragraph as PdfParagraph
from reportlab.platypus import Table as PdfTable

from .model import (
    Bullets,
    Document,
    Heading,
    Image,
    KeyValues,
    Language,
    PageBreak,
    Paragraph,
    Table,
)
from .text import word

CJK_FONT = "STSong-Light"
LATIN = "Helvetica"
LATIN_BOLD = "Helvetica-Bold"
_PAGE_W, _PAGE_H = A4
_MARGIN = 20 * mm
_TEXT_W = _PAGE_W - 2 * _MARGIN
_HEADER_BG = colors.HexColor("#E8EEF5")
_GRID = colors.HexColor("#9AA5B1")
_INK = colors.HexColor("#1F2933")
_MUTED = colors.HexColor("#52606D")

_registered = False


def _register_fonts() -> None:
    global _registered
    if not _registered:
        pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
        _registered = True


def _latin_ok(char: str) -> bool:
    # The standard Type 1 fonts are set in WinAnsi (cp1252); anything else goes CJK.
    try:
        char.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def has_cjk(text: str) -> bool:
    return any(not _latin_ok(char) for char in text)


# Symbols neither Helvetica nor STSong-Light carries, and the nearest ones they do.
_SUBSTITUTES = str.maketrans({"✓": "√", "✔": "√", "✗": "×", "✘": "×", "⚠": "!", "…": "..."})


def markup(text: str, *, bold: bool = False) -> str:
    """Paragraph markup for plain ``text``: escaped, font switched per script run."""
    latin = LATIN_BOLD if bold else LATIN
    out: list[str] = []
    text = text.translate(_SUBSTITUTES)
    for line_no, line in enumerate(text.replace("\r", "").split("\n")):
        if line_no:
            out.append("<br/>")
        for run in _runs(line):
            font = latin if _latin_ok(run[0]) else CJK_FONT
            out.append(f'<font name="{font}">{escape(run)}</font>')
    return "".join(out)


def _runs(line: str) -> list[str]:
    runs: list[str] = []
    for char in line:
        if runs and _latin_ok(runs[-1][-1]) == _latin_ok(char):
            runs[-1] += char
        else:
            runs.append(char)
    return runs


def _styles() -> dict[str, ParagraphStyle]:
    _register_fonts()
    base = ParagraphStyle("body", fontName=LATIN, fontSize=10, leading=15, textColor=_INK)
    return {
        "title": ParagraphStyle(
            "title", parent=base, fontSize=20, leading=26, alignment=TA_CENTER, spaceAfter=4
        ),
        "subtitle": ParagraphStyle(
            "subtitle",
            parent=base,
            fontSize=12,
            leading=17,
            alignment=TA_CENTER,
            textColor=_MUTED,
            spaceAfter=4,
        ),
        "meta": ParagraphStyle(
            "meta", parent=base, fontSize=9, leading=13, alignment=TA_CENTER, textColor=_MUTED
        ),
        "h1": ParagraphStyle(
            "h1", parent=base, fontSize=16, leading=22, spaceBefore=10, spaceAfter=6
        ),
        "h2": ParagraphStyle(
            "h2", parent=base, fontSize=13.5, leading=19, spaceBefore=10, spaceAfter=5
        ),
        "h3": ParagraphStyle(
            "h3", parent=base, fontSize=11.5, leading=16, spaceBefore=8, spaceAfter=4
        ),
        "body": ParagraphStyle("bodytext", parent=base, spaceAfter=6),
        "cell": ParagraphStyle("cell", parent=base, fontSize=9, leading=12.5),
        "caption": ParagraphStyle(
            "caption",
            parent=base,
            fontSize=9,
            leading=12,
            alignment=TA_CENTER,
            textColor=_MUTED,
            spaceBefore=3,
            spaceAfter=8,
        ),
    }


def _para(text: str, style: ParagraphStyle, *, bold: bool = False) -> PdfParagraph:
    # CJK wrapping breaks between any two characters; Latin text keeps word breaks (long
    # tokens such as ids are still split, splitLongWords is on by default).
    if has_cjk(text):
        style = ParagraphStyle(style.name + "-cjk", parent=style, wordWrap="CJK")
    return PdfParagraph(markup(text, bold=bold), style)


def _text_width(text: str) -> float:
    # Full-width characters take about twice the room of Latin ones.
    longest = max((line for line in text.split("\n")), key=len, default="")
    return sum(1.0 if _latin_ok(char) else 2.0 for char in longest)


def _column_widths(table: Table, columns: int) -> list[float]:
    if table.col_widths and len(table.col_widths) == columns:
        weights = [max(float(w), 0.01) for w in table.col_widths]
    else:
        weights = []
        for index in range(columns):
            cells = [table.headers[index] if index < len(table.headers) else ""]
            cells += [str(row[index]) for row in table.rows if index < len(row)]
            # Cap the natural width so one long cell wraps instead of starving the others.
            weights.append(min(max(_text_width(cell) for cell in cells), 48.0) + 3.0)
    total = sum(weights)
    widths = [_TEXT_W * weight / total for weight in weights]
    floor = min(16 * mm, _TEXT_W / columns)
    short = sum(max(floor - width, 0.0) for width in widths)
    if short:
        wide = sum(width for width in widths if width > floor)
        widths = [floor if w <= floor else w - short * (w / wide) for w in widths]
    return widths


def _table(table: Table, styles: dict[str, ParagraphStyle], language: Language) -> list[Flowable]:
    columns = max([len(table.headers)] + [len(row) for row in table.rows] + [1])

    def pad(row: list[str]) -> list[str]:
        return [str(cell) for cell in row] + [""] * (columns - len(row))

    data: list[list[Any]] = [[_para(h, styles["cell"], bold=True) for h in pad(table.headers)]]
    for row in table.rows:
        data.append([_para(cell, styles["cell"]) for cell in pad(row)])
    if not table.rows:
        data.append([_para(word("empty_table", language), styles["cell"])] + [""] * (columns - 1))
    pdf_table = PdfTable(
        data, colWidths=_column_widths(table, columns), repeatRows=1, hAlign="LEFT"
    )
    pdf_table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.5, _GRID),
                ("BACKGROUND", (0, 0), (-1, 0), _HEADER_BG),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LEFTPADDING", (0, 0), (-1, -1), 4),
                ("RIGHTPADDING", (0, 0), (-1, -1), 4),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    out: list[Flowable] = []
    if table.caption:
        out.append(_para(table.caption, styles["caption"]))
    out += [pdf_table, Spacer(1, 8)]
    return out


def _key_values(block: KeyValues, styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    if not block.items:
        return []
    keys = [key for key, _ in block.items]
    key_w = min(max(_text_width(key) for key in keys) * 5.6 + 14, _TEXT_W * 0.4)
    data = [
        [_para(key, styles["cell"], bold=True), _para(value, styles["cell"])]
        for key, value in block.items
    ]
    pdf_table = PdfTable(data, colWidths=[key_w, _TEXT_W - key_w], hAlign="LEFT")
    pdf_table.setStyle(
        TableStyle(
            [
                ("LINEBELOW", (0, 0), (-1, -1), 0.4, _GRID),
                ("BACKGROUND", (0, 0), (0, -1), _HEADER_BG),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
            ]
        )
    )
    return [pdf_table, Spacer(1, 8)]


def _image(
    block: Image, number: int, styles: dict[str, ParagraphStyle], lang: Language
) -> Flowable:
    caption = (
        _para(f"{word('figure', lang)} {number}. {block.caption}", styles["caption"])
        if block.caption
        else None
    )
    if not block.path.is_file():
        missing = _para(word("missing_image", lang, name=block.path.name), styles["caption"])
        return KeepTogether([missing] + ([caption] if caption else []))
    width_px, height_px = ImageReader(str(block.path)).getSize()
    width = _TEXT_W * min(max(block.width_fraction, 0.1), 1.0)
    height = width * height_px / max(width_px, 1)
    limit = (_PAGE_H - 2 * _MARGIN) * 0.7  # leave room for the caption on the same page
    if height > limit:
        width, height = width * limit / height, limit
    picture = PdfImage(str(block.path), width=width, height=height)
    return KeepTogether([picture] + ([caption] if caption else []))


def _decorate(doc: Document) -> Callable[[Canvas, Any], None]:
    def on_page(canvas: Canvas, template: Any) -> None:
        canvas.saveState()
        canvas.setStrokeColor(_GRID)
        canvas.setLineWidth(0.4)
        top = _PAGE_H - _MARGIN + 6 * mm
        canvas.line(_MARGIN, top - 2 * mm, _PAGE_W - _MARGIN, top - 2 * mm)
        canvas.setFillColor(_MUTED)
        title = doc.title if len(doc.title) <= 70 else doc.title[:69] + "…"
        canvas.setFont(CJK_FONT if has_cjk(title) else LATIN, 8)
        canvas.drawString(_MARGIN, top, title)
        footer = word("page", doc.language, n=canvas.getPageNumber())
        canvas.setFont(CJK_FONT if has_cjk(footer) else LATIN, 8)
        canvas.drawCentredString(_PAGE_W / 2, _MARGIN - 10 * mm, footer)
        canvas.restoreState()

    return on_page


def render_pdf(doc: Document, path: Path) -> Path:
    """Write the document as an A4 PDF at ``path`` (same input, same bytes)."""
    _register_fonts()
    styles = _styles()
    lang = doc.language
    story: list[Flowable] = [_para(doc.title, styles["title"])]
    if doc.subtitle:
        story.append(_para(doc.subtitle, styles["subtitle"]))
    meta: list[str] = []
    if doc.author:
        meta.append(f"{word('author', lang)}{word('colon', lang)}{doc.author}")
    if doc.generated_at is not None:
        stamp = doc.generated_at.isoformat(timespec="seconds")
        meta.append(f"{word('generated', lang)}{word('colon', lang)}{stamp}")
    if meta:
        story.append(_para("    ".join(meta), styles["meta"]))
    story.append(Spacer(1, 10))
    figure = 0
    for block in doc.blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 3)
            story.append(_para(block.text, styles[f"h{level}"], bold=True))
        elif isinstance(block, Paragraph):
            story.append(_para(block.text, styles["body"]))
        elif isinstance(block, Bullets):
            if block.items:
                items = [
                    ListItem(_para(item, styles["body"]), leftIndent=14) for item in block.items
                ]
                story.append(
                    ListFlowable(
                        items,
                        bulletType="1" if block.ordered else "bullet",
                        start=None if block.ordered else "•",
                        bulletFormat="%s." if block.ordered else None,
                        bulletFontName=LATIN,
                        bulletFontSize=9,
                        leftIndent=14,
                    )
                )
        elif isinstance(block, KeyValues):
            story += _key_values(block, styles)
        elif isinstance(block, Table):
            story += _table(block, styles, lang)
        elif isinstance(block, Image):
            figure += 1
            story.append(_image(block, figure, styles, lang))
        elif isinstance(block, PageBreak):
            story.append(PdfPageBreak())
    path.parent.mkdir(parents=True, exist_ok=True)
    template = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=_MARGIN,
        rightMargin=_MARGIN,
        topMargin=_MARGIN,
        bottomMargin=_MARGIN,
        title=doc.title,
        author=doc.author or "payguard",
        subject=doc.subtitle or "",
        creator="payguard",
        lang=doc.language,
        invariant=1,  # no timestamp or random file id: reports are reproducible
        pageCompression=1,
    )
    decorate = _decorate(doc)
    template.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return path
