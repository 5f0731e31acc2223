"""Charts are valid PNG files, deterministic, and cope with no data."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

from payguard.documents import charts

T0 = datetime(2026, 12, 1, 1, 15, tzinfo=UTC)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_timeline_chart_draws_one_row_per_lane(tmp_path: Path) -> None:
    points = [
        charts.TimelinePoint(T0 + timedelta(minutes=m), lane, label)
        for m, lane, label in [
            (0, "attack", "odd-hour payouts"),
            (2, "detect", "alert opened"),
            (5, "contain", "payouts suspended"),
            (6, "contain", "funds secured"),
            (30, "recover", "payouts resumed"),
        ]
    ]
    out = charts.timeline_chart(points, tmp_path / "t.png", "Drill", tz="Asia/Shanghai")
    width, height = png_size(out)
    assert width > 1000 and height > 400
    fewer = charts.timeline_chart(points[:1], tmp_path / "one.png", "Drill")
    # Rows grow with the lanes: one lane makes a shorter chart than four.
    assert png_size(fewer)[1] < height


def test_charts_are_deterministic(tmp_path: Path) -> None:
    values = [("detection", 0.93), ("false positives", 0.04)]
    a = charts.bar_chart(values, tmp_path / "a.png", "Indicators", "ratio", threshold=0.9)
    b = charts.bar_chart(values, tmp_path / "b.png", "Indicators", "ratio", threshold=0.9)
    assert a.read_bytes() == b.read_bytes()
    other = charts.bar_chart(values[:1], tmp_path / "c.png", "Indicators", "ratio")
    assert other.read_bytes() != a.read_bytes()


def test_line_chart_with_several_series(tmp_path: Path) -> None:
    series = {
        "score": [("2026-09", 71.0), ("2026-10", 78.0), ("2026-11", 85.0)],
        "target": [("2026-09", 80.0), ("2026-11", 80.0)],
    }
    out = charts.line_chart(series, tmp_path / "sub" / "l.png", "Trend", "score", threshold=80)
    assert png_size(out)[0] > 800


def test_empty_data_draws_a_no_data_chart(tmp_path: Path) -> None:
    outs = [
        charts.timeline_chart([], tmp_path / "t.png", "Nothing"),
        charts.line_chart({}, tmp_path / "l.png", "Nothing", "y"),
        charts.line_chart({"a": []}, tmp_path / "l2.png", "Nothing", "y"),
        charts.bar_chart([], tmp_path / "b.png", "Nothing", "y", threshold=1),
    ]
    for out in outs:
        png_size(out)


def test_chinese_labels_do_not_break_a_chart(tmp_path: Path) -> None:
    title = charts.label("演练时间线", "Drill timeline")
    assert title == ("演练时间线" if charts.cjk_font() else "Drill timeline")
    point = charts.TimelinePoint(T0, "攻击", "异常提现")
    png_size(charts.timeline_chart([point], tmp_path / "zh.png", "演练"))
    assert charts.label("中文", "English", language="en") == "English"
