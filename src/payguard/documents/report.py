"""Both renderings of one document, side by side in one folder."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from .markdown import render_markdown
from .model import Document, Image, ReportFiles
from .pdf import render_pdf


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def write_report(doc: Document, out_dir: Path, stem: str) -> ReportFiles:
    """Write ``out_dir/stem.md`` and ``out_dir/stem.pdf``.

    Images from outside ``out_dir`` are copied into ``out_dir/images/`` first, so the folder
    is self-contained: it can be filed or sent as it is, and the Markdown's relative image
    links keep working.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks = []
    for block in doc.blocks:
        if isinstance(block, Image) and block.path.is_file() and not _inside(block.path, out_dir):
            target = out_dir / "images" / block.path.name
            target.parent.mkdir(exist_ok=True)
            if not target.exists() or target.read_bytes() != block.path.read_bytes():
                shutil.copyfile(block.path, target)
            block = replace(block, path=target)
        blocks.append(block)
    local = replace(doc, blocks=blocks)
    markdown = out_dir / f"{stem}.md"
    markdown.write_text(render_markdown(local, image_base=out_dir), encoding="utf-8")
    pdf = render_pdf(local, out_dir / f"{stem}.pdf")
    return ReportFiles(markdown=markdown, pdf=pdf)
