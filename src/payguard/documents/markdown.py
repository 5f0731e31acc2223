"""Markdown rendering: GitHub-flavoured, images referenced relative to the file."""

from __future__ import annotations

import os
from pathlib import Path

from .model import (
    Bullets,
    Document,
    Heading,
    Image,
    KeyValues,
    PageBreak,
    Paragraph,
    Table,
)
from .text import word


def _cell(text: str) -> str:
    # A pipe ends a cell and a newline ends the row: both must be neutralised.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def _image_ref(path: Path, image_base: Path | None) -> str:
    if image_base is None:
        return path.as_posix()
    try:
        return Path(os.path.relpath(path.resolve(), image_base.resolve())).as_posix()
    except ValueError:  # another drive (Windows): keep it absolute
        return path.resolve().as_posix()


def render_markdown(doc: Document, image_base: Path | None = None) -> str:
    """The document as Markdown; image paths are made relative to ``image_base``."""
    lang = doc.language
    out: list[str] = [f"# {doc.title.strip()}", ""]
    if doc.subtitle:
        out += [f"*{doc.subtitle.strip()}*", ""]
    meta: list[str] = []
    if doc.author:
        meta.append(f"{word('author', lang)}{word('colon', lang)}{doc.author}")
    if doc.generated_at is not None:
        stamp = doc.generated_at.isoformat(timespec="seconds")
        meta.append(f"{word('generated', lang)}{word('colon', lang)}{stamp}")
    if meta:
        out += ["  \n".join(meta), ""]
    figure = 0
    for block in doc.blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            out += ["#" * level + " " + block.text.strip(), ""]
        elif isinstance(block, Paragraph):
            # Two trailing spaces keep a line break inside the paragraph.
            out += ["  \n".join(line.rstrip() for line in block.text.strip().splitlines()), ""]
        elif isinstance(block, Bullets):
            for index, item in enumerate(block.items, start=1):
                marker = f"{index}." if block.ordered else "-"
                lines = item.strip().splitlines() or [""]
                out.append(f"{marker} {lines[0]}")
                out += [f"  {line}" for line in lines[1:]]
            out.append("")
        elif isinstance(block, KeyValues):
            out += [
                f"- **{key.strip()}**{word('colon', lang)}{_cell(value).strip()}"
                for key, value in block.items
            ]
            out.append("")
        elif isinstance(block, Table):
            if block.caption:
                out += [f"**{block.caption}**", ""]
            width = max([len(block.headers)] + [len(row) for row in block.rows])
            headers = list(block.headers) + [""] * (width - len(block.headers))
            out.append("| " + " | ".join(_cell(h) for h in headers) + " |")
            out.append("|" + "---|" * width)
            for row in block.rows:
                cells = list(row) + [""] * (width - len(row))
                out.append("| " + " | ".join(_cell(str(c)) for c in cells) + " |")
            if not block.rows:
                out.append("| " + word("empty_table", lang) + " |" + " |" * (width - 1))
            out.append("")
        elif isinstance(block, Image):
            figure += 1
            caption = block.caption or block.path.stem
            out += [f"![{_cell(caption)}]({_image_ref(block.path, image_base)})", ""]
            if block.caption:
                out += [f"*{word('figure', lang)} {figure}. {block.caption}*", ""]
        elif isinstance(block, PageBreak):
            out += ["---", ""]
    return "\n".join(out).rstrip() + "\n"
