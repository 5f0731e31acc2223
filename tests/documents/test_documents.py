"""Documents render to Markdown and PDF in both languages; Chinese is really in the PDF."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from payguard.documents import (
    Bullets,
    Document,
    Heading,
    Image,
    KeyValues,
    PageBreak,
    Paragraph,
    Table,
    charts,
    render_markdown,
    render_pdf,
    write_report,
)
from payguard.documents import pdf as pdf_module

from .pdftext import pdf_text

LONG_ZH = "服务器密码泄露导致商户平台出现异常交易，攻击者在凌晨时段批量发起商户提现。" * 6
T0 = datetime(2026, 12, 1, 1, 15, tzinfo=UTC)


def _chart(tmp_path: Path) -> Path:
    points = [
        charts.TimelinePoint(T0, "attack", "payout burst"),
        charts.TimelinePoint(T0 + timedelta(minutes=2), "detect", "alert opened"),
        charts.TimelinePoint(T0 + timedelta(minutes=6), "contain", "payouts suspended"),
    ]
    return charts.timeline_chart(points, tmp_path / "charts" / "timeline.png", "Timeline")


def _zh_doc(chart: Path) -> Document:
    return Document(
        title="应急演练记录",
        subtitle="场景 leaked_merchant_password",
        language="zh-CN",
        blocks=[
            Heading("1. 演练目的", level=2),
            Paragraph("检验商户凭证泄露时的发现与处置能力。\n第二行 mixed text pay_0193abc."),
            Bullets(["指挥组：应急指挥", "技术支持组：日志分析"]),
            KeyValues([("时间", "2026-12-01 09:15"), ("方式", "模拟 / 实操")]),
            Table(
                headers=["时间", "事件"],
                rows=[["09:15", "发现异常交易 | 管道符"], ["09:20", LONG_ZH]],
                caption="事件时间线",
            ),
            Image(path=chart, caption="演练时间线"),
            PageBreak(),
            Heading("2. 评估", level=2),
            Paragraph("通过 ✓ 得分 85"),
        ],
    )


def test_markdown_has_every_block_and_relative_images(tmp_path: Path) -> None:
    chart = _chart(tmp_path)
    text = render_markdown(_zh_doc(chart), image_base=tmp_path)
    assert text.startswith("# 应急演练记录\n")
    assert "*场景 leaked_merchant_password*" in text
    assert "## 1. 演练目的" in text
    assert "检验商户凭证泄露时的发现与处置能力。  \n第二行" in text
    assert "- 指挥组：应急指挥" in text
    assert "- **时间**：2026-12-01 09:15" in text
    assert "| 时间 | 事件 |" in text
    # A pipe in a cell must not split the cell.
    assert "| 09:15 | 发现异常交易 \\| 管道符 |" in text
    assert "![演练时间线](charts/timeline.png)" in text
    assert "*图 1. 演练时间线*" in text


def test_markdown_in_english_uses_english_words(tmp_path: Path) -> None:
    doc = Document(
        title="Drill record",
        language="en",
        generated_at=T0,
        blocks=[KeyValues([("Time", "09:15")]), Table(headers=["a", "b"], rows=[])],
    )
    text = render_markdown(doc)
    assert "Generated: 2026-12-01T01:15:00+00:00" in text
    assert "- **Time**: 09:15" in text
    assert "(no data)" in text


def test_chinese_report_writes_markdown_and_a_pdf_with_the_chinese_text(tmp_path: Path) -> None:
    chart = _chart(tmp_path / "elsewhere")
    files = write_report(_zh_doc(chart), tmp_path / "out", "record-zh")
    assert files.markdown == tmp_path / "out" / "record-zh.md"
    assert files.pdf == tmp_path / "out" / "record-zh.pdf"
    # The chart from outside the folder was copied in, and the link points at the copy.
    assert (tmp_path / "out" / "images" / "timeline.png").read_bytes() == chart.read_bytes()
    assert "](images/timeline.png)" in files.markdown.read_text(encoding="utf-8")

    data = files.pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    assert b"/BaseFont /STSong-Light" in data
    assert b"/Subtype /Image" in data
    assert len(re.findall(rb"/Type /Page(?!s)", data)) >= 2  # the page break made a page
    text = pdf_text(files.pdf)
    for phrase in (
        "应急演练记录",
        "演练目的",
        "指挥组：应急指挥",
        "事件时间线",
        "图 1. 演练时间线",
    ):
        assert phrase in text
    # The long cell is all there (wrapped over lines, not cut off) ...
    assert "".join(text.split()).count("攻击者在凌晨时段批量发起商户提现") == 6
    # ... the tick mark STSong-Light lacks became one it has, and pages are numbered.
    assert "通过 √ 得分 85" in text
    assert "第 2 页" in text
    if shutil.which("pdftotext"):  # a second, independent reader when the machine has one
        extracted = subprocess.run(
            ["pdftotext", str(files.pdf), "-"], capture_output=True, check=True, text=True
        ).stdout
        assert "演练目的" in extracted and "技术支持组" in extracted


def test_english_report_is_set_in_helvetica_only(tmp_path: Path) -> None:
    doc = Document(
        title="Drill record",
        language="en",
        blocks=[
            Heading("1. Purpose"),
            Paragraph("Check detection and containment. " * 20),
            Bullets(["first", "second"], ordered=True),
            Table(headers=["Time", "Event"], rows=[["09:15", "x" * 400]]),
        ],
    )
    files = write_report(doc, tmp_path, "record-en")
    data = files.pdf.read_bytes()
    assert b"/BaseFont /Helvetica" in data
    assert b"STSong-Light" not in data
    text = pdf_text(files.pdf)
    assert "1. Purpose" in text and "Page 1" in text
    assert "".join(text.split()).count("x" * 400) == 1
    assert "1." in text and "first" in text


def test_a_long_cell_wraps_inside_the_text_width() -> None:
    table = Table(headers=["时间", "事件", "备注"], rows=[["09:15", LONG_ZH, "y" * 300]])
    flowable = pdf_module._table(table, pdf_module._styles(), "zh-CN")[0]
    width, height = flowable.wrap(pdf_module._TEXT_W, 10_000)
    assert width <= pdf_module._TEXT_W + 0.01
    assert height > 8 * 12.5  # many lines of 9 pt text, not one overflowing line
    # Without wrapping the long column alone would be far wider than the page.
    assert pdf_module._text_width(LONG_ZH) * 9 > pdf_module._TEXT_W * 5


def test_same_document_same_bytes(tmp_path: Path) -> None:
    chart = _chart(tmp_path)
    first = render_pdf(_zh_doc(chart), tmp_path / "a.pdf").read_bytes()
    second = render_pdf(_zh_doc(chart), tmp_path / "b.pdf").read_bytes()
    assert first == second


def test_a_missing_image_leaves_a_note_not_a_crash(tmp_path: Path) -> None:
    doc = Document(title="Missing", language="en", blocks=[Image(path=tmp_path / "gone.png")])
    files = write_report(doc, tmp_path, "missing")
    assert "(image missing: gone.png)" in pdf_text(files.pdf)


@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_empty_document_renders(tmp_path: Path, language: str) -> None:
    doc = Document(title="空 / empty", language=language)  # type: ignore[arg-type]
    files = write_report(doc, tmp_path, "empty")
    assert files.pdf.read_bytes().startswith(b"%PDF-")
    assert files.markdown.read_text(encoding="utf-8") == "# 空 / empty\n"
